//! The broker side of managed releases (`--release-mode manual`): reads the rollout states and bundles retained
//! under the release prefix, knows when all of them have arrived (its probe comes back after them), publishes the
//! states this instance changed and the bundles other instances may need, and says in its liveness message which
//! `seq` of each variant it applies — what the operator commands wait for.

use super::announce::{Liveness, Seen};
use crate::release::trust::{seal_state, Rejected};
use crate::state::State;
use crate::wire::bus::LivenessDoc;
use crate::wire::topics::{ReleaseTopic, ReleaseTopics};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::AsyncClient;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

/// How often the per-revision counts in the liveness message are refreshed (when they changed).
const STATS_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// What the liveness message adds in manual mode: the applied `seq` of every variant (`"ios/next": 7`), and the
/// requests and reports per revision (`platform/variant` → revision → [requests, ok, failed]).
type Applied = (BTreeMap<String, u64>, BTreeMap<String, BTreeMap<String, [u64; 3]>>);

/// The liveness body with `releases` and `served`.
fn online_with(liveness: &Liveness, (releases, served): &Applied) -> Vec<u8> {
    let doc = LivenessDoc { releases: Some(releases.clone()), served: Some(served.clone()), ..liveness.doc.clone() };
    doc.to_bytes()
}

fn count_report(state: &State, r: &crate::release::Reported) {
    let labels = crate::metrics::RevisionLabels {
        platform: r.key.0.clone(),
        variant: r.key.1.clone(),
        revision: r.revision.clone(),
        channel: r.channel.to_string(),
        outcome: if r.ok { "ok" } else { "failed" }.to_string(),
    };
    state.metrics.reports.get_or_create(&labels).inc();
    state.metrics.note_revision(&r.key.0, &r.key.1, &r.revision, if r.ok { 1 } else { 2 });
}

fn ignored(state: &State, why: crate::release::reports::Outcome) {
    let labels = crate::metrics::ReasonLabels { reason: why.reason().to_string() };
    state.metrics.reports_ignored.get_or_create(&labels).inc();
}

/// One app report: a vote counted, or the reason it is not one; an auto-halt returns the catalog to serve.
fn report(
    state: &State,
    releases: &crate::release::Releases,
    device: Option<&str>,
    payload: &[u8],
) -> Option<crate::catalog::Catalog> {
    let (outcome, reported, served) = releases.on_report(device, payload);
    match reported {
        Some(r) => count_report(state, &r),
        None => ignored(state, outcome),
    }
    if served.is_some() {
        state.metrics.auto_halts.inc();
    }
    served
}

/// Topics whose refusal was logged: at most this many remembered (the counter keeps counting past it).
const LOGGED_TOPICS: usize = 1024;

/// The topics whose refusal was logged: a flood of forgeries cannot flood the log (the counter keeps counting).
#[derive(Debug, Default)]
struct LoggedOnce(BTreeSet<String>);

impl LoggedOnce {
    /// True the first time `topic` is seen, while fewer than [`LOGGED_TOPICS`] are remembered.
    fn first(&mut self, topic: &str) -> bool {
        self.0.len() < LOGGED_TOPICS && self.0.insert(topic.to_string())
    }
}

/// Counts a refused document and logs it once per topic.
fn rejected(state: &State, logged: &mut LoggedOnce, topic: &str, kind: &str, why: &Rejected) {
    let labels = crate::metrics::BusRejectLabels { kind: kind.to_string(), reason: why.reason().to_string() };
    state.metrics.bus_rejected.get_or_create(&labels).inc();
    if logged.first(topic) {
        tracing::warn!(topic = %topic.escape_debug(), reason = why.reason(), error = %why,
            "a {kind} on the broker is not signed by a trusted key: refused, not applied, not stored");
    }
}

/// One message under the release prefix, a report or the probe; returns the catalog to serve when it changed.
fn on_message(
    state: &State,
    releases: &crate::release::Releases,
    topics: &ReleaseTopics,
    logged: &mut LoggedOnce,
    msg: &Seen,
) -> Option<crate::catalog::Catalog> {
    match topics.classify(&msg.topic) {
        Some(ReleaseTopic::Probe) => releases.on_synced(),
        Some(ReleaseTopic::State(p, v)) if !msg.payload.is_empty() => {
            releases.on_state((p.to_string(), v.to_string()), &msg.payload).unwrap_or_else(|why| {
                rejected(state, logged, &msg.topic, "state", &why);
                None
            })
        }
        Some(ReleaseTopic::Bundle(p, v, rev)) if !msg.payload.is_empty() => {
            releases.on_bundle(&(p.to_string(), v.to_string()), rev, &msg.payload).unwrap_or_else(|why| {
                rejected(state, logged, &msg.topic, "bundle", &why);
                None
            })
        }
        Some(ReleaseTopic::Report) => report(state, releases, None, &msg.payload),
        Some(ReleaseTopic::DeviceReport(device)) => report(state, releases, Some(device), &msg.payload),
        Some(ReleaseTopic::BadReport) => {
            ignored(state, crate::release::reports::Outcome::Unknown);
            None
        }
        _ => None,
    }
}

