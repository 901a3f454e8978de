//! Owns the MQTT 5 connection (rumqttc): connect, subscribe, hand requests to the reply worker, publish replies,
//! reconnect with backoff, drain on shutdown.
//!
//! The task that polls the event loop never awaits handler work: it hands each publish to the reply worker over a
//! bounded channel (`try_send`; when the worker is that far behind, the request is dropped and counted). The
//! worker builds the reply and awaits `publish`, which the poll task keeps draining.

use crate::announce::{self, Topics};
use crate::config::{BrokerUrl, Credentials, Scheme};
use crate::service::{Incoming, Service};
use rumqttc::v5::mqttbytes::v5::{Filter, LastWill, Packet, Publish, PublishProperties, SubscribeReasonCode};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, ConnectionError, Event, EventLoop, MqttOptions};
use rumqttc::{NetworkOptions, Outgoing, TlsConfiguration, Transport};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

/// TLS settings for `mqtts://`.
#[derive(Debug, Clone, Default)]
pub struct TlsFiles {
    /// PEM file of the CA(s) to trust; the system roots when absent.
    pub ca: Option<PathBuf>,
    /// PEM client certificate chain and private key, for brokers that require client certificates.
    pub client: Option<(PathBuf, PathBuf)>,
}

/// Everything the transport needs.
#[derive(Debug, Clone)]
pub struct TransportConfig {
    /// The broker.
    pub broker: BrokerUrl,
    /// TLS files (used with `mqtts://`).
    pub tls: TlsFiles,
    /// MQTT client id.
    pub client_id: String,
    /// Username and password.
    pub credentials: Option<Credentials>,
    /// Keep-alive interval.
    pub keep_alive: Duration,
    /// Largest packet accepted from the broker.
    pub max_packet_size: u32,
    /// The request topic (`getConnectors`); `<topic>/+` is subscribed too.
    pub request_topic: String,
    /// Subscribe through `$share/<group>/…` so several instances split the load.
    pub share_group: Option<String>,
    /// QoS of the request subscription.
    pub qos_in: QoS,
    /// QoS of replies; `None` = the request's QoS.
    pub qos_out: Option<QoS>,
    /// First reconnect delay.
    pub backoff_min: Duration,
    /// Longest reconnect delay.
    pub backoff_max: Duration,
    /// How long shutdown may take to flush replies in flight.
    pub drain_timeout: Duration,
    /// Manifest and event topics.
    pub topics: Topics,
    /// Liveness on the bus: retained online/offline status and the Last Will.
    pub status: Option<StatusMessages>,
    /// Send systemd watchdog keep-alives from the poll loop at this interval.
    pub watchdog: Option<Duration>,
    /// Persistent session with this expiry; requests are then acknowledged only after their reply is published.
    pub session_expiry: Option<Duration>,
}

/// The retained liveness messages on `<prefix>/<instance>`.
#[derive(Debug, Clone)]
pub struct StatusMessages {
    /// The status topic.
    pub topic: String,
    /// Published (retained) on every connection.
    pub online: Vec<u8>,
    /// The Last Will (retained), and what a clean shutdown publishes.
    pub offline: Vec<u8>,
}

impl StatusMessages {
    /// `{"state":…, "instance", "version", "startedAt"}` on `<prefix>/<instance>`.
    pub fn new(prefix: &str, instance: &str, started_at: std::time::SystemTime) -> StatusMessages {
        let body = |state: &str| {
            serde_json::json!({
                "state": state,
                "instance": instance,
                "version": env!("CARGO_PKG_VERSION"),
                "startedAt": humantime::format_rfc3339_millis(started_at).to_string(),
            })
            .to_string()
            .into_bytes()
        };
        StatusMessages { topic: format!("{prefix}/{instance}"), online: body("online"), offline: body("offline") }
    }
}

/// Connection state, for readiness and diagnostics.
#[derive(Debug)]
pub struct Link {
    /// Connected to the broker (CONNACK received).
    pub connected: AtomicBool,
    /// Request subscriptions confirmed (SUBACK) on the current connection.
    pub subscribed: AtomicBool,
    /// Connection losses since start.
    pub reconnects: AtomicU64,
    /// Requests dropped because the reply worker was saturated.
    pub overloaded: AtomicU64,
    /// The last connection error, for health output.
    pub last_error: Mutex<Option<String>>,
    ready: watch::Sender<bool>,
}

