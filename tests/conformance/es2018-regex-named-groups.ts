// Feature: RegExp named capture groups (?<name>...) and \k<name>, without the u flag — introduced in ES2018.
export function run(): unknown {
  const date = /(?<year>\d{4})-(?<month>\d{2})-(?<day>\d{2})/;
  const m = date.exec("on 2024-03-15 at noon")!;
  const g = m.groups!;
  return {
    year: g.year,
    month: g.month,
    day: g.day,
    replaced: "2024-03-15".replace(date, "$<day>/$<month>/$<year>"),
    backref: /(?<q>['"]).*?\k<q>/.test(`say "hi"`),
  };
}
