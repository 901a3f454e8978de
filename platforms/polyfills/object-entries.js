// Object.entries (ES2017): own enumerable string-keyed [key, value] pairs, in Object.keys order.
if (typeof Object.entries !== "function") {
  Object.entries = function (o) {
    if (o == null) throw new TypeError("Cannot convert undefined or null to object");
    var obj = Object(o), keys = Object.keys(obj), out = [];
    for (var i = 0; i < keys.length; i++) out.push([keys[i], obj[keys[i]]]);
    return out;
  };
}
