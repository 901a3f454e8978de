// Feature: RegExp match indices, the `d` flag (`hasIndices`, `match.indices`) — introduced in ES2022.
export function run(): unknown {
  const re = /b(?<rest>c+)/d;
  const m = re.exec("abccd")!;
  const indices = (m as RegExpExecArray & { indices: Array<[number, number]> & { groups: Record<string, [number, number]> } }).indices;
  return { hasIndices: re.hasIndices, whole: indices[0], group: indices[1], named: indices.groups.rest };
}
