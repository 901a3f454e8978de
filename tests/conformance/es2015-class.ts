// Feature: classes (constructor, methods, getters/setters, static, extends, super) — introduced in ES2015.
class Shape {
  declare readonly name: string;
  constructor(name: string) {
    this.name = name;
  }
  area(): number {
    return 0;
  }
  describe(): string {
    return `${this.name}:${this.area()}`;
  }
  static create(kind: string): Shape {
    return kind === "square" ? new Square(3) : new Shape(kind);
  }
}

class Square extends Shape {
  declare private _side: number;
  constructor(side: number) {
    super("square");
    this._side = side;
  }
  get side(): number {
    return this._side;
  }
  set side(v: number) {
    this._side = v;
  }
  area(): number {
    return this._side * this._side;
  }
  describe(): string {
    return "[" + super.describe() + "]";
  }
}

export function run(): unknown {
  const s = Shape.create("square") as Square;
  const before = s.describe();
  s.side = 4;
  let callWithoutNew = "no error";
  try {
    (Square as unknown as () => void)();
  } catch (e) {
    callWithoutNew = e instanceof TypeError ? "TypeError" : "other error";
  }
  return {
    before,
    after: s.describe(),
    side: s.side,
    isShape: s instanceof Shape,
    plain: Shape.create("dot").describe(),
    callWithoutNew,
  };
}