impl Default for Link {
    fn default() -> Self {
        Link {
            connected: AtomicBool::new(false),
            subscribed: AtomicBool::new(false),
            reconnects: AtomicU64::new(0),
            overloaded: AtomicU64::new(0),
            last_error: Mutex::new(None),
            ready: watch::channel(false).0,
        }
    }
}

impl Link {
    /// Resolves once connected and subscribed (now or later).
    pub async fn wait_subscribed(&self) {
        let mut rx = self.ready.subscribe();
        let _ = rx.wait_for(|ready| *ready).await;
    }

    /// A watch of "connected and subscribed".
    pub fn watch(&self) -> watch::Receiver<bool> {
        self.ready.subscribe()
    }

    fn set_subscribed(&self, v: bool) {
        self.subscribed.store(v, Ordering::Relaxed);
        self.ready.send_replace(v);
    }

    fn set_error(&self, e: String) {
        if let Ok(mut last) = self.last_error.lock() {
            *last = Some(e);
        }
    }
}

/// Why the transport cannot even start.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// TLS files unreadable or invalid.
    #[error("TLS setup: {0}")]
    Tls(String),
}

/// rumqttc options for the service connection.
pub fn mqtt_options(cfg: &TransportConfig) -> Result<MqttOptions, TransportError> {
    let mut opts = MqttOptions::new(&cfg.client_id, &cfg.broker.host, cfg.broker.port);
    opts.set_keep_alive(cfg.keep_alive.max(Duration::from_secs(5)));
    opts.set_max_packet_size(Some(cfg.max_packet_size));
    match cfg.session_expiry {
        Some(expiry) => {
            opts.set_clean_start(false);
            opts.set_session_expiry_interval(Some(expiry.as_secs().min(u32::MAX as u64) as u32));
        }
        None => {
            opts.set_clean_start(true);
        }
    }
    // Requests are acknowledged by the reply worker once answered, in arrival order, and a broker that keeps to
    // RECEIVE_MAXIMUM has at most that many unacknowledged QoS 1/2 requests out to us: the backpressure that keeps
    // the worker's queue (larger than that) from overflowing under a flood. QoS 0 requests have no such brake, and
    // Mosquitto 2.0.11 overruns it (docs/scaling.md): past the queue, requests are shed and counted.
    opts.set_manual_acks(true);
    opts.set_receive_maximum(Some(RECEIVE_MAXIMUM));
    // rumqttc preallocates one `Option<Publish>` slot per possible in-flight QoS 1 reply: left unset that is
    // 65 536 slots, 14 MB resident from the first byte (docs/PERFORMANCE.md, RSS). QoS 1 replies beyond the
    // limit wait in the request channel until the broker acknowledges earlier ones.
    opts.set_outgoing_inflight_upper_limit(OUTGOING_INFLIGHT);
    opts.set_request_channel_capacity(1024);
    if let Some(c) = &cfg.credentials {
        opts.set_credentials(&c.username, c.password.expose());
    }
    let mut net = NetworkOptions::new();
    // Replies carry whole scripts: without NODELAY a 15 KB reply waits ~40 ms for Nagle + delayed ACK.
    net.set_tcp_nodelay(true);
    net.set_connection_timeout(10);
    opts.set_network_options(net);
    if cfg.broker.scheme == Scheme::Mqtts {
        opts.set_transport(Transport::tls_with_config(tls_config(&cfg.tls)?));
    }
    if let Some(status) = &cfg.status {
        opts.set_last_will(LastWill::new(&status.topic, status.offline.clone(), QoS::AtLeastOnce, true, None));
    }
    Ok(opts)
}

