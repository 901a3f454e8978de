// Feature: spread in array literals and calls, rest parameters — introduced in ES2015.
function sum(...nums: number[]): number {
  return nums.reduce((a, b) => a + b, 0);
}

export function run(): unknown {
  const a = [1, 2];
  const b = [3, 4];
  const merged = [0, ...a, ...b, 5];
  const args = [10, 20, 30];
  return {
    merged,
    sum: sum(...args),
    max: Math.max(...merged),
    chars: [..."héllo"],
    copyIsNew: (() => {
      const copy = [...a];
      copy.push(99);
      return a.length === 2 && copy.length === 3;
    })(),
  };
}
