// Feature: template literals and tagged templates (interpolation, multi-line, strings.raw) — introduced in ES2015.
function tag(strings: TemplateStringsArray, ...values: unknown[]): string {
  return strings.raw.join("|") + "#" + values.join(",");
}

export function run(): unknown {
  const name = "world";
  const n = 3;
  return {
    simple: `hello ${name}`,
    expr: `${n} * 2 = ${n * 2}`,
    multiline: `line1
line2`,
    tagged: tag`a${1}b${2}c`,
    rawEscape: tag`x\ny${0}`,
    nested: `outer ${`inner ${n}`}`,
  };
}
