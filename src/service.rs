//! Answers one request: topic + payload (+ MQTT 5 properties) in, reply topic + bytes out. No I/O.
//!
//! The catalog snapshot is read through an [`ArcSwapOption`]: a request sees one whole catalog, old or new, never
//! a mix, and reading it costs no lock. Replies are spliced from each bundle's pre-serialized bytes.

use crate::catalog::{AppVersion, Catalog, ResolveError};
use crate::ops::metrics::{Metrics, RequestLabels};
use crate::ratelimit::{Limiter, RateLimit};
use crate::wire::{self, Decoded, ErrorCode, Framing, Limits, WireError};
use arc_swap::ArcSwapOption;
use bytes::Bytes;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Counters of what the service did, readable at any time.
#[derive(Debug, Default)]
pub struct Stats {
    /// Full bundles sent.
    pub replies: AtomicU64,
    /// `notModified` replies sent.
    pub not_modified: AtomicU64,
    /// Error replies sent, indexed like [`ERROR_CODES`].
    pub errors: [AtomicU64; ERROR_CODES.len()],
    /// Events received (no id, no response topic): never answered.
    pub events: AtomicU64,
    /// Undecodable messages with nobody to answer.
    pub dropped: AtomicU64,
    /// Bytes of reply payloads.
    pub reply_bytes: AtomicU64,
    /// Catalog builds swapped in (the first load included).
    pub reloads: AtomicU64,
    /// Requests handed to the reply worker.
    pub received: AtomicU64,
}

/// Every error code, in the order of [`Stats::errors`].
pub const ERROR_CODES: [ErrorCode; 7] = [
    ErrorCode::BadRequest,
    ErrorCode::UnknownPlatform,
    ErrorCode::InvalidVersion,
    ErrorCode::NoVariant,
    ErrorCode::UnknownConnector,
    ErrorCode::NotReady,
    ErrorCode::RateLimited,
];

impl Stats {
    /// Error replies sent with this code.
    pub fn errors_of(&self, code: ErrorCode) -> u64 {
        ERROR_CODES.iter().position(|c| *c == code).map_or(0, |i| self.errors[i].load(Ordering::Relaxed))
    }

    fn count_error(&self, code: ErrorCode) {
        if let Some(i) = ERROR_CODES.iter().position(|c| *c == code) {
            self.errors[i].fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// A received message, as the transport hands it over.
#[derive(Debug, Clone)]
pub struct Incoming<'a> {
    /// The concrete topic it arrived on.
    pub topic: &'a str,
    /// Its payload.
    pub payload: &'a [u8],
    /// MQTT 5 Response Topic.
    pub response_topic: Option<&'a str>,
    /// MQTT 5 Correlation Data.
    pub correlation_data: Option<Bytes>,
}

/// A reply to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    /// Where to publish it.
    pub topic: String,
    /// The bytes.
    pub payload: Vec<u8>,
    /// Correlation Data to echo (MQTT 5).
    pub correlation_data: Option<Bytes>,
}

/// The request handler: catalog snapshot, limits, counters.
#[derive(Debug)]
pub struct Service {
    /// The current catalog; `None` until the first build finishes.
    pub catalog: ArcSwapOption<Catalog>,
    /// Request limits.
    pub limits: Limits,
    /// The request topic (`getConnectors`).
    pub request_topic: String,
    /// Counters.
    pub stats: Stats,
    /// Prometheus metrics.
    pub metrics: Metrics,
    /// Per-device rate limit, when on.
    limiter: Option<Limiter>,
    /// Bumped on every catalog swap; the announcer and ops watch it.
    generation: tokio::sync::watch::Sender<u64>,
}

/// Longest device id accepted in `<request topic>/<device>`.
const MAX_DEVICE_LEN: usize = 128;

impl Service {
    /// A service with no catalog yet.
    pub fn new(request_topic: impl Into<String>, limits: Limits) -> Service {
        Service {
            catalog: ArcSwapOption::empty(),
            limits,
            request_topic: request_topic.into(),
            stats: Stats::default(),
            metrics: Metrics::default(),
            limiter: None,
            generation: tokio::sync::watch::channel(0).0,
        }
    }

