// A minimal typed event emitter (no Node `events`): a listener that throws is isolated from the client and the
// other listeners.

/** Listener map → on/off/emit. */
export class Emitter<E extends { [K in keyof E]: unknown }> {
  private listeners: { [K in keyof E]?: ((value: E[K]) => void)[] } = {};

  /** Calls `fn` on every `event`; returns a function that removes it. */
  on<K extends keyof E>(event: K, fn: (value: E[K]) => void): () => void {
    (this.listeners[event] ??= []).push(fn);
    return () => this.off(event, fn);
  }

  /** Removes a listener. */
  off<K extends keyof E>(event: K, fn: (value: E[K]) => void): void {
    this.listeners[event] = (this.listeners[event] ?? []).filter((f) => f !== fn);
  }

  /** Calls every listener of `event`; a throwing listener is skipped. */
  protected emit<K extends keyof E>(event: K, value: E[K]): void {
    for (const fn of [...(this.listeners[event] ?? [])]) {
      try {
        fn(value);
      } catch {
        // The app's listener failed; the client carries on.
      }
    }
  }
}
