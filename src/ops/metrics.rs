//! Prometheus metrics: a per-instance registry (no global recorder), labeled request counts, a latency histogram
//! and duplicate detection. Gauges that mirror current state are filled in at scrape time.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::collections::{BTreeMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Labels of `connector_scripts_requests_total`. Values are bounded: platforms and variants that exist, else
/// `other` / empty; the result is `ok`, `not_modified` or an error code.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// Platform (or `other`).
    pub platform: String,
    /// Variant (empty when none was resolved).
    pub variant: String,
    /// `ok`, `not_modified`, or the error code.
    pub result: String,
}

/// The metrics a service records as it works.
#[derive(Debug)]
pub struct Metrics {
    /// Requests by platform, variant and result.
    pub requests: Family<RequestLabels, Counter>,
    /// Seconds from receipt of a request to its reply being handed to the MQTT client.
    pub latency: Histogram,
    /// Requests whose id was already seen within the duplicate window.
    pub duplicates: Counter,
    window: Mutex<DuplicateWindow>,
    /// Requests per platform label, for the status document (the family cannot be iterated).
    per_platform: Mutex<BTreeMap<String, u64>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            requests: Family::default(),
            // 50 µs … ~0.8 s.
            latency: Histogram::new(exponential_buckets(0.000_05, 2.0, 15)),
            duplicates: Counter::default(),
            window: Mutex::new(DuplicateWindow::new(Duration::from_secs(60), 200_000)),
            per_platform: Mutex::new(BTreeMap::new()),
        }
    }
}

impl Metrics {
    /// Counts one answered request.
    pub fn record_request(&self, labels: &RequestLabels) {
        self.requests.get_or_create(labels).inc();
        if let Ok(mut m) = self.per_platform.lock() {
            match m.get_mut(&labels.platform) {
                Some(n) => *n += 1,
                None => {
                    m.insert(labels.platform.clone(), 1);
                }
            }
        }
    }

    /// Requests answered per platform label.
    pub fn requests_by_platform(&self) -> BTreeMap<String, u64> {
        self.per_platform.lock().map(|m| m.clone()).unwrap_or_default()
    }

    /// Records a request key (reply address + request id); counts it when seen before within the window.
    pub fn note_request_id(&self, reply_address: &str, id: &[u8]) -> bool {
        let key = key_hash(reply_address, id);
        let dup = self.window.lock().map(|mut w| w.seen(key, Instant::now())).unwrap_or(false);
        if dup {
            self.duplicates.inc();
        }
        dup
    }
}

/// A 64-bit digest of a request key: 8 bytes per remembered request, and collisions are negligible at 200 000.
fn key_hash(reply_address: &str, id: &[u8]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    reply_address.hash(&mut h);
    id.hash(&mut h);
    h.finish()
}

/// Request keys seen recently: two generations, each covering half the window; bounded in size.
#[derive(Debug)]
struct DuplicateWindow {
    half: Duration,
    max: usize,
    started: Instant,
    current: HashSet<u64>,
    previous: HashSet<u64>,
}

impl DuplicateWindow {
    fn new(window: Duration, max: usize) -> Self {
        DuplicateWindow {
            half: window / 2,
            max,
            started: Instant::now(),
            current: HashSet::new(),
            previous: HashSet::new(),
        }
    }

    fn seen(&mut self, key: u64, now: Instant) -> bool {
        if now.duration_since(self.started) >= self.half || self.current.len() >= self.max / 2 {
            self.previous = std::mem::take(&mut self.current);
            self.started = now;
        }
        if self.previous.contains(&key) || self.current.contains(&key) {
            return true;
        }
        self.current.insert(key);
        false
    }
}

