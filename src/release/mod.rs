//! Releases (`--release-mode manual`): staged rollout to a share of devices, promote, rollback, a kill switch.
//!
//! In manual mode a good build no longer goes to everyone at once: the first build of a variant becomes its stable
//! revision, every later one its candidate at 0 %, and operators move it (`rollout`, `promote`, `rollback`,
//! `disable`). The rollout state of each variant ([`state::ReleaseState`]) is a retained message on the broker, so
//! every instance of a share group applies the same one (the highest `seq`), and is kept under `--state-dir` with
//! the bundles of every revision that was stable or candidate ([`store`]), so a restart keeps them.
//!
//! [`Releases`] is the engine: it takes builds and states in and gives the catalog to serve out. Until the states
//! retained on the broker have been read ([`Releases::on_synced`]) it serves nothing new and publishes nothing, so
//! that a fresh instance never overwrites the group's state with its own.

mod config;
pub mod reports;
pub mod state;
pub mod store;
pub mod trust;

use crate::catalog::{Bundle, Candidate, Catalog};
use state::{Channel, ReleaseState};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;
use store::Store;
use trust::{Rejected, Trust};

pub use config::{ReleaseConfig, ReleaseMode};
pub use reports::{HaltPolicy, Outcome, Reported};
pub use state::VariantKey;

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
    /// The revisions served per variant (stable, candidate), as devices report them.
    served: BTreeMap<VariantKey, (String, Option<String>)>,
    /// Votes of distinct devices since the current candidate was staged.
    tallies: BTreeMap<VariantKey, reports::Tally>,
}

/// The revisions a variant's state names (never pruned from the store).
fn named(inner: &Inner, key: &VariantKey) -> std::collections::BTreeSet<String> {
    inner
        .states
        .get(key)
        .map(|s| std::iter::once(s.stable.clone()).chain(s.candidate.clone()).collect())
        .unwrap_or_default()
}

/// The release engine of one instance.
pub struct Releases {
    cfg: ReleaseConfig,
    trust: Trust,
    ballot: reports::Ballot,
    store: Store,
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for Releases {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Releases").field("cfg", &self.cfg).finish_non_exhaustive()
    }
}

