// The app-side client (issue #25): starts from the last good verified bundle in storage, keeps one MQTT
// connection (TCP or WebSocket, reconnecting with backoff and jitter), fetches only when its variant's signed
// revision notice names a revision it has not accepted (after a random delay, so a fleet does not ask at once),
// asks for a gzipped delta, verifies every reply and notice, stores the whole verified set in one write, and rolls a failing connector back on the
// device. Network trouble never throws into the app: it arrives as events.
import mqtt from 'mqtt';
import type { IClientOptions, MqttClient } from 'mqtt';
import { fromUtf8 } from './encoding.js';
import { Emitter } from './events.js';
import { acceptManifest, Accepted, VerifyError, verifyNotice } from './signature.js';
import type { ClientEvents, ClientOptions, UpdateEvent } from './options.js';
import { Saved, load, save, held, haveOf, recordOutcome } from './saved.js';
import { after, backoff } from './timers.js';
import { sha256Hex, verifyBundle } from './verify.js';

/** The client an app holds; create it with {@link createConnectorClient}. */
export class ConnectorClient extends Emitter<ClientEvents> {
  private readonly o: Required<Omit<ClientOptions, 'mqttOptions' | 'connect' | 'storageKey'>> & ClientOptions;
  private saved: Saved | null = null;
  private accepted: Accepted | null = null;
  private mqtt: MqttClient | null = null;
  private closed = false;
  private attempt = 0;
  private rejections = 0;
  /** A verified revision a retained manifest announced while a request was out (fetched after it if still new). */
  private announced: string | null = null;
  private seq = 0;
  private pending: { id: string; cancel: () => void } | null = null;
  private cancelFetch: (() => void) | null = null;
  private cancelReconnect: (() => void) | null = null;
  private subscribedManifest: string | null = null;
  private outbox: { topic: string; payload: string }[] = [];
  private readonly key: string;

  constructor(options: ClientOptions) {
    super();
    this.o = {
      fetchWindowMs: 30_000,
      maxFailures: 3,
      reconnectMinMs: 1_000,
      reconnectMaxMs: 60_000,
      requestTimeoutMs: 20_000,
      manifestPrefix: 'connectors',
      random: Math.random,
      ...options,
    };
    this.key = options.storageKey ?? `connector-scripts/${options.platform}`;
  }

  /** The revision running now (null before any bundle). */
  get revision(): string | null {
    return this.saved?.current.revision ?? null;
  }

  /** The variant this device gets (null before any bundle). */
  get variant(): string | null {
    return this.saved?.current.variant ?? null;
  }

  /** Connector name → code to run now (a rolled-back connector has its previous code). */
  scripts(): Record<string, string> {
    return { ...(this.saved?.current.scripts ?? {}) };
  }

  /** Loads the last good bundle (an `update` from `storage`), then connects. Never rejects. */
  async start(): Promise<void> {
    try {
      this.saved = await load(this.o.storage, this.key, this.o.trustedKeys);
    } catch (e) {
      this.emit('error', { message: `stored bundle unusable: ${String(e)}`, during: 'storage' });
    }
    if (this.saved) {
      this.accepted = { revision: this.saved.current.revision, signedAt: this.saved.current.signedAt };
      this.emitUpdate('storage', false);
    }
    this.connect();
  }

  /** Stops: no reconnects, no fetches. */
  close(): void {
    this.closed = true;
    this.cancelFetch?.();
    this.cancelReconnect?.();
    this.pending?.cancel();
    this.mqtt?.end(true);
    this.mqtt = null;
  }

  /**
   * Reports a connector's outcome on `connectorsReport/<deviceId>`. A connector of a new revision that fails
   * `maxFailures` times before it ever succeeded is rolled back to its previous verified version (and reported).
   */
  report(connector: string, ok: boolean, error?: string): void {
    const s = this.saved;
    if (!s) return;
    this.publishReport(s.current.revision, connector, ok, error);
    const outcome = recordOutcome(s, connector, ok, this.o.maxFailures);
    if (outcome === 'rolled-back') {
      const why = `rolled back to revision ${s.previous?.revision} after ${this.o.maxFailures} failures: ${error ?? 'failed'}`;
      this.publishReport(s.current.revision, connector, false, why);
      this.emit('rollback', { connector, revision: s.current.revision, restoredFrom: String(s.previous?.revision), error: why });
      this.emitUpdate('rollback', false);
    }
    if (outcome !== 'unchanged') void this.persist(s);
  }

