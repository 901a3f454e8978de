// The app client in headless Chromium, for tests/it/client.rs: Debian's /usr/bin/chromium driven by playwright-core
// loads clients/js's browser bundle (dist/connector-scripts.browser.js, global ConnectorScripts), connects over
// WebSocket, verifies the first revision, runs a connector, then `snippet` is saved with a change and the page
// waits for the new verified revision and runs it again. Every wait is on a condition with a timeout.
// stdin: {"url": ws URL, "keys": [PEM], "device", "snippet"}  stdout: one JSON verdict.
import { chromium } from 'playwright-core';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const job = JSON.parse(fs.readFileSync(0, 'utf8'));
const TIMEOUT = 30_000;
const bundle = path.join(path.dirname(fileURLToPath(import.meta.url)), '../../clients/js/dist/connector-scripts.browser.js');
const out = { errors: [] };
const browser = await chromium.launch({ executablePath: process.env.CHROMIUM || '/usr/bin/chromium', headless: true });
try {
  const page = await browser.newPage();
  page.on('pageerror', (e) => out.errors.push(String(e)));
  await page.addScriptTag({ path: bundle });
  await page.evaluate(async (job) => {
    const { createConnectorClient, memoryStorage } = window.ConnectorScripts;
    window.updates = [];
    window.rejected = [];
    const client = createConnectorClient({
      url: job.url, platform: 'ios', appVersion: '2.5.0', deviceId: job.device, trustedKeys: job.keys,
      storage: memoryStorage(), fetchWindowMs: 200, reconnectMinMs: 50,
    });
    client.on('update', (u) => window.updates.push(u));
    client.on('rejected', (r) => window.rejected.push(r));
    window.runExports = (code) => {
      const module = { exports: {} };
      new Function('module', 'exports', 'require', code)(module, module.exports, () => ({}));
      return Object.keys(module.exports).sort();
    };
    window.client = client;
    await client.start();
  }, job);
  const until = (fn, arg) => page.waitForFunction(fn, arg, { timeout: TIMEOUT, polling: 50 });
  await until(() => window.updates.some((u) => u.source === 'network'));
  out.first = await page.evaluate(() => {
    const u = window.updates.find((x) => x.source === 'network');
    return { revision: u.revision, variant: u.variant, exports: window.runExports(u.scripts['smart-home/thermostat']) };
  });
  fs.appendFileSync(job.snippet, '\nexport const live = 1;\n');
  await until((rev) => window.updates.some((u) => u.source === 'network' && u.revision !== rev), out.first.revision);
  out.live = await page.evaluate((rev) => {
    const u = window.updates.find((x) => x.source === 'network' && x.revision !== rev);
    return { revision: u.revision, delta: u.delta, exports: window.runExports(u.scripts['smart-home/thermostat']) };
  }, out.first.revision);
  out.rejected = await page.evaluate(() => window.rejected.length);
  await page.evaluate(() => window.client.close());
} catch (e) {
  out.failure = String((e && e.stack) || e);
} finally {
  await browser.close();
}
console.log(JSON.stringify(out));
