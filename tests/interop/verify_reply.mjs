#!/usr/bin/env node
// verify_reply.mjs - checks a signed connector-scripts reply two independent ways, for the Rust signing tests:
//   node:   Node's own crypto.verify over the manifest text with the .pub file, then sha256 and size per script
//           (shares no code with the service);
//   client: clients/js (the module apps embed): verifyReply, verifyManifest for a retained manifest, verifyNotice
//           for a revision notice.
// Gzipped replies (`manifestGz`, `codeGz`) are inflated with Node's zlib first: the signature covers plain text.
// stdin:  {"doc": <reply body, retained manifest or notice>, "keys": ["<SPKI PEM>", ...],
//          "kind": "reply"|"manifest"|"notice"}
// stdout: {"node": {"ok": bool, "error": str|null, "signedAt": str|null},
//          "client": {"ok": bool, "code": str|null, "error": str|null, "keyId": str|null, "scripts": n}}
import crypto from 'node:crypto';
import fs from 'node:fs';
import zlib from 'node:zlib';
import { verifyManifest, verifyNotice, verifyReply } from '../../clients/js/dist/index.js';

const inflate = (b64) => zlib.gunzipSync(Buffer.from(b64, 'base64')).toString('utf8');

function withNode(doc, keys, kind) {
  try {
    const key = keys.map((pem) => crypto.createPublicKey(pem)).find((k) => {
      const raw = k.export({ format: 'der', type: 'spki' }).subarray(12);
      return crypto.createHash('sha256').update(raw).digest('hex').slice(0, 16) === doc.keyId;
    });
    if (!key) return { ok: false, error: `unknown key id ${doc.keyId}`, signedAt: null };
    const text = kind === 'notice' ? doc.notice : doc.manifest ?? inflate(doc.manifestGz);
    const good = crypto.verify(null, Buffer.from(text, 'utf8'), key, Buffer.from(doc.signature, 'base64'));
    if (!good) return { ok: false, error: 'signature check failed', signedAt: null };
    const manifest = JSON.parse(text);
    if (kind === 'notice' && (manifest.kind !== 'revision' || manifest.revision !== doc.revision)) {
      return { ok: false, error: 'not a notice of this revision', signedAt: null };
    }
    if (kind === 'reply') {
      for (const s of doc.connectors) {
        const entry = manifest.connectors.find((e) => e.name === s.name);
        if (!entry) return { ok: false, error: `${s.name} not in manifest`, signedAt: null };
        const bytes = Buffer.from(s.code ?? inflate(s.codeGz), 'utf8');
        const hash = crypto.createHash('sha256').update(bytes).digest('hex');
        if (hash !== entry.sha256) return { ok: false, error: `hash check failed for ${s.name}`, signedAt: null };
        if (bytes.length !== entry.size) return { ok: false, error: `size check failed for ${s.name}`, signedAt: null };
      }
    }
    return { ok: true, error: null, signedAt: manifest.signedAt };
  } catch (e) {
    return { ok: false, error: String(e && e.message), signedAt: null };
  }
}

function withClient(doc, keys, kind) {
  try {
    if (kind === 'notice') {
      verifyNotice(doc, keys);
      return { ok: true, code: null, error: null, keyId: doc.keyId, scripts: 0 };
    }
    const v = kind === 'reply' ? verifyReply(doc, keys) : verifyManifest(doc, keys);
    return { ok: true, code: null, error: null, keyId: v.keyId, scripts: v.scripts ? v.scripts.length : 0 };
  } catch (e) {
    return { ok: false, code: e.code || null, error: String(e && e.message), keyId: null, scripts: 0 };
  }
}

const job = JSON.parse(fs.readFileSync(0, 'utf8'));
const kind = ['manifest', 'notice'].includes(job.kind) ? job.kind : 'reply';
process.stdout.write(JSON.stringify({ node: withNode(job.doc, job.keys, kind), client: withClient(job.doc, job.keys, kind) }) + '\n');
