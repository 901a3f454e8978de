// Feature: RegExp lookbehind assertions (?<=...) and (?<!...) — introduced in ES2018.
export function run(): unknown {
  const prices = "USD 10, EUR 20, USD 30";
  return {
    positive: prices.match(/(?<=USD )\d+/g),
    negative: prices.match(/(?<!USD )\b\d+/g),
  };
}