  private emitUpdate(source: UpdateEvent['source'], delta: boolean): void {
    const c = this.saved?.current;
    if (c) this.emit('update', { revision: c.revision, variant: c.variant, scripts: { ...c.scripts }, source, delta });
  }

  private async persist(s: Saved): Promise<boolean> {
    try {
      await save(this.o.storage, this.key, s);
      return true;
    } catch (e) {
      this.emit('error', { message: `storage write failed: ${String(e)}`, during: 'storage' });
      return false;
    }
  }

  private get replyTopic(): string {
    return `getConnectors/${this.o.deviceId}/reply`;
  }

  private connect(): void {
    if (this.closed) return;
    // The device id is the client id: brokers with accounts per device (ACL patterns on %c, the embedded broker's
    // --embedded-users) expect it; `mqttOptions.clientId` overrides.
    const clientId = this.o.deviceId;
    const options: IClientOptions = {
      clientId,
      clean: true,
      keepalive: 30,
      protocolVersion: 4,
      connectTimeout: 10_000,
      ...this.o.mqttOptions,
      reconnectPeriod: 0,
    };
    let client: MqttClient;
    try {
      client = (this.o.connect ?? mqtt.connect)(this.o.url, options);
    } catch (e) {
      this.emit('error', { message: String(e), during: 'connect' });
      this.scheduleReconnect();
      return;
    }
    this.mqtt = client;
    let up = false;
    client.on('connect', () => {
      if (this.mqtt !== client) return;
      up = true;
      this.attempt = 0;
      this.subscribedManifest = null;
      client.subscribe(this.replyTopic, { qos: 1 });
      this.subscribeManifest();
      for (const m of this.outbox.splice(0)) client.publish(m.topic, m.payload, { qos: 0 });
      this.emit('connected', { url: this.o.url });
      // Nothing stored, or stored by another app version (which may map to another variant): ask at once.
      if (!this.saved || this.saved.appVersion !== this.o.appVersion) this.fetch();
    });
    client.on('message', (topic: string, payload: Uint8Array) => {
      if (this.mqtt === client) this.onMessage(topic, payload);
    });
    let failed = false;
    client.on('error', (e: Error) => {
      failed = true;
      this.emit('error', { message: String(e && e.message), during: 'connect' });
    });
    client.on('close', () => {
      if (this.mqtt !== client) return;
      this.mqtt = null;
      this.pending?.cancel();
      this.pending = null;
      client.end(true);
      if (up) this.emit('disconnected', { url: this.o.url });
      // A broker that refuses a login may just close the socket, without a CONNACK code: still an error to report.
      else if (!failed) this.emit('error', { message: 'the broker closed the connection before accepting it', during: 'connect' });
      this.scheduleReconnect();
    });
  }

  private scheduleReconnect(): void {
    if (this.closed) return;
    this.cancelReconnect?.();
    const delay = backoff(this.attempt++, this.o.reconnectMinMs, this.o.reconnectMaxMs, this.o.random);
    this.cancelReconnect = after(delay, () => this.connect());
  }

  private subscribeManifest(): void {
    const variant = this.variant;
    if (!this.mqtt || !variant) return;
    // The variant's revision notice, not its full retained manifest: what changed arrives in the reply.
    const topic = `${this.o.manifestPrefix}/${this.o.platform}/${variant}/rev`;
    if (this.subscribedManifest === topic) return;
    if (this.subscribedManifest) this.mqtt.unsubscribe(this.subscribedManifest);
    this.subscribedManifest = topic;
    this.mqtt.subscribe(topic, { qos: 1 });
  }

  private onMessage(topic: string, payload: Uint8Array): void {
    let doc: Record<string, unknown>;
    try {
      doc = JSON.parse(fromUtf8(payload)) as Record<string, unknown>;
    } catch {
      return;
    }
    if (topic === this.replyTopic) void this.onReply(doc);
    else if (topic === this.subscribedManifest) this.onManifest(doc);
  }

  private onManifest(doc: Record<string, unknown>): void {
    if (typeof doc.revision !== 'string' || doc.revision === this.revision) return;
    try {
      // The revision notice: ~300 bytes per save instead of the full retained manifest (the reply brings that).
      acceptManifest(this.accepted, verifyNotice(doc, this.o.trustedKeys));
    } catch (e) {
      this.reject('manifest', e);
      return;
    }
    if (this.pending) this.announced = doc.revision;
    else this.fetchSpread();
  }