    /// Limits each device (the segment after the request topic) to `limit`.
    pub fn with_rate_limit(mut self, limit: Option<RateLimit>) -> Service {
        self.limiter = limit.map(|l| Limiter::new(l, 100_000));
        self
    }

    /// The device segment of a request topic, if any.
    fn device<'t>(&self, topic: &'t str) -> Option<&'t str> {
        topic.strip_prefix(self.request_topic.as_str())?.strip_prefix('/')
    }

    /// Replaces the catalog atomically.
    pub fn publish_catalog(&self, catalog: Arc<Catalog>) {
        self.catalog.store(Some(catalog));
        self.generation.send_modify(|g| *g += 1);
    }

    /// Watches catalog swaps (the value counts them).
    pub fn catalog_changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.generation.subscribe()
    }

    /// Is this a topic we answer on? `getConnectors` or `getConnectors/<device>`, but not `…/reply`.
    pub fn accepts_topic(&self, topic: &str) -> bool {
        match topic.strip_prefix(self.request_topic.as_str()) {
            Some("") => true,
            Some(rest) => rest.strip_prefix('/').is_some_and(|device| {
                !device.is_empty() && device != "reply" && device.len() <= MAX_DEVICE_LEN && !device.contains('/')
            }),
            None => false,
        }
    }

    /// Handles one message; `None` when nothing is to be sent (events, undecodable payloads, foreign topics).
    pub fn handle(&self, msg: Incoming<'_>) -> Option<Outgoing> {
        if !self.accepts_topic(msg.topic) {
            return None;
        }
        // A response topic with wildcards cannot be published to; treat the request as if it had none.
        let response_topic = msg.response_topic.filter(|t| valid_reply_topic(t));
        let (framing, data) = match wire::decode(msg.payload, response_topic.is_some(), &self.limits) {
            Decoded::Event => {
                self.stats.events.fetch_add(1, Ordering::Relaxed);
                return None;
            }
            Decoded::Dropped(e) => {
                self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(topic = msg.topic, error = %e.message, "dropped undecodable message with no reply address");
                return None;
            }
            Decoded::Request { framing, data } => (framing, data),
        };
        let reply_address = response_topic.unwrap_or(msg.topic);
        let id: &[u8] = match &framing {
            Framing::Nest { id } => id.as_bytes(),
            Framing::Bare => msg.correlation_data.as_deref().unwrap_or_default(),
        };
        if !id.is_empty() {
            self.metrics.note_request_id(reply_address, id);
        }
        let mut payload = Vec::new();
        let mut labels = RequestLabels { platform: "other".into(), variant: String::new(), result: "ok".into() };
        let limited = match (&self.limiter, self.device(msg.topic)) {
            (Some(limiter), Some(device)) => !limiter.allow(device, std::time::Instant::now()),
            _ => false,
        };
        let data = if limited {
            Err(WireError::new(ErrorCode::RateLimited, "too many requests from this device; slow down and retry later"))
        } else {
            data
        };
        match data.and_then(|d| self.answer(&d, &framing, &mut payload, &mut labels)) {
            Ok(()) => {}
            Err(e) => {
                self.stats.count_error(e.code);
                labels.result = e.code.as_str().to_string();
                payload.clear();
                wire::frame_error(&framing, &e, &mut payload);
            }
        }
        self.metrics.record_request(&labels);
        self.stats.reply_bytes.fetch_add(payload.len() as u64, Ordering::Relaxed);
        let topic = match response_topic {
            Some(t) => t.to_string(),
            None => wire::reply_topic(msg.topic),
        };
        Some(Outgoing { topic, payload, correlation_data: msg.correlation_data })
    }

    fn answer(
        &self,
        req: &wire::RequestData,
        framing: &Framing,
        out: &mut Vec<u8>,
        labels: &mut RequestLabels,
    ) -> Result<(), WireError> {
        let guard = self.catalog.load();
        let catalog = guard
            .as_deref()
            .ok_or_else(|| WireError::new(ErrorCode::NotReady, "the catalog is still loading; retry shortly"))?;
        if catalog.platforms.is_empty() {
            return Err(WireError::new(
                ErrorCode::NotReady,
                format!(
                    "no platform could be loaded ({} error(s) in the catalog; run `connector-scripts check`)",
                    catalog.error_count()
                ),
            ));
        }
        if catalog.platforms.contains_key(&req.platform) {
            labels.platform.clone_from(&req.platform);
        }
        let version =
            AppVersion::parse(&req.version).map_err(|e| WireError::new(ErrorCode::InvalidVersion, e.to_string()))?;
        let bundle = catalog.resolve(&req.platform, &version).map_err(|e| match &e {
            ResolveError::UnknownPlatform { known, .. } => {
                WireError { code: ErrorCode::UnknownPlatform, message: e.to_string(), known: Some(known.clone()) }
            }
            ResolveError::NoVariant { .. } => WireError::new(ErrorCode::NoVariant, e.to_string()),
        })?;
        labels.variant.clone_from(&bundle.variant);
        if req.revision.as_deref() == Some(bundle.revision.as_str()) {
            labels.result = "not_modified".into();
            self.stats.not_modified.fetch_add(1, Ordering::Relaxed);
            wire::frame_response(framing, &wire::not_modified_body(&bundle.revision), out);
            return Ok(());
        }
        let only = match &req.connectors {
            None => None,
            Some(names) => {
                let mut idx = Vec::with_capacity(names.len());
                for name in names {
                    let i = bundle.script_index(name).ok_or_else(|| WireError {
                        code: ErrorCode::UnknownConnector,
                        message: format!(
                            "variant {:?} of {} has no connector {:?}",
                            bundle.variant,
                            bundle.platform,
                            name.chars().take(64).collect::<String>()
                        ),
                        known: Some(bundle.scripts.iter().map(|s| s.name.clone()).collect()),
                    })?;
                    if !idx.contains(&i) {
                        idx.push(i);
                    }
                }
                Some(idx)
            }
        };
        out.reserve(bundle.reply_len_hint() + 64);
        let version = version.to_string();
        wire::frame_with(framing, out, |out| bundle.write_reply(&version, only.as_deref(), out));
        self.stats.replies.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

/// A reply topic must be publishable: non-empty, no wildcards, not absurdly long.
fn valid_reply_topic(t: &str) -> bool {
    !t.is_empty() && t.len() <= 1024 && !t.contains(['+', '#', '\0'])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_we_answer() {
        let s = Service::new("getConnectors", Limits::default());
        for (topic, ok) in [
            ("getConnectors", true),
            ("getConnectors/dev-42", true),
            ("getConnectors/reply", false),
            ("getConnectors/dev-42/reply", false),
            ("getConnectors/", false),
            ("getConnectorsX", false),
            ("other", false),
        ] {
            assert_eq!(s.accepts_topic(topic), ok, "{topic}");
        }
    }

    #[test]
    fn not_ready_until_a_catalog_is_published() {
        let s = Service::new("getConnectors", Limits::default());
        let payload = br#"{"pattern":"getConnectors","data":{"platform":"ios","version":"1"},"id":"1"}"#;
        let msg = Incoming { topic: "getConnectors/d", payload, response_topic: None, correlation_data: None };
        let out = s.handle(msg.clone()).unwrap();
        assert_eq!(out.topic, "getConnectors/d/reply");
        let v: serde_json::Value = serde_json::from_slice(&out.payload).unwrap();
        assert_eq!(v["err"]["code"], "NOT_READY");
        s.publish_catalog(Arc::new(Catalog::default()));
        let v: serde_json::Value = serde_json::from_slice(&s.handle(msg).unwrap().payload).unwrap();
        assert_eq!(v["err"]["code"], "NOT_READY");
        assert!(v["err"]["message"].as_str().unwrap().contains("check"));
        assert_eq!(s.stats.errors_of(ErrorCode::NotReady), 2);
    }

    #[test]
    fn wildcard_response_topics_fall_back_to_the_reply_convention() {
        let s = Service::new("getConnectors", Limits::default());
        let msg = Incoming {
            topic: "getConnectors/d",
            payload: br#"{"platform":"ios","version":"1"}"#,
            response_topic: Some("evil/#"),
            correlation_data: None,
        };
        // Without a usable response topic a bare payload is an event.
        assert_eq!(s.handle(msg), None);
        assert_eq!(s.stats.events.load(Ordering::Relaxed), 1);
    }
}
