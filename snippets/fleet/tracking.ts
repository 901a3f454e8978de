// Fleet tracking: batches GPS fixes and uploads them; retries with backoff.

export interface Fix {
  lat: number;
  lon: number;
  accuracy?: number;
  at: number;
}

export enum UploadState {
  Idle,
  Uploading,
  Failed = 'failed',
}

type Sender<T> = (batch: readonly T[]) => Promise<{ accepted: number }>;

export class Batcher<T> {
  private queue: T[] = [];
  state: UploadState = UploadState.Idle;

  constructor(private readonly send: Sender<T>, private readonly maxBatch = 50) {}

  push(item: T): number {
    this.queue.push(item);
    return this.queue.length;
  }

  async flush(retries = 3): Promise<number> {
    if (this.queue.length === 0) return 0;
    const batch = this.queue.splice(0, this.maxBatch);
    this.state = UploadState.Uploading;
    for (let attempt = 0; attempt <= retries; attempt++) {
      try {
        const result = await this.send(batch);
        this.state = UploadState.Idle;
        return result?.accepted ?? 0;
      } catch (e) {
        await delay(2 ** attempt * 100);
      }
    }
    this.state = UploadState.Failed;
    this.queue.unshift(...batch);
    return 0;
  }
}

export function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

export function describe(fix: Fix | undefined): string {
  const acc = fix?.accuracy?.toFixed(1) ?? 'unknown';
  return fix ? `${fix.lat.toFixed(5)},${fix.lon.toFixed(5)} ±${acc}m` : 'no fix';
}
