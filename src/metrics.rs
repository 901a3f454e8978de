//! Every counter in one registry: a per-instance registry (no global recorder: tests run many services per
//! process), labeled request counts, a latency histogram and duplicate detection. Gauges that mirror current
//! state are set at scrape time.

use crate::wire::ErrorCode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};
mod labels;
mod window;
pub use labels::{
    BusRejectLabels, HealLabels, InstanceLabels, NodeLabels, ReasonLabels, RequestLabels, RevisionInfoLabels,
    RevisionLabels, ScopeLabels, WhyLabels,
};
pub use window::request_key;
use window::DuplicateWindow;

/// What one handled message adds to the counters (built by the handler, recorded by the reply path in `mqtt::replies`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Counted {
    /// An event (no id, no response topic): never answered.
    Event,
    /// Undecodable with nobody to answer.
    Dropped,
    /// Asked for a reply that must not be sent.
    Refused(crate::wire::Refusal),
    /// A request that got a reply.
    Answered {
        /// Platform, variant, result.
        labels: RequestLabels,
        /// The error code, when the reply is an error.
        error: Option<ErrorCode>,
        /// Reply payload size.
        bytes: usize,
        /// Digest of reply address + request id, for duplicate detection (absent without an id).
        request_key: Option<u64>,
        /// With managed releases: the revision served and its channel.
        release: Option<(String, &'static str)>,
        /// The rate limit that refused it, if one did.
        rate_limited: Option<crate::ratelimit::Scope>,
    },
}

/// Every counter of one service instance, in one registry. Gauges mirroring current state are set at scrape
/// time by the ops side ([`Metrics::render`]).
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Requests by platform, variant and result.
    pub requests: Family<RequestLabels, Counter>,
    /// Seconds from receipt of a request to its reply being handed to the MQTT client.
    pub latency: Histogram,
    /// Requests whose id was already seen within the duplicate window.
    pub duplicates: Counter,
    /// Events received (never answered).
    pub events: Counter,
    /// Undecodable messages with no reply address.
    pub dropped: Counter,
    /// Requests that got no reply because answering was unsafe, by reason.
    pub refused: Family<WhyLabels, Counter>,
    /// Requests refused by a rate limit, by the limit's scope.
    pub rate_limited: Family<ScopeLabels, Counter>,
    /// Bytes of reply payloads.
    pub reply_bytes: Counter,
    /// Full bundles sent.
    pub replies: Counter,
    /// `notModified` replies sent.
    pub not_modified: Counter,
    /// Catalog builds swapped in (the first load included).
    pub reloads: Counter,
    /// Requests shed because the reply path was saturated.
    pub overloaded: Counter,
    /// Broker connection losses.
    pub reconnects: Counter,
    /// Moves of the request connection to another node of the `--broker` list.
    pub failovers: Counter,
    /// 1 for the broker node the service is on (or trying), 0 for the other nodes (set at scrape).
    pub broker_node: Family<NodeLabels, Gauge>,
    /// Error diagnostics in the current catalog (set at scrape).
    pub compile_errors: Gauge,
    /// Variants served (set at scrape).
    pub variants: Gauge,
    /// 1 when connected to the broker (set at scrape).
    pub broker_connected: Gauge,
    /// 1 when ready (set at scrape).
    pub ready: Gauge,
    /// 1 per reason the service is not ready now, 0 for the others (set at scrape).
    pub not_ready: Family<ReasonLabels, Gauge>,
    /// 1 per variant served, labeled with its revision (set at scrape).
    pub revision_info: Family<RevisionInfoLabels, Gauge>,
    /// Version and share group of this instance (set once at start).
    pub instance_info: Family<InstanceLabels, Gauge>,
    /// Requests per platform in each second of the last minute, for the status page.
    pub recent: crate::activity::RequestWindow,
    /// The revision series set at the last scrape, removed when their variant or revision goes.
    revisions_shown: Mutex<Vec<RevisionInfoLabels>>,
    /// Connectors variants should ship but cannot (set at scrape).
    pub missing_connectors: Gauge,
    /// 1 while the last reload is held (set at scrape).
    pub reload_held: Gauge,
    /// Foreign manifests replaced by ours (`replaced`) or cleared (`cleared`).
    pub manifests_healed: Family<HealLabels, Counter>,
    /// Managed releases: requests answered per revision and channel.
    pub release_requests: Family<RevisionLabels, Counter>,
    /// Managed releases: app reports per revision, channel and outcome.
    pub reports: Family<RevisionLabels, Counter>,
    /// Candidates rolled back by `--auto-halt`.
    pub auto_halts: Counter,
    /// App reports that did not become a vote, by reason (`unattributed`, `repeated`, `rate_limited`, …).
    pub reports_ignored: Family<ReasonLabels, Counter>,
    /// Documents from the bus refused (unsigned, untrusted, not for their topic), by kind and reason.
    pub bus_rejected: Family<BusRejectLabels, Counter>,
    /// Error replies per code, indexed like [`ErrorCode::ALL`] (the request family cannot be read back).
    errors: [Counter; ErrorCode::ALL.len()],
    window: Mutex<DuplicateWindow>,
    /// Managed releases, per `platform/variant` → revision → [requests, reports ok, reports failed], for the
    /// liveness message the `releases` command sums.
    per_revision: Mutex<BTreeMap<String, BTreeMap<String, [u64; 3]>>>,
}

