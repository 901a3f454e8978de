//! Documents on the bus, as types, each built and read in one place: the signed release state and bundle
//! instances publish to each other, the app report, the liveness message, the retained manifest and the change
//! event. The broker carries them; it does not vouch for them: states and bundles are verified in
//! [`crate::release::trust`] before they can change what phones get. Pure, no I/O.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A release state as published, retained, on `<release prefix>/<platform>/<variant>`: the exact text that was
/// signed (a [`StateClaim`]), its signature and the signing key's id. Verifiers never re-serialise the claim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SignedState {
    /// The signed text: a [`StateClaim`] in JSON.
    pub state: String,
    /// Base64 Ed25519 signature over `state`.
    pub signature: String,
    /// The key that signed (an operator key or an instance's signing key).
    pub key_id: String,
}

/// What a release-state signature covers: the variant it is for (so a state cannot be replayed onto another
/// variant's topic) and the state itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StateClaim {
    /// Platform the state is for.
    pub platform: String,
    /// Variant the state is for.
    pub variant: String,
    /// The state.
    pub release: crate::release::state::ReleaseState,
}

/// A bundle as instances publish it on `<release prefix>/<platform>/<variant>/bundles/<revision>`: the stored
/// format plus the signed manifest of its revision (the same `manifest`, `signature`, `keyId` a reply carries).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SignedBundle {
    /// The bundle in the store's format (checked by its own hashes, then against the manifest).
    pub bundle: serde_json::Value,
    /// The manifest text, as signed.
    pub manifest: String,
    /// Base64 Ed25519 signature over `manifest`.
    pub signature: String,
    /// The signing key.
    pub key_id: String,
}

/// An app's outcome report (`connectorsReport`), a NestJS event `{"pattern", "data": {…}}` or the bare data.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Report {
    /// The platform of the reported revision.
    pub platform: String,
    /// The revision the app ran.
    pub revision: String,
    /// Worked?
    pub ok: bool,
}

impl Report {
    /// Parses a report payload; `None` for anything that is not one.
    pub fn parse(payload: &[u8]) -> Option<Report> {
        #[derive(Deserialize)]
        struct Event {
            data: Report,
        }
        serde_json::from_slice::<Event>(payload).map(|e| e.data).or_else(|_| serde_json::from_slice(payload)).ok()
    }
}

/// Requests and reports per revision: `platform/variant` → revision → [requests, reports ok, reports failed].
pub type Served = BTreeMap<String, BTreeMap<String, [u64; 3]>>;

/// An instance's retained liveness message on `<status prefix>/<instance>` (its Last Will says `offline`). In
/// manual mode it also carries the `seq` it applies per variant (what the operator commands wait for) and the
/// requests and reports per revision (what `releases` sums).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LivenessDoc {
    /// `online` or `offline`.
    pub state: String,
    /// The instance name.
    pub instance: String,
    /// The service version.
    #[serde(default)]
    pub version: String,
    /// RFC 3339.
    #[serde(default)]
    pub started_at: String,
    /// Manual mode: the applied `seq` per `platform/variant`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub releases: Option<BTreeMap<String, u64>>,
    /// Manual mode: requests and reports per revision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub served: Option<Served>,
}

impl LivenessDoc {
    /// Parses a liveness payload; `None` for anything else.
    pub fn parse(payload: &[u8]) -> Option<LivenessDoc> {
        serde_json::from_slice(payload).ok()
    }

    /// Is the instance online?
    pub fn online(&self) -> bool {
        self.state == "online"
    }

    /// The body as published.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// One connector in a retained manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestEntry {
    /// Connector name.
    pub name: String,
    /// Hex SHA-256 of its code.
    pub sha256: String,
}

/// The retained manifest of a variant on `<manifest prefix>/<platform>/<variant>`, plus the signed manifest when
/// the service signs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RetainedManifest {
    /// The revision.
    pub revision: String,
    /// Its connectors.
    pub connectors: Vec<ManifestEntry>,
    /// RFC 3339: when the revision was first built.
    pub published_at: String,
    /// The signed manifest text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest: Option<String>,
    /// Its signature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
    /// The signing key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
}

/// The NestJS event announcing a new revision: `{"pattern": <changed topic>, "data": {platform, variant,
/// revision}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeEvent {
    /// The event pattern (the changed topic).
    pub pattern: String,
    /// What changed.
    pub data: Changed,
}

/// The data of a [`ChangeEvent`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Changed {
    /// Platform.
    pub platform: String,
    /// Variant.
    pub variant: String,
    /// The new revision.
    pub revision: String,
}
