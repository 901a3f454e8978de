// The status page in headless Chromium, for tests/it/status_page.rs: Debian's /usr/bin/chromium driven by
// playwright-core (never a downloaded browser). Input on stdin (JSON): {url, revision, snippet, broken, location,
// fixed, artifacts}. Loads the page, waits until it shows `revision`, saves `broken` to `snippet` and waits for
// the compile error at `location`, takes the screenshots (desktop, then a phone's viewport), saves `fixed` and
// waits for the error to clear. Every wait is on a condition with a timeout. Prints one JSON verdict on stdout.
import { chromium } from "playwright-core";
import fs from "node:fs";
import path from "node:path";

const input = JSON.parse(fs.readFileSync(0, "utf8"));
const TIMEOUT = 30_000;
const started = Date.now();
const out = { ms: {}, requests: [], errors: [] };
const browser = await chromium.launch({ executablePath: process.env.CHROMIUM || "/usr/bin/chromium", headless: true });
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  page.on("request", r => out.requests.push(r.url()));
  page.on("pageerror", e => out.errors.push(String(e)));
  page.on("console", m => m.type() === "error" && out.errors.push(m.text()));
  const until = (fn, arg) => page.waitForFunction(fn, arg, { timeout: TIMEOUT, polling: 100 });
  const diagnostics = () => page.locator("#diagnostics").innerText();

  await page.goto(input.url);
  out.title = await page.title();
  await until(rev => document.getElementById("variants").innerText.includes(rev), input.revision);
  out.ms.revisionShown = Date.now() - started;
  out.loaded = await page.locator("body").innerText();

  fs.writeFileSync(input.snippet, input.broken);
  let since = Date.now();
  await until(loc => document.getElementById("diagnostics").innerText.includes(loc), input.location);
  out.ms.errorShownAfterSave = Date.now() - since;
  out.broken = await diagnostics();
  out.chartLines = await page.locator("#chart polyline").count();
  fs.mkdirSync(input.artifacts, { recursive: true });
  await page.screenshot({ path: path.join(input.artifacts, "status-page.png"), fullPage: true });
  await page.setViewportSize({ width: 390, height: 844 });
  out.phoneOverflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  await page.screenshot({ path: path.join(input.artifacts, "status-page-phone.png"), fullPage: true });
  await page.setViewportSize({ width: 1280, height: 900 });

  fs.writeFileSync(input.snippet, input.fixed);
  since = Date.now();
  await until(loc => !document.getElementById("diagnostics").innerText.includes(loc), input.location);
  out.ms.errorClearedAfterFix = Date.now() - since;
  out.fixed = await diagnostics();
  out.variants = await page.evaluate(() =>
    [...document.querySelectorAll("#variants tr")].map(tr => [...tr.children].map(td => td.textContent)));
  out.reloads = await page.locator("#reloads").innerText();
} catch (e) {
  out.failure = String((e && e.stack) || e);
} finally {
  await browser.close();
}
out.ms.total = Date.now() - started;
console.log(JSON.stringify(out));