/// Point-in-time values rendered next to the counters.
#[derive(Debug, Default, Clone, Copy)]
pub struct Snapshot {
    /// Events received (never answered).
    pub events: u64,
    /// Undecodable messages with nobody to answer.
    pub dropped: u64,
    /// Reply bytes sent.
    pub reply_bytes: u64,
    /// Not-modified replies.
    pub not_modified: u64,
    /// Catalog builds swapped in.
    pub reloads: u64,
    /// Error diagnostics in the current catalog.
    pub compile_errors: u64,
    /// Variants served.
    pub variants: u64,
    /// Connected to the broker.
    pub broker_connected: bool,
    /// Connection losses.
    pub reconnects: u64,
    /// Requests dropped because the reply worker was saturated.
    pub overloaded: u64,
    /// Ready (catalog loaded, connected, subscribed).
    pub ready: bool,
}

fn counter(v: u64) -> Counter {
    let c = Counter::default();
    c.inc_by(v);
    c
}

fn gauge(v: i64) -> Gauge {
    let g = Gauge::default();
    g.set(v);
    g
}

impl Metrics {
    /// The Prometheus text exposition of everything.
    pub fn render(&self, s: &Snapshot) -> String {
        let mut r = Registry::with_prefix("connector_scripts");
        r.register("requests", "Requests answered, by platform, variant and result", self.requests.clone());
        r.register("request_duration_seconds", "Time from receipt to reply handed to MQTT", self.latency.clone());
        r.register("duplicate_requests", "Requests whose id was seen again within 60 s", self.duplicates.clone());
        r.register("events", "Messages without id or response topic (never answered)", counter(s.events));
        r.register("dropped", "Undecodable messages with no reply address", counter(s.dropped));
        r.register("reply_bytes", "Bytes of reply payloads", counter(s.reply_bytes));
        r.register("not_modified", "Replies that were notModified", counter(s.not_modified));
        r.register("reloads", "Catalog builds swapped in", counter(s.reloads));
        r.register("overloaded", "Requests dropped because the reply worker was saturated", counter(s.overloaded));
        r.register("broker_reconnects", "Broker connection losses", counter(s.reconnects));
        r.register("compile_errors", "Error diagnostics in the current catalog", gauge(s.compile_errors as i64));
        r.register("variants", "Variants served", gauge(s.variants as i64));
        r.register("broker_connected", "1 when connected to the broker", gauge(s.broker_connected as i64));
        r.register("ready", "1 when catalog loaded, connected and subscribed", gauge(s.ready as i64));
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &r);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_within_the_window_only() {
        let mut w = DuplicateWindow::new(Duration::from_secs(60), 1000);
        let t0 = Instant::now();
        let (a, b) = (key_hash("t", b"a"), key_hash("t", b"b"));
        assert_ne!(a, key_hash("u", b"a"), "the reply address is part of the key");
        assert!(!w.seen(a, t0));
        assert!(w.seen(a, t0 + Duration::from_secs(10)));
        assert!(!w.seen(b, t0 + Duration::from_secs(31)));
        assert!(w.seen(a, t0 + Duration::from_secs(40)), "still in the previous generation");
        assert!(!w.seen(a, t0 + Duration::from_secs(95)), "forgotten after the window");
    }

    #[test]
    fn the_window_is_bounded() {
        let mut w = DuplicateWindow::new(Duration::from_secs(60), 100);
        let t0 = Instant::now();
        for i in 0..10_000u64 {
            w.seen(i, t0);
        }
        assert!(w.current.len() + w.previous.len() <= 100);
    }

    #[test]
    fn renders_prometheus_text() {
        let m = Metrics::default();
        let labels = RequestLabels { platform: "ios".into(), variant: "next".into(), result: "ok".into() };
        m.requests.get_or_create(&labels).inc();
        m.latency.observe(0.0002);
        let text = m.render(&Snapshot { broker_connected: true, ..Default::default() });
        assert!(
            text.contains(r#"connector_scripts_requests_total{platform="ios",variant="next",result="ok"} 1"#),
            "{text}"
        );
        assert!(text.contains("connector_scripts_request_duration_seconds_count 1"), "{text}");
        assert!(text.contains("connector_scripts_broker_connected 1"), "{text}");
        assert!(text.ends_with("# EOF\n"));
    }
}
