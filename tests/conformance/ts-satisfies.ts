// Feature: the TypeScript `satisfies` operator (type-only, erased) — TypeScript 4.9, no ES edition.
type Palette = Record<string, [number, number, number] | string>;

const palette = {
  red: [255, 0, 0],
  green: "#00ff00",
} satisfies Palette;

export function run(): unknown {
  return { red0: palette.red[0], green: palette.green.toUpperCase(), inline: ({ n: 1 } satisfies { n: number }).n };
}
