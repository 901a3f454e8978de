#!/usr/bin/env node
// gzip_roundtrip.mjs - clients/js's gzip (fflate) for tests/it/client.rs: each text gzipped and base64'd as the
// client does, then decoded back by the client; the encodings go back for the service's own decoder to read.
// stdin: {"texts": [str, ...], "fromService": [codeGz, ...]}  stdout: {"encoded": [...], "roundTrip": [bool, ...],
// "decoded": [str, ...]}
import fs from 'node:fs';
import { gunzipBase64, gzipBase64 } from '../../clients/js/dist/index.js';

const job = JSON.parse(fs.readFileSync(0, 'utf8'));
const encoded = job.texts.map(gzipBase64);
const roundTrip = job.texts.map((t, i) => gunzipBase64(encoded[i]) === t);
const decoded = job.fromService.map(gunzipBase64);
process.stdout.write(JSON.stringify({ encoded, roundTrip, decoded }) + '\n');