impl Default for Metrics {
    fn default() -> Self {
        let m = Metrics {
            registry: Registry::with_prefix("connector_scripts"),
            requests: Family::default(),
            // 50 µs … ~0.8 s.
            latency: Histogram::new(exponential_buckets(0.000_05, 2.0, 15)),
            duplicates: Counter::default(),
            events: Counter::default(),
            dropped: Counter::default(),
            refused: Family::default(),
            rate_limited: Family::default(),
            reply_bytes: Counter::default(),
            replies: Counter::default(),
            not_modified: Counter::default(),
            reloads: Counter::default(),
            overloaded: Counter::default(),
            reconnects: Counter::default(),
            failovers: Counter::default(),
            broker_node: Family::default(),
            compile_errors: Gauge::default(),
            variants: Gauge::default(),
            broker_connected: Gauge::default(),
            ready: Gauge::default(),
            not_ready: Family::default(),
            revision_info: Family::default(),
            instance_info: Family::default(),
            recent: Default::default(),
            revisions_shown: Mutex::new(Vec::new()),
            missing_connectors: Gauge::default(),
            reload_held: Gauge::default(),
            manifests_healed: Family::default(),
            release_requests: Family::default(),
            reports: Family::default(),
            auto_halts: Counter::default(),
            reports_ignored: Family::default(),
            bus_rejected: Family::default(),
            errors: Default::default(),
            window: Mutex::new(DuplicateWindow::new(Duration::from_secs(60), 200_000)),
            per_revision: Mutex::new(BTreeMap::new()),
        };
        m.register()
    }
}

impl Metrics {
    fn register(mut self) -> Self {
        let r = &mut self.registry;
        r.register("requests", "Requests answered, by platform, variant and result", self.requests.clone());
        r.register("request_duration_seconds", "Time from receipt to reply handed to MQTT", self.latency.clone());
        r.register("duplicate_requests", "Requests whose id was seen again within 60 s", self.duplicates.clone());
        r.register("events", "Messages without id or response topic (never answered)", self.events.clone());
        r.register("dropped", "Undecodable messages with no reply address", self.dropped.clone());
        r.register("refused", "Requests not answered because answering was unsafe, by reason", self.refused.clone());
        r.register("rate_limited", "Requests refused by a rate limit, by scope", self.rate_limited.clone());
        // Every series from the start, at 0: an alert on a rate needs the series before the first increment.
        for why in crate::wire::Refusal::ALL {
            let _ = self.refused.get_or_create(&WhyLabels { reason: why.as_str() });
        }
        for scope in crate::ratelimit::Scope::ALL {
            let _ = self.rate_limited.get_or_create(&ScopeLabels { scope: scope.as_str() });
        }
        r.register("reply_bytes", "Bytes of reply payloads", self.reply_bytes.clone());
        r.register("not_modified", "Replies that were notModified", self.not_modified.clone());
        r.register("reloads", "Catalog builds swapped in", self.reloads.clone());
        r.register("overloaded", "Requests shed because the reply path was saturated", self.overloaded.clone());
        r.register("broker_reconnects", "Broker connection losses", self.reconnects.clone());
        r.register("broker_failovers", "Moves to another node of the --broker list", self.failovers.clone());
        r.register("broker_node", "1 for the --broker node in use, 0 for the others", self.broker_node.clone());
        r.register("compile_errors", "Error diagnostics in the current catalog", self.compile_errors.clone());
        r.register("variants", "Variants served", self.variants.clone());
        r.register("broker_connected", "1 when connected to the broker", self.broker_connected.clone());
        r.register("ready", "1 when catalog loaded, connected and subscribed", self.ready.clone());
        r.register("not_ready", "1 per reason the service is not ready now", self.not_ready.clone());
        r.register("revision_info", "1 per variant served, labeled with its revision", self.revision_info.clone());
        r.register("instance_info", "Version and share group of this instance", self.instance_info.clone());
        r.register(
            "missing_connectors",
            "Connectors a variant should ship but cannot",
            self.missing_connectors.clone(),
        );
        r.register("reload_held", "1 while a reload that removes most connectors is held", self.reload_held.clone());
        r.register(
            "manifests_healed",
            "Manifests under the prefix that someone else wrote: replaced by ours or cleared",
            self.manifests_healed.clone(),
        );
        r.register(
            "release_requests",
            "Requests answered per revision and channel (manual mode)",
            self.release_requests.clone(),
        );
        r.register("reports", "App reports per revision, channel and outcome (manual mode)", self.reports.clone());
        r.register("auto_halts", "Candidates rolled back by --auto-halt", self.auto_halts.clone());
        r.register(
            "reports_ignored",
            "App reports that are not a vote: unattributed (bare topic), repeated, rate limited, wrong channel, …",
            self.reports_ignored.clone(),
        );
        r.register(
            "bus_rejected",
            "Documents from the broker refused: unsigned, signed by an untrusted key, or not for their topic",
            self.bus_rejected.clone(),
        );
        self
    }