/// Publishes the states this instance changed (signed) and every revision a state names that this connection has
/// not shared yet (with its signed manifest), so an instance that never built it can serve it.
async fn publish_changes(
    client: &AsyncClient,
    releases: &crate::release::Releases,
    topics: &ReleaseTopics,
    signer: &crate::signing::Signer,
    shared: &mut BTreeSet<String>,
) {
    for ((p, v), s) in releases.take_outbox() {
        let body = seal_state(&(p.clone(), v.clone()), &s, signer);
        let _ = client.publish(topics.state(&p, &v), QoS::AtLeastOnce, true, body).await;
        tracing::info!(platform = %p, variant = %v, seq = s.seq, stable = %s.stable, candidate = ?s.candidate,
            percent = s.percent(), "release state published");
    }
    for ((p, v), s) in releases.states() {
        for rev in std::iter::once(s.stable.as_str()).chain(s.candidate.as_deref()) {
            let id = format!("{p}/{v}/{rev}");
            if shared.contains(&id) {
                continue;
            }
            if let Some(bytes) = releases.publishable(&(p.clone(), v.clone()), rev, signer) {
                let _ = client.publish(topics.bundle(&p, &v, rev), QoS::AtLeastOnce, true, bytes).await;
                shared.insert(id);
            }
        }
    }
}

/// Runs until cancelled: `seen` carries every message under the release prefix and the probe (and QoS 1
/// reports), `reports` the QoS 0 reports, polled after everything else so that a flood of them delays nothing.
pub async fn run(
    client: AsyncClient,
    state: Arc<State>,
    topics: ReleaseTopics,
    liveness: Liveness,
    (mut subscribed, mut seen, mut reports): (watch::Receiver<bool>, mpsc::Receiver<Seen>, mpsc::Receiver<Seen>),
    cancel: CancellationToken,
) {
    let Some(releases) = state.releases().cloned() else { return };
    // Configuration refuses manual mode without a signing key: every state and bundle this instance publishes
    // is signed.
    let Some(signer) = state.signer_arc() else {
        tracing::error!("manual release mode without a signing key: release states are not published");
        return;
    };
    let mut logged = LoggedOnce::default();
    // Bundles published on this connection (`platform/variant/revision`).
    let mut shared: BTreeSet<String> = BTreeSet::new();
    let mut applied = None;
    let mut changes = state.catalog_changes();
    // Requests and reports per revision ride on the liveness message, refreshed at most this often (an applied
    // `seq`, which operators wait for, goes out at once).
    let mut refresh = tokio::time::interval(STATS_EVERY);
    refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut stats = BTreeMap::new();
    loop {
        let msg = tokio::select! {
            biased;
            _ = cancel.cancelled() => return,
            // A build in manual mode changes the states (a new candidate) before it changes what is served.
            r = changes.changed() => if r.is_err() { return } else { None },
            r = subscribed.changed() => {
                if r.is_err() { return }
                if *subscribed.borrow_and_update() {
                    shared.clear();
                    applied = None;
                    // Comes back after every retained message of our subscriptions: then we know the group's state.
                    let _ = client.publish(topics.probe.as_str(), QoS::AtLeastOnce, false, Vec::new()).await;
                }
                None
            }
            msg = seen.recv() => match msg { Some(m) => Some(m), None => return },
            _ = refresh.tick() => {
                stats = state.metrics.per_revision();
                None
            }
            msg = reports.recv() => match msg { Some(m) => Some(m), None => return },
        };
        if let Some(msg) = msg {
            match on_message(&state, &releases, &topics, &mut logged, &msg) {
                Some(served) => state.swap_catalog(Arc::new(served)),
                // Nothing changed (every report that is not a halt): nothing to publish.
                None if topics.classify(&msg.topic).is_some_and(|t| t.is_report()) => continue,
                None => {}
            }
        }
        if !*subscribed.borrow() {
            continue;
        }
        publish_changes(&client, &releases, &topics, &signer, &mut shared).await;
        let now: Applied = (releases.applied(), stats.clone());
        if applied.as_ref() != Some(&now) {
            let body = online_with(&liveness, &now);
            let _ = client.publish(liveness.topic.as_str(), QoS::AtLeastOnce, true, body).await;
            applied = Some(now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{LoggedOnce, LOGGED_TOPICS};

    #[test]
    fn a_refusal_is_logged_once_per_topic_and_the_memory_is_bounded() {
        let mut logged = LoggedOnce::default();
        assert!(logged.first("connector-scripts/releases/ios/next"));
        assert!(!logged.first("connector-scripts/releases/ios/next"), "logged twice");
        for i in 1..LOGGED_TOPICS {
            assert!(logged.first(&format!("forged/{i}")));
        }
        assert!(!logged.first("forged/one-more"), "unbounded");
        assert_eq!(logged.0.len(), LOGGED_TOPICS);
    }
}
