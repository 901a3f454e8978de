#!/usr/bin/env node
// verify_bundle.mjs - clients/js's verifyBundle on real replies, for tests/it/client.rs: each case is a reply body
// (full or delta, plain or gzipped) and what the device holds; the answer is the verified set or the refusal code.
// stdin:  {"keys": [PEM], "cases": [{"reply": {...}, "held": {name: code}}, ...]}
// stdout: {"results": [{"ok": true, "revision", "scripts": {name: code}} | {"ok": false, "code", "error"}, ...]}
import fs from 'node:fs';
import { verifyBundle } from '../../clients/js/dist/index.js';

const job = JSON.parse(fs.readFileSync(0, 'utf8'));
const results = job.cases.map(({ reply, held }) => {
  try {
    const v = verifyBundle(reply, job.keys, held);
    return { ok: true, revision: v.revision, scripts: v.scripts };
  } catch (e) {
    return { ok: false, code: e.code || null, error: String(e && e.message) };
  }
});
process.stdout.write(JSON.stringify({ results }) + '\n');
