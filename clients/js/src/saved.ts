// What the client keeps in storage, as one JSON document written in one `set`: the running verified bundle and the
// previous one (what a failing connector rolls back to), each with its signed manifest so that all of it is checked
// again at load, and the per-connector outcome counters of the running revision.
import { Manifest, PublicKey, VerifyError, verifyManifest } from './signature.js';
import type { Storage } from './storage.js';
import { sha256Hex, VerifiedBundle } from './verify.js';

/** One verified revision as held on the device. */
export interface Held {
  platform: string;
  variant: string;
  revision: string;
  signedAt: string;
  keyId: string;
  /** The signed manifest text, its signature (re-verified at load). */
  manifestText: string;
  signature: string;
  /** Connector name → code to run. */
  scripts: Record<string, string>;
  /** Connectors running the previous revision's code (rolled back on the device), not this manifest's. */
  rolledBack: string[];
}

/** The stored document. */
export interface Saved {
  /** The app version that fetched `current`: after an app update the device may belong to another variant. */
  appVersion?: string;
  current: Held;
  previous: Held | null;
  /** Failures so far of connectors that never succeeded in `current`. */
  failures: Record<string, number>;
  /** Connectors that succeeded at least once in `current` (never rolled back). */
  succeeded: string[];
}

/** A verified bundle as held, keeping the reply's signed manifest text. */
export function held(v: VerifiedBundle, reply: Record<string, unknown>): Held {
  return {
    platform: v.platform,
    variant: v.variant,
    revision: v.revision,
    signedAt: v.manifest.signedAt,
    keyId: v.keyId,
    manifestText: v.manifestText,
    signature: String(reply.signature),
    scripts: { ...v.scripts },
    rolledBack: [],
  };
}

/** `have` for a request: connector name → sha256 of the code held. */
export function haveOf(scripts: Record<string, string>, hash: (code: string) => string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, code] of Object.entries(scripts)) out[name] = hash(code);
  return out;
}

/**
 * Records one outcome of a connector of the running revision: a success marks it good for this revision; a failure
 * of one that never succeeded counts, and at `maxFailures` its previous revision's verified code is put back (only
 * verified code: not a connector the previous revision itself ran rolled back). Says what changed.
 */
export function recordOutcome(s: Saved, connector: string, ok: boolean, maxFailures: number): 'unchanged' | 'counted' | 'rolled-back' {
  if (ok) {
    if (s.succeeded.includes(connector)) return 'unchanged';
    s.succeeded.push(connector);
    return 'counted';
  }
  const previous = s.previous?.scripts[connector];
  const unverified = s.previous?.rolledBack.includes(connector) ?? true;
  if (s.succeeded.includes(connector) || previous === undefined || previous === s.current.scripts[connector] || unverified) {
    return 'unchanged';
  }
  s.failures[connector] = (s.failures[connector] ?? 0) + 1;
  if (s.failures[connector] < maxFailures) return 'counted';
  s.current.scripts[connector] = previous;
  s.current.rolledBack.push(connector);
  delete s.failures[connector];
  return 'rolled-back';
}

/** Writes the whole document in one `set`. */
export async function save(storage: Storage, key: string, s: Saved): Promise<void> {
  await storage.set(key, JSON.stringify(s));
}

/**
 * Reads the stored document and checks all of it again: each revision's manifest signature and every script
 * against it, and each rolled-back script against the previous revision's verified code. `null` when nothing is
 * stored; throws when anything stored does not verify.
 */
export async function load(storage: Storage, key: string, keys: PublicKey[]): Promise<Saved | null> {
  const text = await storage.get(key);
  if (!text) return null;
  const s = JSON.parse(text) as Saved;
  check(s.current, keys);
  if (s.previous) check(s.previous, keys);
  for (const name of s.current.rolledBack) {
    const back = s.previous?.scripts[name];
    if (back === undefined || s.previous?.rolledBack.includes(name) || back !== s.current.scripts[name]) {
      throw new VerifyError('hash', `stored connector ${JSON.stringify(name)} is not the previous revision's verified code`);
    }
  }
  return { ...s, failures: s.failures ?? {}, succeeded: s.succeeded ?? [] };
}

function check(h: Held, keys: PublicKey[]): void {
  const { manifest } = verifyManifest({ manifest: h.manifestText, signature: h.signature, keyId: h.keyId }, keys);
  if (manifest.revision !== h.revision) throw new VerifyError('mismatch', `stored revision ${h.revision} is signed as ${manifest.revision}`);
  h.rolledBack = Array.isArray(h.rolledBack) ? h.rolledBack : [];
  checkScripts(manifest, h.scripts, h.rolledBack);
}

function checkScripts(manifest: Manifest, scripts: Record<string, string>, skip: string[]): void {
  for (const e of manifest.connectors) {
    if (skip.includes(e.name)) continue;
    const code = scripts[e.name];
    if (code === undefined || sha256Hex(code) !== e.sha256) {
      throw new VerifyError('hash', `stored connector ${JSON.stringify(e.name)} does not match its signed manifest`);
    }
  }
}
