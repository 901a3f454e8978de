#!/usr/bin/env node
// client_once.mjs - one app client's first start, for tests/it/client.rs: waits for its first verified revision or
// gives up after `waitMs`, and says what it saw.
// stdin:  {"url", "keys": [PEM], "device", "mqttOptions": {...}|null, "waitMs"}
// stdout: {"revision": str|null, "variant": str|null, "errors": [during, ...]}
import fs from 'node:fs';
import { createConnectorClient, memoryStorage } from '../../clients/js/dist/index.js';

const job = JSON.parse(fs.readFileSync(0, 'utf8'));
const errors = [];
const client = createConnectorClient({ url: job.url, platform: 'ios', appVersion: '2.5.0', deviceId: job.device,
  trustedKeys: job.keys, storage: memoryStorage(), reconnectMinMs: 50, reconnectMaxMs: 200,
  mqttOptions: job.mqttOptions || undefined });
client.on('error', (e) => errors.push(e.during));
const update = await new Promise((resolve) => {
  const timer = setTimeout(() => resolve(null), job.waitMs);
  client.on('update', (u) => { clearTimeout(timer); resolve(u); });
  client.start();
});
client.close();
process.stdout.write(JSON.stringify({ revision: update && update.revision, variant: update && update.variant, errors: [...new Set(errors)] }) + '\n');
process.exit(0);
