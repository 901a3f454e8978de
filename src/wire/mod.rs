//! The wire format: NestJS MQTT envelopes and bare MQTT 5 request/response bodies. Pure, no I/O.
//!
//! Facts it implements (see `shared/notes/mqtt-and-nest.md`):
//! - A NestJS request is `{"pattern":…,"data":…,"id":"…"}`; its reply is `{"response":…,"isDisposed":true,"id":…}`
//!   or `{"err":…,"isDisposed":true,"id":…}` on `<request topic>/reply`. Only `id`, `response`, `err`,
//!   `isDisposed` and `status` may appear at the top level of a reply.
//! - A payload with `pattern` or `data` but no `id` is an event: no reply.
//! - A payload with neither `pattern` nor `data` is "external": the whole payload is the data. With an MQTT 5
//!   Response Topic it is a bare request and gets a bare reply; without one it is an event, as in NestJS.

pub mod bus;
pub mod reply;
pub mod topics;

pub use reply::{frame_error, frame_response, frame_with, not_modified_body, ErrorCode, Framing, WireError};

use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_json::value::RawValue;

/// Limits on what a request may contain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest payload decoded, in bytes.
    pub max_request_bytes: usize,
    /// Longest string field (platform, version, revision, id, connector name).
    pub max_field_len: usize,
    /// Most connector names in one request.
    pub max_connectors: usize,
    /// Largest reply published, in bytes.
    pub max_reply_bytes: usize,
    /// Longest MQTT 5 Correlation Data echoed, in bytes.
    pub max_correlation_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        use crate::config::defaults as d;
        Limits {
            max_request_bytes: d::MAX_REQUEST_SIZE,
            max_field_len: d::MAX_FIELD_LEN,
            max_connectors: d::MAX_CONNECTORS,
            max_reply_bytes: d::MAX_REPLY_SIZE as usize,
            max_correlation_bytes: d::MAX_CORRELATION_BYTES,
        }
    }
}

/// Why a message gets no reply at all although it asks for one: answering would mean echoing more than a reply
/// may carry, or publishing where the requester has no business. Counted
/// (`connector_scripts_refused_total{reason}`), never logged per message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Over `--max-request-size`, and no id to answer could be found in its first or last bytes.
    TooLarge,
    /// Its NestJS id is longer than the field limit (an id is echoed in the reply).
    IdTooLong,
    /// Its MQTT 5 Correlation Data is longer than the limit (it is echoed in the reply).
    CorrelationTooLong,
    /// Its MQTT 5 Response Topic is outside the requester's own reply namespace.
    ResponseTopic,
    /// Even the error reply would be larger than the broker takes.
    ReplyTooLarge,
}

impl Refusal {
    /// Every reason, in label order.
    pub const ALL: [Refusal; 5] = [
        Refusal::TooLarge,
        Refusal::IdTooLong,
        Refusal::CorrelationTooLong,
        Refusal::ResponseTopic,
        Refusal::ReplyTooLarge,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::TooLarge => "too_large",
            Refusal::IdTooLong => "id_too_long",
            Refusal::CorrelationTooLong => "correlation_too_long",
            Refusal::ResponseTopic => "response_topic",
            Refusal::ReplyTooLarge => "reply_too_large",
        }
    }
}

/// How many bytes at each end of an oversized request are searched for its id (NestJS writes the id last; other
/// clients may write it first). The rest is never read.
pub const ID_SCAN_BYTES: usize = 1024;

/// What a caller asks for.
/// Unknown fields are ignored so that newer apps can send more without breaking older services.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct RequestData {
    /// Platform name (`ios`, `android`).
    pub platform: String,
    /// App version as the app sends it.
    pub version: String,
    /// Only these connectors.
    #[serde(default)]
    pub connectors: Option<Vec<String>>,
    /// The revision the caller already has; equal → `notModified`.
    #[serde(default)]
    pub revision: Option<String>,
    /// The device, when the request topic does not name it (picks the release channel in manual mode).
    #[serde(default, rename = "deviceId")]
    pub device_id: Option<String>,
    /// What the device holds, connector name → hex SHA-256: the reply carries only the connectors that differ or
    /// are new, the names removed, and the full signed manifest (a delta). Absent: the full bundle, as always.
    #[serde(default)]
    pub have: Option<std::collections::BTreeMap<String, String>>,
    /// Encodings the device can decode for code fields, best first (`gzip`). Absent or unknown: plain code.
    #[serde(default)]
    pub accept: Option<Vec<String>>,
}

/// Most entries of `accept`.
pub const MAX_ACCEPT: usize = 8;

