//! The reply path: one `reply_for` shared by the QoS 0 inline path (answered on the poll task, nothing to
//! acknowledge) and the reply worker (QoS 1/2 requests, answered and acknowledged in arrival order).
//!
//! Requests that arrive before the first catalog is loaded (a persistent session redelivers them right after the
//! reconnect) go to the worker, which holds them until the catalog is there — bounded by
//! [`CATALOG_WAIT`] — instead of answering `NOT_READY`.

use crate::handler::Incoming;
use crate::state::State;
use crate::wire::topics::Topics;
use bytes::Bytes;
use rumqttc::v5::mqttbytes::v5::{Publish, PublishProperties};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, ClientError, Request};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Longest a request waits for the first catalog before it is answered `NOT_READY`.
pub const CATALOG_WAIT: Duration = Duration::from_secs(30);

/// A message handed from the poll task to the reply worker.
#[derive(Debug)]
pub struct Job {
    /// The publish as received.
    pub publish: Publish,
    /// When it was read from the connection.
    pub received: Instant,
}

/// What to publish in answer to one request: topic, QoS, payload, properties (the MQTT 5 correlation data).
/// Counts what it handled.
fn reply_for(state: &State, p: &Publish, qos_out: Option<QoS>) -> Option<(String, QoS, Vec<u8>, PublishProperties)> {
    let topic = std::str::from_utf8(&p.topic).ok()?;
    let props = p.properties.as_ref();
    let incoming = Incoming {
        topic,
        payload: &p.payload,
        response_topic: props.and_then(|p| p.response_topic.as_deref()),
        correlation_data: props.and_then(|p| p.correlation_data.clone()),
    };
    let catalog = state.catalog_guard();
    let handled = state.handler.handle(catalog.as_deref(), incoming, Instant::now(), state.link.broker_max_packet())?;
    state.metrics.record(&handled.counted);
    let reply = handled.reply?;
    let props = PublishProperties { correlation_data: reply.correlation_data, ..Default::default() };
    Some((reply.topic, qos_out.unwrap_or(p.qos), reply.payload, props))
}

/// A reply that did not fit in the reply connection's queue: the poll task waits until it does.
#[derive(Debug)]
pub struct Pending {
    topic: String,
    qos: QoS,
    payload: Bytes,
    props: PublishProperties,
    received: Instant,
}

impl Pending {
    /// Waits for room on the reply connection (drained by its own task), then queues the reply.
    pub async fn send(self, replies: &AsyncClient, state: &State) {
        let Pending { topic, qos, payload, props, received } = self;
        if let Err(e) = replies.publish_with_properties(topic, qos, false, payload, props).await {
            tracing::warn!(error = %e, "reply not queued: the reply connection is closing");
        }
        state.metrics.latency.observe(received.elapsed().as_secs_f64());
    }
}

/// Answers a QoS 0 request on the poll task through the reply connection; the reply comes back as [`Pending`]
/// when that connection's queue is full.
pub fn answer_inline(
    replies: &AsyncClient,
    state: &State,
    p: &Publish,
    qos_out: Option<QoS>,
    received: Instant,
) -> Option<Pending> {
    let (topic, qos, payload, props) = reply_for(state, p, qos_out)?;
    // Moved, not cloned: a full queue hands the publish back in the error, for the second attempt.
    match replies.try_publish_with_properties(topic, qos, false, payload, props) {
        Ok(()) => {
            state.metrics.latency.observe(received.elapsed().as_secs_f64());
            None
        }
        Err(ClientError::Request(Request::Publish(p)) | ClientError::TryRequest(Request::Publish(p))) => {
            Some(Pending {
                topic: String::from_utf8_lossy(&p.topic).into_owned(),
                qos,
                payload: p.payload,
                props: p.properties.unwrap_or_default(),
                received,
            })
        }
        Err(e) => {
            tracing::warn!(error = %e, "reply not queued");
            None
        }
    }
}

/// Answers requests handed over by the poll task in arrival order, and acknowledges each after its reply has been
/// handed to the client (replies and acks leave in that order; acks stay in arrival order, which rumqttd insists
/// on). A crash before that means redelivery with a persistent session. Retained manifests seen on the bus go to
/// the announcer. `progress` counts jobs taken, for the watchdog.
pub async fn worker(
    client: AsyncClient,
    state: Arc<State>,
    mut rx: mpsc::Receiver<Job>,
    (topics, qos_out): (Topics, Option<QoS>),
    (manifests, releases): (mpsc::Sender<super::announce::Seen>, mpsc::Sender<super::announce::Seen>),
    progress: Arc<AtomicU64>,
) {
    while let Some(job) = rx.recv().await {
        progress.fetch_add(1, Ordering::Relaxed);
        let p = &job.publish;
        let topic = String::from_utf8_lossy(&p.topic);
        if topics.is_manifest(&topic) || topics.is_release(&topic) {
            let release = topics.is_release(&topic);
            let seen =
                super::announce::Seen { topic: topic.into_owned(), payload: p.payload.clone(), retained: p.retain };
            if release {
                // Awaited: a state must not be lost to a full queue (the release task never waits on the worker).
                let _ = releases.send(seen).await;
            } else {
                let _ = manifests.try_send(seen);
            }
        } else {
            // Not before the release sync (manual mode): its probe may be queued behind this very request.
            if !state.has_catalog() && state.releases().is_none_or(|r| r.synced()) {
                let _ = tokio::time::timeout(CATALOG_WAIT, state.wait_catalog()).await;
            }
            if let Some((topic, qos, payload, props)) = reply_for(&state, p, qos_out) {
                let result = client.publish_with_properties(topic, qos, false, payload, props).await;
                state.metrics.latency.observe(job.received.elapsed().as_secs_f64());
                if let Err(e) = result {
                    tracing::warn!(error = %e, "reply not queued: the connection is closing");
                }
            }
        }
        let _ = client.ack(&job.publish).await;
    }
}
