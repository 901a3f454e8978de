#!/usr/bin/env node
// NestJS reference peer for benchmarks: the OLD system's design that connector-scripts replaces.
//
//   node main.js --url mqtt://127.0.0.1:1883 --snippets ../../../snippets --platforms ../../../platforms
//                [--topic getConnectors]
//
// A NestJS microservice on the MQTT transport with a @MessagePattern controller; the TypeScript snippets are
// compiled once at startup with typescript.transpileModule; every reply object is built per request and
// serialized by NestJS (JSON.stringify). Same snippets, same platform manifests, same request/reply shape as
// connector-scripts, so a load generator can hit both the same way. For comparison only.
//
// stdout: exactly one line, "ready", once the microservice listens and its subscriptions are confirmed.
// stderr: all logs.
'use strict';
require('reflect-metadata');

const fs = require('node:fs');
const path = require('node:path');
const crypto = require('node:crypto');
const { parseArgs } = require('node:util');
const ts = require('typescript');
const semver = require('semver');
const TOML = require('smol-toml');
const { Module, Controller, Inject, Logger } = require('@nestjs/common');
const { NestFactory } = require('@nestjs/core');
const { Transport, MessagePattern, Payload, Ctx, RpcException } = require('@nestjs/microservices');

// Milliseconds since the process started (module loading included).
const elapsedMs = () => performance.now();

// ---------------------------------------------------------------------------------------------------------------
// Logging: everything on stderr (Nest's ConsoleLogger writes log/warn to stdout, which is reserved for "ready").

const logger = Object.fromEntries(
  ['log', 'error', 'warn', 'debug', 'verbose', 'fatal'].map((level) => [
    level,
    (msg, ...rest) => {
      if ((level === 'debug' || level === 'verbose') && !process.env.PEER_DEBUG) return;
      const text = msg instanceof Error ? msg.stack : typeof msg === 'string' ? msg : JSON.stringify(msg);
      const ctx = rest.length ? ` [${rest.map(String).join(' ')}]` : '';
      process.stderr.write(`${new Date().toISOString()} ${level.toUpperCase()}${ctx} ${text}\n`);
    },
  ]),
);
Logger.overrideLogger(logger);
const log = new Logger('peer');

function die(message) {
  process.stderr.write(`nestjs-peer: ${message}\n`);
  process.exit(1);
}

// ---------------------------------------------------------------------------------------------------------------
// Arguments.

let args;
try {
  ({ values: args } = parseArgs({
    options: {
      url: { type: 'string', default: 'mqtt://127.0.0.1:1883' },
      snippets: { type: 'string', default: 'snippets' },
      platforms: { type: 'string', default: 'platforms' },
      topic: { type: 'string', default: 'getConnectors' },
      help: { type: 'boolean', short: 'h', default: false },
    },
  }));
} catch (e) {
  die(`${e.message}\nusage: node main.js --url mqtt://HOST:PORT --snippets DIR --platforms DIR [--topic getConnectors]`);
}
if (args.help) {
  process.stdout.write('usage: node main.js --url mqtt://HOST:PORT --snippets DIR --platforms DIR [--topic getConnectors]\n');
  process.exit(0);
}

// ---------------------------------------------------------------------------------------------------------------
// App versions and ranges, with the same rules as connector-scripts (README "App versions").

/** `3`, `3.1`, `v3.1.0`, `3.1.0-beta.2`, `3.1.0+4521` → a semver.SemVer (missing parts 0, build ignored). */
function parseAppVersion(input) {
  const fail = (reason) => {
    throw new RpcException({
      status: 'error',
      code: 'INVALID_VERSION',
      message: `invalid app version ${JSON.stringify(String(input).slice(0, 64))}: ${reason}; expected MAJOR[.MINOR[.PATCH]][-PRERELEASE][+BUILD], e.g. 3.1.0`,
    });
  };
  if (input.length > 64) fail('too long');
  let s = input.trim();
  if (!s) fail('empty');
  if (s[0] === 'v' || s[0] === 'V') s = s.slice(1);
  const plus = s.indexOf('+');
  if (plus >= 0) {
    if (plus === s.length - 1) fail('invalid build metadata');
    s = s.slice(0, plus);
  }
  const dash = s.indexOf('-');
  const core = dash >= 0 ? s.slice(0, dash) : s;
  const pre = dash >= 0 ? s.slice(dash + 1) : null;
  const parts = core.split('.');
  if (parts.length > 3) fail('more than three numeric parts');
  if (parts.some((p) => !/^[0-9]+$/.test(p))) fail('the numeric parts must be digits');
  while (parts.length < 3) parts.push('0');
  if (pre !== null && !pre) fail('invalid pre-release');
  const text = parts.map((p) => String(Number(p))).join('.') + (pre !== null ? `-${pre}` : '');
  const v = semver.parse(text);
  if (!v) fail(pre !== null ? 'invalid pre-release' : 'a numeric part is too large');
  return v;
}

