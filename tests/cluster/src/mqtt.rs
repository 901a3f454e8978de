//! The supervisor's own MQTT clients (rumqttc, MQTT 5): one per node for a probe round. The event loop task only
//! polls and hands events off on a channel (it never awaits client calls, which would deadlock rumqttc).

use std::net::SocketAddr;
use std::time::Duration;

use rumqttc::v5::mqttbytes::v5::{Filter, Packet};
use rumqttc::v5::{AsyncClient, Event, MqttOptions};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// A message received by the client on node `at`.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The node the receiving client is connected to.
    pub at: u64,
    /// The topic it was published to.
    pub topic: String,
    /// As text (probe payloads are ASCII).
    pub payload: String,
    /// Set on a retained message sent because of a new subscription.
    pub retain: bool,
}

/// What a client reports.
#[derive(Debug)]
pub enum ClientEvent {
    /// CONNACK from node `at` (again after a reconnect).
    Connected { at: u64 },
    /// SUBACK from node `at`: the filters given to [`ProbeClient::connect`] are in place.
    Subscribed { at: u64 },
    /// The connection to node `at` failed or broke; the next poll reconnects.
    Disconnected { at: u64 },
    /// PUBACK from node `at`: a QoS 1 publish was accepted (after the node forwarded it to its peers).
    Acked { at: u64 },
    /// A message the client on node `at` received.
    Received(Delivery),
}

/// A client on one node: its handle and the task polling its event loop (aborted on drop, which drops the
/// connection; the session ends with it: clean start, no expiry).
pub struct ProbeClient {
    /// The node it is connected to.
    pub id: u64,
    /// For publishing and subscribing (`try_` calls only: never awaited where a full channel could block).
    pub client: AsyncClient,
    task: JoinHandle<()>,
}

impl Drop for ProbeClient {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl ProbeClient {
    /// Connects to node `id` at `mqtt` as client id `cluster-broker-probe-<suffix>`, subscribes to `filters` on every
    /// CONNACK, and sends what happens to `events`.
    pub fn connect(
        id: u64,
        mqtt: SocketAddr,
        suffix: &str,
        filters: Vec<Filter>,
        events: mpsc::UnboundedSender<ClientEvent>,
    ) -> ProbeClient {
        let mut opts = MqttOptions::new(format!("cluster-broker-probe-{suffix}"), mqtt.ip().to_string(), mqtt.port());
        opts.set_keep_alive(Duration::from_secs(5));
        // Longer than the 15 s a node may spend on a CONNECT asking a dead peer to kick an older session (rumqttc's
        // default 5 s would give up and retry with the same client id, which the node refuses while it waits).
        opts.set_connection_timeout(20);
        let (client, mut event_loop) = AsyncClient::new(opts, 256);
        let subscriber = client.clone();
        let task = tokio::spawn(async move {
            loop {
                let event = match event_loop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        if !filters.is_empty() {
                            let _ = subscriber.try_subscribe_many(filters.clone());
                        }
                        ClientEvent::Connected { at: id }
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => ClientEvent::Subscribed { at: id },
                    Ok(Event::Incoming(Packet::PubAck(_))) => ClientEvent::Acked { at: id },
                    Ok(Event::Incoming(Packet::Publish(p))) => ClientEvent::Received(Delivery {
                        at: id,
                        topic: String::from_utf8_lossy(&p.topic).into_owned(),
                        payload: String::from_utf8_lossy(&p.payload).into_owned(),
                        retain: p.retain,
                    }),
                    Ok(_) => continue,
                    // Not listening yet, or restarting: back off, then the next poll reconnects.
                    Err(_) => {
                        if events.send(ClientEvent::Disconnected { at: id }).is_err() {
                            return;
                        }
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                if events.send(event).is_err() {
                    return;
                }
            }
        });
        ProbeClient { id, client, task }
    }
}
