// Feature: class fields (public instance/static fields, private #fields, `#x in obj`) — introduced in ES2022.
class Account {
  static count = 0;
  owner = "anonymous";
  #balance = 0;
  readonly id = ++Account.count;

  deposit(n: number): number {
    this.#balance += n;
    return this.#balance;
  }

  static isAccount(o: unknown): boolean {
    return typeof o === "object" && o !== null && #balance in o;
  }
}

export function run(): unknown {
  const a = new Account();
  const b = new Account();
  a.owner = "alice";
  a.deposit(10);
  return {
    owner: a.owner,
    balance: a.deposit(5),
    ids: [a.id, b.id],
    count: Account.count,
    keys: Object.keys(a),
    brand: [Account.isAccount(a), Account.isAccount({})],
  };
}