/** A Cargo-style requirement (`">=2.0, <3"`, `"^3"`, `"3.1"` = `^3.1`, `"*"`) → a node-semver Range. */
function parseRange(text) {
  const comparators = String(text)
    .split(',')
    .map((c) => c.trim())
    .filter(Boolean)
    .map((c) => (/^[0-9]/.test(c) ? `^${c}` : c)); // a bare version is a caret requirement in Cargo semver
  const range = new semver.Range(comparators.join(' ') || '*');
  const namesPre = comparators.some((c) => /-/.test(c.replace(/^[^0-9]*/, '')));
  return { text: String(text).trim(), range, namesPre };
}

/** A pre-release app matches as its release unless the range names a pre-release. */
function rangeMatches(r, v) {
  if (v.prerelease.length === 0 || r.namesPre) return r.range.test(v);
  return r.range.test(`${v.major}.${v.minor}.${v.patch}`);
}

// ---------------------------------------------------------------------------------------------------------------
// Globs on connector names: `*` stays within a folder, `**` crosses folders.

function globToRegExp(glob) {
  let re = '';
  for (let i = 0; i < glob.length; ) {
    if (glob.startsWith('**/', i)) {
      re += '(?:.*/)?';
      i += 3;
    } else if (glob.startsWith('**', i)) {
      re += '.*';
      i += 2;
    } else if (glob[i] === '*') {
      re += '[^/]*';
      i += 1;
    } else if (glob[i] === '?') {
      re += '[^/]';
      i += 1;
    } else {
      re += glob[i].replace(/[.+^${}()|[\]\\]/g, '\\$&');
      i += 1;
    }
  }
  return new RegExp(`^${re}$`);
}

// ---------------------------------------------------------------------------------------------------------------
// Catalog: platforms/*.toml + snippets/**/*.ts → one compiled bundle per variant.

const TARGETS = {
  es5: ts.ScriptTarget.ES5,
  es2015: ts.ScriptTarget.ES2015,
  es2016: ts.ScriptTarget.ES2016,
  es2017: ts.ScriptTarget.ES2017,
  es2018: ts.ScriptTarget.ES2018,
  es2019: ts.ScriptTarget.ES2019,
  es2020: ts.ScriptTarget.ES2020,
  es2021: ts.ScriptTarget.ES2021,
  es2022: ts.ScriptTarget.ES2022,
  esnext: ts.ScriptTarget.ESNext,
};
const MODULES = { esm: ts.ModuleKind.ESNext, commonjs: ts.ModuleKind.CommonJS, iife: ts.ModuleKind.CommonJS };

