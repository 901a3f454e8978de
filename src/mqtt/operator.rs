//! The operator side of managed releases: a short-lived MQTT 5 connection that reads the retained rollout states,
//! publishes a new one, and waits until every live instance (its retained liveness message) says it applies it.

use super::tls::endpoint;
use crate::config::{BrokerList, BrokerUrl, Credentials, TlsFiles};
use crate::wire::bus::LivenessDoc;
use anyhow::{anyhow, bail};
use bytes::Bytes;
use rumqttc::v5::mqttbytes::v5::Packet;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, Event, EventLoop, MqttOptions};
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::time::{timeout_at, Instant};

/// How long one broker node may take to accept the connection before the next is tried.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Where and how to connect.
#[derive(Debug, Clone)]
pub struct Target {
    /// The broker nodes, tried in order.
    pub brokers: BrokerList,
    /// TLS files for `mqtts://`.
    pub tls: TlsFiles,
    /// Credentials (operators: an account the ACL lets write the release topics).
    pub credentials: Option<Credentials>,
}

/// One operator connection.
pub struct Operator {
    client: AsyncClient,
    el: EventLoop,
    id: String,
}

impl Operator {
    /// Connects to the first node of the list that accepts the connection (each gets [`CONNECT_TIMEOUT`]).
    pub async fn open(t: &Target) -> anyhow::Result<Operator> {
        Ok(super::first_node(&t.brokers, |broker| Operator::open_one(t, broker)).await?.0)
    }

    async fn open_one(t: &Target, broker: &BrokerUrl) -> anyhow::Result<Operator> {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let id = broker.client_id.clone().unwrap_or_else(|| format!("cs-operator-{}-{nanos:x}", std::process::id()));
        let (address, transport) = endpoint(broker, &t.tls)?;
        let mut opts = MqttOptions::new(&id, address, broker.port);
        opts.set_max_packet_size(Some(64 << 20)).set_keep_alive(Duration::from_secs(30));
        opts.set_outgoing_inflight_upper_limit(64);
        if let Some(c) = &t.credentials {
            opts.set_credentials(&c.username, c.password.expose());
        }
        if let Some(t) = transport {
            opts.set_transport(t);
        }
        let (client, mut el) = AsyncClient::new(opts, 64);
        let deadline = Instant::now() + CONNECT_TIMEOUT;
        loop {
            let ev = timeout_at(deadline, el.poll()).await.map_err(|_| anyhow!("timed out connecting"))?;
            if let Event::Incoming(Packet::ConnAck(_)) = ev? {
                return Ok(Operator { client, el, id });
            }
        }
    }

    async fn next(&mut self, deadline: Instant) -> anyhow::Result<Option<(String, Bytes)>> {
        loop {
            let ev = timeout_at(deadline, self.el.poll()).await.map_err(|_| anyhow!("timed out"))?;
            match ev.map_err(|e| anyhow!("MQTT connection failed: {e}"))? {
                Event::Incoming(Packet::Publish(p)) => {
                    return Ok(Some((String::from_utf8_lossy(&p.topic).into_owned(), p.payload)));
                }
                Event::Incoming(Packet::SubAck(_)) => return Ok(None),
                _ => {}
            }
        }
    }

    /// Every message retained under `filters` (read until our probe comes back after them).
    pub async fn retained(&mut self, filters: &[String], timeout: Duration) -> anyhow::Result<BTreeMap<String, Bytes>> {
        let deadline = Instant::now() + timeout;
        let probe = format!("connector-scripts/operator/{}", self.id);
        for f in filters.iter().chain([&probe]) {
            self.client.subscribe(f.as_str(), QoS::AtLeastOnce).await?;
        }
        let mut acks = 0;
        let mut out = BTreeMap::new();
        loop {
            match self.next(deadline).await.map_err(|e| anyhow!("reading the retained states: {e}"))? {
                None => {
                    acks += 1;
                    if acks == filters.len() + 1 {
                        self.client.publish(probe.as_str(), QoS::AtLeastOnce, false, Vec::new()).await?;
                    }
                }
                Some((topic, _)) if topic == probe => return Ok(out),
                Some((topic, payload)) => {
                    if !payload.is_empty() {
                        out.insert(topic, payload);
                    }
                }
            }
        }
    }

    /// Publishes a retained message (QoS 1).
    pub async fn publish_retained(&self, topic: &str, payload: Vec<u8>) -> anyhow::Result<()> {
        self.client.publish(topic, QoS::AtLeastOnce, true, payload).await?;
        Ok(())
    }

    /// Waits until every online instance under `status_prefix` reports exactly `want` (`platform/variant` → seq)
    /// applied (a higher seq is someone else's state, not this change).
    /// Returns (instances that applied, instances that did not) when all did or at the deadline.
    pub async fn wait_applied(
        &mut self,
        status_prefix: &str,
        want: &BTreeMap<String, u64>,
        timeout: Duration,
    ) -> anyhow::Result<(Vec<String>, Vec<String>)> {
        let deadline = Instant::now() + timeout;
        let filter = format!("{status_prefix}/+");
        self.client.subscribe(filter.as_str(), QoS::AtLeastOnce).await?;
        let mut instances: BTreeMap<String, bool> = BTreeMap::new();
        let mut acked = false;
        loop {
            let got = match self.next(deadline).await {
                Ok(g) => g,
                Err(_) if acked => break,
                Err(e) => return Err(e),
            };
            match got {
                None => acked = true,
                Some((topic, payload)) => {
                    let Some(instance) = topic.strip_prefix(&format!("{status_prefix}/")).map(str::to_string) else {
                        continue;
                    };
                    let Some(doc) = LivenessDoc::parse(&payload).filter(LivenessDoc::online) else {
                        instances.remove(&instance);
                        continue;
                    };
                    let applied = doc.releases.unwrap_or_default();
                    let done = want.iter().all(|(k, seq)| applied.get(k) == Some(seq));
                    instances.insert(instance, done);
                }
            }
            if acked && !instances.is_empty() && instances.values().all(|d| *d) {
                break;
            }
        }
        if instances.is_empty() {
            bail!("no instance is online under {status_prefix}/+: nothing applies the change");
        }
        let (done, not): (Vec<_>, Vec<_>) = instances.into_iter().partition(|(_, d)| *d);
        Ok((done.into_iter().map(|(i, _)| i).collect(), not.into_iter().map(|(i, _)| i).collect()))
    }

    /// The retained liveness documents of the online instances under `status_prefix`.
    pub async fn instances(&mut self, status_prefix: &str, timeout: Duration) -> anyhow::Result<Vec<LivenessDoc>> {
        let docs = self.retained(&[format!("{status_prefix}/+")], timeout).await?;
        Ok(docs.values().filter_map(|p| LivenessDoc::parse(p)).filter(LivenessDoc::online).collect())
    }

    /// Leaves.
    pub async fn close(mut self) {
        let _ = self.client.disconnect().await;
        let deadline = Instant::now() + Duration::from_secs(2);
        while let Ok(Ok(_)) = timeout_at(deadline, self.el.poll()).await {}
    }
}