/// A rustls client configuration (ring provider) from the CA file or the system roots.
pub fn tls_config(files: &TlsFiles) -> Result<TlsConfiguration, TransportError> {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let err = |m: String| TransportError::Tls(m);
    let read_certs = |path: &PathBuf| -> Result<Vec<CertificateDer<'static>>, TransportError> {
        let pem = std::fs::read(path).map_err(|e| err(format!("cannot read {}: {e}", path.display())))?;
        let certs: Result<Vec<_>, _> = rustls_pemfile::certs(&mut pem.as_slice()).collect();
        let certs = certs.map_err(|e| err(format!("{}: not a PEM certificate file: {e}", path.display())))?;
        if certs.is_empty() {
            return Err(err(format!("{}: no certificate found", path.display())));
        }
        Ok(certs)
    };
    let mut roots = rustls::RootCertStore::empty();
    match &files.ca {
        Some(ca) => {
            for cert in read_certs(ca)? {
                roots.add(cert).map_err(|e| err(format!("{}: {e}", ca.display())))?;
            }
        }
        None => {
            let native = rustls_native_certs::load_native_certs();
            for cert in native.certs {
                let _ = roots.add(cert);
            }
            if roots.is_empty() {
                return Err(err("no system CA certificates found; pass --tls-ca FILE".into()));
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| err(e.to_string()))?
        .with_root_certificates(roots);
    let config = match &files.client {
        Some((cert, key)) => {
            let chain = read_certs(cert)?;
            let pem = std::fs::read(key).map_err(|e| err(format!("cannot read {}: {e}", key.display())))?;
            let key_der: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut pem.as_slice())
                .map_err(|e| err(format!("{}: {e}", key.display())))?
                .ok_or_else(|| err(format!("{}: no private key found", key.display())))?;
            builder.with_client_auth_cert(chain, key_der).map_err(|e| err(e.to_string()))?
        }
        None => builder.with_no_client_auth(),
    };
    Ok(TlsConfiguration::Rustls(Arc::new(config)))
}

/// The subscription filters: `topic` and `topic/+` (shared when a group is set), and the manifests (never shared:
/// every instance reconciles them).
pub fn filters(cfg: &TransportConfig) -> Vec<Filter> {
    let mut manifests = Filter::new(cfg.topics.manifest_filter(), QoS::AtLeastOnce);
    manifests.nolocal = true;
    [cfg.request_topic.clone(), format!("{}/+", cfg.request_topic)]
        .into_iter()
        .map(|t| {
            let path = match &cfg.share_group {
                Some(g) => format!("$share/{g}/{t}"),
                None => t,
            };
            let mut f = Filter::new(path, cfg.qos_in);
            // Our own replies to `topic/reply` would match `topic/+`. No Local is a protocol error on shared
            // subscriptions, where the `reply` segment is filtered instead.
            f.nolocal = cfg.share_group.is_none();
            f
        })
        .chain([manifests])
        .collect()
}

/// Most unacknowledged requests the broker may send us at once.
const RECEIVE_MAXIMUM: u16 = 1024;
/// Most QoS 1 replies (and status messages) we keep unacknowledged by the broker at once.
const OUTGOING_INFLIGHT: u16 = 1024;
/// Capacity of the reply worker's queue: above RECEIVE_MAXIMUM, so acknowledged traffic from a broker that keeps
/// to it never overflows it.
const WORKER_QUEUE: usize = 4096;

/// A request handed from the poll task to the reply worker.
struct Job {
    publish: Publish,
    received: std::time::Instant,
}