function loadPlatforms(dir) {
  const platforms = [];
  for (const file of fs.readdirSync(dir).sort()) {
    if (file.startsWith('.') || !file.endsWith('.toml')) continue;
    const name = file.slice(0, -'.toml'.length);
    const full = path.join(dir, file);
    try {
      const doc = TOML.parse(fs.readFileSync(full, 'utf8'));
      if (doc.format !== undefined && doc.format !== 1) throw new Error(`unsupported format ${doc.format}`);
      const variants = (doc.variant || []).map((v, i) => {
        if (typeof v.name !== 'string' || !v.name) throw new Error(`variant #${i + 1} has no name`);
        if (typeof v.versions !== 'string') throw new Error(`variant ${v.name}: versions missing`);
        const target = String(v.target || '').toLowerCase();
        if (!(target in TARGETS)) throw new Error(`variant ${v.name}: unknown target ${JSON.stringify(v.target)}`);
        const module = String(v.module || 'esm').toLowerCase();
        if (!(module in MODULES)) throw new Error(`variant ${v.name}: unknown module ${JSON.stringify(v.module)}`);
        // minify and source_maps are ignored: the old system had neither.
        return {
          name: v.name,
          versions: parseRange(v.versions),
          target,
          module,
          include: (v.include || ['**']).map(globToRegExp),
          exclude: (v.exclude || []).map(globToRegExp),
          overrides: Object.entries(v.overrides || {}).map(([conn, f]) => [conn, String(f).replace(/\\/g, '/')]),
        };
      });
      if (variants.length === 0) throw new Error('no [[variant]]');
      platforms.push({ name, variants });
    } catch (e) {
      log.error(`${full}: ${e.message}; platform ${name} skipped`);
    }
  }
  return platforms;
}

function loadSnippets(root) {
  const files = new Map(); // rel → source text
  const walk = (dir) => {
    const entries = fs.readdirSync(dir, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : 1));
    for (const e of entries) {
      if (e.name.startsWith('.')) continue;
      const full = path.join(dir, e.name);
      if (e.isDirectory()) walk(full);
      else if (e.name.endsWith('.ts') && !e.name.endsWith('.d.ts')) {
        const text = fs.readFileSync(full, 'utf8').replace(/^\uFEFF/, '');
        if (!text.trim()) {
          log.warn(`${full}: empty file ignored`);
          continue;
        }
        files.set(path.relative(root, full).split(path.sep).join('/'), text);
      }
    }
  };
  walk(root);
  return files;
}

function sha256(text) {
  return crypto.createHash('sha256').update(text).digest('hex');
}

function buildCatalog(snippetsDir, platformsDir) {
  const platforms = loadPlatforms(platformsDir);
  const files = loadSnippets(snippetsDir);
  const platformNames = new Set(platforms.map((p) => p.name));
  const overrideFiles = new Set(platforms.flatMap((p) => p.variants.flatMap((v) => v.overrides.map(([, f]) => f))));

  // connector name → { def: rel | undefined, perPlatform: Map(platform → rel) }
  const connectors = new Map();
  for (const rel of files.keys()) {
    if (overrideFiles.has(rel)) continue;
    const stem = rel.slice(0, -'.ts'.length);
    const dot = stem.lastIndexOf('.');
    const suffix = dot >= 0 ? stem.slice(dot + 1) : null;
    const isPlatformFile = suffix !== null && !suffix.includes('/') && platformNames.has(suffix);
    const name = isPlatformFile ? stem.slice(0, dot) : stem;
    if (!connectors.has(name)) connectors.set(name, { def: undefined, perPlatform: new Map() });
    const entry = connectors.get(name);
    if (isPlatformFile) entry.perPlatform.set(suffix, rel);
    else entry.def = rel;
  }

  const compiled = new Map(); // `${rel}\0${target}\0${module}` → {code, sha256}: each pair compiled once
  const compile = (rel, target, module) => {
    const key = `${rel}\0${target}\0${MODULES[module]}`;
    let out = compiled.get(key);
    if (!out) {
      const result = ts.transpileModule(files.get(rel), {
        fileName: rel,
        reportDiagnostics: true,
        compilerOptions: { target: TARGETS[target], module: MODULES[module] },
      });
      for (const d of result.diagnostics || []) {
        log.warn(`snippets/${rel}: ${ts.flattenDiagnosticMessageText(d.messageText, '\n')}`);
      }
      out = { code: result.outputText, sha256: sha256(result.outputText) };
      compiled.set(key, out);
    }
    return out;
  };

  const catalog = new Map(); // platform → [{variant, versions, revision, scripts}]
  let scriptCount = 0;
  for (const platform of platforms) {
    const bundles = [];
    for (const v of platform.variants) {
      const overrides = new Map(v.overrides);
      const names = [...new Set([...connectors.keys(), ...overrides.keys()])]
        .filter((n) => v.include.some((re) => re.test(n)) && !v.exclude.some((re) => re.test(n)))
        .sort();
      const scripts = [];
      for (const name of names) {
        let rel = overrides.get(name);
        if (rel !== undefined) {
          if (!files.has(rel)) {
            log.error(`${platform.name}/${v.name}: override for ${name} names ${rel}, which is not a snippet file`);
            continue;
          }
        } else {
          const c = connectors.get(name);
          rel = c.perPlatform.get(platform.name) ?? c.def;
          if (rel === undefined) continue; // only exists for other platforms
        }
        const { code, sha256: sha } = compile(rel, v.target, v.module);
        scripts.push({ name, code, sha256: sha });
      }
      const h = crypto.createHash('sha256').update(v.name);
      for (const s of scripts) h.update(`\0${s.name}\0${s.sha256}`);
      const revision = h.digest('hex').slice(0, 16);
      bundles.push({ platform: platform.name, variant: v.name, versions: v.versions, revision, scripts });
      scriptCount += scripts.length;
    }
    catalog.set(platform.name, bundles);
  }
  return { catalog, files: files.size, compiled: compiled.size, scripts: scriptCount };
}

