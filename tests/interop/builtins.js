// builtins.js - the ECMAScript built-ins each edition added, and how to take them out of a vm context: an engine
// of an older target, for conformance.js and run_script.js. Mirrors the table of src/catalog/builtins.rs (which
// knows only globals and static members; prototype methods are stripped here too).
'use strict';
const vm = require('node:vm');

// ECMAScript edition of each target name.
const TARGET_YEARS = {
  es3: 3, es5: 5, es6: 2015, es2015: 2015, es2016: 2016, es2017: 2017, es2018: 2018, es2019: 2019, es2020: 2020,
  es2021: 2021, es2022: 2022, es2023: 2023, es2024: 2024, es2025: 2025, esnext: Infinity,
};

// Built-ins removed from the run context when the target is older than the edition that introduced them.
// "X" deletes the global binding, "X.y" a static member, "X.prototype.y" a method. Only configurable properties
// can go (Number.EPSILON and the other Number constants, well-known symbols such as Symbol.asyncIterator cannot).
const STRIPPED = [
  [2015, [
    'Symbol', 'Map', 'Set', 'WeakMap', 'WeakSet', 'Promise', 'Proxy', 'Reflect',
    'Object.assign', 'Object.setPrototypeOf', 'Object.getOwnPropertySymbols', 'Object.is',
    'Array.from', 'Array.of', 'Array.prototype.find', 'Array.prototype.findIndex', 'Array.prototype.fill',
    'Array.prototype.copyWithin', 'Array.prototype.entries', 'Array.prototype.keys', 'Array.prototype.values',
    'String.raw', 'String.fromCodePoint', 'String.prototype.codePointAt', 'String.prototype.includes',
    'String.prototype.startsWith', 'String.prototype.endsWith', 'String.prototype.repeat',
    'String.prototype.normalize',
    'Number.isNaN', 'Number.isFinite', 'Number.isInteger', 'Number.isSafeInteger', 'Number.parseFloat',
    'Number.parseInt',
    'Math.trunc', 'Math.sign', 'Math.cbrt', 'Math.log2', 'Math.log10', 'Math.hypot', 'Math.imul', 'Math.fround',
    'Math.clz32', 'Math.expm1', 'Math.log1p', 'Math.sinh', 'Math.cosh', 'Math.tanh', 'Math.asinh', 'Math.acosh',
    'Math.atanh',
  ]],
  [2016, ['Array.prototype.includes']],
  [2017, [
    'Object.entries', 'Object.values', 'Object.getOwnPropertyDescriptors',
    'String.prototype.padStart', 'String.prototype.padEnd', 'SharedArrayBuffer', 'Atomics',
  ]],
  [2018, ['Promise.prototype.finally']],
  [2019, [
    'Array.prototype.flat', 'Array.prototype.flatMap', 'Object.fromEntries',
    'String.prototype.trimStart', 'String.prototype.trimEnd',
  ]],
  [2020, ['BigInt', 'BigInt64Array', 'BigUint64Array', 'globalThis', 'Promise.allSettled',
    'String.prototype.matchAll']],
  [2021, ['Promise.any', 'AggregateError', 'WeakRef', 'FinalizationRegistry', 'String.prototype.replaceAll']],
  [2022, ['Array.prototype.at', 'String.prototype.at', 'Object.hasOwn']],
  [2023, ['Array.prototype.findLast', 'Array.prototype.findLastIndex', 'Array.prototype.toSorted',
    'Array.prototype.toReversed', 'Array.prototype.toSpliced', 'Array.prototype.with']],
];

function strippedFor(year) {
  const out = [];
  for (const [edition, names] of STRIPPED) if (year < edition) out.push(...names);
  return out;
}

// Deletes `names` from a vm context's globals (member deletions first, then the globals they hang off, so that
// "Object.assign" is not looked up on a deleted object). Throws when one cannot be deleted.
function stripGlobals(context, names) {
  if (!names.length) return;
  const strip = `(function (names) {
    var g = (function () { return this; })();
    var failed = [];
    for (var pass = 0; pass < 2; pass++) {
      for (var i = 0; i < names.length; i++) {
        var path = names[i].split('.');
        if ((path.length === 1) !== (pass === 1)) continue;
        var owner = g;
        for (var j = 0; j < path.length - 1 && owner != null; j++) owner = owner[path[j]];
        if (owner == null) continue;
        var key = path[path.length - 1];
        if (!(key in owner)) continue;
        if (!delete owner[key] || Object.prototype.hasOwnProperty.call(owner, key)) failed.push(names[i]);
      }
    }
    return failed.join(',');
  })`;
  const failed = vm.runInContext(strip, context)(names);
  if (failed) throw new Error(`could not strip ${failed} from the run context`);
}

module.exports = { TARGET_YEARS, STRIPPED, strippedFor, stripGlobals };
