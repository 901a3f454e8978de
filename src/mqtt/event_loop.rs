//! The one task that polls rumqttc's event loop: connect, subscribe, dispatch, reconnect with backoff, drain.
//!
//! The poll task never awaits handler work. QoS 0 requests (what NestJS clients send) have nothing to
//! acknowledge, so they are answered right here once a catalog is loaded ([`replies::answer_inline`], a measured
//! speed-up); everything else goes to the reply worker over a bounded channel (`try_send`; when the worker is that
//! far behind, the request is shed and counted). The worker awaits `publish`, which this task keeps draining.

use super::announce::{self, Liveness};
use super::connection::{close_after, describe, filters, mqtt_options, Backoff, Unsent, REQUEST_CHANNEL};
use super::replies::{self, Job, Pending};
use super::tls::TlsError;
use super::{releases, reply_link};
use crate::config::{BrokerList, MqttConfig};
use crate::ops::systemd::{self, WatchdogCheck};
use crate::state::State;
use rumqttc::v5::mqttbytes::v5::{ConnAck, Filter, Packet, Publish, SubAck, SubscribeReasonCode};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, ConnectionError, Event, EventLoop, MqttOptions};
use tokio::task::JoinHandle;

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Capacity of the reply worker's queue: above the receive maximum, so acknowledged traffic from a broker that
/// keeps to it never overflows it.
const WORKER_QUEUE: usize = 4096;

/// Where this connection goes and what it says about itself.
#[derive(Debug, Clone)]
pub struct Session {
    /// The broker nodes (the embedded broker's MQTT 5 listener, or the configured ones), tried in order.
    pub brokers: BrokerList,
    /// Retained online/offline status and the Last Will.
    pub liveness: Liveness,
    /// Send systemd watchdog keep-alives from the poll loop at this interval.
    pub watchdog: Option<Duration>,
}

/// The poll task's own state.
/// QoS 0 app reports waiting for the release task.
const REPORT_QUEUE: usize = 4096;

struct Poller {
    cfg: MqttConfig,
    session: Session,
    state: Arc<State>,
    client: AsyncClient,
    replies: AsyncClient,
    jobs: mpsc::Sender<Job>,
    /// QoS 0 app reports, on their own queue: a flood of them sheds reports, never requests or release states.
    reports: mpsc::Sender<announce::Seen>,
    filters: Vec<Filter>,
    backoff: Backoff,
    /// The connection options for each node of the list, built (and checked) once.
    nodes: Vec<MqttOptions>,
}

