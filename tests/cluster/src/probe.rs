//! The formation check: the cluster has formed when, for every ordered pair of running nodes (i, j), a message
//! published on i reaches a subscriber on j; a message published on each node to a `$share/` group reaches exactly
//! one member of the group (one probe subscriber per node); and a new subscriber on every node receives the
//! retained marker (so the retained store has been copied to it). Checked by publishing again until it holds or
//! the deadline passes; no fixed sleeps.
//!
//! [`Progress`] is the pure bookkeeping (unit-tested); [`wait_formed`] does the MQTT with rumqttc.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::time::Duration;

use rumqttc::v5::mqttbytes::v5::Filter;
use rumqttc::v5::mqttbytes::QoS;
use tokio::sync::mpsc;
use tokio::time::{interval, sleep_until, Instant, MissedTickBehavior};

use crate::mqtt::{ClientEvent, Delivery, ProbeClient};

/// The topic of the retained marker; one retained message stays there while the cluster runs.
pub const RETAINED_TOPIC: &str = "cluster-broker/probe/retained";

/// How often unconfirmed probes are published again.
const REPUBLISH_EVERY: Duration = Duration::from_millis(250);

/// A running node to probe.
#[derive(Debug, Clone)]
pub struct Target {
    /// Its node id.
    pub id: u64,
    /// Its MQTT listener.
    pub mqtt: SocketAddr,
}

/// What the retained check does.
#[derive(Debug, Clone)]
pub enum Retained {
    /// Publish this marker (retained, on the first node) and expect it on every node.
    Publish(String),
    /// Expect this marker, published earlier, on every node (a restarted node must have fetched it from its peers).
    Expect(String),
}

impl Retained {
    fn marker(&self) -> &str {
        match self {
            Retained::Publish(m) | Retained::Expect(m) => m,
        }
    }
}

/// Why the cluster did not form.
#[derive(Debug)]
pub enum ProbeError {
    /// Some checks still failed at the deadline.
    Timeout { after: Duration, missing: Vec<String> },
    /// A `$share/` message reached more than one member of the group.
    Duplicate { payload: String, deliveries: u32 },
}

impl std::error::Error for ProbeError {}

impl std::fmt::Display for ProbeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProbeError::Timeout { after, missing } => {
                write!(f, "not formed after {:.1} s; still failing: {}", after.as_secs_f64(), missing.join("; "))
            }
            ProbeError::Duplicate { payload, deliveries } => {
                write!(f, "shared-subscription message {payload:?} was delivered {deliveries} times (expected once)")
            }
        }
    }
}

/// Topics of one probe round (unique per round, so old messages never count).
#[derive(Debug, Clone)]
struct Topics {
    base: String,
}

impl Topics {
    fn new(nonce: &str) -> Self {
        Topics { base: format!("cluster-broker/probe/{nonce}") }
    }
    fn direct(&self, to: u64) -> String {
        format!("{}/to/{to}", self.base)
    }
    fn shared(&self) -> String {
        format!("{}/shared", self.base)
    }
    fn shared_filter(&self) -> String {
        format!("$share/cluster-broker-probe/{}/shared", self.base)
    }
}

/// What has been confirmed so far.
#[derive(Debug)]
struct Progress {
    ids: Vec<u64>,
    topics: Topics,
    marker: String,
    /// (from, to) pairs whose direct message arrived.
    pairs: BTreeSet<(u64, u64)>,
    /// Nodes whose `$share/` message arrived.
    shared: BTreeSet<u64>,
    /// Deliveries per `$share/` payload.
    shared_counts: HashMap<String, u32>,
    /// Nodes on which a new subscriber got the retained marker.
    retained: BTreeSet<u64>,
}

impl Progress {
    fn new(ids: Vec<u64>, topics: Topics, marker: String) -> Self {
        Progress {
            ids,
            topics,
            marker,
            pairs: BTreeSet::new(),
            shared: BTreeSet::new(),
            shared_counts: HashMap::new(),
            retained: BTreeSet::new(),
        }
    }

