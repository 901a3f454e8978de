// Verifies a reply as the client receives it — full or delta, plain or gzipped — into the complete set of scripts
// the signed manifest names: every entry's code comes from the reply or from what the device already holds, and
// hashes to the manifest's sha256 with its size. Nothing is accepted partly.
import { sha256 } from '@noble/hashes/sha2.js';
import { bytesToHex } from '@noble/hashes/utils.js';
import { utf8 } from './encoding.js';
import { codeOf, Manifest, PublicKey, ReplyConnector, VerifyError, verifyManifest } from './signature.js';

/** A complete verified set of scripts for one revision, with the signed manifest it was checked against. */
export interface VerifiedBundle {
  platform: string;
  variant: string;
  revision: string;
  keyId: string;
  manifest: Manifest;
  /** The signed manifest text as received (inflated from `manifestGz`): what storage keeps to verify again. */
  manifestText: string;
  /** Connector name → code, for every connector of the manifest. */
  scripts: Record<string, string>;
}

/** Hex SHA-256 of the UTF-8 code. */
export function sha256Hex(code: string): string {
  return bytesToHex(sha256(utf8(code)));
}

/**
 * Verifies a getConnectors reply body against the trusted keys and rebuilds the complete set: for a delta
 * (`delta: true`) the scripts not in the reply come from `held` (what the device runs now). Throws a
 * {@link VerifyError} naming the first thing that fails.
 */
export function verifyBundle(
  reply: Record<string, unknown>,
  publicKeys: PublicKey[],
  held: Record<string, string> = {},
): VerifiedBundle {
  const { keyId, manifest, text: manifestText } = verifyManifest(reply, publicKeys);
  const said = `${String(reply.platform)}/${String(reply.variant)} revision ${String(reply.revision)}`;
  const signed = `${manifest.platform}/${manifest.variant} revision ${manifest.revision}`;
  if (said !== signed) throw new VerifyError('mismatch', `the manifest is for ${signed}, the reply for ${said}`);
  const sent = new Map<string, string>();
  for (const s of Array.isArray(reply.connectors) ? (reply.connectors as ReplyConnector[]) : []) {
    const name = String(s && s.name);
    if (!manifest.connectors.some((e) => e.name === name)) {
      throw new VerifyError('not-in-manifest', `connector ${JSON.stringify(name)} is not in the signed manifest`);
    }
    sent.set(name, codeOf(s));
  }
  const delta = reply.delta === true;
  const scripts: Record<string, string> = {};
  for (const entry of manifest.connectors) {
    const code = sent.has(entry.name) ? sent.get(entry.name) : delta ? held[entry.name] : undefined;
    if (code === undefined) {
      throw new VerifyError('hash', `connector ${JSON.stringify(entry.name)} is in the manifest but neither sent nor held`);
    }
    const bytes = utf8(code);
    const actual = bytesToHex(sha256(bytes));
    if (actual !== entry.sha256) {
      const from = sent.has(entry.name) ? 'its code' : 'the held code';
      throw new VerifyError('hash', `connector ${JSON.stringify(entry.name)}: ${from} hashes to ${actual}, the manifest says ${entry.sha256}`);
    }
    if (bytes.length !== entry.size) {
      throw new VerifyError('size', `connector ${JSON.stringify(entry.name)}: ${bytes.length} bytes, the manifest says ${entry.size}`);
    }
    scripts[entry.name] = code;
  }
  return { platform: manifest.platform, variant: manifest.variant, revision: manifest.revision, keyId, manifest, manifestText, scripts };
}
