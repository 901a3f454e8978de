// Feature: nullish coalescing operator `??` — introduced in ES2020.
export function run(): unknown {
  const values: unknown[] = [null, undefined, 0, "", false, NaN, "x"];
  let evaluated = 0;
  const rhs = () => ++evaluated;
  const five = 5 as number | null;
  const kept = five ?? rhs();
  return {
    results: values.map((v) => {
      const r = v ?? "default";
      return typeof r === "number" && isNaN(r) ? "NaN" : r;
    }),
    kept,
    evaluated,
  };
}
