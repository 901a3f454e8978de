// Feature: logical assignment operators `&&=`, `||=`, `??=` (short-circuiting) — introduced in ES2021.
export function run(): unknown {
  const o: { a?: number | null; b: number; c: string; d: number } = { a: null, b: 0, c: "set", d: 1 };
  let setterCalls = 0;
  const watched = {
    _v: "present",
    get v(): string {
      return this._v;
    },
    set v(x: string) {
      setterCalls++;
      this._v = x;
    },
  };
  o.a ??= 42;
  o.b ||= 7;
  o.c &&= "replaced";
  o.d ??= 99;
  watched.v ||= "not assigned";
  return { o, setterCalls };
}
