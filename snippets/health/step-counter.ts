// Step counter: aggregates pedometer samples per day.

export interface Sample {
  readonly at: Date;
  readonly steps: number;
}

export type DailyTotals = Record<string, number>;

function dayKey(d: Date): string {
  return d.toISOString().slice(0, 10);
}

export function totals<S extends Sample>(samples: Iterable<S>): DailyTotals {
  const out: DailyTotals = {};
  for (const s of samples) {
    const key = dayKey(s.at);
    out[key] = (out[key] ?? 0) + Math.max(0, s.steps);
  }
  return out;
}

export function best(t: DailyTotals): [day: string, steps: number] | null {
  let top: [string, number] | null = null;
  for (const [day, steps] of Object.entries(t)) {
    if (!top || steps > top[1]) top = [day, steps];
  }
  return top;
}

export async function* stream(source: AsyncIterable<Sample>): AsyncGenerator<number> {
  let running = 0;
  for await (const s of source) {
    running += s.steps;
    yield running;
  }
}
