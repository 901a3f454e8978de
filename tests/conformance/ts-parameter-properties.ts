// Feature: TypeScript parameter properties (`constructor(private x, public readonly y)`) — TypeScript-only, no ES edition.
class Point {
  constructor(
    public x: number,
    public readonly y: number,
    private label: string = "p",
    protected z?: number,
  ) {}
  toString(): string {
    return `${this.label}(${this.x},${this.y})`;
  }
}

class Point3 extends Point {
  kind = "3d";
  constructor(x: number, y: number, public extra: number) {
    super(x, y, "q", extra);
  }
}

export function run(): unknown {
  const p = new Point(1, 2);
  const q = new Point3(3, 4, 5);
  return { p: String(p), q: String(q), pKeys: Object.keys(p), qKeys: Object.keys(q) };
}