  /** Fetches after a random delay within the window (herd spreading), unless a fetch is already planned. */
  private fetchSpread(): void {
    if (this.cancelFetch) return;
    this.cancelFetch = after(this.o.random() * this.o.fetchWindowMs, () => {
      this.cancelFetch = null;
      this.fetch();
    });
  }

  /** After a request: a revision announced meanwhile that the reply did not bring is fetched too. */
  private followAnnounced(): void {
    const announced = this.announced;
    this.announced = null;
    if (announced && announced !== this.revision) this.fetchSpread();
  }

  private fetch(): void {
    if (!this.mqtt || this.pending || this.closed) return;
    const id = `${this.o.deviceId}-${++this.seq}-${Math.floor(this.o.random() * 1e9).toString(36)}`;
    const data: Record<string, unknown> = { platform: this.o.platform, version: this.o.appVersion, accept: ['gzip'] };
    if (this.saved) {
      data.revision = this.saved.current.revision;
      data.have = haveOf(this.saved.current.scripts, sha256Hex);
    }
    const cancel = after(this.o.requestTimeoutMs, () => {
      this.pending = null;
      this.emit('error', { message: `no reply in ${this.o.requestTimeoutMs} ms`, during: 'request' });
      this.retryLater(this.attempt);
    });
    this.pending = { id, cancel };
    this.mqtt.publish(`getConnectors/${this.o.deviceId}`, JSON.stringify({ pattern: 'getConnectors', data, id }), { qos: 1 });
  }

  /** The held bundle is current for this app version too: remember it, so a restart does not ask again. */
  private noteAppVersion(): void {
    if (this.saved && this.saved.appVersion !== this.o.appVersion) {
      this.saved.appVersion = this.o.appVersion;
      void this.persist(this.saved);
    }
  }

  private retryLater(attempt: number): void {
    this.cancelFetch?.();
    this.cancelFetch = after(backoff(attempt, this.o.reconnectMinMs, this.o.reconnectMaxMs, this.o.random), () => {
      this.cancelFetch = null;
      this.fetch();
    });
  }

  private async onReply(envelope: Record<string, unknown>): Promise<void> {
    if (!this.pending || envelope.id !== this.pending.id) return;
    this.pending.cancel();
    this.pending = null;
    const err = envelope.err as { code?: string; message?: string } | undefined;
    if (err) {
      this.emit('error', { message: `${err.code}: ${err.message}`, during: 'service' });
      return;
    }
    const body = (envelope.response ?? {}) as Record<string, unknown>;
    if (body.notModified === true) {
      this.noteAppVersion();
      this.followAnnounced();
      return;
    }
    let next: Saved;
    try {
      const v = verifyBundle(body, this.o.trustedKeys, this.saved?.current.scripts ?? {});
      // The replay rule holds per variant: after an app update to another variant there is nothing to compare.
      const sameVariant = this.saved?.current.variant === v.variant;
      const accepted = acceptManifest(sameVariant ? this.accepted : null, v.manifest);
      if (v.revision === this.revision) {
        this.noteAppVersion();
        this.followAnnounced();
        return;
      }
      const appVersion = this.o.appVersion;
      next = { appVersion, current: held(v, body), previous: this.saved?.current ?? null, failures: {}, succeeded: [] };
      if (!(await this.persist(next))) return;
      this.accepted = accepted;
    } catch (e) {
      this.reject('reply', e);
      // A forged or damaged reply may be a one-off: ask again later, backing off while replies keep failing.
      this.retryLater(this.rejections++);
      return;
    }
    this.rejections = 0;
    this.saved = next;
    this.subscribeManifest();
    this.emitUpdate('network', body.delta === true);
    this.followAnnounced();
  }

  private reject(what: 'reply' | 'manifest', e: unknown): void {
    const code = e instanceof VerifyError ? e.code : 'bad-manifest';
    this.emit('rejected', { code, message: String(e instanceof Error ? e.message : e), what });
  }

  private publishReport(revision: string, connector: string, ok: boolean, error?: string): void {
    const data: Record<string, unknown> = { platform: this.o.platform, version: this.o.appVersion, revision, connector, ok };
    if (error !== undefined) data.error = error;
    const m = { topic: `connectorsReport/${this.o.deviceId}`, payload: JSON.stringify({ pattern: 'connectorsReport', data }) };
    if (this.mqtt?.connected) this.mqtt.publish(m.topic, m.payload, { qos: 0 });
    else if (this.outbox.length < 100) this.outbox.push(m);
  }
}

/** Creates a client; call `start()` (it loads storage, then connects). */
export function createConnectorClient(options: ClientOptions): ConnectorClient {
  return new ConnectorClient(options);
}
