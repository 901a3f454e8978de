// Feature: for await...of over async iterables and arrays of promises — introduced in ES2018. run() returns a Promise.
async function* letters(): AsyncGenerator<string> {
  yield "a";
  yield "b";
}

export async function run(): Promise<unknown> {
  const fromGenerator: string[] = [];
  for await (const l of letters()) fromGenerator.push(l);
  const fromPromises: number[] = [];
  for await (const v of [Promise.resolve(1), 2, Promise.resolve(3)]) fromPromises.push(v);
  return { fromGenerator, fromPromises };
}
