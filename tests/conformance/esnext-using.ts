// Feature: explicit resource management (`using` declarations, Symbol.dispose) — TC39 proposal (ES2026/esnext; TypeScript 5.2).
// Symbol.dispose may be missing on the engine; fall back to the well-known registry key so the snippet runs anywhere.
const dispose: typeof Symbol.dispose = (Symbol as any).dispose ?? Symbol.for("Symbol.dispose");

export function run(): unknown {
  const log: string[] = [];
  function resource(name: string): Disposable {
    log.push(`open ${name}`);
    return {
      [dispose]() {
        log.push(`close ${name}`);
      },
    } as Disposable;
  }
  {
    using a = resource("a");
    using b = resource("b");
    log.push("body");
  }
  return log;
}
