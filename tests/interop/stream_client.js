#!/usr/bin/env node
// stream_client.js - a phone on a flaky link, as mqtt.js apps run: persistent session (clean: false), QoS 1,
// a steady stream of NestJS-envelope getConnectors requests on its own device topic.
//
//   node stream_client.js --url mqtt://127.0.0.1:PORT --device ID [--count 300] [--rate 50] [--wait-ms 20000]
//
// Prints one JSON line per event on stdout: {"connected":n} on each (re)connection, {"sent":n} after every 50th
// request, and at the end {"sent":N,"answered":M,"missing":[ids…],"bad":[…]}: answered counts distinct request
// ids whose reply is a real bundle (platform and connectors present), bad lists replies that were not. Exits 0
// once every request is answered or --wait-ms after the last one was sent.
'use strict';
const { parseArgs } = require('node:util');
const mqtt = require('mqtt');

const { values: a } = parseArgs({
  options: {
    url: { type: 'string' },
    device: { type: 'string' },
    count: { type: 'string', default: '300' },
    rate: { type: 'string', default: '50' },
    'wait-ms': { type: 'string', default: '20000' },
    platform: { type: 'string', default: 'ios' },
    version: { type: 'string', default: '2.5' },
  },
});
const count = Number(a.count);
const say = (o) => process.stdout.write(JSON.stringify(o) + '\n');
const topic = `getConnectors/${a.device}`;
const client = mqtt.connect(a.url, {
  clientId: a.device,
  clean: false,
  protocolVersion: 4,
  reconnectPeriod: 200,
  connectTimeout: 5000,
});
const answered = new Set();
const bad = [];
let connects = 0;
let sent = 0;
client.on('connect', () => {
  connects += 1;
  say({ connected: connects });
  if (connects === 1) {
    client.subscribe(`${topic}/reply`, { qos: 1 }, (err) => {
      if (err) {
        say({ error: String(err) });
        process.exit(2);
      }
      start();
    });
  }
});
client.on('message', (_t, payload) => {
  let v;
  try {
    v = JSON.parse(payload.toString());
  } catch (e) {
    bad.push(`not JSON: ${payload.toString().slice(0, 80)}`);
    return;
  }
  const r = v.response;
  if (r && r.platform === a.platform && Array.isArray(r.connectors) && r.connectors.length > 0) {
    answered.add(String(v.id));
  } else {
    bad.push(JSON.stringify(v).slice(0, 200));
  }
  if (sent === count && answered.size === count) finish();
});

function start() {
  const every = 1000 / Number(a.rate);
  const t0 = Date.now();
  const tick = () => {
    while (sent < count && Date.now() - t0 >= sent * every) {
      const id = String(sent);
      const data = { platform: a.platform, version: a.version };
      client.publish(topic, JSON.stringify({ pattern: 'getConnectors', data, id }), { qos: 1 });
      sent += 1;
      if (sent % 50 === 0) say({ sent });
    }
    if (sent < count) {
      setTimeout(tick, Math.max(1, every / 2));
    } else {
      setTimeout(finish, Number(a['wait-ms']));
    }
  };
  tick();
}

let done = false;
function finish() {
  if (done) return;
  done = true;
  const missing = [];
  for (let i = 0; i < count; i += 1) if (!answered.has(String(i))) missing.push(i);
  say({ sent, answered: answered.size, missing, bad: bad.slice(0, 5), connects });
  client.end(true, () => process.exit(0));
  setTimeout(() => process.exit(0), 1000);
}
