// Feature: class static initialization blocks (`static { ... }`) — introduced in ES2022.
class Registry {
  static entries: string[] = [];
  static ready: boolean;
  static {
    for (const n of ["a", "b"]) this.entries.push(n.toUpperCase());
    Registry.ready = this.entries.length === 2;
  }
}

export function run(): unknown {
  return { entries: Registry.entries, ready: Registry.ready };
}
