// Geofence (experimental): only modern app builds get it.

export interface Circle {
  lat: number;
  lon: number;
  radiusM: number;
}

const EARTH_M = 6_371_000;

export function distanceM(a: { lat: number; lon: number }, b: { lat: number; lon: number }): number {
  const rad = (d: number) => (d * Math.PI) / 180;
  const dLat = rad(b.lat - a.lat);
  const dLon = rad(b.lon - a.lon);
  const h = Math.sin(dLat / 2) ** 2 + Math.cos(rad(a.lat)) * Math.cos(rad(b.lat)) * Math.sin(dLon / 2) ** 2;
  return 2 * EARTH_M * Math.asin(Math.sqrt(h));
}

export const inside = (p: { lat: number; lon: number }, c: Circle): boolean => distanceM(p, c) <= c.radiusM;