    /// Sets the revision series to exactly `current` (at scrape time). Series of variants or revisions no longer
    /// served are removed, never left at a stale 1; a concurrent scrape never sees a current series missing.
    pub fn set_revisions(&self, current: Vec<RevisionInfoLabels>) {
        let Ok(mut shown) = self.revisions_shown.lock() else { return };
        for gone in shown.iter().filter(|l| !current.contains(l)) {
            self.revision_info.remove(gone);
        }
        for labels in &current {
            self.revision_info.get_or_create(labels).set(1);
        }
        *shown = current;
    }

    /// Counts one handled message.
    pub fn record(&self, counted: &Counted) {
        match counted {
            Counted::Event => {
                self.events.inc();
            }
            Counted::Dropped => {
                self.dropped.inc();
            }
            Counted::Refused(why) => {
                self.refused.get_or_create(&WhyLabels { reason: why.as_str() }).inc();
            }
            Counted::Answered { labels, error, bytes, request_key, release, rate_limited } => {
                if let Some(scope) = rate_limited {
                    self.rate_limited.get_or_create(&ScopeLabels { scope: scope.as_str() }).inc();
                }
                if let Some((revision, channel)) = release {
                    self.note_revision(&labels.platform, &labels.variant, revision, 0);
                    let l = RevisionLabels {
                        platform: labels.platform.clone(),
                        variant: labels.variant.clone(),
                        revision: revision.clone(),
                        channel: (*channel).to_string(),
                        outcome: String::new(),
                    };
                    self.release_requests.get_or_create(&l).inc();
                }
                if let Some(key) = request_key {
                    self.note_request_key(*key);
                }
                match error {
                    Some(code) => {
                        self.errors[code.index()].inc();
                    }
                    None if labels.result == NOT_MODIFIED => {
                        self.not_modified.inc();
                    }
                    None => {
                        self.replies.inc();
                    }
                }
                self.reply_bytes.inc_by(*bytes as u64);
                self.record_request(labels);
            }
        }
    }

    fn record_request(&self, labels: &RequestLabels) {
        self.requests.get_or_create(labels).inc();
        // Also the per-platform totals: one lock per request for both.
        self.recent.note(&labels.platform);
    }

    /// Counts one request (`slot` 0), ok report (1) or failed report (2) for a revision.
    pub fn note_revision(&self, platform: &str, variant: &str, revision: &str, slot: usize) {
        if let Ok(mut m) = self.per_revision.lock() {
            let v = m.entry(format!("{platform}/{variant}")).or_default();
            match v.get_mut(revision) {
                Some(c) => c[slot.min(2)] += 1,
                None => {
                    let mut c = [0; 3];
                    c[slot.min(2)] = 1;
                    v.insert(revision.to_string(), c);
                }
            }
        }
    }

    /// Requests and reports per revision (`platform/variant` → revision → [requests, ok, failed]).
    pub fn per_revision(&self) -> BTreeMap<String, BTreeMap<String, [u64; 3]>> {
        self.per_revision.lock().map(|m| m.clone()).unwrap_or_default()
    }

    /// Error replies sent with this code.
    pub fn errors_of(&self, code: ErrorCode) -> u64 {
        self.errors[code.index()].get()
    }

    /// Requests answered per platform label.
    pub fn requests_by_platform(&self) -> BTreeMap<String, u64> {
        self.recent.totals()
    }

    fn note_request_key(&self, key: u64) {
        let dup = self.window.lock().map(|mut w| w.seen(key, Instant::now())).unwrap_or(false);
        if dup {
            self.duplicates.inc();
        }
    }

    /// The OpenMetrics text exposition of everything.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// The `result` label of a not-modified reply.
pub const NOT_MODIFIED: &str = "not_modified";

#[cfg(test)]
mod tests;
