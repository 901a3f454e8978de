// Thermostat: schedules set-points and converts units for display.

export enum Unit {
  Celsius = 'C',
  Fahrenheit = 'F',
}

export interface SetPoint {
  hour: number;
  celsius: number;
}

const clamp = (v: number, lo: number, hi: number): number => Math.min(hi, Math.max(lo, v));

export class Schedule {
  #points = new Map<number, SetPoint>();

  set(point: SetPoint): this {
    this.#points.set(clamp(Math.trunc(point.hour), 0, 23), { ...point, celsius: clamp(point.celsius, 5, 30) });
    return this;
  }

  at(hour: number): SetPoint | undefined {
    for (let h = hour; h >= 0; h--) {
      const p = this.#points.get(h);
      if (p) return p;
    }
    return undefined;
  }

  get size(): number {
    return this.#points.size;
  }
}

export function display(celsius: number, unit: Unit = Unit.Celsius): string {
  const value = unit === Unit.Celsius ? celsius : (celsius * 9) / 5 + 32;
  return `${value.toFixed(1)}°${unit}`;
}
