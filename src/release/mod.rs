//! Releases (`--release-mode manual`): staged rollout to a share of devices, promote, rollback, a kill switch.
//!
//! In manual mode a good build no longer goes to everyone at once: the first build of a variant becomes its stable
//! revision, every later one its candidate at 0 %, and operators move it (`rollout`, `promote`, `rollback`,
//! `disable`). The rollout state of each variant ([`state::ReleaseState`]) is a retained message on the broker, so
//! every instance of a share group applies the same one (the highest `seq`), and is kept under `--state-dir` with
//! the bundles of every revision that was stable or candidate ([`store`]), so a restart keeps them.
//!
//! [`Releases`] is the engine: it takes builds and states in and gives the catalog to serve out. Until the states
//! retained on the broker have been read ([`Releases::synced`]) it serves nothing new and publishes nothing, so
//! that a fresh instance never overwrites the group's state with its own.

pub mod state;
pub mod store;

use crate::catalog::{Bundle, Candidate, Catalog};
use state::ReleaseState;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;
use store::Store;

/// `--release-mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ReleaseMode {
    /// Every good build is served to everyone at once (development, staging).
    #[default]
    Auto,
    /// Builds become candidates; operators roll them out (production).
    Manual,
}

/// `platform/variant`.
pub type VariantKey = (String, String);

/// What [`Releases`] needs to know.
#[derive(Debug, Clone, PartialEq)]
pub struct ReleaseConfig {
    /// Where states and bundles are kept.
    pub state_dir: PathBuf,
    /// Retained states on `<prefix>/<platform>/<variant>`, bundles on `…/<variant>/bundles/<revision>`.
    pub topic_prefix: String,
    /// Who this instance is (`by` of the states it writes).
    pub instance: String,
}

#[derive(Default)]
struct Inner {
    states: BTreeMap<VariantKey, ReleaseState>,
    /// The latest build.
    built: Option<Arc<Catalog>>,
    /// States this instance changed and has not published yet.
    outbox: Vec<(VariantKey, ReleaseState)>,
    /// The retained states on the broker have been read.
    synced: bool,
    /// Why a variant cannot be served as its state says.
    missing: BTreeMap<VariantKey, String>,
}

/// The release engine of one instance.
pub struct Releases {
    cfg: ReleaseConfig,
    store: Store,
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for Releases {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Releases").field("cfg", &self.cfg).finish_non_exhaustive()
    }
}

impl Releases {
    /// Opens the store under `cfg.state_dir` and loads the states it kept.
    pub fn open(cfg: ReleaseConfig) -> Result<Releases, store::StoreError> {
        let store = Store::open(&cfg.state_dir)?;
        let states = store.states()?;
        Ok(Releases { cfg, store, inner: Mutex::new(Inner { states, ..Inner::default() }) })
    }