/// Runs the connection until `cancel` fires, then drains replies in flight and disconnects. The reply worker and
/// the announcer run on `tracker`.
pub async fn run(
    cfg: MqttConfig,
    session: Session,
    state: Arc<State>,
    cancel: CancellationToken,
    tracker: TaskTracker,
) -> Result<(), TlsError> {
    let nodes = session
        .brokers
        .iter()
        .map(|b| mqtt_options(&cfg, b, Some(&session.liveness)))
        .collect::<Result<Vec<_>, _>>()?;
    let (client, mut eventloop) = AsyncClient::new(nodes[0].clone(), REQUEST_CHANNEL);
    let Helpers { jobs, reports, worker, progress } =
        spawn_helpers(&client, &state, &cfg, &session, (&cancel, &tracker));
    let mut watchdog = WatchdogCheck::new(session.watchdog, progress);
    tracing::info!(broker = %session.brokers.first(), nodes = session.brokers.len(), client_id = %cfg.client_id,
        "connecting to MQTT broker");
    let filters = filters(&cfg);
    let backoff = Backoff::new(cfg.backoff.0, cfg.backoff.1);
    let replies = reply_link::start(&cfg, &session.brokers, state.clone(), cancel.clone(), &tracker)?;
    let mut p = Poller { cfg, session, state, client, replies, jobs, reports, filters, backoff, nodes };
    let mut unsent = Unsent::default();
    loop {
        let event = tokio::select! {
            _ = cancel.cancelled() => break,
            _ = watchdog.tick() => {
                // Sent from the loop that serves: if it hangs, the keep-alives stop and systemd restarts us.
                if watchdog.worker_healthy(p.jobs.max_capacity() - p.jobs.capacity()) {
                    systemd::watchdog();
                }
                continue;
            }
            event = eventloop.poll() => event,
        };
        match event {
            Ok(Event::Incoming(Packet::Publish(publish))) => {
                if let Some(pending) = p.on_publish(publish) {
                    // Back-pressure: no room on the reply connection. Read no further request until there is;
                    // the broker holds them meanwhile. Nothing is dropped.
                    tokio::select! {
                        _ = cancel.cancelled() => break,
                        _ = pending.send(&p.replies, &p.state) => {}
                    }
                }
            }
            Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                let again = unsent.restore(&mut eventloop, ack.session_present);
                if again > 0 {
                    tracing::info!(publishes = again, "sending what the lost connection had not delivered");
                }
                p.on_connack(&ack);
            }
            Ok(Event::Incoming(Packet::SubAck(ack))) => p.on_suback(&ack),
            Ok(Event::Incoming(Packet::Disconnect(d))) => {
                tracing::warn!(reason = ?d.reason_code, "broker sent DISCONNECT");
            }
            Ok(_) => {}
            Err(e) => {
                unsent.take(&mut eventloop);
                let delay = p.on_error(&e);
                if let Some(next) = p.next_node() {
                    eventloop.options = next;
                }
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
    p.drain(&mut eventloop, worker).await;
    Ok(())
}

/// The tasks beside the poll loop and the queues it feeds them: the reply worker, the release task (manual mode)
/// and the announcer.
struct Helpers {
    jobs: mpsc::Sender<Job>,
    reports: mpsc::Sender<announce::Seen>,
    worker: JoinHandle<()>,
    /// Jobs the worker took, for the watchdog.
    progress: Arc<AtomicU64>,
}

fn spawn_helpers(
    client: &AsyncClient,
    state: &Arc<State>,
    cfg: &MqttConfig,
    session: &Session,
    (cancel, tracker): (&CancellationToken, &TaskTracker),
) -> Helpers {
    let (jobs, rx) = mpsc::channel::<Job>(WORKER_QUEUE);
    let progress = Arc::new(AtomicU64::new(0));
    let (retained_tx, retained_rx) = mpsc::channel::<announce::Seen>(1024);
    let (release_tx, release_rx) = mpsc::channel::<announce::Seen>(1024);
    let (reports, reports_rx) = mpsc::channel::<announce::Seen>(REPORT_QUEUE);
    let worker = tracker.spawn(replies::worker(
        client.clone(),
        state.clone(),
        rx,
        (cfg.topics.clone(), cfg.qos_out),
        (retained_tx, release_tx),
        progress.clone(),
    ));
    if let Some(topics) = cfg.topics.releases.clone() {
        let channels = (state.link.watch(), release_rx, reports_rx);
        let liveness = session.liveness.clone();
        tracker.spawn(releases::run(client.clone(), state.clone(), topics, liveness, channels, cancel.clone()));
    }
    let announcer = announce::run(
        client.clone(),
        state.clone(),
        cfg.topics.clone(),
        state.link.watch(),
        retained_rx,
        cancel.clone(),
    );
    tracker.spawn(announcer);
    Helpers { jobs, reports, worker, progress }
}

impl Poller {
    /// Drain: no new requests; let the worker finish, keep polling so its publishes go out; then disconnect.
    async fn drain(self, eventloop: &mut EventLoop, worker: JoinHandle<()>) {
        let Poller { client, jobs, session, state, cfg, .. } = self;
        drop(jobs);
        let offline = (session.liveness.topic.clone(), session.liveness.offline.clone());
        let before = async {
            let _ = worker.await;
            // A clean DISCONNECT suppresses the Last Will: say offline ourselves, then leave.
            let _ = client.try_publish(&offline.0, QoS::AtLeastOnce, true, offline.1.clone());
        };
        let drained = close_after(&client, eventloop, before, cfg.drain_timeout).await;
        state.link.set_connected(false);
        if !drained {
            tracing::warn!("shutdown deadline reached before every reply was flushed");
        }
    }

    /// Hands a request on; a reply that must wait for room on the reply connection comes back.
    fn on_publish(&mut self, publish: Publish) -> Option<Pending> {
        let received = Instant::now();
        let topic = String::from_utf8_lossy(&publish.topic);
        // Classified once: this is the path of every request.
        let release = self.cfg.topics.release_topic(&topic);
        if publish.qos == QoS::AtMostOnce && release.as_ref().is_some_and(|t| t.is_report()) {
            // Nothing to acknowledge: straight to the release task's report queue, shed (and counted) when full.
            let seen = announce::Seen { topic: topic.to_string(), payload: publish.payload, retained: publish.retain };
            if self.reports.try_send(seen).is_err() {
                let labels = crate::metrics::ReasonLabels { reason: "shed".into() };
                self.state.metrics.reports_ignored.get_or_create(&labels).inc();
            }
            return None;
        }
        let control = release.is_some() || self.cfg.topics.is_manifest(&topic);
        if publish.qos == QoS::AtMostOnce && !control && self.state.has_catalog() {
            // Nothing to acknowledge, so no order to keep: answered here, without a hop to the worker.
            return replies::answer_inline(&self.replies, &self.state, &publish, self.cfg.qos_out, received);
        }
        if self.jobs.try_send(Job { publish, received }).is_err() {
            // QoS 0 floods, and QoS 1 floods when RECEIVE_MAXIMUM is overrun (Mosquitto 2.0.11 overruns it while
            // we publish replies: docs/scaling.md). Shed and counted, never acknowledged: a persistent session
            // gets a QoS 1 request back after a reconnect; other clients retry.
            self.state.metrics.overloaded.inc();
        }
        None
    }

    fn on_connack(&mut self, ack: &ConnAck) {
        self.state.link.set_connected(true);
        // Replies larger than this would make the broker (or rumqttc) drop the whole connection.
        self.state.link.set_broker_max_packet(ack.properties.as_ref().and_then(|p| p.max_packet_size));
        self.backoff.reset();
        let broker = self.session.brokers.get(self.state.link.node());
        tracing::info!(%broker, session_present = ack.session_present, "connected");
        let status = &self.session.liveness;
        let _ = self.client.try_publish(&status.topic, QoS::AtLeastOnce, true, status.online.clone());
        // A lost connection forgets the confirmation (Link::set_connected), so every connection subscribes again:
        // harmless with a session present, required without one.
        if !ack.session_present || !self.state.link.subscribed() {
            if let Err(e) = self.client.try_subscribe_many(self.filters.clone()) {
                tracing::error!(error = %e, "cannot queue subscription");
            }
        }
    }

    fn on_suback(&mut self, ack: &SubAck) {
        let refused: Vec<String> = ack
            .return_codes
            .iter()
            .zip(&self.filters)
            .filter(|(code, _)| !matches!(code, SubscribeReasonCode::Success(_)))
            .map(|(code, f)| format!("{} ({code:?})", f.path))
            .collect();
        if refused.is_empty() {
            self.state.link.set_subscribed(true);
            let topics: Vec<&str> = self.filters.iter().map(|f| f.path.as_str()).collect();
            tracing::info!(?topics, "subscribed");
        } else {
            let msg = format!("broker refused subscription to {}", refused.join(", "));
            tracing::error!("{msg}");
            self.state.link.set_error(msg);
        }
    }

    /// Records a lost connection; returns how long to wait before polling again.
    fn on_error(&mut self, e: &ConnectionError) -> Duration {
        if self.state.link.set_connected(false) {
            self.state.metrics.reconnects.inc();
        }
        let msg = describe(e, self.session.brokers.get(self.state.link.node()));
        let delay = self.backoff.next_delay();
        tracing::warn!(error = %msg, retry_in_ms = delay.as_millis() as u64, "MQTT connection failed");
        self.state.link.set_error(msg);
        delay
    }

    /// After a failure with several nodes: moves to the next one (wrapping around) and returns its options.
    fn next_node(&mut self) -> Option<MqttOptions> {
        if self.nodes.len() < 2 {
            return None;
        }
        let from = self.state.link.node();
        let to = (from + 1) % self.nodes.len();
        self.state.link.set_node(to);
        self.state.metrics.failovers.inc();
        let brokers = &self.session.brokers;
        tracing::warn!(from = %brokers.get(from), to = %brokers.get(to), "trying the next broker node");
        Some(self.nodes[to].clone())
    }
}
