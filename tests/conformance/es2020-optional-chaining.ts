// Feature: optional chaining `?.` (property, element, call; short-circuiting) — introduced in ES2020.
interface Node {
  name?: string;
  child?: Node;
  tags?: string[];
  greet?: (who: string) => string;
}

export function run(): unknown {
  const tree: Node = { name: "root", child: { name: "leaf", tags: ["t1"] }, greet: (w) => `hi ${w}` };
  const empty: Node | null = null as Node | null;
  let sideEffects = 0;
  const bump = () => ++sideEffects;
  const shortCircuit = empty?.tags?.[bump()];
  return {
    deep: tree.child?.name,
    missing: tree.child?.child?.name ?? "none",
    element: tree.child?.tags?.[0],
    call: tree.greet?.("you"),
    missingCall: (tree.child?.greet?.("x")) === undefined,
    onNull: empty?.name === undefined,
    shortCircuit: shortCircuit === undefined,
    sideEffects,
  };
}
