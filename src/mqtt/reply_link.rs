//! The reply connection: a second MQTT connection, polled by its own task, that publishes the answers to QoS 0
//! requests (what NestJS clients and phones send).
//!
//! Why: when many devices ask at once (the update herd), replies are produced faster than one connection writes
//! them. The poll task of the request connection cannot wait for room in its own outgoing queue (nothing would
//! drain it), so it used to drop replies. With replies on their own connection it can wait: it stops reading
//! requests until the reply queue has room, the broker holds the requests meanwhile, and no reply is ever dropped,
//! with memory bounded by the queue. QoS 1/2 requests keep the request connection: their acknowledgement must
//! follow their reply on the same connection (a persistent session redelivers what was not answered).

use super::connection::{base_options, close_after, Backoff, Unsent, REQUEST_CHANNEL};
use super::tls::TlsError;
use crate::config::{BrokerList, MqttConfig};
use crate::state::State;
use rumqttc::v5::mqttbytes::v5::Packet;
use rumqttc::v5::{AsyncClient, Event, EventLoop, MqttOptions};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Starts the reply connection on `tracker`; its client publishes replies. It connects to the node the request
/// connection is on, and after a failure follows it to whichever node that is then on (replies must reach the
/// devices' broker even when the nodes do not form one cluster).
pub fn start(
    cfg: &MqttConfig,
    brokers: &BrokerList,
    state: Arc<State>,
    cancel: CancellationToken,
    tracker: &TaskTracker,
) -> Result<AsyncClient, TlsError> {
    let id = format!("{}-replies", cfg.client_id);
    let nodes = brokers.iter().map(|b| base_options(&id, cfg, b)).collect::<Result<Vec<_>, _>>()?;
    let (client, eventloop) = AsyncClient::new(nodes[state.link.node() % nodes.len()].clone(), REQUEST_CHANNEL);
    let backoff = Backoff::new(cfg.backoff.0, cfg.backoff.1);
    tracker.spawn(run((eventloop, nodes), client.clone(), state, (cancel, cfg.drain_timeout), backoff));
    Ok(client)
}

/// Polls until cancelled, reconnecting with backoff; then flushes what is queued and disconnects.
async fn run(
    (mut eventloop, nodes): (EventLoop, Vec<MqttOptions>),
    client: AsyncClient,
    state: Arc<State>,
    (cancel, drain_timeout): (CancellationToken, Duration),
    mut backoff: Backoff,
) {
    let mut on = state.link.node() % nodes.len();
    let mut unsent = Unsent::default();
    loop {
        let event = tokio::select! {
            _ = cancel.cancelled() => break,
            event = eventloop.poll() => event,
        };
        match event {
            Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                // A clean start every time: without this, rumqttc would drop the replies queued meanwhile.
                let again = unsent.restore(&mut eventloop, ack.session_present);
                if again > 0 {
                    tracing::info!(replies = again, "sending the replies queued while the reply connection was down");
                }
                state.link.set_replies_connected(true);
                state.link.set_broker_max_packet(ack.properties.as_ref().and_then(|p| p.max_packet_size));
                backoff.reset();
            }
            Ok(_) => {}
            Err(e) => {
                unsent.take(&mut eventloop);
                state.link.set_replies_connected(false);
                let delay = backoff.next_delay();
                tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "MQTT reply connection failed");
                let node = state.link.node() % nodes.len();
                if node != on {
                    on = node;
                    eventloop.options = nodes[on].clone();
                }
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
    // The DISCONNECT is queued after every reply already queued, so those are written first.
    if !close_after(&client, &mut eventloop, std::future::ready(()), drain_timeout).await {
        tracing::warn!("shutdown deadline reached before every reply on the reply connection was flushed");
    }
    state.link.set_replies_connected(false);
}
