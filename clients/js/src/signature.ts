// Verifies what connector-scripts sends when it signs (`serve --signing-key`): an Ed25519 signature over the
// manifest text exactly as shipped, then every script's sha256 and size against that manifest. Nothing is
// re-serialised. Pure JavaScript (@noble/ed25519, @noble/hashes): runs on Node and React Native.
import * as ed from '@noble/ed25519';
import { sha256, sha512 } from '@noble/hashes/sha2.js';
import { bytesToHex, utf8ToBytes } from '@noble/hashes/utils.js';
import { base64ToBytes, gunzipBase64 } from './encoding.js';

ed.hashes.sha512 = sha512;

/** One connector in a signed manifest. */
export interface ManifestEntry {
  name: string;
  sha256: string;
  size: number;
}

/** What the service signs for one variant revision. */
export interface Manifest {
  platform: string;
  variant: string;
  revision: string;
  /** RFC 3339, milliseconds. */
  signedAt: string;
  connectors: ManifestEntry[];
}

/** Why a reply does not verify. */
export type VerifyErrorCode =
  | 'unsigned'
  | 'unknown-key'
  | 'bad-key'
  | 'bad-signature'
  | 'bad-manifest'
  | 'mismatch'
  | 'hash'
  | 'size'
  | 'not-in-manifest'
  | 'replayed';

/** A failed check, with a code to branch on and a message naming what failed. */
export class VerifyError extends Error {
  readonly code: VerifyErrorCode;
  constructor(code: VerifyErrorCode, message: string) {
    super(`${code}: ${message}`);
    this.name = 'VerifyError';
    this.code = code;
  }
}

/** A public key: the SPKI PEM text `connector-scripts keygen` writes, or the 32 raw bytes. */
export type PublicKey = string | Uint8Array;

/** A verified reply: who signed, the manifest, and the scripts (each checked against it). */
export interface Verified {
  keyId: string;
  manifest: Manifest;
  scripts: { name: string; code: string }[];
}

const SPKI_ED25519_PREFIX = '302a300506032b6570032100';

/** The 32 raw bytes of a public key. */
export function rawPublicKey(key: PublicKey): Uint8Array {
  if (typeof key !== 'string') {
    if (key.length !== 32) throw new VerifyError('bad-key', `an Ed25519 public key has 32 bytes, not ${key.length}`);
    return key;
  }
  const body = key.replace(/-----(BEGIN|END) PUBLIC KEY-----/g, '');
  const der = base64ToBytes(body);
  if (der.length !== 44 || !bytesToHex(der.subarray(0, 12)).startsWith(SPKI_ED25519_PREFIX)) {
    throw new VerifyError('bad-key', 'not an Ed25519 public key in SPKI PEM (the .pub file keygen writes)');
  }
  return der.subarray(12);
}

/** The key id replies name: the first 8 bytes of the SHA-256 of the raw public key, in hex. */
export function keyId(key: PublicKey): string {
  return bytesToHex(sha256(rawPublicKey(key))).slice(0, 16);
}

interface SignedDoc {
  manifest?: unknown;
  /** The manifest text gzipped, in base64 (replies to `accept: ["gzip"]`). */
  manifestGz?: unknown;
  signature?: unknown;
  keyId?: unknown;
}

/** Checks that key `id` (one of `publicKeys`) signed `text`; throws `unknown-key` or `bad-signature`. */
function checkSignature(text: string, signature: string, id: string, publicKeys: PublicKey[], what: string): void {
  const key = publicKeys.find((k) => keyId(k) === id);
  if (!key) {
    const trusted = publicKeys.map(keyId).join(', ');
    throw new VerifyError('unknown-key', `signed with key ${id}, which is not among the trusted keys (${trusted})`);
  }
  let ok = false;
  try {
    ok = ed.verify(base64ToBytes(signature), utf8ToBytes(text), rawPublicKey(key), { zip215: false });
  } catch {
    ok = false;
  }
  if (!ok) throw new VerifyError('bad-signature', `the ${what} text is not what key ${id} signed`);
}

/** Checks the signature (see {@link checkSignature}), then parses the signed text; `bad-manifest` if it is not JSON. */
function signedJson<T>(text: string, signature: string, id: string, publicKeys: PublicKey[], what: string): T {
  checkSignature(text, signature, id, publicKeys, what);
  try {
    return JSON.parse(text) as T;
  } catch (e) {
    throw new VerifyError('bad-manifest', String(e));
  }
}

/** The signed manifest text of a document: `manifest`, or what `manifestGz` inflates to. */
function manifestText(doc: SignedDoc): unknown {
  if (typeof doc.manifest === 'string' || typeof doc.manifestGz !== 'string') return doc.manifest;
  try {
    return gunzipBase64(doc.manifestGz);
  } catch (e) {
    throw new VerifyError('bad-manifest', `manifestGz does not inflate (${String(e)})`);
  }
}

/** Checks the signature over the manifest text of `doc` (a reply or a retained manifest) and parses it. */
export function verifyManifest(doc: SignedDoc, publicKeys: PublicKey[]): { keyId: string; manifest: Manifest; text: string } {
  const { signature, keyId: id } = doc;
  const text = manifestText(doc);
  if (typeof text !== 'string' || typeof signature !== 'string' || typeof id !== 'string') {
    throw new VerifyError('unsigned', 'no manifest, signature and keyId: the service does not sign');
  }
  const manifest = signedJson<Manifest>(text, signature, id, publicKeys, 'manifest');
  if (!manifest || !Array.isArray(manifest.connectors) || typeof manifest.revision !== 'string') {
    throw new VerifyError('bad-manifest', 'the signed text is not a manifest');
  }
  return { keyId: id, manifest, text };
}