    /// The configuration.
    pub fn config(&self) -> &ReleaseConfig {
        &self.cfg
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Takes a new build; returns the catalog to serve once synced.
    pub fn on_build(&self, build: Catalog) -> Option<Catalog> {
        let build = Arc::new(build);
        for bundle in build.bundles() {
            if let Err(e) = self.store.put(bundle) {
                tracing::warn!(error = %e, "could not keep a revision in the release store");
            }
        }
        let mut inner = self.lock();
        inner.built = Some(build);
        inner.synced.then(|| self.serve(&mut inner))
    }

    /// The retained states have all been read: from now on builds become candidates and states are published.
    pub fn on_synced(&self) -> Option<Catalog> {
        let mut inner = self.lock();
        if inner.synced {
            return None;
        }
        inner.synced = true;
        // States only this instance knows (kept on disk while the broker lost its retained messages) go out.
        let local: Vec<_> = inner.states.iter().map(|(k, s)| (k.clone(), s.clone())).collect();
        inner.outbox.extend(local);
        inner.built.is_some().then(|| self.serve(&mut inner))
    }

    /// A state seen on the broker; returns the catalog to serve when it changed what is served.
    pub fn on_state(&self, key: VariantKey, state: ReleaseState) -> Option<Catalog> {
        let mut inner = self.lock();
        if inner.states.get(&key).is_some_and(|current| !state.supersedes(current)) {
            inner.outbox.retain(|(k, s)| *k != key || s.supersedes(&state));
            return None;
        }
        if let Err(e) = self.store.put_state(&key, &state) {
            tracing::warn!(error = %e, "could not keep the release state");
        }
        inner.outbox.retain(|(k, _)| *k != key);
        inner.states.insert(key, state);
        (inner.synced && inner.built.is_some()).then(|| self.serve(&mut inner))
    }

    /// A bundle another instance published: kept when it verifies, and served if a state names it.
    pub fn on_bundle(&self, stored: &[u8]) -> Option<Catalog> {
        match self.store.put_bytes(stored) {
            Ok(true) => {
                let mut inner = self.lock();
                (inner.synced && inner.built.is_some() && !inner.missing.is_empty()).then(|| self.serve(&mut inner))
            }
            Ok(false) => None,
            Err(e) => {
                tracing::warn!(error = %e, "a bundle published under the release prefix does not verify: ignored");
                None
            }
        }
    }

    /// The latest build (what the next build is compared with).
    pub fn built(&self) -> Option<Arc<Catalog>> {
        self.lock().built.clone()
    }

    /// States to publish (retained), each once.
    pub fn take_outbox(&self) -> Vec<(VariantKey, ReleaseState)> {
        std::mem::take(&mut self.lock().outbox)
    }

    /// The applied `seq` of every variant (`platform/variant` → seq), for the liveness message.
    pub fn applied(&self) -> BTreeMap<String, u64> {
        self.lock().states.iter().map(|((p, v), s)| (format!("{p}/{v}"), s.seq)).collect()
    }

    /// Every variant's state.
    pub fn states(&self) -> BTreeMap<VariantKey, ReleaseState> {
        self.lock().states.clone()
    }

    /// Why this instance cannot serve what the group serves (readiness reasons).
    pub fn not_ready(&self) -> Vec<String> {
        let inner = self.lock();
        let mut reasons: Vec<String> = inner.missing.values().cloned().collect();
        if !inner.synced {
            reasons.push("waiting for the release states retained on the broker".into());
        }
        reasons
    }

    /// The catalog to serve: per variant its stable bundle, and its candidate.
    fn serve(&self, inner: &mut Inner) -> Catalog {
        let Some(built) = inner.built.clone() else { return Catalog::default() };
        let mut served = (*built).clone();
        inner.missing.clear();
        let now = SystemTime::now();
        for (name, platform) in &mut served.platforms {
            let mut candidates = Vec::with_capacity(platform.bundles.len());
            for bundle in &mut platform.bundles {
                let key = (name.clone(), bundle.variant.clone());
                let next = match inner.states.get(&key) {
                    Some(s) => s.with_build(&bundle.revision, &self.cfg.instance, now),
                    None => Some(ReleaseState::first(&bundle.revision, &self.cfg.instance, now)),
                };
                if let Some(next) = next {
                    if let Err(e) = self.store.put_state(&key, &next) {
                        tracing::warn!(error = %e, "could not keep the release state");
                    }
                    inner.outbox.push((key.clone(), next.clone()));
                    inner.states.insert(key.clone(), next);
                }
                let state = inner.states[&key].clone();
                candidates.push(self.candidate(&state, &key, inner));
                *bundle = self.stable(&state, &key, bundle, inner);
            }
            platform.candidates = candidates;
        }
        served
    }

    /// The stable bundle of a variant as its state says (the build's when the store lacks it: then not ready).
    fn stable(&self, s: &ReleaseState, key: &VariantKey, built: &Arc<Bundle>, inner: &mut Inner) -> Arc<Bundle> {
        match self.bundle(key, &s.stable, s, built) {
            Some(b) => Arc::new(b.with_channel("stable")),
            None => {
                inner.missing.insert(
                    key.clone(),
                    format!(
                        "the release state of {}/{} names stable revision {}, which this instance has neither built, \
                         stored nor received",
                        key.0, key.1, s.stable
                    ),
                );
                built.clone()
            }
        }
    }

    fn candidate(&self, s: &ReleaseState, key: &VariantKey, inner: &mut Inner) -> Option<Candidate> {
        let rev = s.candidate.as_deref()?;
        let built = inner.built.clone()?;
        let current = built.bundles().find(|b| b.platform == key.0 && b.variant == key.1)?.clone();
        match self.bundle(key, rev, s, &current) {
            Some(b) => Some(Candidate { bundle: Arc::new(b.with_channel("candidate")), state: Arc::new(s.clone()) }),
            None => {
                inner.missing.insert(
                    key.clone(),
                    format!("the candidate {rev} of {}/{} is not in this instance's store", key.0, key.1),
                );
                None
            }
        }
    }

    /// Revision `rev` of a variant, minus the disabled connectors.
    fn bundle(&self, key: &VariantKey, rev: &str, s: &ReleaseState, built: &Arc<Bundle>) -> Option<Bundle> {
        let base = if built.revision == rev { Some((**built).clone()) } else { self.store.get(key, rev) }?;
        if s.disabled.is_empty() {
            return Some(base);
        }
        let at = humantime::parse_rfc3339(&s.updated_at).map_or(base.issued_at, |t| t.max(base.issued_at));
        Some(base.without(&s.disabled, at))
    }
}
