#!/usr/bin/env node
// bench/client_herd.mjs - the herd as apps running clients/js see it: N clients over WebSocket (one process), each
// with its own storage, take a saved snippet as a verified delta; the random delay of each client's re-fetch
// (fetchWindowMs) spreads the requests over the window instead of a spike.
//
//   npm run --prefix clients/js build && node bench/client_herd.mjs        DEVICES=2000 WINDOW_MS=10000 by default
//
// Starts target/debug/connector-scripts (or $BINARY) with its embedded broker on free ports, a copy of the example
// catalog and a fresh signing key; connects the clients in batches (each fetches its first revision at once),
// appends a line to smart-home/thermostat.ts and times, from the save: each client's request (seen in its
// transport) and its verified update. Prints a markdown block for docs/BENCHMARKS.md.
import { spawn, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import mqtt from '../clients/js/node_modules/mqtt/build/index.js';
import { createConnectorClient, memoryStorage } from '../clients/js/dist/index.js';

const root = path.join(path.dirname(fileURLToPath(import.meta.url)), '..');
const DEVICES = Number(process.env.DEVICES || 2000);
const WINDOW_MS = Number(process.env.WINDOW_MS || 10000);
const BUCKETS = 10;
const binary = process.env.BINARY || path.join(root, 'target/debug/connector-scripts');

const freePort = () => new Promise((resolve) => {
  const s = net.createServer().listen(0, '127.0.0.1', () => { const p = s.address().port; s.close(() => resolve(p)); });
});
const until = async (what, f, ms = 120_000) => {
  const end = Date.now() + ms;
  while (!(await f())) {
    if (Date.now() > end) throw new Error(`timed out: ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
};

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'client-herd-'));
fs.cpSync(path.join(root, 'snippets'), path.join(dir, 'snippets'), { recursive: true });
fs.cpSync(path.join(root, 'platforms'), path.join(dir, 'platforms'), { recursive: true });
execFileSync(binary, ['keygen', '--out', path.join(dir, 'prod')], { stdio: 'ignore' });
const pem = fs.readFileSync(path.join(dir, 'prod.pub'), 'utf8');
const [v4, v5, ws] = [await freePort(), await freePort(), await freePort()];
const service = spawn(binary, ['serve', '--snippets', path.join(dir, 'snippets'), '--platforms', path.join(dir, 'platforms'),
  '--embedded-listen', `127.0.0.1:${v4}`, '--embedded-listen-v5', `127.0.0.1:${v5}`, '--embedded-ws-listen', `127.0.0.1:${ws}`,
  '--http-listen', 'off', '--signing-key', path.join(dir, 'prod.key')], { stdio: 'ignore' });
const url = `ws://127.0.0.1:${ws}/mqtt`;

try {
  await until('the WebSocket listener', () => new Promise((resolve) => {
    const c = mqtt.connect(url, { reconnectPeriod: 0, connectTimeout: 1000 });
    c.once('connect', () => { c.end(true); resolve(true); });
    c.once('error', () => { c.end(true); resolve(false); });
    c.once('close', () => resolve(false));
  }));
  const clients = [];
  for (let i = 0; i < DEVICES; i++) {
    const rec = { requests: [], manifests: [], updates: [], rejected: 0 };
    const connect = (u, o) => {
      const c = mqtt.connect(u, o);
      const publish = c.publish.bind(c);
      c.publish = (topic, ...rest) => { if (topic.startsWith('getConnectors/')) rec.requests.push(Date.now()); return publish(topic, ...rest); };
      c.on('message', (topic, payload) => {
        if (topic.startsWith('connectors/')) rec.manifests.push({ at: Date.now(), revision: JSON.parse(payload.toString()).revision });
      });
      return c;
    };
    const client = createConnectorClient({ url, platform: 'ios', appVersion: '2.5.0', deviceId: `herd-${i}`, trustedKeys: [pem],
      storage: memoryStorage(), fetchWindowMs: WINDOW_MS, connect });
    client.on('update', (u) => rec.updates.push({ at: Date.now(), revision: u.revision, delta: u.delta }));
    client.on('rejected', () => rec.rejected++);
    clients.push({ client, rec });
    client.start();
    if (i % 100 === 99) await until(`first revision of ${i + 1} clients`, () => clients.every((c) => c.rec.updates.length > 0));
  }
  await until('every first revision', () => clients.every((c) => c.rec.updates.length > 0));
  const first = clients[0].rec.updates[0].revision;
  const t0 = Date.now();
  fs.appendFileSync(path.join(dir, 'snippets/smart-home/thermostat.ts'), '\nexport const herd = 1;\n');
  await until('every client on the new revision', () => clients.every((c) => c.client.revision !== first), WINDOW_MS + 120_000);
  const reqAt = clients.map((c) => c.rec.requests.find((t) => t >= t0) - t0);
  // The spread itself: each client's request after the new manifest reached it.
  const manifestAt = (c) => c.rec.manifests.find((m) => m.at >= t0 && m.revision !== first).at;
  const waited = clients.map((c) => c.rec.requests.find((t) => t >= t0) - manifestAt(c));
  const announced = Math.min(...clients.map((c) => manifestAt(c) - t0));
  const updAt = clients.map((c) => c.rec.updates.find((u) => u.at >= t0 && u.revision !== first).at - t0).sort((a, b) => a - b);
  const deltas = clients.filter((c) => c.rec.updates.some((u) => u.at >= t0 && u.delta)).length;
  const rejected = clients.reduce((n, c) => n + c.rec.rejected, 0);
  const hist = new Array(BUCKETS + 1).fill(0);
  for (const t of waited) hist[Math.min(BUCKETS, Math.floor((t / WINDOW_MS) * BUCKETS))]++;
  const pct = (p) => updAt[Math.min(updAt.length - 1, Math.floor((p / 100) * updAt.length))];
  const step = WINDOW_MS / BUCKETS / 1000;
  const lines = [
    `- Command: \`DEVICES=${DEVICES} WINDOW_MS=${WINDOW_MS} node bench/client_herd.mjs\` (debug build of the service, one Node process for all clients, 2 shared cores); date ${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC`,
    '',
    '| devices | window | updated | as delta | rejected | save → manifest (rebuild) | save → first request | → 50 % updated | → 99 % | → 100 % | peak requests in one tenth of the window |',
    '|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
    `| ${DEVICES} | ${WINDOW_MS / 1000} s | ${updAt.length} | ${deltas} | ${rejected} | ${announced} ms | ${Math.min(...reqAt)} ms | ${pct(50)} ms | ${pct(99)} ms | ${updAt[updAt.length - 1]} ms | ${Math.max(...hist)} |`,
    '',
    'Each client\'s re-fetch request, by its delay after the new manifest reached it (the random delay of fetchWindowMs):',
    '',
    '| delay after the manifest | requests | |',
    '|---|---:|---|',
    ...hist.map((n, i) => `| ${i < BUCKETS ? `${(i * step).toFixed(1)}–${((i + 1) * step).toFixed(1)} s` : `≥ ${(BUCKETS * step).toFixed(1)} s`} | ${n} | ${'█'.repeat(Math.round((n / DEVICES) * 100))} |`),
  ];
  console.log(lines.join('\n'));
  for (const c of clients) c.client.close();
} finally {
  service.kill('SIGTERM');
  fs.rmSync(dir, { recursive: true, force: true });
}
process.exit(0);
