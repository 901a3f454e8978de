#!/usr/bin/env node
// compile.js - Node.js baseline for the transpiler benchmark: strips types from every *.ts
// file of a directory (each file on its own, as a module) with swc, tsc or esbuild.
//
//   node compile.js --dir DIR --tool swc|tsc|esbuild [--target es2015] [--iterations 10]
//
// All files are read into memory first. Then it measures:
//   loadMs  - require() of the tool
//   firstMs - the first pass over all files in this process (cold: JIT, lazy init, esbuild's service)
//   warmMs  - median of N further passes
// and prints one JSON line: {tool, version, target, files, bytes, loadMs, firstMs, warmMs, iterations, errors}.
// A file that fails to compile counts in `errors` (from the first pass; the first few go to stderr).
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const { parseArgs } = require('node:util');

const { values: args } = parseArgs({
  options: {
    dir: { type: 'string' },
    tool: { type: 'string' },
    target: { type: 'string', default: 'es2015' },
    iterations: { type: 'string', default: '10' },
  },
});
const TOOLS = ['swc', 'tsc', 'esbuild'];
if (!args.dir || !TOOLS.includes(args.tool)) {
  process.stderr.write('usage: node compile.js --dir DIR --tool swc|tsc|esbuild [--target es2015] [--iterations N]\n');
  process.exit(1);
}
const iterations = Math.max(0, parseInt(args.iterations, 10) || 0);
const target = args.target.toLowerCase();

// Collect *.ts (not *.d.ts) recursively, sorted for a stable order, and read them all.
function listTs(dir) {
  const out = [];
  for (const ent of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, ent.name);
    if (ent.isDirectory()) out.push(...listTs(p));
    else if (ent.isFile() && ent.name.endsWith('.ts') && !ent.name.endsWith('.d.ts')) out.push(p);
  }
  return out;
}
const sources = listTs(args.dir).sort().map((file) => ({ file, code: fs.readFileSync(file, 'utf8') }));
const bytes = sources.reduce((n, s) => n + Buffer.byteLength(s.code), 0);

const now = () => Number(process.hrtime.bigint()) / 1e6;

// Each loader returns { version, compile(code, file) }; compile throws on a failed file.
const loaders = {
  swc() {
    const swc = require('@swc/core');
    const opts = {
      swcrc: false, configFile: false, isModule: true,
      jsc: { parser: { syntax: 'typescript', decorators: true }, target },
    };
    return { version: swc.version, compile: (code, file) => swc.transformSync(code, { ...opts, filename: file }).code };
  },
  tsc() {
    const ts = require('typescript');
    const scriptTarget = ts.ScriptTarget[Object.keys(ts.ScriptTarget).find((k) => k.toLowerCase() === target)];
    if (scriptTarget === undefined) throw new Error(`typescript knows no target ${target}`);
    const compilerOptions = { target: scriptTarget, module: ts.ModuleKind.ESNext };
    return {
      version: ts.version,
      compile(code, file) {
        const r = ts.transpileModule(code, { compilerOptions, fileName: file, reportDiagnostics: true });
        const errs = (r.diagnostics || []).filter((d) => d.category === ts.DiagnosticCategory.Error);
        if (errs.length) throw new Error(ts.flattenDiagnosticMessageText(errs[0].messageText, '\n'));
        return r.outputText;
      },
    };
  },
  esbuild() {
    const esbuild = require('esbuild');
    return {
      version: esbuild.version,
      compile: (code, file) => esbuild.transformSync(code, { loader: 'ts', target, sourcefile: file }).code,
    };
  },
};

let t = now();
const tool = loaders[args.tool]();
const loadMs = now() - t;

// One pass over all files; returns the number of files that failed.
function pass(report) {
  let errors = 0;
  for (const { file, code } of sources) {
    try {
      tool.compile(code, file);
    } catch (e) {
      errors++;
      if (report && errors <= 3) process.stderr.write(`${file}: ${String(e.errors?.[0]?.text || e.message || e).trim().split('\n')[0]}\n`);
    }
  }
  return errors;
}

t = now();
const errors = pass(true);
const firstMs = now() - t;

const times = [];
for (let i = 0; i < iterations; i++) {
  t = now();
  pass(false);
  times.push(now() - t);
}
times.sort((a, b) => a - b);
const mid = times.length >> 1;
const warmMs = times.length === 0 ? null : times.length % 2 ? times[mid] : (times[mid - 1] + times[mid]) / 2;

const r2 = (x) => (x === null ? null : Math.round(x * 100) / 100);
console.log(JSON.stringify({
  tool: args.tool, version: tool.version, target, files: sources.length, bytes,
  loadMs: r2(loadMs), firstMs: r2(firstMs), warmMs: r2(warmMs), iterations, errors,
}));
if (args.tool === 'esbuild') require('esbuild').stop?.(); // let the service process go
