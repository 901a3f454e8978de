//! Reply bodies: NestJS framing of responses and errors, `notModified`, and the one list of error codes a caller
//! can receive. Pure.

/// Declares [`ErrorCode`] and its wire names from one list, so the enum, [`ErrorCode::ALL`] and
/// [`ErrorCode::as_str`] cannot drift apart.
macro_rules! error_codes {
    ($($(#[doc = $doc:literal])* $name:ident => $wire:literal,)*) => {
        /// The error codes a caller can receive.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ErrorCode {
            $($(#[doc = $doc])* $name,)*
        }

        impl ErrorCode {
            /// Every code, in declaration order.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$name,)*];

            /// The code as sent on the wire.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(ErrorCode::$name => $wire,)*
                }
            }
        }
    };
}

error_codes! {
    /// Malformed JSON, wrong types, too large.
    BadRequest => "BAD_REQUEST",
    /// No such platform.
    UnknownPlatform => "UNKNOWN_PLATFORM",
    /// The app version does not parse.
    InvalidVersion => "INVALID_VERSION",
    /// No variant serves that version.
    NoVariant => "NO_VARIANT",
    /// A requested connector is not in the variant.
    UnknownConnector => "UNKNOWN_CONNECTOR",
    /// The catalog is not loaded.
    NotReady => "NOT_READY",
    /// The device sends too fast.
    RateLimited => "RATE_LIMITED",
    /// The reply would be larger than the broker carries (ask for a subset with `connectors`).
    ReplyTooLarge => "REPLY_TOO_LARGE",
}

impl ErrorCode {
    /// Position in [`ErrorCode::ALL`] (for per-code counters).
    pub fn index(self) -> usize {
        ErrorCode::ALL.iter().position(|c| *c == self).unwrap_or(0)
    }
}

/// A typed error reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireError {
    /// Machine-readable code.
    pub code: ErrorCode,
    /// Human-readable explanation.
    pub message: String,
    /// For UNKNOWN_PLATFORM / UNKNOWN_CONNECTOR: what does exist.
    pub known: Option<Vec<String>>,
}

impl WireError {
    /// An error without a `known` list.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        WireError { code, message: message.into(), known: None }
    }

    /// The `{"status":"error","code":…,"message":…}` object.
    pub fn to_json(&self) -> serde_json::Value {
        let mut v = serde_json::json!({"status": "error", "code": self.code.as_str(), "message": self.message});
        if let Some(known) = &self.known {
            v["known"] = serde_json::json!(known);
        }
        v
    }
}

/// Frames a successful reply body (a JSON object or value, already serialized).
pub fn frame_response(framing: &Framing, body: &[u8], out: &mut Vec<u8>) {
    frame_with(framing, out, |out| out.extend_from_slice(body));
}

/// Frames a reply whose body `write_body` appends straight into `out` (no intermediate copy of the bundle).
pub fn frame_with(framing: &Framing, out: &mut Vec<u8>, write_body: impl FnOnce(&mut Vec<u8>)) {
    match framing {
        Framing::Bare => write_body(out),
        Framing::Nest { id } => {
            out.extend_from_slice(b"{\"response\":");
            write_body(out);
            out.extend_from_slice(b",\"isDisposed\":true,\"id\":");
            out.extend_from_slice(id.as_bytes());
            out.push(b'}');
        }
    }
}

/// Frames an error reply: `{"err":{…},"isDisposed":true,"id":…}`, or bare `{"err":{…}}`.
pub fn frame_error(framing: &Framing, err: &WireError, out: &mut Vec<u8>) {
    let obj = err.to_json().to_string();
    out.extend_from_slice(b"{\"err\":");
    out.extend_from_slice(obj.as_bytes());
    if let Framing::Nest { id } = framing {
        out.extend_from_slice(b",\"isDisposed\":true,\"id\":");
        out.extend_from_slice(id.as_bytes());
    }
    out.push(b'}');
}

/// `{"revision":"…","notModified":true}`.
pub fn not_modified_body(revision: &str) -> Vec<u8> {
    serde_json::json!({"revision": revision, "notModified": true}).to_string().into_bytes()
}

/// How the reply must be framed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Framing {
    /// NestJS envelope with this request id.
    Nest {
        /// The request id, echoed verbatim (as JSON).
        id: String,
    },
    /// Bare JSON body (MQTT 5 request/response).
    Bare,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn frames_only_nest_allowed_top_level_keys() {
        let mut out = Vec::new();
        frame_response(&Framing::Nest { id: "\"x1\"".into() }, br#"{"a":1}"#, &mut out);
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v, serde_json::json!({"response": {"a": 1}, "isDisposed": true, "id": "x1"}));
        out.clear();
        let err = WireError { code: ErrorCode::UnknownPlatform, message: "m".into(), known: Some(vec!["ios".into()]) };
        frame_error(&Framing::Nest { id: "\"x1\"".into() }, &err, &mut out);
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"err": {"status": "error", "code": "UNKNOWN_PLATFORM", "message": "m", "known": ["ios"]}, "isDisposed": true, "id": "x1"})
        );
        for key in v.as_object().unwrap().keys() {
            assert!(["id", "response", "err", "isDisposed", "status"].contains(&key.as_str()));
        }
        out.clear();
        frame_error(&Framing::Bare, &err, &mut out);
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["err"]["code"], "UNKNOWN_PLATFORM");
        assert_eq!(
            serde_json::from_slice::<Value>(&not_modified_body("r1")).unwrap(),
            serde_json::json!({"revision": "r1", "notModified": true})
        );
    }

    #[test]
    fn every_code_has_a_distinct_wire_name_and_index() {
        let names: std::collections::BTreeSet<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(names.len(), ErrorCode::ALL.len());
        for (i, c) in ErrorCode::ALL.iter().enumerate() {
            assert_eq!(c.index(), i);
        }
    }
}