/** One script object of a reply. */
export interface ReplyConnector {
  name?: unknown;
  code?: unknown;
  codeGz?: unknown;
}

/** The code of one reply entry, plain or gzipped; throws `bad-manifest` when it has neither or fails to decode. */
export function codeOf(entry: ReplyConnector): string {
  if (typeof entry.code === 'string') return entry.code;
  if (typeof entry.codeGz === 'string') {
    try {
      return gunzipBase64(entry.codeGz);
    } catch (e) {
      throw new VerifyError('hash', `connector ${JSON.stringify(entry.name)}: codeGz does not decode (${String(e)})`);
    }
  }
  throw new VerifyError('bad-manifest', `connector ${JSON.stringify(entry.name)} has no code`);
}

interface ReplyDoc extends SignedDoc {
  platform?: unknown;
  variant?: unknown;
  revision?: unknown;
  connectors?: unknown;
}

/**
 * Verifies a getConnectors reply body (the NestJS `response`, or the MQTT 5 body): the signature over the
 * manifest text, that the manifest is for this reply's variant and revision, then each script's sha256 and size.
 * Returns the scripts only when everything holds; throws a {@link VerifyError} naming what failed.
 */
export function verifyReply(reply: ReplyDoc, publicKeys: PublicKey[]): Verified {
  const { keyId: id, manifest } = verifyManifest(reply, publicKeys);
  const said = `${String(reply.platform)}/${String(reply.variant)} revision ${String(reply.revision)}`;
  const signed = `${manifest.platform}/${manifest.variant} revision ${manifest.revision}`;
  if (said !== signed) throw new VerifyError('mismatch', `the manifest is for ${signed}, the reply for ${said}`);
  const scripts: { name: string; code: string }[] = [];
  for (const s of Array.isArray(reply.connectors) ? reply.connectors : []) {
    const name = String(s && s.name);
    const code = codeOf(s as ReplyConnector);
    const entry = manifest.connectors.find((e) => e.name === name);
    if (!entry) throw new VerifyError('not-in-manifest', `connector ${JSON.stringify(name)} is not in the signed manifest`);
    const bytes = utf8ToBytes(code);
    const actual = bytesToHex(sha256(bytes));
    if (actual !== entry.sha256) {
      throw new VerifyError('hash', `connector ${JSON.stringify(name)}: its code hashes to ${actual}, the manifest says ${entry.sha256}`);
    }
    if (bytes.length !== entry.size) {
      throw new VerifyError('size', `connector ${JSON.stringify(name)}: ${bytes.length} bytes, the manifest says ${entry.size}`);
    }
    scripts.push({ name, code });
  }
  return { keyId: id, manifest, scripts };
}

/** What an app keeps per platform/variant to refuse replays: the last manifest it accepted. */
export interface Accepted {
  revision: string;
  signedAt: string;
}

/**
 * The replay rule: a verified manifest is accepted when it names the revision the app already runs (any instance
 * may have signed it), or when it was signed later than the one accepted last. An attacker replaying an older
 * signed reply is refused; an operator's rollback is a fresh signature of older content, so it is newer and
 * passes. Throws `replayed` otherwise; returns what to store.
 */
export function acceptManifest(previous: Accepted | null, manifest: Pick<Manifest, 'revision' | 'signedAt'>): Accepted {
  const next = { revision: manifest.revision, signedAt: manifest.signedAt };
  if (!previous || previous.revision === manifest.revision) return next;
  if (Date.parse(manifest.signedAt) > Date.parse(previous.signedAt)) return next;
  throw new VerifyError(
    'replayed',
    `revision ${manifest.revision} was signed at ${manifest.signedAt}, not after the accepted ${previous.revision} (${previous.signedAt})`,
  );
}

/** What a revision notice signs: that a variant has a revision, signed at a time. */
export interface Notice {
  kind: 'revision';
  platform: string;
  variant: string;
  revision: string;
  signedAt: string;
}

/**
 * Verifies a retained revision notice (`<prefix>/<platform>/<variant>/rev`: `{revision, notice, signature,
 * keyId}`): the signature over the notice text, that it is a revision notice, and that it names the revision the
 * message says. Its `revision` and `signedAt` go through {@link acceptManifest} like a manifest's.
 */
export function verifyNotice(doc: Record<string, unknown>, publicKeys: PublicKey[]): Notice {
  const { notice: text, signature, keyId: id } = doc;
  if (typeof text !== 'string' || typeof signature !== 'string' || typeof id !== 'string') {
    throw new VerifyError('unsigned', 'no notice, signature and keyId: the service does not sign');
  }
  const notice = signedJson<Notice>(text, signature, id, publicKeys, 'notice');
  if (!notice || notice.kind !== 'revision' || typeof notice.revision !== 'string' || typeof notice.signedAt !== 'string') {
    throw new VerifyError('bad-manifest', 'the signed text is not a revision notice');
  }
  if (notice.revision !== doc.revision) {
    throw new VerifyError('mismatch', `the notice signs revision ${notice.revision}, the message says ${String(doc.revision)}`);
  }
  return notice;
}
