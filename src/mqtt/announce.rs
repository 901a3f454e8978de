//! Push, not poll: retained manifests per variant and `connectorsChanged` events.
//!
//! For every variant the broker holds a retained `{revision, connectors: [{name, sha256}], publishedAt}` on
//! `<manifest prefix>/<platform>/<variant>`, so an app that subscribes learns the current revision at once and
//! every later one live. Each new revision also goes out as a NestJS event `{"pattern":"connectorsChanged",
//! "data":{platform, variant, revision}}`. After every (re)connection all manifests are published again (the
//! broker may have lost them); retained manifests of variants that no longer exist are cleared.
//!
//! Manifests heal themselves: the service sees every manifest under its prefix, and one someone else wrote over
//! a variant it serves is replaced by its own at once, one for a variant it lacks is cleared — unless it is a
//! peer's (same key, same or newer revision), so that instances of a rolling deploy converge instead of fighting.

use crate::catalog::Catalog;
use crate::metrics::HealLabels;
use crate::signing::{notice_json, verify_manifest, verify_notice, TrustedKeys};
use crate::state::{Identity, State};
use crate::wire::bus::{ChangeEvent, Changed, LivenessDoc, ManifestEntry, RetainedManifest};
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
    /// `online` as a document (manual mode adds to it).
    pub doc: LivenessDoc,
}

impl Liveness {
    /// `{"state":…, "instance", "version", "startedAt"}` on the instance's status topic.
    pub fn new(topics: &Topics, identity: &Identity) -> Liveness {
        let body = |state: &str| LivenessDoc {
            state: state.to_string(),
            instance: identity.instance.clone(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            started_at: humantime::format_rfc3339_millis(identity.started_at).to_string(),
            releases: None,
            served: None,
        };
        let doc = body("online");
        let (online, offline) = (doc.to_bytes(), body("offline").to_bytes());
        Liveness { topic: topics.status(&identity.instance), online, offline, doc }
    }
}

/// The retained manifest of one bundle: `{revision, connectors: [{name, sha256}], publishedAt}` (the time the
/// revision was first built, so republishing gives the same bytes), plus `manifest`, `signature` and `keyId` when
/// the service signs.
pub fn manifest_json(bundle: &crate::catalog::Bundle) -> Vec<u8> {
    let connectors =
        bundle.scripts.iter().map(|s| ManifestEntry { name: s.name.clone(), sha256: s.sha256.clone() }).collect();
    let doc = RetainedManifest {
        revision: bundle.revision.clone(),
        connectors,
        published_at: humantime::format_rfc3339_millis(bundle.issued_at).to_string(),
        manifest: bundle.signed.as_ref().map(|s| s.manifest.clone()),
        signature: bundle.signed.as_ref().map(|s| s.signature.clone()),
        key_id: bundle.signed.as_ref().map(|s| s.key_id.clone()),
    };
    serde_json::to_vec(&doc).unwrap_or_default()
}

/// A manifest publish seen under the prefix (never our own: the subscription is No Local).
#[derive(Debug, Clone)]
pub struct Seen {
    /// `<prefix>/<platform>/<variant>`.
    pub topic: String,
    /// What was published (empty: a retained message cleared).
    pub payload: bytes::Bytes,
    /// Delivered from the broker's store at subscription time, rather than published now.
    pub retained: bool,
}

/// What to do about a manifest someone else published.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Another instance of this service: same revision, or a newer one (a rolling deploy converges on the newest).
    Peer,
    /// Put our own manifest back.
    Replace,
    /// Clear it: a variant we do not have, and not a live peer's.
    Clear,
    /// Nothing to do.
    Leave,
}

/// Judges a foreign manifest on a topic where we serve `ours` (or nothing). A peer's manifest is one signed with
/// our key (`keys`), or, when the service does not sign, any well-formed manifest: without a key a forgery with a
/// later `publishedAt` cannot be told from a peer's, which is why production should sign.
///
/// A revision notice (`notice`: seen on a notice topic) is judged the same way, by the revision and time it signs.
pub fn judge(seen: &Seen, ours: Option<&crate::catalog::Bundle>, keys: Option<&TrustedKeys>, notice: bool) -> Verdict {
    let peer = peer_manifest(&seen.payload, keys, notice);
    match (ours, peer) {
        (Some(ours), Some((revision, at))) if revision == ours.revision || at > ours.issued_at => Verdict::Peer,
        (Some(_), _) => Verdict::Replace,
        (None, _) if seen.payload.is_empty() => Verdict::Leave,
        // A live, valid manifest of a variant we lack is a newer peer's (it just added the variant); one left in
        // the broker from before, or any invalid one, goes.
        (None, Some(_)) if !seen.retained => Verdict::Peer,
        (None, _) => Verdict::Clear,
    }
}

