// Feature: TypeScript namespaces (nested, merged declarations, exported members) — TypeScript-only, no ES edition.
namespace Geometry {
  export const unit = "cm";
  export function square(x: number): number {
    return x * x;
  }
  export namespace Circle {
    export function area(r: number): number {
      return Math.round(Math.PI * r * r * 100) / 100;
    }
  }
}

namespace Geometry {
  export function describe(): string {
    return `${square(2)}${unit}`;
  }
}

export function run(): unknown {
  return { unit: Geometry.unit, square: Geometry.square(3), circle: Geometry.Circle.area(1), merged: Geometry.describe() };
}
