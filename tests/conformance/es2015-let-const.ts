// Feature: let/const block scoping (per-iteration bindings in loops, shadowing) — introduced in ES2015.
// The temporal dead zone is left out on purpose: downlevelling compilers (tsc, swc, Babel by default) do not emulate
// it, and it only changes the behaviour of programs that read a binding before its declaration.
export function run(): unknown {
  const closures: Array<() => number> = [];
  for (let i = 0; i < 3; i++) {
    closures.push(() => i);
  }
  let shadow = "outer";
  {
    let shadow = "inner";
    shadow += "!";
  }
  const frozenBinding = { v: 1 };
  frozenBinding.v = 2;
  const loopClosures: Array<() => string> = [];
  for (const key of ["x", "y"]) {
    loopClosures.push(() => key);
  }
  return {
    perIteration: closures.map((f) => f()),
    perIterationConst: loopClosures.map((f) => f()),
    shadow,
    frozenBinding,
  };
}