/// The revision and publish time of a manifest (or notice) this service, or a peer with the same key, could have
/// written.
fn peer_manifest(payload: &[u8], keys: Option<&TrustedKeys>, notice: bool) -> Option<(String, std::time::SystemTime)> {
    let doc: serde_json::Value = serde_json::from_slice(payload).ok()?;
    let (revision, at) = match keys {
        Some(keys) if notice => {
            let (_, n) = verify_notice(&doc, keys).ok()?;
            (n.revision, n.signed_at)
        }
        Some(keys) => {
            let (_, m) = verify_manifest(&doc, keys).ok()?;
            (m.revision, m.signed_at)
        }
        None if notice => (doc["revision"].as_str()?.to_string(), doc["publishedAt"].as_str()?.to_string()),
        None => {
            let m: RetainedManifest = serde_json::from_value(doc).ok()?;
            (m.revision, m.published_at)
        }
    };
    Some((revision, humantime::parse_rfc3339(&at).ok()?))
}

type Key = (String, String);

fn revisions(catalog: &Catalog) -> BTreeMap<Key, String> {
    catalog.bundles().map(|b| ((b.platform.clone(), b.variant.clone()), b.revision.clone())).collect()
}

/// Publishes manifests and events until cancelled. `subscribed` turns true on each new connection; `seen`
/// carries every manifest someone else published under the prefix, which is judged ([`judge`]): ours goes back
/// within the moment, an orphan is cleared, a peer's is left.
pub async fn run(
    client: AsyncClient,
    state: Arc<State>,
    topics: Topics,
    mut subscribed: watch::Receiver<bool>,
    mut seen: mpsc::Receiver<Seen>,
    cancel: CancellationToken,
) {
    let keys = state.trusted_keys().cloned();
    let mut changes = state.catalog_changes();
    // What this connection has published (cleared on reconnect) and the last revisions seen (for events).
    let mut published: BTreeMap<Key, String> = BTreeMap::new();
    let mut last: Option<BTreeMap<Key, String>> = None;
    let mut stale: BTreeSet<String> = BTreeSet::new();
    let mut foreign_seen: Vec<Seen> = Vec::new();
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
            foreign = seen.recv() => match foreign {
                Some(f) => foreign_seen.push(f),
                None => return,
            },
        }
        // Judged once a catalog exists: a manifest retained from an earlier run arrives before the first build.
        if let Some(catalog) = state.catalog() {
            let foreign = std::mem::take(&mut foreign_seen);
            judge_all(foreign, (&state, &catalog, &topics, keys.as_ref()), &mut published, &mut stale);
        }
        if !*subscribed.borrow() {
            continue;
        }
        let Some(catalog) = state.catalog() else { continue };
        let current = revisions(&catalog);
        for bundle in catalog.bundles() {
            let key = (bundle.platform.clone(), bundle.variant.clone());
            if published.get(&key) == Some(&bundle.revision) {
                continue;
            }
            let topic = topics.manifest(&bundle.platform, &bundle.variant);
            let notice = topics.notice(&bundle.platform, &bundle.variant);
            // The full manifest, then the small notice that delta-fetching devices follow instead.
            if client.publish(topic.as_str(), QoS::AtLeastOnce, true, manifest_json(bundle)).await.is_err()
                || client.publish(notice.as_str(), QoS::AtLeastOnce, true, notice_json(bundle)).await.is_err()
            {
                break; // the connection is closing; the next connection republishes everything
            }
            published.insert(key.clone(), bundle.revision.clone());
            let changed = last.as_ref().is_some_and(|l| l.get(&key) != Some(&bundle.revision));
            if changed {
                let data = Changed {
                    platform: bundle.platform.clone(),
                    variant: bundle.variant.clone(),
                    revision: bundle.revision.clone(),
                };
                let event =
                    serde_json::to_vec(&ChangeEvent { pattern: topics.changed.clone(), data }).unwrap_or_default();
                let _ = client.publish(topics.changed.as_str(), QoS::AtLeastOnce, false, event).await;
                tracing::info!(platform = %bundle.platform, variant = %bundle.variant, revision = %bundle.revision, "new revision announced");
            }
        }
        clear_gone(&client, &topics, &current, &mut published, &mut stale).await;
        last = Some(current);
    }
}

