// Promise for ES5 engines that have none (Duktape): then/catch/finally, Promise.resolve/reject/all/race.
// Reactions run in order on setTimeout(0), which the app's engine must provide. Listed in platforms/android.toml
// as [[variant.polyfill]]; the service prepends it only to the scripts that use Promise (async functions do).
(function (g) {
  if (typeof g.Promise === "function") return;
  function P(executor) {
    if (!(this instanceof P)) throw new TypeError("Promise must be called with new");
    if (typeof executor !== "function") throw new TypeError("Promise resolver is not a function");
    this._state = 0; // 0 pending, 1 fulfilled, 2 rejected
    this._value = undefined;
    this._reactions = [];
    var self = this;
    var once = false;
    try {
      executor(function (v) { if (!once) { once = true; adopt(self, v); } },
               function (e) { if (!once) { once = true; settle(self, 2, e); } });
    } catch (e) {
      if (!once) { once = true; settle(self, 2, e); }
    }
  }
  function settle(p, state, value) {
    if (p._state !== 0) return;
    p._state = state;
    p._value = value;
    var reactions = p._reactions;
    p._reactions = null;
    for (var i = 0; i < reactions.length; i++) react(p, reactions[i]);
  }
  function adopt(p, v) {
    if (v === p) return settle(p, 2, new TypeError("a promise cannot be resolved with itself"));
    if (v !== null && (typeof v === "object" || typeof v === "function")) {
      var then;
      try { then = v.then; } catch (e) { return settle(p, 2, e); }
      if (typeof then === "function") {
        var called = false;
        try {
          then.call(v, function (x) { if (!called) { called = true; adopt(p, x); } },
                       function (e) { if (!called) { called = true; settle(p, 2, e); } });
        } catch (e) {
          if (!called) { called = true; settle(p, 2, e); }
        }
        return;
      }
    }
    settle(p, 1, v);
  }
  function react(p, r) {
    setTimeout(function () {
      var handler = p._state === 1 ? r.onFulfilled : r.onRejected;
      if (typeof handler !== "function") {
        if (p._state === 1) adopt(r.next, p._value); else settle(r.next, 2, p._value);
        return;
      }
      var out;
      try { out = handler(p._value); } catch (e) { settle(r.next, 2, e); return; }
      adopt(r.next, out);
    }, 0);
  }
  P.prototype.then = function (onFulfilled, onRejected) {
    var next = new P(function () {});
    var r = { onFulfilled: onFulfilled, onRejected: onRejected, next: next };
    if (this._state === 0) this._reactions.push(r); else react(this, r);
    return next;
  };
  P.prototype["catch"] = function (onRejected) { return this.then(undefined, onRejected); };
  P.prototype["finally"] = function (f) {
    return this.then(function (v) { return P.resolve(f()).then(function () { return v; }); },
                     function (e) { return P.resolve(f()).then(function () { throw e; }); });
  };
  P.resolve = function (v) { return v instanceof P ? v : new P(function (resolve) { resolve(v); }); };
  P.reject = function (e) { return new P(function (resolve, reject) { reject(e); }); };
  P.all = function (items) {
    return new P(function (resolve, reject) {
      var out = [], left = items.length;
      if (left === 0) return resolve(out);
      for (var i = 0; i < items.length; i++) (function (i) {
        P.resolve(items[i]).then(function (v) { out[i] = v; if (--left === 0) resolve(out); }, reject);
      })(i);
    });
  };
  P.race = function (items) {
    return new P(function (resolve, reject) {
      for (var i = 0; i < items.length; i++) P.resolve(items[i]).then(resolve, reject);
    });
  };
  g.Promise = P;
})(Function("return this")());
