// Feature: TypeScript const enums (inlined at use sites) — TypeScript-only, no ES edition.
const enum Flags {
  None = 0,
  Read = 1 << 0,
  Write = 1 << 1,
  ReadWrite = Read | Write,
}

const enum Mode {
  Fast = "fast",
}

export function run(): unknown {
  const f = Flags.Read | Flags.Write;
  return { f, rw: Flags.ReadWrite, canWrite: (f & Flags.Write) !== 0, none: Flags.None, mode: Mode.Fast };
}
