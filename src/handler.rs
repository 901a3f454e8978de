//! One request in, one reply out: topic + payload (+ MQTT 5 properties) and the current catalog in, reply topic +
//! bytes + what to count out. Pure: no I/O, no logging, no clock (the time is passed in for the rate limit).
//!
//! Replies are spliced from each bundle's pre-serialized bytes.

use crate::catalog::{AppVersion, Catalog, ResolveError, Selection};
use crate::metrics::{request_key, Counted, RequestLabels, NOT_MODIFIED};
use crate::ratelimit::{Admission, RateLimits, Scope};
use crate::wire::topics::{self, Topics};
use crate::wire::{self, Decoded, ErrorCode, Framing, Limits, Refusal, WireError};
use bytes::Bytes;
use std::hash::RandomState;
use std::time::Instant;

/// A received message, as the MQTT poll task (`mqtt::replies`) hands it over.
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

/// What handling one message produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handled {
    /// The reply, if the message gets one.
    pub reply: Option<Outgoing>,
    /// What to count.
    pub counted: Counted,
}

/// The request handler: topic rules, limits, rate limits.
#[derive(Debug)]
pub struct Handler {
    topics: Topics,
    limits: Limits,
    admission: Admission,
    /// Keys the digests of request ids for the duplicate window (random per process).
    request_keys: RandomState,
}

/// Bytes of an MQTT PUBLISH around topic and payload at most: fixed header (5), topic length (2), packet id (2),
/// properties (length 4, correlation data 3 + its bytes).
const PUBLISH_OVERHEAD: usize = 16;

/// Most devices whose rate-limit bucket is remembered.
const MAX_TRACKED_DEVICES: usize = 100_000;

impl Handler {
    /// A handler for requests on `topics.request`, limiting each device (the segment after the request topic),
    /// the bare topic and all requests together to `rate_limits`.
    pub fn new(topics: Topics, limits: Limits, rate_limits: RateLimits) -> Handler {
        Handler {
            topics,
            limits,
            admission: Admission::new(rate_limits, MAX_TRACKED_DEVICES),
            request_keys: RandomState::new(),
        }
    }

    /// Handles one message against `catalog` (`None` until the first build). `broker_max` is the Maximum Packet
    /// Size the broker announced, if any: no reply is ever larger than it or the configured limit. `None` for
    /// messages that are not requests at all (foreign topics); otherwise what to send (if anything) and what to
    /// count.
    pub fn handle(
        &self,
        catalog: Option<&Catalog>,
        msg: Incoming<'_>,
        now: Instant,
        broker_max: Option<usize>,
    ) -> Option<Handled> {
        if !self.topics.accepts_request(msg.topic) {
            return None;
        }
        let refused = |why| Some(Handled { reply: None, counted: Counted::Refused(why) });
        // A response topic with wildcards cannot be published to; treat the request as if it had none.
        let response_topic = msg.response_topic.filter(|t| topics::valid_reply_topic(t));
        // Checked before the payload is read: what would be echoed, and where the reply would go.
        if response_topic.is_some_and(|t| !self.topics.response_topic_allowed(msg.topic, t)) {
            return refused(Refusal::ResponseTopic);
        }
        if msg.correlation_data.as_ref().is_some_and(|c| c.len() > self.limits.max_correlation_bytes) {
            return refused(Refusal::CorrelationTooLong);
        }
        let (framing, data) = match wire::decode(msg.payload, response_topic.is_some(), &self.limits) {
            Decoded::Event => return Some(Handled { reply: None, counted: Counted::Event }),
            Decoded::Dropped(_) => return Some(Handled { reply: None, counted: Counted::Dropped }),
            Decoded::Refused(why) => return refused(why),
            Decoded::Request { framing, data } => (framing, data),
        };
        let reply_address = response_topic.unwrap_or(msg.topic);
        let id: &[u8] = match &framing {
            Framing::Nest { id } => id.as_bytes(),
            Framing::Bare => msg.correlation_data.as_deref().unwrap_or_default(),
        };
        let key = (!id.is_empty()).then(|| request_key(&self.request_keys, reply_address, id));
        let mut payload = Vec::new();
        let mut labels = RequestLabels { platform: "other".into(), variant: String::new(), result: "ok" };
        let limited = self.admission.check(self.topics.device(msg.topic), now).err();
        let data = match limited {
            Some(scope) => Err(rate_limited(scope)),
            None => data,
        };
        let topic = match response_topic {
            Some(t) => t.to_string(),
            None => topics::reply_topic(msg.topic),
        };
        let configured = self.limits.max_reply_bytes;
        let max = broker_max.map_or(configured, |b| b.min(configured));
        let overhead = topic.len() + msg.correlation_data.as_ref().map_or(0, |c| c.len()) + PUBLISH_OVERHEAD;
        let device = self.topics.device(msg.topic);
        let mut release = None;
        let answered = data.and_then(|d| {
            let device = device.or(d.device_id.as_deref());
            answer(catalog, (&d, device), &framing, &mut payload, (&mut labels, &mut release))
        });
        let answered = answered.and_then(|()| fits(payload.len() + overhead, max, &labels));
        let mut error = None;
        if let Err(e) = answered {
            error = Some(e.code);
            labels.result = e.code.as_str();
            payload.clear();
            wire::frame_error(&framing, &e, &mut payload);
            // Every echoed part is bounded, so this cannot happen with sane limits; if it does, the reply is not
            // sent at all rather than cost the service its connection.
            if payload.len() + overhead > max {
                return refused(Refusal::ReplyTooLarge);
            }
        }
        let counted =
            Counted::Answered { labels, error, bytes: payload.len(), request_key: key, release, rate_limited: limited };
        Some(Handled { reply: Some(Outgoing { topic, payload, correlation_data: msg.correlation_data }), counted })
    }
}