impl Releases {
    /// Opens the store under `cfg.state_dir` and loads the states it kept; `trust` says whose states and bundles
    /// from the broker are applied.
    pub fn open(cfg: ReleaseConfig, trust: Trust) -> Result<Releases, store::StoreError> {
        let store = Store::open(&cfg.state_dir)?;
        let states = store.states()?;
        Ok(Releases {
            cfg,
            trust,
            ballot: reports::Ballot::default(),
            store,
            inner: Mutex::new(Inner { states, ..Inner::default() }),
        })
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Applies a state and keeps it on disk; `own` (this instance made it) also queues it for publishing.
    fn apply(&self, inner: &mut Inner, key: &VariantKey, state: ReleaseState, own: bool) {
        if let Err(e) = self.store.put_state(key, &state) {
            tracing::warn!(error = %e, "could not keep the release state");
        }
        if own {
            inner.outbox.push((key.clone(), state.clone()));
        } else {
            inner.outbox.retain(|(k, _)| k != key);
        }
        inner.states.insert(key.clone(), state);
    }

    /// Takes a new build; returns the catalog to serve once synced.
    pub fn on_build(&self, build: Catalog) -> Option<Catalog> {
        let build = Arc::new(build);
        let mut inner = self.lock();
        for bundle in build.bundles() {
            let keep = named(&inner, &(bundle.platform.clone(), bundle.variant.clone()));
            if let Err(e) = self.store.put(bundle, &keep) {
                tracing::warn!(error = %e, "could not keep a revision in the release store");
            }
        }
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

    /// A state published on the broker for `key`: applied (and stored) only when [`Trust::state`] verifies it;
    /// returns the catalog to serve when it changed what is served.
    pub fn on_state(&self, key: VariantKey, payload: &[u8]) -> Result<Option<Catalog>, Rejected> {
        self.known(&key)?;
        let state = self.trust.state(&key, payload)?;
        let mut inner = self.lock();
        if let Some(current) = inner.states.get(&key).filter(|current| !state.supersedes(current)).cloned() {
            inner.outbox.retain(|(k, s)| *k != key || s.supersedes(&state));
            // An older state retained over ours (a replay): ours goes back, so that an instance starting now
            // reads the group's state and not the replayed one.
            if inner.synced && state.seq < current.seq && !inner.outbox.iter().any(|(k, _)| *k == key) {
                inner.outbox.push((key, current));
            }
            return Ok(None);
        }
        self.apply(&mut inner, &key, state, false);
        Ok((inner.synced && inner.built.is_some()).then(|| self.serve(&mut inner)))
    }

    /// A bundle another instance published for `key` and `revision`: kept only when its signed manifest verifies
    /// ([`Trust::bundle`]), and served if a state names it.
    pub fn on_bundle(&self, key: &VariantKey, revision: &str, payload: &[u8]) -> Result<Option<Catalog>, Rejected> {
        self.known(key)?;
        if !store::component(revision) {
            return Err(Rejected::UnknownVariant(format!("{}/{}/bundles/{revision:?}", key.0, key.1)));
        }
        let bundle = self.trust.bundle(key, revision, payload)?;
        let mut inner = self.lock();
        match self.store.put(&bundle, &named(&inner, key)) {
            Ok(true) => {
                Ok((inner.synced && inner.built.is_some() && !inner.missing.is_empty()).then(|| self.serve(&mut inner)))
            }
            Ok(false) => Ok(None),
            Err(e) => {
                tracing::warn!(error = %e, "could not keep a revision in the release store");
                Ok(None)
            }
        }
    }

    /// Refuses a topic whose platform or variant is no plain path segment or (once built) not in the catalog:
    /// states and bundles can neither be written outside the store nor grow it, memory and liveness with variants
    /// nobody serves. Before the first build every plain name passes (retained states arrive first).
    fn known(&self, (p, v): &VariantKey) -> Result<(), Rejected> {
        let plain = |s: &str| store::component(s) && crate::wire::topics::valid_level(s);
        let unknown = || Rejected::UnknownVariant(format!("{p:?}/{v:?}"));
        if !plain(p) || !plain(v) {
            return Err(unknown());
        }
        match self.lock().built.as_ref() {
            Some(c) if !c.bundles().any(|b| b.platform == *p && b.variant == *v) => Err(unknown()),
            _ => Ok(()),
        }
    }

    /// A stored revision as published to other instances: its manifest signed by `signer`.
    pub fn publishable(&self, key: &VariantKey, revision: &str, signer: &crate::signing::Signer) -> Option<Vec<u8>> {
        self.store.get(key, revision).map(|b| trust::seal_bundle(&b, signer))
    }

    /// The states retained on the broker have all been read (until then nothing is served).
    pub fn synced(&self) -> bool {
        self.lock().synced
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
                    self.apply(inner, &key, next, true);
                }
                let state = inner.states[&key].clone();
                let candidate = self.candidate(&state, &key, bundle, inner);
                *bundle = self.stable(&state, &key, bundle, inner);
                let served = (bundle.revision.clone(), candidate.as_ref().map(|c| c.bundle.revision.clone()));
                inner.served.insert(key, served);
                candidates.push(candidate);
            }
            platform.candidates = candidates;
        }
        served
    }

    /// The stable bundle of a variant as its state says (the build's when the store lacks it: then not ready).
    fn stable(&self, s: &ReleaseState, key: &VariantKey, built: &Arc<Bundle>, inner: &mut Inner) -> Arc<Bundle> {
        match self.bundle(key, &s.stable, s, built) {
            Some(b) => Arc::new(b.with_channel(Channel::Stable.as_str())),
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

    /// The candidate of a variant as its state says (`built`: this instance's build of the variant).
    fn candidate(
        &self,
        s: &ReleaseState,
        key: &VariantKey,
        built: &Arc<Bundle>,
        inner: &mut Inner,
    ) -> Option<Candidate> {
        let rev = s.candidate.as_deref()?;
        match self.bundle(key, rev, s, built) {
            Some(b) => Some(Candidate {
                bundle: Arc::new(b.with_channel(Channel::Candidate.as_str())),
                audience: Arc::new(s.clone()),
            }),
            None => {
                inner.missing.insert(
                    key.clone(),
                    format!("the candidate {rev} of {}/{} is not in this instance's store", key.0, key.1),
                );
                None
            }
        }
    }

    /// Revision `rev` of a variant, minus the disabled connectors, issued (its manifest's `signedAt`) at the later
    /// of its build and the state's change: a rollback or a promote is a fresh signature, newer than whatever a
    /// device accepted before, so the apps' replay rule accepts it. Every instance computes the same time from the
    /// same state, so they sign the same bytes.
    fn bundle(&self, key: &VariantKey, rev: &str, s: &ReleaseState, built: &Arc<Bundle>) -> Option<Bundle> {
        let stored = self.store.get(key, rev);
        let mut base = match stored {
            // The store keeps the time a revision was first built, across restarts: the same `signedAt` as before.
            Some(b) if built.revision == rev => {
                let mut own = (**built).clone();
                own.issued_at = b.issued_at.min(built.issued_at);
                own
            }
            Some(b) => b,
            None if built.revision == rev => (**built).clone(),
            None => return None,
        };
        let at = humantime::parse_rfc3339(&s.updated_at).map_or(base.issued_at, |t| t.max(base.issued_at));
        if s.disabled.is_empty() {
            base.issued_at = at;
            return Some(base);
        }
        Some(base.without(&s.disabled, at))
    }
}

impl Releases {
    /// Counts an app's report from `device` (`None`: the bare topic, unattributed, never counted as a vote); with
    /// `--auto-halt`, rolls back a candidate that distinct devices find significantly worse than stable (returns
    /// the catalog to serve then). The [`Reported`] is there when the report became a vote.
    pub fn on_report(&self, device: Option<&str>, payload: &[u8]) -> (Outcome, Option<Reported>, Option<Catalog>) {
        let Some(report) = crate::wire::bus::Report::parse(payload) else { return (Outcome::Unknown, None, None) };
        let mut inner = self.lock();
        let found = inner.served.iter().find_map(|(k, (stable, candidate))| {
            (k.0 == report.platform).then_some(())?;
            if *stable == report.revision {
                Some((k.clone(), Channel::Stable))
            } else if candidate.as_deref() == Some(report.revision.as_str()) {
                Some((k.clone(), Channel::Candidate))
            } else {
                None
            }
        });
        let (Some((key, channel)), Some(device)) = (found, device) else {
            let why = if device.is_none() { Outcome::Unattributed } else { Outcome::Unknown };
            return (why, None, None);
        };
        let Some(current) = inner.states.get(&key).cloned() else { return (Outcome::Unknown, None, None) };
        let tally = inner.tallies.entry(key.clone()).or_default();
        let outcome = self.ballot.count(tally, &current, device, channel, report.ok, std::time::Instant::now());
        if outcome != Outcome::Counted {
            return (outcome, None, None);
        }
        let reported =
            Reported { key: key.clone(), revision: report.revision, channel: channel.as_str(), ok: report.ok };
        let (stable, on_candidate) = (tally.stable, tally.candidate);
        let halt = self.cfg.auto_halt.is_some_and(|p| p.halts(stable, on_candidate));
        if !halt || !inner.synced {
            return (outcome, Some(reported), None);
        }
        let Ok(next) = current.rollback(None, &Default::default(), "auto-halt", SystemTime::now()) else {
            return (outcome, Some(reported), None);
        };
        tracing::warn!(platform = %key.0, variant = %key.1, candidate = ?current.candidate,
            stable_devices = ?stable, candidate_devices = ?on_candidate,
            "auto-halt: distinct devices find the candidate significantly worse than stable; rolled back");
        inner.tallies.remove(&key);
        self.apply(&mut inner, &key, next, true);
        let served = inner.built.is_some().then(|| self.serve(&mut inner));
        (outcome, Some(reported), served)
    }
}
