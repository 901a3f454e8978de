// Card reader, Android flavour: the Android bridge frames messages itself and reports the status byte.

export type Amount = { minor: number; currency: 'EUR' | 'USD' | 'GBP' };

export interface AndroidBridge {
  transceive(payload: string): Promise<{ status: number; body?: string }>;
}

export class AndroidReader {
  constructor(private readonly bridge: AndroidBridge) {}

  async charge(amount: Amount): Promise<'card' | 'declined'> {
    const { status } = await this.bridge.transceive(JSON.stringify(amount));
    return status === 0x90 ? 'card' : 'declined';
  }
}
