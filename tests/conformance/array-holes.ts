// Feature: array holes (elisions) through ES2015 spread, destructuring and iteration; elisions themselves are ES1, their spread/for-of semantics ES2015.
export function run(): unknown {
  // eslint-disable-next-line no-sparse-arrays
  const holey = [1, , 3];
  const spread = [...holey];
  const [, second] = holey;
  const viaForOf: string[] = [];
  for (const v of holey) viaForOf.push(String(v));
  const viaForEach: number[] = [];
  holey.forEach((v) => viaForEach.push(v as number));
  return {
    length: holey.length,
    holeIn: 1 in holey,
    spreadHoleIn: 1 in spread,
    second: second === undefined,
    viaForOf,
    viaForEach,
    keys: Object.keys(holey),
    concatHoleIn: 1 in [0].concat(holey as number[]).slice(1),
  };
}
