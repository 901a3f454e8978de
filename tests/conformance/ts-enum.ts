// Feature: TypeScript enums (numeric with reverse mapping, string, computed initialisers) — TypeScript-only, no ES edition.
enum Direction {
  Up = 1,
  Down,
  Left = Up + 10,
  Right,
}

enum Color {
  Red = "RED",
  Green = "GREEN",
}

export function run(): unknown {
  return {
    down: Direction.Down,
    right: Direction.Right,
    reverse: Direction[2],
    color: Color.Green,
    colorKeys: Object.keys(Color),
    directionKeys: Object.keys(Direction),
  };
}