// ---------------------------------------------------------------------------------------------------------------
// Request handling.

const rpcError = (code, message, extra) => new RpcException({ status: 'error', code, message, ...extra });

function answer(catalog, data) {
  if (data === null || typeof data !== 'object' || Array.isArray(data)) {
    throw rpcError('BAD_REQUEST', 'request data must be an object {platform, version, connectors?, revision?}');
  }
  const { platform, version, connectors, revision } = data;
  if (typeof platform !== 'string') throw rpcError('BAD_REQUEST', '"platform" must be a string');
  if (typeof version !== 'string') throw rpcError('BAD_REQUEST', '"version" must be a string');
  if (connectors !== undefined && connectors !== null &&
      (!Array.isArray(connectors) || connectors.some((c) => typeof c !== 'string'))) {
    throw rpcError('BAD_REQUEST', '"connectors" must be an array of strings');
  }
  if (revision !== undefined && revision !== null && typeof revision !== 'string') {
    throw rpcError('BAD_REQUEST', '"revision" must be a string');
  }
  const bundles = catalog.get(platform);
  if (!bundles) {
    throw rpcError('UNKNOWN_PLATFORM', `unknown platform ${JSON.stringify(platform.slice(0, 64))}`, {
      known: [...catalog.keys()],
    });
  }
  const v = parseAppVersion(version);
  const bundle = bundles.find((b) => rangeMatches(b.versions, v));
  if (!bundle) {
    throw rpcError(
      'NO_VARIANT',
      `no variant of platform ${JSON.stringify(platform)} serves app version ${v.version}; ranges: ${bundles
        .map((b) => `${b.variant}: ${b.versions.text}`)
        .join(' | ')}`,
    );
  }
  if (revision === bundle.revision) return { revision: bundle.revision, notModified: true };
  let scripts = bundle.scripts;
  if (connectors) {
    scripts = [];
    for (const name of new Set(connectors)) {
      const s = bundle.scripts.find((x) => x.name === name);
      if (!s) {
        throw rpcError(
          'UNKNOWN_CONNECTOR',
          `variant ${JSON.stringify(bundle.variant)} of ${platform} has no connector ${JSON.stringify(name.slice(0, 64))}`,
          { known: bundle.scripts.map((x) => x.name) },
        );
      }
      scripts.push(s);
    }
  }
  // Built per request; NestJS serializes it with JSON.stringify (the design being compared).
  return {
    platform,
    version: v.version,
    variant: bundle.variant,
    revision: bundle.revision,
    connectors: scripts.map((s) => ({ name: s.name, code: s.code, sha256: s.sha256 })),
  };
}

// ---------------------------------------------------------------------------------------------------------------
// NestJS wiring, with the decorators applied by hand (plain JavaScript, no TypeScript emit).

const CATALOG = 'CATALOG';
const topic = args.topic;

class ConnectorsController {
  constructor(catalog) {
    this.catalog = catalog;
  }

  // `getConnectors/<device>` (wildcard pattern): answered on `getConnectors/<device>/reply`.
  getForDevice(data, ctx) {
    return this.handle(data, ctx);
  }