/// A decoded message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded {
    /// A request to answer (or to answer with an error).
    Request {
        /// Reply framing.
        framing: Framing,
        /// The request, or why it is unusable.
        data: Result<RequestData, WireError>,
    },
    /// An event (no id, no response topic): counted, never answered.
    Event,
    /// Undecodable and nobody to answer: dropped, counted.
    Dropped(WireError),
    /// Asks for a reply that must not be sent (see [`Refusal`]).
    Refused(Refusal),
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow, default)]
    id: Option<&'a RawValue>,
    #[serde(default)]
    pattern: Option<IgnoredAny>,
    #[serde(borrow, default)]
    data: Option<&'a RawValue>,
}

/// A well-formed NestJS request read in one pass (what nearly every request is). Anything this does not read —
/// no `data`, bad `data`, not an object — takes [`Envelope`]'s path, which says precisely what is wrong.
#[derive(Deserialize)]
struct Request<'a> {
    #[serde(borrow, default)]
    id: Option<&'a RawValue>,
    data: RequestData,
}

/// Decodes one payload. `has_response_topic`: the MQTT 5 publish carried a Response Topic.
pub fn decode(payload: &[u8], has_response_topic: bool, limits: &Limits) -> Decoded {
    let bad = |m: String| WireError::new(ErrorCode::BadRequest, m);
    // Oversized payloads are never parsed: only their first and last bytes are searched for an id to answer.
    if payload.len() > limits.max_request_bytes {
        let err = bad(format!("request is {} bytes, over the {} byte limit", payload.len(), limits.max_request_bytes));
        if has_response_topic {
            return Decoded::Request { framing: Framing::Bare, data: Err(err) };
        }
        return match bounded_nest_id(payload, limits) {
            Some(id) => Decoded::Request { framing: Framing::Nest { id }, data: Err(err) },
            None => Decoded::Refused(Refusal::TooLarge),
        };
    }
    if payload.first() == Some(&b'{') {
        if let Ok(Request { id, data }) = serde_json::from_slice::<Request<'_>>(payload) {
            let framing = match nest_id(id, has_response_topic, limits) {
                Ok(Some(id)) => Framing::Nest { id },
                Ok(None) if has_response_topic => Framing::Bare,
                Ok(None) => return Decoded::Event,
                Err(d) => return d,
            };
            return Decoded::Request { framing, data: checked(data, limits) };
        }
    }
    let envelope: Result<Envelope<'_>, _> =
        if payload.first() == Some(&b'{') { serde_json::from_slice(payload) } else { Err(not_object()) };
    let envelope = match envelope {
        Ok(e) => e,
        Err(e) => {
            let err = bad(format!("request is not a JSON object: {}", short(&e.to_string())));
            // A NestJS client waits for its id until it times out: if one can be read, answer it.
            return match (has_response_topic, recover_nest_id(payload, limits)) {
                (false, Some(id)) => Decoded::Request { framing: Framing::Nest { id }, data: Err(err) },
                _ => undecodable(err, has_response_topic),
            };
        }
    };
    let nest_id = match nest_id(envelope.id, has_response_topic, limits) {
        Ok(id) => id,
        Err(d) => return d,
    };
    let is_nest = envelope.pattern.is_some() || envelope.data.is_some();
    let framing = match (nest_id, has_response_topic) {
        (Some(id), _) => Framing::Nest { id },
        (None, true) => Framing::Bare,
        (None, false) => return Decoded::Event,
    };
    let data_json: &[u8] = match (is_nest, envelope.data) {
        (true, Some(raw)) => raw.get().as_bytes(),
        (true, None) => return Decoded::Request { framing, data: Err(bad("the envelope has no `data`".into())) },
        (false, _) => payload,
    };
    Decoded::Request { framing, data: parse_data(data_json, limits) }
}

/// The id of an oversized request, searched for in its last and first [`ID_SCAN_BYTES`] only.
fn bounded_nest_id(payload: &[u8], limits: &Limits) -> Option<String> {
    let n = ID_SCAN_BYTES.min(payload.len());
    let tail = &payload[payload.len() - n..];
    // The tail window may start inside a character: skip its continuation bytes.
    let tail = &tail[tail.iter().take(3).take_while(|b| **b & 0xC0 == 0x80).count()..];
    recover_id_in(utf8_prefix(tail), limits).or_else(|| recover_id_in(utf8_prefix(&payload[..n]), limits))
}

/// The longest valid UTF-8 start of `bytes` (a window may cut a character in two).
fn utf8_prefix(bytes: &[u8]) -> &str {
    match std::str::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => std::str::from_utf8(&bytes[..e.valid_up_to()]).unwrap_or_default(),
    }
}

