// Feature: RegExp dotAll flag `s` (`.` matches line terminators) — introduced in ES2018.
export function run(): unknown {
  const text = "a\nb";
  const re = /a.b/s;
  return { withS: re.test(text), withoutS: /a.b/.test(text), flag: re.dotAll, flags: re.flags };
}