/// Clears the retained manifests and notices of variants that are gone (from this run, or left by an earlier one).
async fn clear_gone(
    client: &AsyncClient,
    topics: &Topics,
    current: &BTreeMap<Key, String>,
    published: &mut BTreeMap<Key, String>,
    stale: &mut BTreeSet<String>,
) {
    let gone: Vec<Key> = published.keys().filter(|k| !current.contains_key(*k)).cloned().collect();
    for key in gone {
        published.remove(&key);
        stale.insert(topics.manifest(&key.0, &key.1));
        stale.insert(topics.notice(&key.0, &key.1));
    }
    let live: BTreeSet<String> =
        current.keys().flat_map(|(p, v)| [topics.manifest(p, v), topics.notice(p, v)]).collect();
    for topic in std::mem::take(stale) {
        if !live.contains(&topic) {
            let _ = client.publish(topic.as_str(), QoS::AtLeastOnce, true, Vec::new()).await;
            tracing::info!(%topic, "cleared the retained manifest of a variant that no longer exists");
        }
    }
}

/// Judges the manifests someone else published ([`judge`]) and acts: ours is marked for publishing again, an
/// orphan for clearing; a peer's is left.
fn judge_all(
    foreign: Vec<Seen>,
    (state, catalog, topics, keys): (&State, &Catalog, &Topics, Option<&TrustedKeys>),
    published: &mut BTreeMap<Key, String>,
    stale: &mut BTreeSet<String>,
) {
    for f in foreign {
        match judge(&f, bundle_at(catalog, topics, &f.topic), keys, topics.is_notice(&f.topic)) {
            Verdict::Replace => {
                tracing::warn!(topic = %f.topic, "someone else wrote this variant's manifest: putting ours back");
                heal(state, "replaced");
                published.retain(|(p, v), _| topics.manifest(p, v) != f.topic && topics.notice(p, v) != f.topic);
            }
            Verdict::Clear => {
                tracing::warn!(topic = %f.topic, "a manifest for a variant this service does not have: clearing it");
                heal(state, "cleared");
                stale.insert(f.topic);
            }
            Verdict::Peer | Verdict::Leave => {}
        }
    }
}

/// Our bundle for a manifest or notice topic.
fn bundle_at<'a>(catalog: &'a Catalog, topics: &Topics, topic: &str) -> Option<&'a crate::catalog::Bundle> {
    catalog
        .bundles()
        .map(|b| b.as_ref())
        .find(|b| topics.manifest(&b.platform, &b.variant) == topic || topics.notice(&b.platform, &b.variant) == topic)
}

