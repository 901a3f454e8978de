#!/usr/bin/env node
// client_flow.mjs - one app using clients/js's createConnectorClient against the real service, for
// tests/it/client.rs. Steps, each waiting on an event (never a fixed sleep):
//   first     empty storage: the client fetches, verifies and stores the scripts;
//   saved     the snippet file is saved with a change: a new verified revision arrives as a delta;
//   tampered  the next save's reply is altered in transit (transport hook): refused, the old scripts stay, and the
//             client asks again and gets the genuine revision;
//   rollback  a save that makes one connector throw: the app runs it, it fails maxFailures times, the client puts
//             the previous version back and reports it on connectorsReport/<device> (seen by a second connection);
//   offline   a new client on the same storage, broker unreachable: starts from storage, errors come as events;
//   upgraded  the app updated to a version of another variant: same storage, it fetches that variant at once;
//   alteredStorage  the stored rollback source altered on the device: refused at load, nothing runs from it.
// stdin:  {"url", "deadUrl", "keys": [PEM], "device", "platform", "version", "upgradeVersion",
//          "snippet": absolute path to edit}
// stdout: {"first": {...}, "saved": {...}, "tampered": {...}, "rollback": {...}, "offline": {...}, "upgraded": {...}}
import fs from 'node:fs';
import mqtt from 'mqtt';
import { createConnectorClient, gunzipBase64, gzipBase64, memoryStorage } from '../../clients/js/dist/index.js';

const job = JSON.parse(fs.readFileSync(0, 'utf8'));
const TIMEOUT = 20_000;
const out = {};

/** Resolves with the first `event` for which `pred` holds; rejects after TIMEOUT naming what it waited for. */
function waitFor(client, event, pred, what) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => { off(); reject(new Error(`timed out waiting for ${what}`)); }, TIMEOUT);
    const off = client.on(event, (v) => {
      if (!pred(v)) return;
      clearTimeout(timer);
      off();
      resolve(v);
    });
  });
}

/** Runs a commonjs connector as an app engine would; throws what it throws. */
function run(code) {
  const module = { exports: {} };
  new Function('module', 'exports', 'require', code)(module, module.exports, () => ({}));
  return module.exports;
}

/** A transport that alters every reply while `tamper.on`: one byte of the first connector's code. */
const tamper = { on: false, done: 0 };
function tamperingConnect(url, options) {
  const c = mqtt.connect(url, options);
  const on = c.on.bind(c);
  c.on = (event, fn) => {
    if (event !== 'message') return on(event, fn);
    return on('message', (topic, payload, packet) => {
      if (tamper.on && topic.endsWith('/reply')) {
        const env = JSON.parse(payload.toString('utf8'));
        const s = env.response && env.response.connectors && env.response.connectors[0];
        if (s) {
          if (typeof s.code === 'string') s.code += ' ';
          else s.codeGz = gzipBase64(gunzipBase64(s.codeGz) + ' ');
          tamper.done++;
          payload = Buffer.from(JSON.stringify(env));
        }
      }
      fn(topic, payload, packet);
    });
  };
  return c;
}

const options = {
  platform: job.platform, appVersion: job.version, deviceId: job.device, trustedKeys: job.keys,
  fetchWindowMs: 300, reconnectMinMs: 50, reconnectMaxMs: 500, maxFailures: 2,
};
const storage = memoryStorage();
const reports = [];
const watcher = mqtt.connect(job.url, { protocolVersion: 4, reconnectPeriod: 200 });
await new Promise((r) => watcher.once('connect', r));
await watcher.subscribeAsync(`connectorsReport/${job.device}`);
watcher.on('message', (_t, p) => reports.push(JSON.parse(p.toString('utf8'))));

const client = createConnectorClient({ ...options, url: job.url, storage, connect: tamperingConnect });
const rejected = [];
client.on('rejected', (r) => rejected.push(r));
let first = waitFor(client, 'update', (u) => u.source === 'network', 'the first revision');
await client.start();
first = await first;
const names = Object.keys(first.scripts).sort();
out.first = { revision: first.revision, variant: first.variant, names, stored: storage.data.size };

