#!/usr/bin/env node
// client_reconnect.mjs - the app client through a broker outage, for tests/it/client.rs. Prints one JSON line per
// step on stdout and reads one line on stdin between them:
//   1. gets its first verified revision and prints {"step": "first", ...};
//   2. (the test kills the broker) waits for the `disconnected` event and prints {"step": "down"};
//   3. (the test starts the broker again and writes a line) waits until it is `connected` again, saves `snippet`
//      with a change and waits for the new verified revision; prints {"step": "done", ...}.
// stdin first line: {"url", "keys": [PEM], "device", "snippet"}
import fs from 'node:fs';
import readline from 'node:readline';
import { createConnectorClient, memoryStorage } from '../../clients/js/dist/index.js';

const lines = readline.createInterface({ input: process.stdin })[Symbol.asyncIterator]();
const job = JSON.parse((await lines.next()).value);
const TIMEOUT = 30_000;
const say = (v) => process.stdout.write(JSON.stringify(v) + '\n');
const events = [];
const waitFor = (client, event, pred, what) => new Promise((resolve, reject) => {
  const timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), TIMEOUT);
  const off = client.on(event, (v) => { if (pred(v)) { clearTimeout(timer); off(); resolve(v); } });
});

const client = createConnectorClient({ url: job.url, platform: 'ios', appVersion: '2.5.0', deviceId: job.device,
  trustedKeys: job.keys, storage: memoryStorage(), fetchWindowMs: 200, reconnectMinMs: 50, reconnectMaxMs: 400 });
for (const e of ['connected', 'disconnected', 'error']) client.on(e, (v) => events.push(e === 'error' ? `error:${v.during}` : e));
try {
  const first = waitFor(client, 'update', (u) => u.source === 'network', 'the first revision');
  await client.start();
  const f = await first;
  const down = waitFor(client, 'disconnected', () => true, 'the broker outage');
  say({ step: 'first', revision: f.revision });
  await down;
  say({ step: 'down' });
  const up = waitFor(client, 'connected', () => true, 'the reconnection');
  await lines.next();
  await up;
  const next = waitFor(client, 'update', (u) => u.revision !== f.revision, 'the new revision after the outage');
  fs.appendFileSync(job.snippet, '\nexport const afterOutage = 1;\n');
  const n = await next;
  say({ step: 'done', revision: n.revision, delta: n.delta, events: [...new Set(events)],
        reconnects: events.filter((e) => e === 'connected').length });
} catch (e) {
  say({ step: 'failed', error: String(e && e.message), events });
}
client.close();
process.exit(0);