/// The id of a NestJS envelope that is not valid JSON (a trailing comma, a truncated `data`): the last
/// `"id":"…"` with a plain string value (NestJS writes the id last), as the JSON string it was sent as. Numeric ids
/// and ids with escapes are not recovered.
fn recover_nest_id(payload: &[u8], limits: &Limits) -> Option<String> {
    recover_id_in(std::str::from_utf8(payload).ok()?, limits)
}

fn recover_id_in(text: &str, limits: &Limits) -> Option<String> {
    let at = text.rfind("\"id\"")?;
    let rest = text[at + 4..].trim_start().strip_prefix(':')?.trim_start().strip_prefix('"')?;
    let end = rest.find('"')?;
    let id = &rest[..end];
    let plain =
        !id.is_empty() && id.len() <= limits.max_field_len && !id.contains(['\\']) && !id.chars().any(char::is_control);
    plain.then(|| format!("\"{id}\""))
}

fn not_object() -> serde_json::Error {
    serde::de::Error::custom("expected `{`")
}

fn short(s: &str) -> String {
    s.chars().take(160).collect()
}

/// Before the framing is known: answerable only through a response topic (bare), else dropped.
fn undecodable(err: WireError, has_response_topic: bool) -> Decoded {
    if has_response_topic {
        Decoded::Request { framing: Framing::Bare, data: Err(err) }
    } else {
        Decoded::Dropped(err)
    }
}

/// The NestJS id of an envelope, as it will be echoed (`None`: there is none), or how the message is answered
/// when the id is unusable. The raw value is valid JSON already (the envelope parsed): its first byte says its type.
fn nest_id(raw: Option<&RawValue>, has_response_topic: bool, limits: &Limits) -> Result<Option<String>, Decoded> {
    let Some(raw) = raw.map(RawValue::get) else { return Ok(None) };
    let unusable = |m: String| undecodable(WireError::new(ErrorCode::BadRequest, m), has_response_topic);
    // Checked before anything else: an id is echoed in the reply, so its length is bounded whatever its type.
    if raw.len() > limits.max_field_len + 2 {
        return Err(match has_response_topic {
            true => unusable(format!("`id` is longer than {} characters", limits.max_field_len)),
            false => Decoded::Refused(Refusal::IdTooLong),
        });
    }
    // NestJS ids are strings; numbers are echoed too. Anything else cannot be an id.
    match raw.as_bytes().first() {
        Some(b'"' | b'-' | b'0'..=b'9') => Ok(Some(raw.to_string())),
        _ => Err(unusable(format!("`id` must be a string of at most {} characters", limits.max_field_len))),
    }
}

fn parse_data(json: &[u8], limits: &Limits) -> Result<RequestData, WireError> {
    let data: RequestData = serde_json::from_slice(json).map_err(|e| {
        WireError::new(
            ErrorCode::BadRequest,
            format!(
                "request data must be {{platform: string, version: string, connectors?: string[], revision?: \
                 string, deviceId?: string}}: {}",
                short(&e.to_string())
            ),
        )
    })?;
    checked(data, limits)
}

/// `data` within the limits on each field, or why not.
fn checked(data: RequestData, limits: &Limits) -> Result<RequestData, WireError> {
    let bad = |m: String| WireError::new(ErrorCode::BadRequest, m);
    let max = limits.max_field_len;
    let long = |what: &str| bad(format!("`{what}` is longer than {max} characters"));
    if data.platform.len() > max {
        return Err(long("platform"));
    }
    if data.version.len() > max {
        return Err(long("version"));
    }
    if data.revision.as_ref().is_some_and(|r| r.len() > max) {
        return Err(long("revision"));
    }
    if data.device_id.as_ref().is_some_and(|d| d.len() > max) {
        return Err(long("deviceId"));
    }
    if let Some(have) = &data.have {
        if have.len() > limits.max_connectors {
            return Err(bad(format!("`have` names at most {} connectors", limits.max_connectors)));
        }
        if have.iter().any(|(name, hash)| name.len() > max || hash.len() > max) {
            return Err(long("have"));
        }
    }
    if data.accept.as_ref().is_some_and(|a| a.len() > MAX_ACCEPT || a.iter().any(|e| e.len() > max)) {
        return Err(bad(format!("`accept` lists at most {MAX_ACCEPT} encodings")));
    }
    if let Some(c) = &data.connectors {
        if c.len() > limits.max_connectors {
            return Err(bad(format!("at most {} connectors per request", limits.max_connectors)));
        }
        if c.iter().any(|n| n.len() > max) {
            return Err(long("connectors[]"));
        }
    }
    Ok(data)
}

#[cfg(test)]
mod tests;