const save = (suffix) => fs.appendFileSync(job.snippet, suffix);
const saved = waitFor(client, 'update', (u) => u.revision !== first.revision, 'the saved revision');
save('\nexport const saved = 2;\n');
const s = await saved;
const changed = names.filter((n) => s.scripts[n] !== first.scripts[n]);
out.saved = { revision: s.revision, delta: s.delta, changed, clientRevision: client.revision };

tamper.on = true;
const refused = waitFor(client, 'rejected', (r) => r.what === 'reply', 'the tampered reply refused');
const genuine = waitFor(client, 'update', (u) => u.revision !== s.revision, 'the genuine revision after the refusal');
save('\nexport const saved3 = 3;\n');
const r = await refused;
tamper.on = false;
const unchanged = client.revision === s.revision && JSON.stringify(client.scripts()) === JSON.stringify(s.scripts);
const g = await genuine;
out.tampered = { code: r.code, unchanged, tampered: tamper.done, recovered: g.revision, delta: g.delta };

// The app runs every connector on each update and reports its outcome.
const runAll = (scripts) => {
  for (const [name, code] of Object.entries(scripts)) {
    try {
      run(code);
      client.report(name, true);
    } catch (e) {
      client.report(name, false, String(e && e.message));
    }
  }
};
const rolled = waitFor(client, 'rollback', () => true, 'the rollback');
const broken = waitFor(client, 'update', (u) => u.revision !== g.revision && u.source === 'network', 'the broken revision');
save('\nthrow new Error("boom on load");\n');
const b = await broken;
const failing = names.filter((n) => { try { run(b.scripts[n]); return false; } catch { return true; } });
runAll(b.scripts); // first start of the new revision: one failure
runAll(client.scripts()); // the app starts it again: the second failure rolls it back
const rb = await rolled;
const restored = client.scripts();
let runsNow = true;
try { run(restored[rb.connector]); } catch { runsNow = false; }
const reportDeadline = Date.now() + TIMEOUT;
while (!reports.some((x) => x.data && x.data.ok === false && /rolled back/.test(x.data.error || '')) && Date.now() < reportDeadline) {
  await new Promise((res) => setTimeout(res, 20));
}
const report = reports.find((x) => x.data && x.data.ok === false && /rolled back/.test(x.data.error || '')) || null;
out.rollback = { revision: b.revision, failing, connector: rb.connector, restoredIsPrevious: restored[rb.connector] === g.scripts[rb.connector], runsNow, report };
client.close();

const offline = createConnectorClient({ ...options, url: job.deadUrl, storage });
const errors = [];
offline.on('error', (e) => errors.push(e.during));
const fromStorage = waitFor(offline, 'update', (u) => u.source === 'storage', 'the stored bundle');
const anError = waitFor(offline, 'error', () => true, 'a connection error event');
await offline.start();
const st = await fromStorage;
await anError;
out.offline = { revision: st.revision, rolledBackKept: st.scripts[rb.connector] === restored[rb.connector], errors: [...new Set(errors)] };
offline.close();

// The app is updated to a version of another variant: the same storage, asked at once, the new variant verified.
const upgraded = createConnectorClient({ ...options, appVersion: job.upgradeVersion, url: job.url, storage });
const fromNet = waitFor(upgraded, 'update', (u) => u.source === 'network', 'the new variant after the app update');
await upgraded.start();
const up = await fromNet;
out.upgraded = { variant: up.variant, revision: up.revision, stored: JSON.parse(storage.data.values().next().value).appVersion };
upgraded.close();

// Storage altered on the device (the rollback source's code): refused at load, nothing runs from it.
const doc = JSON.parse(storage.data.values().next().value);
const victim = Object.keys(doc.previous.scripts)[0];
doc.previous.scripts[victim] += '\n;globalThis.stolen = 1;';
const altered = memoryStorage();
altered.data.set(storage.data.keys().next().value, JSON.stringify(doc));
const wary = createConnectorClient({ ...options, appVersion: job.upgradeVersion, url: job.deadUrl, storage: altered });
const loaded = [];
wary.on('update', (u) => loaded.push(u.source));
const refusedStorage = waitFor(wary, 'error', (e) => e.during === 'storage', 'the altered storage refused');
await wary.start();
const rs = await refusedStorage;
out.alteredStorage = { loaded, revision: wary.revision, message: rs.message };
wary.close();
watcher.end(true);
process.stdout.write(JSON.stringify(out) + '\n');
process.exit(0);
