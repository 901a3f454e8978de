// Feature: TypeScript `import x = require("...")` (CommonJS-style import) — TypeScript-only, no ES edition.
// No real module is available to a connector, so the import is used in type positions only: TypeScript (and swc)
// elide an `import =` whose binding is never used as a value, so the snippet runs standalone. `import type x = require`
// keeps the elision explicit.
import type fs = require("fs");
import events = require("events");

type Stats = fs.Stats;
type Emitter = events.EventEmitter;

export function run(): unknown {
  const fake: Pick<Stats, "size"> = { size: 42 };
  const maybe: Emitter | null = null;
  return { size: fake.size, emitter: maybe === null };
}
