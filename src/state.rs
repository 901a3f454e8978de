//! Shared state of a running service: the catalog cell (swapped whole, read without a lock), the broker link, the
//! counters, and the ONE [`State::readiness`] that systemd READY, `/readyz`, the `ready` gauge and `status` use.

use crate::catalog::Catalog;
use crate::handler::Handler;
use crate::metrics::Metrics;
use crate::release::Releases;
use crate::signing::Signer;
use arc_swap::ArcSwapOption;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};
use tokio::sync::watch;
mod link;
pub use link::Link;

/// Who this instance is, for health output and the liveness topic.
#[derive(Debug, Clone)]
pub struct Identity {
    /// Instance name (as on the status topic).
    pub instance: String,
    /// The broker nodes (`--broker`, in order), safe to show (no password).
    pub brokers: Vec<String>,
    /// Start time.
    pub started_at: SystemTime,
    /// Start instant, for uptime.
    pub started: Instant,
}

/// Why the service is not ready, as a bounded code: the `reason` label of `connector_scripts_not_ready` and what
/// alert rules match on (the sentence in [`Readiness::reasons`] says the details).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NotReady {
    /// No catalog built yet.
    CatalogNotLoaded,
    /// A catalog, but no platform in it can be served.
    NoUsablePlatform,
    /// Not connected to the broker.
    BrokerDisconnected,
    /// Connected, request subscriptions not confirmed.
    NotSubscribed,
    /// The second connection, for QoS 0 replies, is down.
    ReplyLinkDown,
    /// Managed releases: the retained states not read yet, or a revision they name not obtainable.
    ReleaseState,
}

impl NotReady {
    /// Every cause, in the order [`State::readiness`] checks them.
    pub const ALL: [NotReady; 6] = [
        NotReady::CatalogNotLoaded,
        NotReady::NoUsablePlatform,
        NotReady::BrokerDisconnected,
        NotReady::NotSubscribed,
        NotReady::ReplyLinkDown,
        NotReady::ReleaseState,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            NotReady::CatalogNotLoaded => "catalog_not_loaded",
            NotReady::NoUsablePlatform => "no_usable_platform",
            NotReady::BrokerDisconnected => "broker_disconnected",
            NotReady::NotSubscribed => "not_subscribed",
            NotReady::ReplyLinkDown => "reply_link_down",
            NotReady::ReleaseState => "release_state",
        }
    }
}

/// Ready, or the reasons it is not; and what is wrong without making it unready.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Readiness {
    /// Why the service is not ready; empty when it is.
    pub reasons: Vec<String>,
    /// The codes of the first reasons, in the same order; reasons beyond them have no code of their own and are
    /// counted as `other` ([`Readiness::uncoded`]).
    pub causes: Vec<NotReady>,
    /// What an operator should know while it serves: connectors missing from variants, a held reload.
    pub warnings: Vec<String>,
}

impl Readiness {
    /// True when there is no reason not to be ready.
    pub fn is_ready(&self) -> bool {
        self.reasons.is_empty()
    }

    /// True when a reason has no [`NotReady`] code (the `other` reason of `connector_scripts_not_ready`).
    pub fn uncoded(&self) -> bool {
        self.reasons.len() > self.causes.len()
    }
}

/// Everything the tasks of one service share.
#[derive(Debug)]
pub struct State {
    catalog: ArcSwapOption<Catalog>,
    /// Bumped on every catalog swap; the announcer, the reply worker and readiness watch it.
    generation: watch::Sender<u64>,
    /// The broker connection.
    pub link: Link,
    /// The last catalog builds swapped in, for the status page.
    pub reloads: crate::activity::ReloadLog,
    /// Every counter.
    pub metrics: Metrics,
    /// The request handler.
    pub handler: Handler,
    /// Who we are.
    pub identity: Identity,
    /// Why the last reload was not applied (cleared by the next swap).
    held: Mutex<Option<String>>,
    /// Signs each catalog as it is swapped in (`serve --signing-key`).
    signer: Option<Arc<Signer>>,
    /// The instances' signing keys trusted for peers' manifests: our own and `--trusted-key`.
    trusted: crate::signing::TrustedKeys,
    /// Managed releases (`--release-mode manual`).
    releases: Option<Arc<Releases>>,
}

impl State {
    /// State with no catalog yet and no connection.
    pub fn new(handler: Handler, instance: String, brokers: Vec<String>) -> State {
        State {
            catalog: ArcSwapOption::empty(),
            generation: watch::channel(0).0,
            link: Link::default(),
            reloads: Default::default(),
            metrics: Metrics::default(),
            handler,
            identity: Identity { instance, brokers, started_at: SystemTime::now(), started: Instant::now() },
            held: Mutex::new(None),
            signer: None,
            trusted: Default::default(),
            releases: None,
        }
    }

    /// Serves what the release states say (`--release-mode manual`).
    pub fn with_releases(mut self, releases: Option<Arc<Releases>>) -> State {
        self.releases = releases;
        self
    }

    /// The release engine, in manual mode.
    pub fn releases(&self) -> Option<&Arc<Releases>> {
        self.releases.as_ref()
    }

    /// Signs every catalog swapped in from now on with `signer`; `trusted` are the signing keys of the instances
    /// whose manifests are peers' (ours among them), so that instances with an old and a new key converge.
    pub fn with_signer(mut self, signer: Option<Arc<Signer>>, trusted: crate::signing::TrustedKeys) -> State {
        self.signer = signer;
        self.trusted = trusted;
        self
    }

