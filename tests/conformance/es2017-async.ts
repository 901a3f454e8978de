// Feature: async functions and await — introduced in ES2017. run() returns a Promise.
const delay = (v: number): Promise<number> => Promise.resolve(v);

async function add(a: number, b: number): Promise<number> {
  const x = await delay(a);
  const y = await delay(b);
  return x + y;
}

async function fails(): Promise<never> {
  throw new Error("boom");
}

export async function run(): Promise<unknown> {
  const order: string[] = [];
  const p = (async () => {
    order.push("start");
    await null;
    order.push("after await");
  })();
  order.push("sync");
  await p;
  let caught = "";
  try {
    await fails();
  } catch (e) {
    caught = (e as Error).message;
  }
  return { sum: await add(2, 3), order, caught };
}