/// Runs the connection until `cancel` fires, then drains replies in flight and disconnects.
pub async fn run(
    cfg: TransportConfig,
    service: Arc<Service>,
    link: Arc<Link>,
    cancel: CancellationToken,
) -> Result<(), TransportError> {
    let opts = mqtt_options(&cfg)?;
    let (client, mut eventloop) = AsyncClient::new(opts, 1024);
    let (tx, rx) = mpsc::channel::<Job>(WORKER_QUEUE);
    let progress = Arc::new(AtomicU64::new(0));
    let (retained_tx, retained_rx) = mpsc::channel::<String>(1024);
    let worker = tokio::spawn(reply_worker(
        client.clone(),
        service.clone(),
        rx,
        cfg.qos_out,
        (cfg.topics.clone(), retained_tx),
        progress.clone(),
    ));
    let mut watchdog = WatchdogCheck::new(cfg.watchdog, progress);
    let announcer = tokio::spawn(announce::run(
        client.clone(),
        service.clone(),
        cfg.topics.clone(),
        link.watch(),
        retained_rx,
        cancel.clone(),
    ));
    let filters = filters(&cfg);
    let mut backoff = Backoff::new(cfg.backoff_min, cfg.backoff_max);
    tracing::info!(broker = %cfg.broker, client_id = %cfg.client_id, "connecting to MQTT broker");
    loop {
        let event = tokio::select! {
            _ = cancel.cancelled() => break,
            _ = watchdog.tick() => {
                // Sent from the loop that serves: if it hangs, the keep-alives stop and systemd restarts us.
                if watchdog.worker_healthy(tx.max_capacity() - tx.capacity()) {
                    crate::ops::systemd::watchdog();
                }
                continue;
            }
            event = eventloop.poll() => event,
        };
        match event {
            Ok(Event::Incoming(Packet::Publish(p))) => {
                let received = std::time::Instant::now();
                if p.qos == QoS::AtMostOnce && !cfg.topics.is_manifest(&String::from_utf8_lossy(&p.topic)) {
                    // Nothing to acknowledge, so no order to keep: answered here, without a hop to the worker
                    // (NestJS clients publish at QoS 0). A full request channel sheds it, like a full queue.
                    if !answer_now(&client, &service, &p, cfg.qos_out, received) {
                        link.overloaded.fetch_add(1, Ordering::Relaxed);
                    }
                    continue;
                }
                let job = Job { publish: p, received };
                if tx.try_send(job).is_err() {
                    // QoS 0 floods, and QoS 1 floods when RECEIVE_MAXIMUM is overrun (Mosquitto 2.0.11 overruns it
                    // while we publish replies: docs/scaling.md). Shed and counted, never acknowledged: a
                    // persistent session gets a QoS 1 request back after a reconnect; other clients retry.
                    link.overloaded.fetch_add(1, Ordering::Relaxed);
                }
            }
            Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                link.connected.store(true, Ordering::Relaxed);
                backoff.reset();
                tracing::info!(broker = %cfg.broker, session_present = ack.session_present, "connected");
                if let Some(status) = &cfg.status {
                    let _ = client.try_publish(&status.topic, QoS::AtLeastOnce, true, status.online.clone());
                }
                if !ack.session_present || !link.subscribed.load(Ordering::Relaxed) {
                    if let Err(e) = client.try_subscribe_many(filters.clone()) {
                        tracing::error!(error = %e, "cannot queue subscription");
                    }
                }
            }
            Ok(Event::Incoming(Packet::SubAck(ack))) => {
                let refused: Vec<String> = ack
                    .return_codes
                    .iter()
                    .zip(&filters)
                    .filter(|(code, _)| !matches!(code, SubscribeReasonCode::Success(_)))
                    .map(|(code, f)| format!("{} ({code:?})", f.path))
                    .collect();
                if refused.is_empty() {
                    link.set_subscribed(true);
                    tracing::info!(topics = ?filters.iter().map(|f| f.path.as_str()).collect::<Vec<_>>(), "subscribed");
                } else {
                    let msg = format!("broker refused subscription to {}", refused.join(", "));
                    tracing::error!("{msg}");
                    link.set_error(msg);
                }
            }
            Ok(Event::Incoming(Packet::Disconnect(d))) => {
                tracing::warn!(reason = ?d.reason_code, "broker sent DISCONNECT");
            }
            Ok(_) => {}
            Err(e) => {
                let was_connected = link.connected.swap(false, Ordering::Relaxed);
                link.set_subscribed(false);
                if was_connected {
                    link.reconnects.fetch_add(1, Ordering::Relaxed);
                }
                let msg = describe(&e, &cfg.broker);
                let delay = backoff.next_delay();
                tracing::warn!(error = %msg, retry_in_ms = delay.as_millis() as u64, "MQTT connection failed");
                link.set_error(msg);
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
    // Drain: no new requests; let the worker finish, keep polling so its publishes go out; then disconnect.
    drop(tx);
    announcer.abort();
    let offline = cfg.status.as_ref().map(|s| (s.topic.clone(), s.offline.clone()));
    let drained = drain(&client, &mut eventloop, worker, offline, cfg.drain_timeout).await;
    link.connected.store(false, Ordering::Relaxed);
    link.set_subscribed(false);
    if !drained {
        tracing::warn!("shutdown deadline reached before every reply was flushed");
    }
    Ok(())
}

async fn drain(
    client: &AsyncClient,
    eventloop: &mut EventLoop,
    mut worker: tokio::task::JoinHandle<()>,
    offline: Option<(String, Vec<u8>)>,
    timeout: Duration,
) -> bool {
    let deadline = tokio::time::sleep(timeout);
    tokio::pin!(deadline);
    let mut worker_done = false;
    let mut disconnect_sent = false;
    loop {
        tokio::select! {
            _ = &mut deadline => return false,
            _ = &mut worker, if !worker_done => {
                worker_done = true;
                // A clean DISCONNECT suppresses the Last Will: say offline ourselves, then leave.
                if let Some((topic, payload)) = &offline {
                    let _ = client.try_publish(topic, QoS::AtLeastOnce, true, payload.clone());
                }
                if client.try_disconnect().is_err() {
                    return true;
                }
            }
            event = eventloop.poll() => match event {
                // Keep reading until the broker closes: closing our end with unread input makes the kernel
                // reset the connection, which can discard replies still in the send buffer.
                Ok(Event::Outgoing(Outgoing::Disconnect)) => disconnect_sent = true,
                Ok(_) => {}
                Err(_) => return worker_done && disconnect_sent,
            }
        }
    }
}

/// Answers QoS 1/2 requests (QoS 0 ones are answered on the poll task) in arrival order, and acknowledges each
/// after its reply has been handed to the client
/// (replies and acks leave in that order; acks stay in arrival order, which rumqttd insists on). A crash before
/// that means redelivery with a persistent session. Retained manifests seen on the bus go to the announcer.
async fn reply_worker(
    client: AsyncClient,
    service: Arc<Service>,
    mut rx: mpsc::Receiver<Job>,
    qos_out: Option<QoS>,
    (topics, retained): (Topics, mpsc::Sender<String>),
    progress: Arc<AtomicU64>,
) {
    while let Some(job) = rx.recv().await {
        progress.fetch_add(1, Ordering::Relaxed);
        let p = &job.publish;
        let topic = String::from_utf8_lossy(&p.topic);
        if topics.is_manifest(&topic) {
            if p.retain && !p.payload.is_empty() {
                let _ = retained.try_send(topic.into_owned());
            }
        } else {
            service.stats.received.fetch_add(1, Ordering::Relaxed);
            if let Some((topic, qos, payload, props)) = reply_for(&service, p, qos_out) {
                let result = client.publish_with_properties(topic, qos, false, payload, props).await;
                service.metrics.latency.observe(job.received.elapsed().as_secs_f64());
                if let Err(e) = result {
                    tracing::warn!(error = %e, "reply not queued: the connection is closing");
                }
            }
        }
        let _ = client.ack(&job.publish).await;
    }
}

/// Answers a QoS 0 request on the poll task; false when the reply could not be queued (request channel full).
fn answer_now(
    client: &AsyncClient,
    service: &Service,
    p: &Publish,
    qos_out: Option<QoS>,
    received: std::time::Instant,
) -> bool {
    service.stats.received.fetch_add(1, Ordering::Relaxed);
    let Some((topic, qos, payload, props)) = reply_for(service, p, qos_out) else { return true };
    let queued = client.try_publish_with_properties(topic, qos, false, payload, props).is_ok();
    service.metrics.latency.observe(received.elapsed().as_secs_f64());
    queued
}

/// What to publish in answer to one request: topic, QoS, payload, properties (the MQTT 5 correlation data).
fn reply_for(
    service: &Service,
    p: &Publish,
    qos_out: Option<QoS>,
) -> Option<(String, QoS, Vec<u8>, PublishProperties)> {
    let topic = std::str::from_utf8(&p.topic).ok()?;
    let props = p.properties.as_ref();
    let incoming = Incoming {
        topic,
        payload: &p.payload,
        response_topic: props.and_then(|p| p.response_topic.as_deref()),
        correlation_data: props.and_then(|p| p.correlation_data.clone()),
    };
    let reply = service.handle(incoming)?;
    let props = PublishProperties { correlation_data: reply.correlation_data, ..Default::default() };
    Some((reply.topic, qos_out.unwrap_or(p.qos), reply.payload, props))
}

/// Decides whether the serving path is healthy enough to send a watchdog keep-alive.
struct WatchdogCheck {
    interval: Option<tokio::time::Interval>,
    progress: Arc<AtomicU64>,
    last_progress: u64,
}

impl WatchdogCheck {
    fn new(every: Option<Duration>, progress: Arc<AtomicU64>) -> WatchdogCheck {
        let interval = every.map(|d| {
            let mut i = tokio::time::interval(d);
            i.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            i
        });
        WatchdogCheck { interval, progress, last_progress: 0 }
    }

    /// Resolves at the next keep-alive time; never when the watchdog is off.
    async fn tick(&mut self) {
        match &mut self.interval {
            Some(i) => {
                i.tick().await;
            }
            None => std::future::pending().await,
        }
    }

    /// The reply worker is healthy when nothing waits for it or it made progress since the last tick.
    fn worker_healthy(&mut self, queued: usize) -> bool {
        let now = self.progress.load(Ordering::Relaxed);
        let healthy = queued == 0 || now != self.last_progress;
        self.last_progress = now;
        healthy
    }
}

/// A connection error in words an operator can act on.
pub fn describe(e: &ConnectionError, broker: &BrokerUrl) -> String {
    match e {
        ConnectionError::ConnectionRefused(code) => {
            format!("broker {broker} refused the connection: {code:?} (check the username/password and the broker ACL)")
        }
        ConnectionError::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
            format!("nothing listens on {broker} (connection refused)")
        }
        ConnectionError::Tls(t) => format!("TLS handshake with {broker} failed: {t}"),
        other => match tls_alert(other) {
            // TLS 1.3 completes the client's side of the handshake first: a refused client certificate arrives as
            // an alert on the first read, buried in rumqttc's decoding error.
            Some(rustls::AlertDescription::CertificateRequired) => {
                format!("broker {broker} requires a client certificate: pass --tls-cert and --tls-key")
            }
            Some(alert) => format!(
                "broker {broker} ended TLS with alert {alert:?}: if it requires client certificates, --tls-cert must \
                 be signed by a CA in its cafile"
            ),
            None => format!("{broker}: {other}"),
        },
    }
}

/// The TLS alert the broker sent, when that is what ended the connection.
fn tls_alert(e: &ConnectionError) -> Option<rustls::AlertDescription> {
    use rumqttc::v5::{mqttbytes::Error as Mqtt, StateError};
    let io = match e {
        ConnectionError::Io(io) => io,
        ConnectionError::MqttState(StateError::Io(io)) => io,
        ConnectionError::MqttState(StateError::Deserialization(Mqtt::Io(io))) => io,
        _ => return None,
    };
    match io.get_ref()?.downcast_ref::<rustls::Error>()? {
        rustls::Error::AlertReceived(alert) => Some(*alert),
        _ => None,
    }
}

/// Exponential backoff with jitter.
#[derive(Debug)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    current: Duration,
    seed: u64,
}

impl Backoff {
    /// Starts at `min`, doubles up to `max`.
    pub fn new(min: Duration, max: Duration) -> Backoff {
        let seed =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64) | 1;
        Backoff { min, max: max.max(min), current: min, seed }
    }

    /// Back to the first delay (after a successful connection).
    pub fn reset(&mut self) {
        self.current = self.min;
    }

    /// The next delay: the current step with ±25 % jitter; the step doubles.
    pub fn next_delay(&mut self) -> Duration {
        // xorshift: spreading reconnects of many instances needs no cryptographic randomness.
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        let jitter = 0.75 + (self.seed % 1000) as f64 / 2000.0;
        let delay = self.current.mul_f64(jitter).min(self.max);
        self.current = (self.current * 2).min(self.max);
        delay
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_and_caps() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        let delays: Vec<Duration> = (0..8).map(|_| b.next_delay()).collect();
        assert!(delays[0] >= Duration::from_millis(75) && delays[0] <= Duration::from_millis(125), "{delays:?}");
        assert!(delays[3] >= Duration::from_millis(600), "{delays:?}");
        assert!(delays.iter().all(|d| *d <= Duration::from_secs(2)), "{delays:?}");
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(125));
    }
}
