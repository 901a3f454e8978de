// Feature: object rest/spread properties — introduced in ES2018.
export function run(): unknown {
  const nothing = null as { n: number } | null;
  const absent = undefined as { u: number } | undefined;
  const base = { a: 1, b: 2, c: 3 };
  const { a, ...rest } = base;
  const merged = { ...base, b: 20, d: 4 };
  const defaults = { b: 0, e: 5 };
  const overridden = { ...defaults, ...base };
  const withGetter = { ...{ get g() { return "evaluated"; } } };
  return {
    a,
    rest,
    merged,
    overridden,
    getterCopied: Object.getOwnPropertyDescriptor(withGetter, "g")!.value,
    spreadNull: { ...nothing, ...absent, x: 1 },
  };
}
