// Feature: optional catch binding (`catch {` without a parameter) — introduced in ES2019.
function parseOr(text: string, fallback: unknown): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return fallback;
  }
}

export function run(): unknown {
  return { good: parseOr('{"a":1}', null), bad: parseOr("{nope", "fallback") };
}
