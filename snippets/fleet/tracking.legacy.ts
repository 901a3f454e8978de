// Fleet tracking for legacy app builds: no batching, one fix per upload (their native side batches).

export interface Fix {
  lat: number;
  lon: number;
}

export function describe(fix?: Fix): string {
  return fix ? fix.lat.toFixed(5) + ',' + fix.lon.toFixed(5) : 'no fix';
}

export async function upload(fix: Fix, post: (body: string) => Promise<number>): Promise<boolean> {
  const status = await post(JSON.stringify(fix));
  return status >= 200 && status < 300;
}
