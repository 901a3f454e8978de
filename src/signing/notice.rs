//! Revision notices: the small retained message that tells devices a new revision exists.
//!
//! The retained manifest on `<prefix>/<platform>/<variant>` lists every connector and, signed, carries the signed
//! manifest too: about 3 KB for 10 connectors, sent to every device of the variant on every save. A device that
//! fetches deltas needs none of it from the push (the reply carries the signed manifest it verifies its set
//! against), only to learn, authentically, that a revision exists. The notice on `<prefix>/<platform>/<variant>/rev`
//! is that: `{"revision", "publishedAt"}`, or when the service signs, `"revision"`, `"notice"` (the signed text
//! `{"kind": "revision", platform, variant, revision, signedAt}`), `"signature"` and `"keyId"` — about 300 bytes. A forged
//! or replayed notice cannot make a fleet fetch: it fails the signature or the replay rule (`signedAt` only grows).
//! The `kind` keeps a notice from passing as a manifest and the other way round (a manifest has `connectors`);
//! [`crate::signing::verify_notice`] checks one.

use crate::catalog::Bundle;
use serde::{Deserialize, Serialize};

/// What a notice says, as signed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Notice {
    /// Always [`KIND`].
    pub kind: String,
    /// Platform name.
    pub platform: String,
    /// Variant name.
    pub variant: String,
    /// The revision announced.
    pub revision: String,
    /// The signed manifest's `signedAt`: the replay rule compares it.
    pub signed_at: String,
}

/// The `kind` of a revision notice.
pub const KIND: &str = "revision";

impl Notice {
    /// The notice of a manifest: its platform, variant, revision and signing time.
    pub fn of(platform: &str, variant: &str, revision: &str, signed_at: &str) -> Notice {
        Notice {
            kind: KIND.into(),
            platform: platform.into(),
            variant: variant.into(),
            revision: revision.into(),
            signed_at: signed_at.into(),
        }
    }
}

/// The retained notice of one bundle: `{revision, notice, signature, keyId}` when the service signs (the signed
/// text holds the time), `{revision, publishedAt}` when it does not.
pub fn notice_json(bundle: &Bundle) -> Vec<u8> {
    let mut doc = serde_json::json!({ "revision": bundle.revision });
    match &bundle.signed {
        Some(s) => {
            doc["notice"] = s.notice.clone().into();
            doc["signature"] = s.notice_signature.clone().into();
            doc["keyId"] = s.key_id.clone().into();
        }
        None => doc["publishedAt"] = humantime::format_rfc3339_millis(bundle.issued_at).to_string().into(),
    }
    serde_json::to_vec(&doc).unwrap_or_default()
}