    fn record(&mut self, d: &Delivery) -> Result<(), ProbeError> {
        if d.topic == RETAINED_TOPIC {
            // Only a retained delivery proves the node's store has it (a live forward has the flag cleared).
            if d.retain && d.payload == self.marker {
                self.retained.insert(d.at);
            }
        } else if d.topic == self.topics.shared() {
            let count = self.shared_counts.entry(d.payload.clone()).or_insert(0);
            *count += 1;
            if *count > 1 {
                return Err(ProbeError::Duplicate { payload: d.payload.clone(), deliveries: *count });
            }
            if let Some(from) = d.payload.split(':').next().and_then(|s| s.parse().ok()) {
                self.shared.insert(from);
            }
        } else if d.topic == self.topics.direct(d.at) {
            if let Ok(from) = d.payload.parse() {
                self.pairs.insert((from, d.at));
            }
        }
        Ok(())
    }

    fn missing_pairs(&self) -> Vec<(u64, u64)> {
        let mut out = Vec::new();
        for &from in &self.ids {
            for &to in &self.ids {
                if !self.pairs.contains(&(from, to)) {
                    out.push((from, to));
                }
            }
        }
        out
    }

    fn missing_shared(&self) -> Vec<u64> {
        self.ids.iter().copied().filter(|id| !self.shared.contains(id)).collect()
    }

    fn missing_retained(&self) -> Vec<u64> {
        self.ids.iter().copied().filter(|id| !self.retained.contains(id)).collect()
    }

    fn done(&self) -> bool {
        self.missing_pairs().is_empty() && self.missing_shared().is_empty() && self.missing_retained().is_empty()
    }

    /// One phrase per failing check, for the error message.
    fn describe_missing(&self) -> Vec<String> {
        let mut out: Vec<String> =
            self.missing_pairs().iter().map(|(from, to)| format!("node {from} -> node {to}: not delivered")).collect();
        out.extend(self.missing_shared().iter().map(|id| format!("node {id} -> $share group: not delivered")));
        out.extend(self.missing_retained().iter().map(|id| format!("node {id}: retained marker not received")));
        out
    }
}

/// Waits until the nodes in `targets` form one cluster (see the module docs), at most `timeout`.
pub async fn wait_formed(targets: &[Target], retained: &Retained, timeout: Duration) -> Result<(), ProbeError> {
    let started = Instant::now();
    let deadline = started + timeout;
    let nonce = nonce();
    let topics = Topics::new(&nonce);
    let (tx, mut rx) = mpsc::unbounded_channel();
    let clients: Vec<ProbeClient> = targets
        .iter()
        .map(|t| {
            let filters = vec![
                Filter::new(topics.direct(t.id), QoS::AtLeastOnce),
                Filter::new(topics.shared_filter(), QoS::AtLeastOnce),
            ];
            ProbeClient::connect(t.id, t.mqtt, &format!("{nonce}-{}", t.id), filters, tx.clone())
        })
        .collect();
    drop(tx);
    let mut progress = Progress::new(targets.iter().map(|t| t.id).collect(), topics.clone(), retained.marker().into());

    let mut tick = interval(REPUBLISH_EVERY);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    // Clients whose subscriptions are in place since their last CONNACK; only they publish, so nothing piles up in
    // the request channel of a client that cannot connect (it would crowd out its SUBSCRIBE).
    let mut ready = BTreeSet::new();
    let mut seq = 0u64;
    loop {
        tokio::select! {
            _ = tick.tick() => {
                seq += 1;
                let ready: Vec<&ProbeClient> = clients.iter().filter(|c| ready.contains(&c.id)).collect();
                publish_round(&ready, &progress, retained, seq);
            }
            Some(event) = rx.recv() => match event {
                ClientEvent::Subscribed { at } => {
                    ready.insert(at);
                }
                ClientEvent::Connected { at } | ClientEvent::Disconnected { at } => {
                    ready.remove(&at);
                }
                ClientEvent::Acked { .. } => {}
                ClientEvent::Received(d) => {
                    progress.record(&d)?;
                    if progress.done() {
                        return Ok(());
                    }
                }
            },
            _ = sleep_until(deadline) => {
                return Err(ProbeError::Timeout { after: started.elapsed(), missing: progress.describe_missing() });
            }
        }
    }
}

