// Feature: auto-accessors (`accessor level = 1`, from the TC39 decorators proposal, ES2025+/esnext; TypeScript 4.9).
class Player {
  accessor level = 1;
  static accessor created = 0;
  constructor() {
    Player.created++;
  }
}

export function run(): unknown {
  const p = new Player();
  p.level += 2;
  const d = Object.getOwnPropertyDescriptor(Player.prototype, "level");
  return {
    level: p.level,
    created: Player.created,
    isAccessor: !!d && typeof d.get === "function" && typeof d.set === "function",
    ownKeys: Object.keys(p),
  };
}
