// Feature: BigInt literals and arithmetic (`10n ** 3n`) — introduced in ES2020.
export function run(): unknown {
  const big = 10n ** 3n;
  const huge = 2n ** 64n + 1n;
  return { big: String(big), huge: huge.toString(), type: typeof big, division: String(7n / 2n) };
}