    /// The trusted instance signing keys (`None` when this instance does not sign).
    pub fn trusted_keys(&self) -> Option<&crate::signing::TrustedKeys> {
        self.signer.as_ref().map(|_| &self.trusted)
    }

    /// The signing key, when the service signs.
    pub fn signer(&self) -> Option<&Signer> {
        self.signer.as_deref()
    }

    /// The signing key, shared (tasks that sign for as long as they run).
    pub fn signer_arc(&self) -> Option<Arc<Signer>> {
        self.signer.clone()
    }

    /// The current catalog; `None` until the first build finishes. A reader sees one whole catalog, old or new,
    /// never a mix, and reading costs no lock.
    pub fn catalog(&self) -> Option<Arc<Catalog>> {
        self.catalog.load_full()
    }

    /// The current catalog without touching its reference count (the hot path's read).
    pub fn catalog_guard(&self) -> arc_swap::Guard<Option<Arc<Catalog>>> {
        self.catalog.load()
    }

    /// True once a first catalog has been swapped in.
    pub fn has_catalog(&self) -> bool {
        self.catalog.load().is_some()
    }

    /// Records why a reload was not applied (the current catalog stays).
    pub fn hold(&self, why: String) {
        if let Ok(mut held) = self.held.lock() {
            *held = Some(why);
        }
        self.generation.send_modify(|_| {});
    }

    /// Why the last reload was held, if it was.
    pub fn held(&self) -> Option<String> {
        self.held.lock().ok().and_then(|h| h.clone())
    }

    /// Replaces the catalog atomically and tells every watcher.
    pub fn swap_catalog(&self, catalog: Arc<Catalog>) {
        if let Ok(mut held) = self.held.lock() {
            *held = None;
        }
        // Once per revision, never per request: replies stay pre-serialized.
        let catalog = match &self.signer {
            Some(signer) => {
                let mut signed = Arc::unwrap_or_clone(catalog);
                crate::signing::sign_catalog(&mut signed, self.catalog().as_deref(), signer);
                Arc::new(signed)
            }
            None => catalog,
        };
        self.catalog.store(Some(catalog));
        self.metrics.reloads.inc();
        self.generation.send_modify(|g| *g += 1);
    }

    /// Watches catalog swaps (the value counts them).
    pub fn catalog_changes(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }

    /// The one definition of ready: a catalog with at least one usable platform, connected, subscriptions
    /// confirmed. A broken snippet does not make the service unready (its last good version is served).
    pub fn readiness(&self) -> Readiness {
        let mut reasons = Vec::new();
        let mut causes = Vec::new();
        let mut not_ready = |cause: NotReady, reason: String| {
            causes.push(cause);
            reasons.push(reason);
        };
        match self.catalog.load().as_deref() {
            None => not_ready(NotReady::CatalogNotLoaded, "catalog not loaded yet".to_string()),
            Some(c) if c.platforms.is_empty() => not_ready(
                NotReady::NoUsablePlatform,
                format!("catalog has no usable platform ({} error(s); run `connector-scripts check`)", c.error_count()),
            ),
            Some(_) => {}
        }
        if !self.link.connected() {
            not_ready(
                NotReady::BrokerDisconnected,
                match self.link.last_error() {
                    Some(e) => format!("broker not connected: {e}"),
                    None => "broker not connected yet".to_string(),
                },
            );
        } else if !self.link.subscribed() {
            not_ready(NotReady::NotSubscribed, "connected but the request subscriptions are not confirmed".to_string());
        } else if !self.link.replies_connected() {
            not_ready(NotReady::ReplyLinkDown, "the reply connection is not connected yet".to_string());
        }
        if let Some(r) = &self.releases {
            for reason in r.not_ready() {
                not_ready(NotReady::ReleaseState, reason);
            }
        }
        Readiness { reasons, causes, warnings: self.warnings() }
    }

    /// Connectors that variants cannot ship, and a held reload.
    fn warnings(&self) -> Vec<String> {
        let mut warnings: Vec<String> = (self.catalog.load().as_deref().into_iter())
            .flat_map(|c| &c.missing)
            .map(|m| {
                format!(
                    "connector {:?} is missing from {}/{}: its source does not compile and there is no last good \
                     version (run `connector-scripts check`)",
                    m.connector, m.platform, m.variant
                )
            })
            .collect();
        warnings.extend(self.held());
        warnings
    }

    /// Resolves once [`State::readiness`] says ready (now or later).
    pub async fn wait_ready(&self) {
        let mut catalog = self.catalog_changes();
        let mut link = self.link.watch();
        while !self.readiness().is_ready() {
            tokio::select! {
                _ = catalog.changed() => {}
                _ = link.changed() => {}
            }
        }
    }

    /// Resolves once a first catalog is loaded (now or later).
    pub async fn wait_catalog(&self) {
        let mut changes = self.catalog_changes();
        while !self.has_catalog() {
            if changes.changed().await.is_err() {
                return;
            }
        }
    }
}

/// A state with short topics and no catalog, for unit tests here and in the ops router.
#[cfg(test)]
pub(crate) fn test_state() -> State {
    let topics = crate::wire::topics::Topics {
        request: "r".into(),
        manifest_prefix: "m".into(),
        changed: "c".into(),
        status_prefix: "s".into(),
        releases: None,
    };
    State::new(
        Handler::new(topics, crate::wire::Limits::default(), Default::default()),
        "inst".into(),
        vec!["mqtt://b:1".into()],
    )
}

#[cfg(test)]
mod tests;
