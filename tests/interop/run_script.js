#!/usr/bin/env node
// run_script.js - executes one compiled connector the way a device engine would, for the Rust compile tests.
//
// Reads JSON on stdin: {"code": "...", "format": "esm"|"commonjs"|"iife", "name": "connector name",
//                       "es5": true|false, "call": "async (m) => <expression using the module exports m>",
//                       "engine": {"target": "es5", "provided": ["Symbol"]}}   optional, iife only: run on an engine
// with only that target's built-ins plus `provided` (everything newer is deleted from the context first).
// With es5, the code must first parse as ECMAScript 5 (acorn, ecmaVersion 5): proof that an ES5-only engine
// can load it. Then the module is evaluated (iife as a plain script in a fresh context, commonjs with
// module/exports, esm via a data: import) and `call(exports)` is awaited.
// Prints one JSON line: {"ok":true,"result":<value>} or {"ok":false,"stage":"parse"|"run","error":"..."}.
'use strict';
const vm = require('node:vm');
const acorn = require('acorn');
const { strippedFor, stripGlobals, TARGET_YEARS } = require('./builtins.js');

async function main() {
  const input = JSON.parse(require('node:fs').readFileSync(0, 'utf8'));
  if (input.es5) {
    try {
      acorn.parse(input.code, { ecmaVersion: 5, sourceType: 'script' });
    } catch (e) {
      return { ok: false, stage: 'parse', error: String(e.message) };
    }
  }
  let exportsObj;
  try {
    const engine = input.engine || null;
    const year = engine && TARGET_YEARS[engine.target];
    if (engine && year === undefined) throw new Error('unknown engine target ' + JSON.stringify(engine.target));
    const provided = (engine && engine.provided) || [];
    const strip = engine ? strippedFor(year).filter((n) => !provided.includes(n.split('.prototype.')[0])) : [];
    if (strip.length && input.format !== 'iife') throw new Error('strip needs an iife script (its own context)');
    if (input.format === 'iife') {
      const sandbox = { setTimeout, clearTimeout, console };
      vm.createContext(sandbox);
      stripGlobals(sandbox, strip);
      vm.runInContext(input.code, sandbox, { filename: input.name + '.js' });
      exportsObj = sandbox.connectors && sandbox.connectors[input.name];
      if (!exportsObj) throw new Error('iife did not register connectors[' + JSON.stringify(input.name) + ']');
    } else if (input.format === 'commonjs') {
      const module = { exports: {} };
      new Function('module', 'exports', 'require', input.code)(module, module.exports, require);
      exportsObj = module.exports;
    } else {
      const url = 'data:text/javascript;base64,' + Buffer.from(input.code).toString('base64');
      exportsObj = await import(url);
    }
    const call = vm.runInThisContext('(' + input.call + ')');
    const result = await call(exportsObj);
    return { ok: true, result: result === undefined ? null : result };
  } catch (e) {
    return { ok: false, stage: 'run', error: String(e && e.stack || e) };
  }
}

main().then((r) => process.stdout.write(JSON.stringify(r) + '\n'));
