// clients/js: what apps embed. The signature checks (signature.ts), the verified-bundle rules for delta and gzip
// replies (verify.ts), and the client that keeps a device's scripts current (client.ts) with its storage adapters.
export * from './signature.js';

export { createConnectorClient, ConnectorClient } from './client.js';
export type { ClientOptions, ClientEvents, UpdateEvent } from './options.js';
export { memoryStorage, localStorageAdapter } from './storage.js';
export type { Storage, WebStorageLike } from './storage.js';
export { verifyBundle, sha256Hex } from './verify.js';
export type { VerifiedBundle } from './verify.js';
export { gzipBase64, gunzipBase64, base64ToBytes, bytesToBase64 } from './encoding.js';
