// Feature: destructuring (array/object patterns, defaults, nesting, rest elements, parameters) — introduced in ES2015.
function area({ w = 1, h = 1 }: { w?: number; h?: number } = {}): number {
  return w * h;
}

export function run(): unknown {
  const [a, , b = 10, ...rest] = [1, 2, undefined, 4, 5];
  const {
    x,
    y: renamed,
    nested: { deep },
    missing = "default",
  } = { x: 1, y: 2, nested: { deep: "d" } } as { x: number; y: number; nested: { deep: string }; missing?: string };
  let p = 1;
  let q = 2;
  [p, q] = [q, p];
  return { a, b, rest, x, renamed, deep, missing, swapped: [p, q], area: area({ w: 3 }), areaDefault: area() };
}
