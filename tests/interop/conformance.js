#!/usr/bin/env node
// conformance.js - independent checker for the conformance corpus (tests/conformance/*.ts) once compiled by the
// service: does each compiled script parse at its target's ECMAScript level, does it run on an engine that only has
// that level's built-ins, and does it compute what TypeScript's own compile of the source computes?
//
// Input, one JSON document on stdin:
//   {"items": [{"name": "es2015-arrow",            connector name (the iife wrapper's connectors[name] key)
//               "code": "<compiled JS>",
//               "format": "esm"|"commonjs"|"iife",
//               "target": "es5"|"es2015"|...|"es2022"|"esnext",   ("es6" is accepted as es2015)
//               "source": "<original TypeScript>",                optional: enables the differential check
//               "polyfill": true|false}],                         optional: load core-js into the run context first
//    "run": true|false,                                             optional, default false: parse only
//    "timeoutMs": 5000}                                             optional, per item: sync run and awaited promise
//
// Output, ONE JSON line on stdout, exit code 0 whatever the items do (exit 1 only if stdin is not JSON at all,
// still printing {"error": "..."} as the one line):
//   {"typescript": "<version>"|null,                    null: typescript not installed, no differential checks
//    "esmRunnable": true|false,                         vm.SourceTextModule available (node --experimental-vm-modules)
//    "results": [{
//      "name": "...", "format": "...", "target": "...",
//      "ecmaVersion": 5|2015|...|"latest",              what acorn was asked to parse
//      "parses": true|false,
//      "error": "<acorn message> (line:col)" | null,    the parse error; also used for a malformed item
//      "stripped": ["Symbol", "Object.assign", ...],    built-ins removed from the run context (see STRIPPED below)
//      "ran": true|false,                               run() returned (or its promise resolved) without throwing
//      "value": <JSON>|null,                            what run() returned (awaited); null if none or undefined
//      "exports": ["run", ...],                         own enumerable export names found
//      "runError": "<message>"|null,
//      "skipped": "<why the run was skipped>"|null,     run=false, did not parse, esm without SourceTextModule, ...
//      "expected": <JSON>|null,                         run() of ts.transpileModule(source) (ES2022, CommonJS)
//      "expectedError": "<message>"|null,
//      "same": true|false|null}]}                       JSON.stringify(value) === JSON.stringify(expected)
//                                                       (false too when the compiled code failed to run but the
//                                                       reference ran); null when there is nothing to compare (no
//                                                       source, no typescript, run not requested, did not parse,
//                                                       skipped, or the reference itself failed: expectedError)
//
// run(): an item's exports are module.exports (commonjs), globalThis.connectors[name] (iife: the service's wrapper
// stores them there) or the module namespace (esm). If they include a function `run`, it is called with no
// arguments; a returned thenable is awaited (async features' run() returns a Promise), bounded by timeoutMs. The
// value must be JSON-serialisable (JSON.stringify in the checker's realm; BigInt etc. become a runError).
//
// Run context: a fresh vm context (its own built-ins) holding only setTimeout/clearTimeout/setInterval/
// clearInterval/queueMicrotask and a console that writes to stderr. Before the code runs, the built-ins newer than
// the item's target are deleted from it (table STRIPPED below: es5 loses every removable ES2015+ built-in,
// es2015 loses ES2016+, ..., es2022 loses the ES2023 array methods, esnext loses nothing), so a compile that relies
// on a built-in its target engine lacks fails here instead of on a device. Syntax-level intrinsics (well-known
// symbols, the Promise used by native async functions) cannot be removed; only global bindings and methods can.
//
// Parsing: acorn, sourceType "module" for esm and "script" otherwise, allowHashBang only for es2023+/esnext.
// commonjs code is compiled with vm.compileFunction (like Node's loader: a leading hashbang is accepted there).
//
// Reference (differential): ts.transpileModule(source, {target: ES2022, module: CommonJS, experimentalDecorators})
// run as commonjs in an unstripped context whose Symbol.dispose/asyncDispose are defined as
// Symbol.for("Symbol.dispose"/"Symbol.asyncDispose") (V8 in Node 20 has neither inside a vm context). Top-level
// await has no CommonJS form: when that output does not compile for that reason and vm.SourceTextModule exists,
// the reference is recompiled with module ES2022 and run as an ES module.
//
// ES modules run only under `node --experimental-vm-modules conformance.js` (it prints an ExperimentalWarning on
// stderr); without it esm items are parsed but skipped ("skipped" says so, "esmRunnable" is false).
'use strict';
const vm = require('node:vm');
const fs = require('node:fs');
const acorn = require('acorn');

