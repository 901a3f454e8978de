// Timers from the host (Node, React Native and browsers all have them), typed without DOM or Node typings.

type Handle = unknown;
const host = globalThis as unknown as {
  setTimeout(fn: () => void, ms: number): Handle;
  clearTimeout(handle: Handle): void;
};

/** Runs `fn` after `ms`; returns a function that cancels it. */
export function after(ms: number, fn: () => void): () => void {
  const h = host.setTimeout(fn, Math.max(0, ms));
  return () => host.clearTimeout(h);
}

/** Exponential backoff with jitter: `attempt` 0, 1, 2… → a delay in [base·2^n / 2, base·2^n], capped at `max`. */
export function backoff(attempt: number, base: number, max: number, random: () => number): number {
  const top = Math.min(max, base * 2 ** Math.min(attempt, 30));
  return top / 2 + (random() * top) / 2;
}
