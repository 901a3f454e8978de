#!/usr/bin/env node
// accept_walk.mjs - one app walking through a release with clients/js, for the Rust release tests: each reply in
// turn is verified (verifyReply) and passed through the replay rule (acceptManifest) against what was accepted
// last; a refused reply leaves the accepted state as it was.
// stdin:  {"replies": [<reply body>, ...], "keys": ["<SPKI PEM>", ...]}
// stdout: {"steps": [{"ok": bool, "code": str|null, "revision": str|null, "signedAt": str|null}, ...]}
import fs from 'node:fs';
import { acceptManifest, verifyReply } from '../../clients/js/dist/index.js';

const job = JSON.parse(fs.readFileSync(0, 'utf8'));
let accepted = null;
const steps = job.replies.map((reply) => {
  try {
    const v = verifyReply(reply, job.keys);
    accepted = acceptManifest(accepted, v.manifest);
    return { ok: true, code: null, revision: v.manifest.revision, signedAt: v.manifest.signedAt };
  } catch (e) {
    return { ok: false, code: e.code || null, revision: null, signedAt: null, error: String(e && e.message) };
  }
});
process.stdout.write(JSON.stringify({ steps }) + '\n');
