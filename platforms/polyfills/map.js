// Map for ES5 engines that have none (Duktape): SameValueZero keys in insertion order, get/set/has/delete/clear,
// size, forEach, and keys/values/entries iterators (iterable through Symbol.iterator where the engine has Symbol).
// Lookups are linear: meant for the small maps connectors keep. Listed in platforms/android.toml.
(function (g) {
  if (typeof g.Map === "function") return;
  function same(a, b) { return a === b || (a !== a && b !== b); }
  function M(entries) {
    if (!(this instanceof M)) throw new TypeError("Map must be called with new");
    this._keys = [];
    this._values = [];
    if (entries != null) {
      for (var i = 0; i < entries.length; i++) this.set(entries[i][0], entries[i][1]);
    }
  }
  M.prototype._index = function (key) {
    for (var i = 0; i < this._keys.length; i++) if (same(this._keys[i], key)) return i;
    return -1;
  };
  M.prototype.get = function (key) { var i = this._index(key); return i < 0 ? undefined : this._values[i]; };
  M.prototype.has = function (key) { return this._index(key) >= 0; };
  M.prototype.set = function (key, value) {
    var i = this._index(key);
    if (i < 0) { this._keys.push(key); this._values.push(value); } else this._values[i] = value;
    return this;
  };
  M.prototype["delete"] = function (key) {
    var i = this._index(key);
    if (i < 0) return false;
    this._keys.splice(i, 1);
    this._values.splice(i, 1);
    return true;
  };
  M.prototype.clear = function () { this._keys = []; this._values = []; };
  M.prototype.forEach = function (f, thisArg) {
    for (var i = 0; i < this._keys.length; i++) f.call(thisArg, this._values[i], this._keys[i], this);
  };
  Object.defineProperty(M.prototype, "size", { get: function () { return this._keys.length; } });
  function iterator(map, pick) {
    var i = 0;
    var it = {
      next: function () {
        if (i >= map._keys.length) return { value: undefined, done: true };
        var v = pick(map._keys[i], map._values[i]);
        i++;
        return { value: v, done: false };
      }
    };
    if (typeof g.Symbol === "function" && g.Symbol.iterator) it[g.Symbol.iterator] = function () { return it; };
    return it;
  }
  M.prototype.keys = function () { return iterator(this, function (k) { return k; }); };
  M.prototype.values = function () { return iterator(this, function (k, v) { return v; }); };
  M.prototype.entries = function () { return iterator(this, function (k, v) { return [k, v]; }); };
  if (typeof g.Symbol === "function" && g.Symbol.iterator) M.prototype[g.Symbol.iterator] = M.prototype.entries;
  g.Map = M;
})(Function("return this")());
