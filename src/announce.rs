//! Push, not poll: retained manifests per variant and `connectorsChanged` events.
//!
//! For every variant the broker holds a retained `{revision, connectors: [{name, sha256}], publishedAt}` on
//! `<manifest prefix>/<platform>/<variant>`, so an app that subscribes learns the current revision at once and
//! every later one live. Each new revision also goes out as a NestJS event `{"pattern":"connectorsChanged",
//! "data":{platform, variant, revision}}`. After every (re)connection all manifests are published again (the
//! broker may have lost them); retained manifests of variants that no longer exist are cleared.

use crate::catalog::Catalog;
use crate::service::Service;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::AsyncClient;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

/// Topic names for announcements.
#[derive(Debug, Clone)]
pub struct Topics {
    /// Prefix of the retained manifests (`connectors` → `connectors/<platform>/<variant>`).
    pub manifest_prefix: String,
    /// Topic of the `connectorsChanged` events.
    pub changed_topic: String,
}

impl Default for Topics {
    fn default() -> Self {
        Topics { manifest_prefix: "connectors".into(), changed_topic: "connectorsChanged".into() }
    }
}

impl Topics {
    /// The manifest topic of one variant.
    pub fn manifest(&self, platform: &str, variant: &str) -> String {
        format!("{}/{platform}/{variant}", self.manifest_prefix)
    }

    /// The filter that sees every manifest.
    pub fn manifest_filter(&self) -> String {
        format!("{}/+/+", self.manifest_prefix)
    }

    /// True for a manifest topic.
    pub fn is_manifest(&self, topic: &str) -> bool {
        topic.strip_prefix(self.manifest_prefix.as_str()).is_some_and(|rest| rest.starts_with('/'))
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
    service: Arc<Service>,
    topics: Topics,
    mut subscribed: watch::Receiver<bool>,
    mut retained_seen: mpsc::Receiver<String>,
    cancel: CancellationToken,
) {
    let mut changes = service.catalog_changes();
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
        let Some(catalog) = service.catalog.load_full() else { continue };
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
                    "pattern": topics.changed_topic,
                    "data": {"platform": bundle.platform, "variant": bundle.variant, "revision": bundle.revision},
                });
                let _ = client.publish(topics.changed_topic.as_str(), QoS::AtLeastOnce, false, event.to_string()).await;
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
