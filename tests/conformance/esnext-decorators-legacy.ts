// Feature: TypeScript legacy decorators (experimentalDecorators: class and method decorators) — TypeScript-only, not in any ES edition (TC39 decorators are a different, later proposal).
const calls: string[] = [];

function log(_target: object, key: string, descriptor: PropertyDescriptor): PropertyDescriptor {
  const original = descriptor.value as (...args: unknown[]) => unknown;
  descriptor.value = function (this: unknown, ...args: unknown[]) {
    calls.push(`${key}(${args.join(",")})`);
    return original.apply(this, args);
  };
  return descriptor;
}

function sealed<T extends Function>(ctor: T): T {
  Object.seal(ctor);
  Object.seal(ctor.prototype);
  return ctor;
}

@sealed
class Greeter {
  constructor(private readonly greeting: string) {}

  @log
  m(name: string): string {
    return `${this.greeting}, ${name}`;
  }
}

export function run(): unknown {
  const g = new Greeter("hello");
  return {
    result: g.m("world"),
    calls,
    sealed: Object.isSealed(Greeter),
    prototypeSealed: Object.isSealed(Greeter.prototype),
  };
}
