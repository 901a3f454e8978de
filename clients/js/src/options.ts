// The client's options and the events it emits (what an app configures and listens to; see client.ts).
import type { IClientOptions, MqttClient } from 'mqtt';
import type { PublicKey } from './signature.js';
import type { Storage } from './storage.js';

/** How the client is set up. */
export interface ClientOptions {
  /** Broker URL: `mqtt://host:1883` (Node) or `ws://host:8083/mqtt` (everywhere). */
  url: string;
  platform: string;
  /** The app's version, as the platform files match it (e.g. `3.1.0`). */
  appVersion: string;
  deviceId: string;
  /** The service's public keys (SPKI PEM or 32 raw bytes); a reply signed by no other key is accepted. */
  trustedKeys: PublicKey[];
  storage: Storage;
  /** Re-fetches after a new manifest wait a random time below this (ms). Default 30 000. */
  fetchWindowMs?: number;
  /** Failures of a new connector, before any success, that roll it back. Default 3. */
  maxFailures?: number;
  /** Reconnect backoff: first and largest delay (ms). Defaults 1 000 and 60 000. */
  reconnectMinMs?: number;
  reconnectMaxMs?: number;
  /** A request unanswered this long (ms) is given up and retried with backoff. Default 20 000. */
  requestTimeoutMs?: number;
  /** Retained manifests live on `<prefix>/<platform>/<variant>`, the revision notices the client follows on
   * `<prefix>/<platform>/<variant>/rev`. Default `connectors`. */
  manifestPrefix?: string;
  /** Storage key. Default `connector-scripts/<platform>`. */
  storageKey?: string;
  /** Extra mqtt.js options (`username`/`password`, TLS, a `clientId` other than the device id). */
  mqttOptions?: IClientOptions;
  /** The transport: defaults to mqtt.js `connect` (a hook for tests and custom stacks). */
  connect?: (url: string, options: IClientOptions) => MqttClient;
  /** Randomness for delays and ids (default Math.random). */
  random?: () => number;
}

/** A verified set of scripts ready to run. */
export interface UpdateEvent {
  revision: string;
  variant: string;
  scripts: Record<string, string>;
  /** `storage`: the last good bundle at start; `network`: a newly verified revision; `rollback`: a connector
   * was put back to its previous version. */
  source: 'storage' | 'network' | 'rollback';
  /** For `network`: the reply was a delta (only the changed connectors travelled). */
  delta: boolean;
}

/** Events the client emits. */
export interface ClientEvents {
  update: UpdateEvent;
  /** A reply or manifest failed verification; nothing changed. */
  rejected: { code: string; message: string; what: 'reply' | 'manifest' };
  /** A connector of a new revision failed `maxFailures` times and now runs its previous version. */
  rollback: { connector: string; revision: string; restoredFrom: string; error: string };
  /** Connection, request or storage trouble; the client carries on (reconnects, retries). */
  error: { message: string; during: 'connect' | 'request' | 'storage' | 'service' };
  connected: { url: string };
  disconnected: { url: string };
}
