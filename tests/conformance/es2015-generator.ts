// Feature: generator functions (function*, yield, yield*, return values, next(arg)) — introduced in ES2015.
function* inner(): Generator<string> {
  yield "i1";
  yield "i2";
}

function* outer(): Generator<string, string, undefined> {
  yield "o1";
  yield* inner();
  return "done";
}

function* echo(): Generator<number, void, number> {
  let received = 0;
  while (true) {
    received = yield received * 2;
  }
}

export function run(): unknown {
  const steps: unknown[] = [];
  const g = outer();
  for (let r = g.next(); ; r = g.next()) {
    steps.push(r.value);
    if (r.done) break;
  }
  const e = echo();
  e.next();
  const echoed = [e.next(5).value, e.next(21).value];
  return { steps, echoed, spread: [...inner()] };
}
