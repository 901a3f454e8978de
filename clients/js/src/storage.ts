// Where the client keeps its last good verified bundle between starts: an async key/value interface with an
// in-memory adapter (tests, one-shot tools) and a localStorage adapter (browsers). React Native's AsyncStorage
// already has this shape (README "For app developers").

/** Async key/value storage the client writes its whole verified bundle to, in one `set`. */
export interface Storage {
  get(key: string): Promise<string | null | undefined>;
  set(key: string, value: string): Promise<void>;
}

/** A storage that lives as long as the object (shared between clients that are given the same one). */
export function memoryStorage(): Storage & { readonly data: Map<string, string> } {
  const data = new Map<string, string>();
  return {
    data,
    async get(key) {
      return data.has(key) ? (data.get(key) as string) : null;
    },
    async set(key, value) {
      data.set(key, value);
    },
  };
}

/** The subset of the Web Storage API the adapter uses. */
export interface WebStorageLike {
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
}

/** Browser `localStorage` (or any Web Storage object) as a {@link Storage}. */
export function localStorageAdapter(store?: WebStorageLike): Storage {
  const ls = store ?? (globalThis as unknown as { localStorage?: WebStorageLike }).localStorage;
  if (!ls) throw new Error('no localStorage here: pass a Web Storage object');
  return {
    async get(key) {
      return ls.getItem(key);
    },
    async set(key, value) {
      ls.setItem(key, value);
    },
  };
}
