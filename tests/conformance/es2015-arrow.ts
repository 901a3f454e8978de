// Feature: arrow functions (lexical `this` and `arguments`, concise bodies) — introduced in ES2015.
const counter = {
  count: 0,
  addAll(values: number[]): number {
    values.forEach((v) => {
      this.count += v;
    });
    return this.count;
  },
};

function firstArg(..._rest: unknown[]): () => unknown {
  // An arrow has no `arguments` of its own: it sees the enclosing function's.
  return () => arguments[0];
}

export function run(): unknown {
  const double = (x: number) => x * 2;
  const pair = (a: number, b: number) => ({ a, b });
  return {
    mapped: [1, 2, 3].map(double),
    pair: pair(1, 2),
    lexicalThis: counter.addAll([1, 2, 3]),
    lexicalArguments: firstArg("outer", "x")(),
  };
}
