// Feature: async generator functions (async function*, yield in async context) — introduced in ES2018. run() returns a Promise.
async function* ticks(n: number): AsyncGenerator<number, string> {
  for (let i = 0; i < n; i++) {
    yield await Promise.resolve(i * i);
  }
  return "end";
}

export async function run(): Promise<unknown> {
  const g = ticks(3);
  const seen: unknown[] = [];
  for (;;) {
    const r = await g.next();
    seen.push(r.value);
    if (r.done) break;
  }
  return { seen, hasAsyncIterator: typeof (g as any)[Symbol.asyncIterator] === "function" };
}
