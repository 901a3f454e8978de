// Card reader: talks to a Bluetooth payment terminal through the app's bridge.

export type Amount = { minor: number; currency: 'EUR' | 'USD' | 'GBP' };

export const enum ReaderEvent {
  Connected = 'connected',
  CardPresented = 'card',
  Declined = 'declined',
}

export interface Bridge {
  write(bytes: number[]): Promise<void>;
  read(timeoutMs: number): Promise<number[] | null>;
}

export abstract class Reader {
  protected constructor(protected bridge: Bridge) {}
  abstract charge(amount: Amount): Promise<ReaderEvent>;
}

export class GenericReader extends Reader {
  static readonly TIMEOUT_MS = 30_000;

  constructor(bridge: Bridge) {
    super(bridge);
  }

  async charge({ minor, currency }: Amount): Promise<ReaderEvent> {
    await this.bridge.write(encode(minor, currency));
    const reply = await this.bridge.read(GenericReader.TIMEOUT_MS);
    return reply?.[0] === 0x90 ? ReaderEvent.CardPresented : ReaderEvent.Declined;
  }
}

export function encode(minor: number, currency: string): number[] {
  const digits = [...String(minor)].map((d) => d.charCodeAt(0));
  return [0x02, ...digits, ...[...currency].map((c) => c.charCodeAt(0)), 0x03];
}
