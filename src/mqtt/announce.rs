//! Push, not poll: retained manifests per variant and `connectorsChanged` events.
//!
//! For every variant the broker holds a retained `{revision, connectors: [{name, sha256}], publishedAt}` on
//! `<manifest prefix>/<platform>/<variant>`, so an app that subscribes learns the current revision at once and
//! every later one live. Each new revision also goes out as a NestJS event `{"pattern":"connectorsChanged",
//! "data":{platform, variant, revision}}`. After every (re)connection all manifests are published again (the
//! broker may have lost them); retained manifests of variants that no longer exist are cleared.

use crate::catalog::Catalog;
use crate::state::{Identity, State};
use crate::wire::topics::Topics;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::AsyncClient;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

/// The retained liveness messages on `<status prefix>/<instance>`.
#[derive(Debug, Clone)]
pub struct Liveness {
    /// The status topic.
    pub topic: String,
    /// Published (retained) on every connection.
    pub online: Vec<u8>,
    /// The Last Will (retained), and what a clean shutdown publishes.
    pub offline: Vec<u8>,
}

impl Liveness {
    /// `{"state":…, "instance", "version", "startedAt"}` on the instance's status topic.
    pub fn new(topics: &Topics, identity: &Identity) -> Liveness {
        let body = |state: &str| {
            serde_json::json!({
                "state": state,
                "instance": identity.instance,
                "version": env!("CARGO_PKG_VERSION"),
                "startedAt": humantime::format_rfc3339_millis(identity.started_at).to_string(),
            })
            .to_string()
            .into_bytes()
        };
        Liveness { topic: topics.status(&identity.instance), online: body("online"), offline: body("offline") }
    }
}

/// The manifest body of one bundle.
pub fn manifest_json(bundle: &crate::catalog::Bundle, published_at: std::time::SystemTime) -> Vec<u8> {
    let connectors: Vec<serde_json::Value> =
        bundle.scripts.iter().map(|s| serde_json::json!({"name": s.name, "sha256": s.sha256})).collect();
    serde_json::json!({
        "revision": bundle.revision,
        "connectors": connectors,
        "publishedAt": humantime::format_rfc3339_millis(published_at).to_string(),
    })
    .to_string()
    .into_bytes()
}

type Key = (String, String);

fn revisions(catalog: &Catalog) -> BTreeMap<Key, String> {
    catalog.bundles().map(|b| ((b.platform.clone(), b.variant.clone()), b.revision.clone())).collect()
}

/// Publishes manifests and events until cancelled. `subscribed` turns true on each new connection;
/// `retained_seen` carries manifest topics that the broker delivered as retained.
pub async fn run(
    client: AsyncClient,
    state: Arc<State>,
    topics: Topics,
    mut subscribed: watch::Receiver<bool>,
    mut retained_seen: mpsc::Receiver<String>,
    cancel: CancellationToken,
) {
    let mut changes = state.catalog_changes();
    // What this connection has published (cleared on reconnect) and the last revisions seen (for events).
    let mut published: BTreeMap<Key, String> = BTreeMap::new();
    let mut last: Option<BTreeMap<Key, String>> = None;
    let mut stale: BTreeSet<String> = BTreeSet::new();
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            r = changes.changed() => if r.is_err() { return },
            r = subscribed.changed() => {
                if r.is_err() { return }
                if *subscribed.borrow_and_update() {
                    published.clear();
                }
            }
            topic = retained_seen.recv() => match topic {
                Some(t) => { stale.insert(t); }
                None => return,
            },
        }
        if !*subscribed.borrow() {
            continue;
        }
        let Some(catalog) = state.catalog() else { continue };
        let now = std::time::SystemTime::now();
        let current = revisions(&catalog);
        for bundle in catalog.bundles() {
            let key = (bundle.platform.clone(), bundle.variant.clone());
            if published.get(&key) == Some(&bundle.revision) {
                continue;
            }
            let topic = topics.manifest(&bundle.platform, &bundle.variant);
            if client.publish(topic.as_str(), QoS::AtLeastOnce, true, manifest_json(bundle, now)).await.is_err() {
                break; // the connection is closing; the next connection republishes everything
            }
            published.insert(key.clone(), bundle.revision.clone());
            let changed = last.as_ref().is_some_and(|l| l.get(&key) != Some(&bundle.revision));
            if changed {
                let event = serde_json::json!({
                    "pattern": topics.changed,
                    "data": {"platform": bundle.platform, "variant": bundle.variant, "revision": bundle.revision},
                });
                let _ = client.publish(topics.changed.as_str(), QoS::AtLeastOnce, false, event.to_string()).await;
                tracing::info!(platform = %bundle.platform, variant = %bundle.variant, revision = %bundle.revision, "new revision announced");
            }
        }
        // Clear retained manifests of variants that are gone (from this run, or left by an earlier one).
        let gone: Vec<Key> = published.keys().filter(|k| !current.contains_key(*k)).cloned().collect();
        for key in gone {
            published.remove(&key);
            stale.insert(topics.manifest(&key.0, &key.1));
        }
        let live: BTreeSet<String> = current.keys().map(|(p, v)| topics.manifest(p, v)).collect();
        for topic in std::mem::take(&mut stale) {
            if !live.contains(&topic) {
                let _ = client.publish(topic.as_str(), QoS::AtLeastOnce, true, Vec::new()).await;
                tracing::info!(%topic, "cleared the retained manifest of a variant that no longer exists");
            }
        }
        last = Some(current);
    }
}
