// Feature: exponentiation operator `**` and `**=` — introduced in ES2016.
export function run(): unknown {
  let x = 3;
  x **= 2;
  return { pow: 2 ** 10, rightAssoc: 2 ** 3 ** 2, negBase: (-2) ** 3, assign: x, frac: 4 ** 0.5 };
}