/// The `accept` entry for gzipped code fields.
const GZIP: &str = "gzip";

/// The indices of the connectors `names` asks for, each once, or `UNKNOWN_CONNECTOR` with the known ones.
fn subset(bundle: &crate::catalog::Bundle, names: &[String]) -> Result<Vec<usize>, WireError> {
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
    Ok(idx)
}

/// The error a rate-limited request gets, saying which limit it met.
fn rate_limited(scope: Scope) -> WireError {
    let message = match scope {
        Scope::Device => "too many requests from this device; slow down and retry later",
        Scope::Bare => "too many requests on the shared request topic; ask on your own device topic (TOPIC/DEVICE)",
        Scope::Global => "the service is at its request ceiling; retry in a few seconds",
    };
    WireError::new(ErrorCode::RateLimited, message)
}

/// A reply of `size` bytes (as published) must fit in `max`; otherwise the caller is told how to get less.
fn fits(size: usize, max: usize, labels: &RequestLabels) -> Result<(), WireError> {
    if size <= max {
        return Ok(());
    }
    Err(WireError::new(
        ErrorCode::ReplyTooLarge,
        format!(
            "the reply for variant {:?} would be {size} bytes, over the broker's {max} byte limit; ask for a subset \
             with `connectors: [...]`",
            labels.variant
        ),
    ))
}