  // `getConnectors`: answered on `getConnectors/reply`.
  get(data, ctx) {
    return this.handle(data, ctx);
  }

  handle(data, ctx) {
    // `getConnectors/+` also matches `getConnectors/reply`: every reply to a plain `getConnectors` request comes
    // back to this service (as an "event", it has no pattern/id of its own). Ignore it.
    if (ctx.getTopic().endsWith('/reply')) {
      log.debug(`ignored a message on ${ctx.getTopic()} (our own reply, echoed by the ${topic}/+ subscription)`);
      return undefined;
    }
    return answer(this.catalog, data);
  }
}

// Two handlers: stacking two @MessagePattern on ONE method keeps only the last one (each call overwrites the
// method's pattern metadata), so the old system needed one method per pattern (or an array pattern).
function decorateMethod(proto, key, decorators) {
  let descriptor = Object.getOwnPropertyDescriptor(proto, key);
  for (const d of decorators.reverse()) descriptor = d(proto, key, descriptor) || descriptor;
  Object.defineProperty(proto, key, descriptor);
}
decorateMethod(ConnectorsController.prototype, 'getForDevice', [MessagePattern(`${topic}/+`)]);
decorateMethod(ConnectorsController.prototype, 'get', [MessagePattern(topic)]);
for (const key of ['getForDevice', 'get']) {
  Payload()(ConnectorsController.prototype, key, 0);
  Ctx()(ConnectorsController.prototype, key, 1);
}
Inject(CATALOG)(ConnectorsController, undefined, 0);
Controller()(ConnectorsController);

function makeAppModule(catalog) {
  class AppModule {}
  Module({
    controllers: [ConnectorsController],
    providers: [{ provide: CATALOG, useValue: catalog }],
  })(AppModule);
  return AppModule;
}

// ---------------------------------------------------------------------------------------------------------------

async function main() {
  const snippetsDir = path.resolve(args.snippets);
  const platformsDir = path.resolve(args.platforms);
  const tc = process.hrtime.bigint();
  const built = buildCatalog(snippetsDir, platformsDir);
  const compileMs = Number(process.hrtime.bigint() - tc) / 1e6;
  if (built.catalog.size === 0) die(`no usable platform in ${platformsDir}`);
  for (const [p, bundles] of built.catalog) {
    for (const b of bundles) {
      log.log(`${p} ${b.variant} ${b.versions.text} revision ${b.revision} ${b.scripts.length} connectors`);
    }
  }
  log.log(`catalog: ${built.files} files, ${built.compiled} transpileModule calls, ${built.scripts} scripts in ${compileMs.toFixed(0)} ms`);

  const app = await NestFactory.createMicroservice(makeAppModule(built.catalog), {
    transport: Transport.MQTT,
    options: { url: args.url, subscribeOptions: { qos: 0 } },
    logger,
  });
  await app.listen();

  // listen() resolves on CONNACK; the SUBSCRIBEs Nest queued are not confirmed yet. A broker handles one client's
  // packets in order, so the SUBACK of one more subscription means the earlier ones are in place.
  const mqttClient = app.unwrap();
  const probeTopic = `nestjs-peer/ready-probe/${process.pid}-${crypto.randomBytes(4).toString('hex')}`;
  await new Promise((resolve, reject) =>
    mqttClient.subscribe(probeTopic, { qos: 0 }, (err) => (err ? reject(err) : resolve())));
  await new Promise((resolve) => mqttClient.unsubscribe(probeTopic, () => resolve()));

  log.log(`listening on ${args.url}: ${topic} and ${topic}/+ (ready after ${elapsedMs().toFixed(0)} ms)`);
  process.stdout.write('ready\n');

  let closing = false;
  const shutdown = async (signal) => {
    if (closing) return;
    closing = true;
    log.log(`${signal}: closing`);
    const timer = setTimeout(() => process.exit(0), 3000);
    timer.unref();
    try {
      await app.close();
    } catch (e) {
      log.error(e);
    }
    process.exit(0);
  };
  process.on('SIGINT', () => shutdown('SIGINT'));
  process.on('SIGTERM', () => shutdown('SIGTERM'));
}

main().catch((e) => die(e && e.stack ? e.stack : String(e)));
