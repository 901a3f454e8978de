// Math.trunc (ES2015) for ES5 engines.
if (typeof Math.trunc !== "function") {
  Math.trunc = function (x) { x = +x; return x !== x || x === 0 || !isFinite(x) ? x : x < 0 ? Math.ceil(x) : Math.floor(x); };
}