/// Publishes every probe that has not been confirmed yet from the `clients` that are ready. `try_` calls: a full
/// request channel must not block the round (the next round sends again).
fn publish_round(clients: &[&ProbeClient], progress: &Progress, retained: &Retained, seq: u64) {
    let by_id = |id: u64| clients.iter().find(|c| c.id == id);
    for (from, to) in progress.missing_pairs() {
        if let Some(c) = by_id(from) {
            let _ = c.client.try_publish(progress.topics.direct(to), QoS::AtLeastOnce, false, from.to_string());
        }
    }
    for from in progress.missing_shared() {
        if let Some(c) = by_id(from) {
            let _ = c.client.try_publish(progress.topics.shared(), QoS::AtLeastOnce, false, format!("{from}:{seq}"));
        }
    }
    let missing_retained = progress.missing_retained();
    if missing_retained.is_empty() {
        return;
    }
    if let (Retained::Publish(marker), Some(first)) = (retained, clients.first()) {
        let _ = first.client.try_publish(RETAINED_TOPIC, QoS::AtLeastOnce, true, marker.clone());
    }
    // A new subscription gets the retained messages again, so subscribing once more is a new subscriber's view.
    for id in missing_retained {
        if let Some(c) = by_id(id) {
            let _ = c.client.try_subscribe(RETAINED_TOPIC, QoS::AtLeastOnce);
        }
    }
}

/// A string unique to this probe round.
pub fn nonce() -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
    format!("{}-{nanos}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn progress(ids: &[u64]) -> Progress {
        Progress::new(ids.to_vec(), Topics::new("n"), "m".into())
    }

    fn delivery(at: u64, topic: &str, payload: &str, retain: bool) -> Delivery {
        Delivery { at, topic: topic.into(), payload: payload.into(), retain }
    }

    #[test]
    fn done_when_every_pair_the_group_and_the_marker_are_confirmed() {
        let mut p = progress(&[1, 2]);
        let t = p.topics.clone();
        for (from, to) in [(1, 1), (1, 2), (2, 1), (2, 2)] {
            assert!(!p.done());
            p.record(&delivery(to, &t.direct(to), &from.to_string(), false)).unwrap();
        }
        p.record(&delivery(2, &t.shared(), "1:1", false)).unwrap();
        p.record(&delivery(2, &t.shared(), "2:1", false)).unwrap();
        p.record(&delivery(1, RETAINED_TOPIC, "m", true)).unwrap();
        assert!(!p.done());
        assert_eq!(p.describe_missing(), ["node 2: retained marker not received"]);
        p.record(&delivery(2, RETAINED_TOPIC, "m", true)).unwrap();
        assert!(p.done());
    }

    #[test]
    fn a_direct_message_counts_only_on_its_addressee() {
        let mut p = progress(&[1, 2]);
        let t = p.topics.clone();
        p.record(&delivery(1, &t.direct(2), "1", false)).unwrap();
        assert_eq!(p.missing_pairs().len(), 4);
    }

    #[test]
    fn live_or_stale_markers_do_not_count() {
        let mut p = progress(&[1]);
        p.record(&delivery(1, RETAINED_TOPIC, "m", false)).unwrap();
        p.record(&delivery(1, RETAINED_TOPIC, "old", true)).unwrap();
        assert_eq!(p.missing_retained(), [1]);
    }

    #[test]
    fn a_second_delivery_to_the_group_is_an_error() {
        let mut p = progress(&[1, 2]);
        let t = p.topics.clone();
        p.record(&delivery(1, &t.shared(), "2:7", false)).unwrap();
        let e = p.record(&delivery(2, &t.shared(), "2:7", false)).unwrap_err();
        assert!(matches!(e, ProbeError::Duplicate { deliveries: 2, .. }), "{e}");
    }
}
