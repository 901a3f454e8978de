// Feature: for...of over arrays and strings (code points), with destructuring and break — introduced in ES2015.
// Only arrays and strings are iterated: a custom iterable needs Symbol.iterator, which an ES5 engine lacks (generators
// are covered by es2015-generator.ts). The string holds an astral character: for...of yields code points (on an
// engine with Symbol.iterator; below ES2015 it walks UTF-16 code units, as TypeScript's own es5 output does).
export function run(): unknown {
  const fromArray: number[] = [];
  for (const v of [1, 2, 3]) fromArray.push(v * 10);
  const fromString: number[] = [];
  for (const ch of "a😀b") fromString.push(ch.length);
  const destructured: string[] = [];
  for (const [k, v] of [["a", 1] as const, ["b", 2] as const]) destructured.push(k + v);
  let brokeAt = -1;
  for (const v of [5, 6, 7]) {
    if (v === 6) {
      brokeAt = v;
      break;
    }
  }
  return { fromArray, fromString, destructured, brokeAt };
}
