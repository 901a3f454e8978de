//! Documents the service reads from the bus and acts on, as types: the signed release state and the signed bundle
//! instances publish to each other. The broker carries them; it does not vouch for them: each is verified in
//! [`crate::release::trust`] before it can change what phones get. Pure, no I/O.

use serde::{Deserialize, Serialize};

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
