// Feature: numeric separators (`1_000_000`, `0xFF_FF`, `0b1010_0001`) — introduced in ES2021.
export function run(): unknown {
  return { million: 1_000_000, hex: 0xff_ff, bin: 0b1010_0001, frac: 1_000.000_1, exp: 1e1_0 };
}