fn heal(state: &State, action: &str) {
    state.metrics.manifests_healed.get_or_create(&HealLabels { action: action.to_string() }).inc();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{Bundle, CompileOptions, ModuleFormat, Script, Target};
    use crate::signing::Signer;
    use std::time::{Duration, SystemTime};

    const OPTS: CompileOptions =
        CompileOptions { target: Target::Es2022, module: ModuleFormat::Esm, minify: false, source_maps: false };

    fn bundle(code: &str, issued: SystemTime, signer: Option<&Signer>) -> Bundle {
        let script = Script {
            name: "a".into(),
            code: code.into(),
            sha256: crate::catalog::bundle::sha256_hex(code.as_bytes()),
            source_map: None,
        };
        let mut b = Bundle::new("ios", "next", "*", OPTS, vec![script]);
        b.issued_at = issued;
        match signer {
            Some(s) => b.with_signature(s.sign_bundle(&b, issued)),
            None => b,
        }
    }

    fn seen(b: &Bundle, retained: bool) -> Seen {
        Seen { topic: "connectors/ios/next".into(), payload: manifest_json(b).into(), retained }
    }

    #[test]
    fn signed_peers_converge_on_the_newest_and_forgeries_are_replaced() {
        let key = Signer::from_bytes(&[7; 32]);
        let keys = TrustedKeys::of(key.public_key());
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let later = t0 + Duration::from_secs(60);
        let ours = bundle("old()", t0, Some(&key));
        let judged = |s: &Seen| judge(s, Some(&ours), Some(&keys), false);
        // Another instance signed the same revision at another time: no fight.
        assert_eq!(judged(&seen(&bundle("old()", later, Some(&key)), false)), Verdict::Peer);
        // A rolling deploy's newer revision wins; an older one is replaced by ours (then it yields in turn).
        assert_eq!(judged(&seen(&bundle("new()", later, Some(&key)), false)), Verdict::Peer);
        let newer = bundle("new()", later, Some(&key));
        assert_eq!(judge(&seen(&ours, false), Some(&newer), Some(&keys), false), Verdict::Replace);
        // Unsigned, signed with another key, or cleared: ours goes back.
        assert_eq!(judged(&seen(&bundle("evil()", later, None), false)), Verdict::Replace);
        let other = Signer::from_bytes(&[9; 32]);
        assert_eq!(judged(&seen(&bundle("evil()", later, Some(&other)), false)), Verdict::Replace);
        let cleared = Seen { topic: "connectors/ios/next".into(), payload: Default::default(), retained: false };
        assert_eq!(judged(&cleared), Verdict::Replace);
        // A variant we lack: a live, valid one is a peer's; a stale or invalid one goes.
        let ghost = |b: &Bundle, retained| judge(&seen(b, retained), None, Some(&keys), false);
        assert_eq!(ghost(&newer, false), Verdict::Peer);
        assert_eq!(ghost(&newer, true), Verdict::Clear);
        assert_eq!(ghost(&bundle("evil()", later, None), false), Verdict::Clear);
        assert_eq!(judge(&cleared, None, Some(&keys), false), Verdict::Leave);
    }

    #[test]
    fn unsigned_instances_judge_by_well_formed_manifests() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let ours = bundle("old()", t0, None);
        let newer = bundle("new()", t0 + Duration::from_secs(1), None);
        assert_eq!(judge(&seen(&newer, false), Some(&ours), None, false), Verdict::Peer);
        assert_eq!(judge(&seen(&ours, false), Some(&newer), None, false), Verdict::Replace);
        let forged =
            Seen { topic: "connectors/ios/next".into(), payload: r#"{"revision":"evil"}"#.into(), retained: true };
        assert_eq!(judge(&forged, Some(&ours), None, false), Verdict::Replace);
        assert_eq!(judge(&forged, None, None, false), Verdict::Clear);
    }

    #[test]
    fn notices_are_judged_by_what_they_sign_and_never_pass_for_manifests() {
        let key = Signer::from_bytes(&[7; 32]);
        let keys = TrustedKeys::of(key.public_key());
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let (ours, newer) =
            (bundle("old()", t0, Some(&key)), bundle("new()", t0 + Duration::from_secs(60), Some(&key)));
        let on = |topic: &str, payload: Vec<u8>| Seen { topic: topic.into(), payload: payload.into(), retained: false };
        let notice = |b: &Bundle| on("connectors/ios/next/rev", notice_json(b));
        assert_eq!(judge(&notice(&newer), Some(&ours), Some(&keys), true), Verdict::Peer);
        assert_eq!(judge(&notice(&ours), Some(&newer), Some(&keys), true), Verdict::Replace);
        let other = Signer::from_bytes(&[9; 32]);
        let forged = bundle("evil()", t0 + Duration::from_secs(90), Some(&other));
        assert_eq!(judge(&notice(&forged), Some(&ours), Some(&keys), true), Verdict::Replace);
        // A signed manifest is not a notice, and a notice is not a manifest: each is refused on the other's topic.
        let manifest_on_notice = on("connectors/ios/next/rev", manifest_json(&newer));
        assert_eq!(judge(&manifest_on_notice, Some(&ours), Some(&keys), true), Verdict::Replace);
        let notice_on_manifest = on("connectors/ios/next", notice_json(&newer));
        assert_eq!(judge(&notice_on_manifest, Some(&ours), Some(&keys), false), Verdict::Replace);
        // The notice verifies and names the revision and signing time of the manifest it stands for.
        let doc: serde_json::Value = serde_json::from_slice(&notice_json(&newer)).unwrap();
        let (_, n) = verify_notice(&doc, &keys).unwrap();
        let (_, m) = verify_manifest(&serde_json::from_slice(&manifest_json(&newer)).unwrap(), &keys).unwrap();
        assert_eq!((n.revision, n.signed_at), (m.revision, m.signed_at));
        assert!(notice_json(&newer).len() < 400, "{} bytes", notice_json(&newer).len());
        // Another revision in the message than in the signed text is refused.
        let mut lying = doc.clone();
        lying["revision"] = "ffffffffffffffff".into();
        assert!(matches!(verify_notice(&lying, &keys), Err(crate::signing::VerifyError::Mismatch { .. })));
        // Unsigned, notices are judged by their revision and publish time, as unsigned manifests are.
        let (old, new) = (bundle("old()", t0, None), bundle("new()", t0 + Duration::from_secs(1), None));
        assert_eq!(judge(&notice(&new), Some(&old), None, true), Verdict::Peer);
        assert_eq!(judge(&notice(&old), Some(&new), None, true), Verdict::Replace);
        assert_eq!(
            judge(&on("connectors/ios/next/rev", br#"{"revision":"x"}"#.to_vec()), Some(&old), None, true),
            Verdict::Replace
        );
    }
}
