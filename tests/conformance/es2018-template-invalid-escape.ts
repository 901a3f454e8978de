// Feature: tagged templates may contain invalid escapes (cooked value undefined, raw kept) — introduced in ES2018.
function tag(strings: TemplateStringsArray): unknown {
  return { cooked: strings[0] === undefined ? null : strings[0], raw: strings.raw[0] };
}

export function run(): unknown {
  return { unicode: tag`\unicode`, hex: tag`\xZ`, octalLike: tag`\01`, valid: tag`\u0041` };
}