fn answer(
    catalog: Option<&Catalog>,
    (req, device): (&wire::RequestData, Option<&str>),
    framing: &Framing,
    out: &mut Vec<u8>,
    (labels, release): (&mut RequestLabels, &mut Option<(String, &'static str)>),
) -> Result<(), WireError> {
    let catalog =
        catalog.ok_or_else(|| WireError::new(ErrorCode::NotReady, "the catalog is still loading; retry shortly"))?;
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
    let bundle = catalog.resolve_for(&req.platform, &version, device).map_err(|e| match &e {
        ResolveError::UnknownPlatform { known, .. } => {
            WireError { code: ErrorCode::UnknownPlatform, message: e.to_string(), known: Some(known.clone()) }
        }
        ResolveError::NoVariant { .. } => WireError::new(ErrorCode::NoVariant, e.to_string()),
    })?;
    labels.variant.clone_from(&bundle.variant);
    *release = bundle.channel.map(|c| (bundle.revision.clone(), c));
    if req.revision.as_deref() == Some(bundle.revision.as_str()) {
        labels.result = NOT_MODIFIED;
        wire::frame_response(framing, &wire::not_modified_body(&bundle.revision), out);
        return Ok(());
    }
    let only = match &req.connectors {
        None => None,
        Some(names) => Some(subset(bundle, names)?),
    };
    // A delta only for requests that name what they hold and did not ask for a subset: old clients get the full
    // bundle, byte for byte.
    let delta = match (&req.have, &only) {
        (Some(have), None) => Some(bundle.delta(have)),
        _ => None,
    };
    // Nothing to leave out: the full reply, as an old client would get it.
    let delta = delta.filter(|(changed, removed)| changed.len() < bundle.scripts.len() || !removed.is_empty());
    let selection = Selection {
        only: only.as_deref().or(delta.as_ref().map(|(changed, _)| changed.as_slice())),
        removed: delta.as_ref().map(|(_, removed)| removed.as_slice()),
        gzip: req.accept.as_ref().is_some_and(|a| a.iter().any(|e| e == GZIP)),
    };
    out.reserve(bundle.reply_len_hint() + 64);
    let version = version.text();
    wire::frame_with(framing, out, |out| bundle.write_selection(&version, selection, out));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn handler() -> Handler {
        let topics = Topics {
            request: "getConnectors".into(),
            manifest_prefix: "connectors".into(),
            changed: "connectorsChanged".into(),
            status_prefix: "s".into(),
            releases: None,
        };
        Handler::new(topics, Limits::default(), RateLimits::default())
    }

    fn error_code(h: &Handled) -> Option<ErrorCode> {
        match &h.counted {
            Counted::Answered { error, .. } => *error,
            _ => None,
        }
    }

    #[test]
    fn not_ready_without_a_usable_catalog() {
        let h = handler();
        let payload = br#"{"pattern":"getConnectors","data":{"platform":"ios","version":"1"},"id":"1"}"#;
        let msg = Incoming { topic: "getConnectors/d", payload, response_topic: None, correlation_data: None };
        let out = h.handle(None, msg.clone(), Instant::now(), None).unwrap();
        let reply = out.reply.clone().unwrap();
        assert_eq!(reply.topic, "getConnectors/d/reply");
        let v: serde_json::Value = serde_json::from_slice(&reply.payload).unwrap();
        assert_eq!(v["err"]["code"], "NOT_READY");
        assert_eq!(error_code(&out), Some(ErrorCode::NotReady));
        let empty = Arc::new(Catalog::default());
        let out = h.handle(Some(&empty), msg, Instant::now(), None).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out.reply.unwrap().payload).unwrap();
        assert_eq!(v["err"]["code"], "NOT_READY");
        assert!(v["err"]["message"].as_str().unwrap().contains("check"));
    }

    #[test]
    fn wildcard_response_topics_fall_back_to_the_reply_convention() {
        let msg = Incoming {
            topic: "getConnectors/d",
            payload: br#"{"platform":"ios","version":"1"}"#,
            response_topic: Some("evil/#"),
            correlation_data: None,
        };
        // Without a usable response topic a bare payload is an event.
        assert_eq!(
            handler().handle(None, msg, Instant::now(), None),
            Some(Handled { reply: None, counted: Counted::Event })
        );
    }

    fn refusal(h: Option<Handled>) -> Option<Refusal> {
        match h {
            Some(Handled { reply: None, counted: Counted::Refused(why) }) => Some(why),
            _ => None,
        }
    }

    #[test]
    fn nothing_unbounded_is_echoed_and_replies_stay_in_the_requesters_namespace() {
        let h = handler();
        let ask = br#"{"platform":"ios","version":"1"}"#;
        let msg = |response_topic, correlation: &[u8]| Incoming {
            topic: "getConnectors/d",
            payload: ask,
            response_topic,
            correlation_data: Some(Bytes::copy_from_slice(correlation)),
        };
        let now = Instant::now();
        for elsewhere in ["connectors/ios/next", "getConnectors/victim/reply", "s/x", "replies/victim"] {
            assert_eq!(refusal(h.handle(None, msg(Some(elsewhere), b"c"), now, None)), Some(Refusal::ResponseTopic));
        }
        let long = vec![b'c'; Limits::default().max_correlation_bytes + 1];
        assert_eq!(
            refusal(h.handle(None, msg(Some("replies/d/x"), &long), now, None)),
            Some(Refusal::CorrelationTooLong)
        );
        let ok = h.handle(None, msg(Some("replies/d/x"), b"c"), now, None).unwrap();
        assert_eq!(ok.reply.unwrap().topic, "replies/d/x");
        // A poison id the size of a broker packet: refused before it is parsed, never echoed.
        let poison = format!(r#"{{"id":1.{}}}"#, "0".repeat(1 << 20));
        let m = Incoming {
            topic: "getConnectors/d",
            payload: poison.as_bytes(),
            response_topic: None,
            correlation_data: None,
        };
        assert_eq!(refusal(h.handle(None, m, now, None)), Some(Refusal::TooLarge));
        // An error reply larger than the broker takes is not sent (a 1 KiB response topic, a 100-byte broker).
        let topic = format!("getConnectors/d/reply/{}", "t".repeat(1000));
        assert_eq!(refusal(h.handle(None, msg(Some(&topic), b"c"), now, Some(100))), Some(Refusal::ReplyTooLarge));
    }

    #[test]
    fn foreign_topics_are_not_requests() {
        let msg =
            Incoming { topic: "getConnectors/reply", payload: b"{}", response_topic: None, correlation_data: None };
        assert_eq!(handler().handle(None, msg, Instant::now(), None), None);
    }
}
