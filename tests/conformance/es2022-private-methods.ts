// Feature: private methods and accessors (#m(), get #x, static #s()) — introduced in ES2022.
class Temperature {
  #celsius: number;
  constructor(c: number) {
    this.#celsius = c;
  }
  #toF(): number {
    return (this.#celsius * 9) / 5 + 32;
  }
  get #label(): string {
    return `${this.#celsius}C`;
  }
  static #unit(): string {
    return "F";
  }
  describe(): string {
    return `${this.#label}=${this.#toF()}${Temperature.#unit()}`;
  }
}

export function run(): unknown {
  const t = new Temperature(100);
  return { describe: t.describe(), ownKeys: Object.getOwnPropertyNames(t) };
}