let ts = null;
try {
  ts = require('typescript');
} catch {
  ts = null;
}


const { strippedFor, stripGlobals, TARGET_YEARS } = require('./builtins.js');

function message(e) {
  if (e && typeof e === 'object' && typeof e.message === 'string') {
    const name = typeof e.name === 'string' ? e.name : 'Error';
    return `${name}: ${e.message}`;
  }
  try {
    return String(e);
  } catch {
    return 'unprintable error';
  }
}

// A JSON copy in this realm, or throws when the value cannot be represented (BigInt, cycles).
function toJson(v) {
  if (v === undefined) return null;
  const s = JSON.stringify(v);
  return s === undefined ? null : JSON.parse(s);
}

function withTimeout(promise, ms, what) {
  let timer;
  return Promise.race([
    Promise.resolve(promise),
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what} did not settle within ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

function newContext(stripNames, prelude) {
  const errors = (...args) => process.stderr.write(`[conformance console] ${args.map(String).join(' ')}\n`);
  const sandbox = {
    setTimeout, clearTimeout, setInterval, clearInterval, queueMicrotask,
    console: { log: errors, info: errors, warn: errors, error: errors, debug: errors },
  };
  const context = vm.createContext(sandbox, { name: 'conformance', codeGeneration: { strings: true, wasm: false } });
  stripGlobals(context, stripNames);
  if (prelude) vm.runInContext(prelude, context);
  return { context, sandbox };
}

// Evaluates compiled code and resolves to {exportsObj, context} (or rejects).
async function load(code, format, name, stripNames, timeoutMs, prelude) {
  const { context, sandbox } = newContext(stripNames, prelude);
  const filename = `${name || 'connector'}.${format === 'esm' ? 'mjs' : 'js'}`;
  if (format === 'commonjs') {
    // Node's CommonJS wrapper (compileFunction, like Node's loader: a leading hashbang is accepted, as Node does);
    // `require` of anything is an error (connectors have no modules to load).
    const wrapper = vm.compileFunction(code, ['exports', 'require', 'module', '__filename', '__dirname'],
      { filename, parsingContext: context });
    const module = vm.runInContext('({ exports: {} })', context);
    const req = (id) => {
      throw new Error(`require(${JSON.stringify(id)}): no modules are available to a connector`);
    };
    sandbox.__conformanceCall = () => wrapper.call(module.exports, module.exports, req, module, filename, '/');
    vm.runInContext('__conformanceCall()', context, { timeout: timeoutMs });
    delete sandbox.__conformanceCall;
    return { exportsObj: module.exports, context, sandbox };
  }
  if (format === 'iife') {
    vm.runInContext(code, context, { filename, timeout: timeoutMs });
    const registry = sandbox.connectors;
    if (!registry || typeof registry !== 'object' || !(name in registry)) {
      throw new Error(`the iife did not store its exports in globalThis.connectors[${JSON.stringify(name)}]`);
    }
    return { exportsObj: registry[name], context, sandbox };
  }
  // esm
  const mod = new vm.SourceTextModule(code, { context, identifier: filename });
  await mod.link((specifier) => {
    throw new Error(`import ${JSON.stringify(specifier)}: no modules are available to a connector`);
  });
  await withTimeout(mod.evaluate({ timeout: timeoutMs }), timeoutMs, 'module evaluation (top-level await)');
  return { exportsObj: mod.namespace, context, sandbox };
}

async function callRun({ exportsObj, context, sandbox }, timeoutMs) {
  if (exportsObj == null || typeof exportsObj.run !== 'function') {
    return { called: false, value: null };
  }
  // Called from inside the context so that the vm timeout also bounds a synchronous run().
  sandbox.__conformanceRun = exportsObj.run;
  let v;
  try {
    v = vm.runInContext('__conformanceRun()', context, { timeout: timeoutMs });
  } finally {
    delete sandbox.__conformanceRun;
  }
  if (v !== null && (typeof v === 'object' || typeof v === 'function') && typeof v.then === 'function') {
    v = await withTimeout(v, timeoutMs, 'the promise returned by run()');
  }
  return { called: true, value: toJson(v) };
}

function exportNames(exportsObj) {
  try {
    return exportsObj == null ? [] : Object.keys(exportsObj).sort();
  } catch {
    return [];
  }
}

// TypeScript's own compile of the source, run in a context with every built-in: the reference value.
async function reference(source, name, timeoutMs) {
  const options = {
    target: ts.ScriptTarget.ES2022, module: ts.ModuleKind.CommonJS, experimentalDecorators: true,
  };
  const out = ts.transpileModule(source, { compilerOptions: options, fileName: `${name || 'connector'}.ts`,
    reportDiagnostics: true });
  const diags = (out.diagnostics || []).filter((d) => d.category === ts.DiagnosticCategory.Error);
  if (diags.length) {
    throw new Error('typescript: ' + diags.map((d) => ts.flattenDiagnosticMessageText(d.messageText, '\n')).join('; '));
  }
  let loaded;
  try {
    loaded = await load(out.outputText, 'commonjs', name, [], timeoutMs, REFERENCE_PRELUDE);
  } catch (e) {
    // Top-level await has no CommonJS form: fall back to an ES module when the vm can run one.
    if (!(e && e.name === 'SyntaxError' && /await/.test(String(e.message)))
        || typeof vm.SourceTextModule !== 'function') throw e;
    const esm = ts.transpileModule(source, { compilerOptions: { ...options, module: ts.ModuleKind.ES2022 },
      fileName: `${name || 'connector'}.ts` });
    loaded = await load(esm.outputText, 'esm', name, [], timeoutMs, REFERENCE_PRELUDE);
  }
  return callRun(loaded, timeoutMs);
}

// Gives the reference context the explicit-resource-management symbols that V8 in Node 20 lacks (the main realm
// has Node's own, but a vm context does not), as core-js and swc's helpers do: Symbol.for("Symbol.dispose").
const REFERENCE_PRELUDE = `
if (typeof Symbol.dispose !== 'symbol') Object.defineProperty(Symbol, 'dispose', { value: Symbol.for('Symbol.dispose') });
if (typeof Symbol.asyncDispose !== 'symbol') Object.defineProperty(Symbol, 'asyncDispose', { value: Symbol.for('Symbol.asyncDispose') });
`;

// The polyfill an item asks for with "polyfill": true: core-js (the well-kept source the README names for ES5
// variants), loaded into the stripped context before the script, as a variant's [[variant.polyfill]] would be.
let coreJs = null;
function polyfillSource() {
  if (coreJs === null) coreJs = fs.readFileSync(require.resolve('core-js-bundle/minified.js'), 'utf8');
  return coreJs;
}

async function checkItem(item, runAll, timeoutMs) {
  const r = {
    name: null, format: null, target: null, ecmaVersion: null, parses: false, error: null, stripped: [],
    ran: false, value: null, exports: [], runError: null, skipped: null,
    expected: null, expectedError: null, same: null,
  };
  if (item === null || typeof item !== 'object' || Array.isArray(item)) {
    r.error = 'item is not an object';
    return r;
  }
  r.name = typeof item.name === 'string' ? item.name : null;
  r.format = item.format;
  r.target = item.target;
  if (typeof item.code !== 'string') {
    r.error = 'item.code is not a string';
    return r;
  }
  if (!['esm', 'commonjs', 'iife'].includes(item.format)) {
    r.error = `unknown format ${JSON.stringify(item.format)}; expected esm, commonjs or iife`;
    return r;
  }
  const year = typeof item.target === 'string' ? TARGET_YEARS[item.target.toLowerCase()] : undefined;
  if (year === undefined) {
    r.error = `unknown target ${JSON.stringify(item.target)}; expected es5, es2015 ... es2022, esnext`;
    return r;
  }
  r.ecmaVersion = year === Infinity ? 'latest' : year;

  try {
    acorn.parse(item.code, {
      ecmaVersion: r.ecmaVersion,
      sourceType: item.format === 'esm' ? 'module' : 'script',
      allowHashBang: year >= 2023,
      locations: true,
    });
    r.parses = true;
  } catch (e) {
    // acorn's messages end in "(line:col)", column 0-based.
    r.error = e && e.loc ? String(e.message) : message(e);
  }

  r.stripped = strippedFor(year);
  if (!runAll) {
    r.skipped = 'run was not requested';
  } else if (!r.parses) {
    r.skipped = 'does not parse at its target';
  } else if (item.format === 'esm' && typeof vm.SourceTextModule !== 'function') {
    r.skipped = 'esm needs vm.SourceTextModule: run node with --experimental-vm-modules';
  } else {
    try {
      const prelude = item.polyfill === true ? polyfillSource() : undefined;
      const loaded = await load(item.code, item.format, r.name, r.stripped, timeoutMs, prelude);
      r.exports = exportNames(loaded.exportsObj);
      const res = await callRun(loaded, timeoutMs);
      if (!res.called) r.skipped = 'no exported function run()';
      r.value = res.value;
      r.ran = res.called;
    } catch (e) {
      r.runError = message(e);
    }
  }

  if (runAll && typeof item.source === 'string' && ts && (r.ran || r.runError !== null)) {
    try {
      const res = await reference(item.source, r.name, timeoutMs);
      r.expected = res.value;
      if (!res.called) r.expectedError = 'the reference compile exports no function run()';
    } catch (e) {
      r.expectedError = message(e);
    }
    if (r.expectedError === null) r.same = r.ran && JSON.stringify(r.value) === JSON.stringify(r.expected);
  }
  return r;
}

async function main() {
  let job;
  try {
    job = JSON.parse(fs.readFileSync(0, 'utf8'));
  } catch (e) {
    process.stdout.write(JSON.stringify({ error: `stdin is not a JSON job: ${message(e)}`, results: [] }) + '\n');
    process.exitCode = 1;
    return;
  }
  const items = job && Array.isArray(job.items) ? job.items : [];
  const runAll = !!(job && job.run === true);
  const timeoutMs = job && Number.isFinite(job.timeoutMs) && job.timeoutMs > 0 ? job.timeoutMs : 5000;
  const results = [];
  for (const item of items) {
    try {
      results.push(await checkItem(item, runAll, timeoutMs));
    } catch (e) {
      results.push({ name: item && item.name, parses: false, error: `checker failure: ${message(e)}` });
    }
  }
  const out = {
    typescript: ts ? ts.version : null,
    esmRunnable: typeof vm.SourceTextModule === 'function',
    results,
  };
  if (job && !Array.isArray(job.items)) out.error = 'job.items is not an array';
  process.stdout.write(JSON.stringify(out) + '\n', () => process.exit(0));
}

// A stray rejection or exception from a connector's timers must not crash the checker or garble stdout.
process.on('unhandledRejection', (e) => process.stderr.write(`conformance: unhandled rejection: ${message(e)}\n`));
process.on('uncaughtException', (e) => process.stderr.write(`conformance: uncaught exception: ${message(e)}\n`));

main();
