//! Who may change a release, checked in one place. The broker carries documents; it does not vouch for them: a
//! release state is applied only when an operator key (`--operator-key`) or a trusted instance signing key signed
//! it for exactly that variant, and a bundle from the broker is kept only when its manifest is signed by a trusted
//! signing key (this instance's own, `--trusted-key`) and lists exactly its scripts. Everything else is a
//! [`Rejected`] with a reason label for `connector_scripts_bus_rejected_total`.

use super::state::ReleaseState;
use super::state::VariantKey;
use crate::catalog::Bundle;
use crate::signing::{Manifest, Signer, TrustedKeys, VerifyError};
use crate::wire::bus::{SignedBundle, SignedState, StateClaim};

/// Why a document from the bus was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejected {
    /// Not the expected document (or not JSON).
    #[error("not a signed {kind}: {reason}")]
    Malformed {
        /// `release state` or `bundle`.
        kind: &'static str,
        /// The parser's complaint.
        reason: String,
    },
    /// Unsigned, signed by a key nobody trusts, or the signature does not match.
    #[error(transparent)]
    Signature(#[from] VerifyError),
    /// Signed for another variant or revision than the topic it arrived on.
    #[error("signed for {signed}, published on {topic}")]
    Mismatch {
        /// What the signature covers.
        signed: String,
        /// What the topic says.
        topic: String,
    },
    /// A state whose `seq` cannot grow: applying it would lock every operator out.
    #[error("seq {0} is the largest there is: no change could follow it")]
    SeqExhausted(u64),
    /// A topic naming a platform or variant the catalog does not have, or a segment that is no plain name.
    #[error("{0}: not a platform/variant of the catalog")]
    UnknownVariant(String),
    /// A bundle whose scripts are not the ones its signed manifest lists.
    #[error("the bundle's scripts are not the ones its signed manifest lists: {0}")]
    NotAsSigned(String),
}

impl Rejected {
    /// The `reason` label of `connector_scripts_bus_rejected_total`.
    pub fn reason(&self) -> &'static str {
        match self {
            Rejected::Malformed { .. } => "malformed",
            Rejected::Signature(VerifyError::Unsigned) => "unsigned",
            Rejected::Signature(VerifyError::UnknownKey { .. }) => "unknown_key",
            Rejected::Signature(VerifyError::BadSignature { .. }) => "bad_signature",
            Rejected::Signature(_) => "bad_manifest",
            Rejected::Mismatch { .. } => "mismatch",
            Rejected::SeqExhausted(_) => "seq_exhausted",
            Rejected::UnknownVariant(_) => "unknown_variant",
            Rejected::NotAsSigned(_) => "not_as_signed",
        }
    }
}

/// The keys this instance trusts.
#[derive(Debug, Clone, Default)]
pub struct Trust {
    /// May sign release states: operator keys and the instances' signing keys.
    states: TrustedKeys,
    /// May sign bundles (their manifests): the instances' signing keys only.
    signers: TrustedKeys,
}

impl Trust {
    /// Operators may change releases; signers are the instances (own key and `--trusted-key`).
    pub fn new(operators: &TrustedKeys, signers: &TrustedKeys) -> Trust {
        let states = signers.keys().fold(operators.clone(), TrustedKeys::with);
        Trust { states, signers: signers.clone() }
    }

    /// The state published on `key`'s topic, verified. The one check before a state may be applied.
    pub fn state(&self, key: &VariantKey, payload: &[u8]) -> Result<ReleaseState, Rejected> {
        open_state(&self.states, key, payload)
    }

    /// The bundle published on the topic of `key` and `revision`, verified against its signed manifest.
    pub fn bundle(&self, key: &VariantKey, revision: &str, payload: &[u8]) -> Result<Bundle, Rejected> {
        let malformed = |reason: String| Rejected::Malformed { kind: "bundle", reason };
        let doc: SignedBundle = serde_json::from_slice(payload).map_err(|e| malformed(e.to_string()))?;
        self.signers.verify(&doc.key_id, &doc.manifest, &doc.signature)?;
        let manifest: Manifest =
            serde_json::from_str(&doc.manifest).map_err(|e| VerifyError::BadManifest(e.to_string()))?;
        let signed = (manifest.platform.as_str(), manifest.variant.as_str(), manifest.revision.as_str());
        if signed != (key.0.as_str(), key.1.as_str(), revision) {
            return Err(Rejected::Mismatch {
                signed: format!("{}/{} revision {}", signed.0, signed.1, signed.2),
                topic: format!("{}/{} revision {revision}", key.0, key.1),
            });
        }
        let bytes = serde_json::to_vec(&doc.bundle).map_err(|e| malformed(e.to_string()))?;
        let bundle = super::store::decode(&bytes).map_err(malformed)?;
        let listed = Manifest::of(&bundle, bundle.issued_at).connectors;
        let filed = (bundle.platform.as_str(), bundle.variant.as_str(), bundle.revision.as_str());
        if filed != (key.0.as_str(), key.1.as_str(), revision) || listed != manifest.connectors {
            return Err(Rejected::NotAsSigned(format!("revision {}", bundle.revision)));
        }
        Ok(bundle)
    }
}

/// Verifies a published state against `keys`: the signature over the exact text, the variant it was signed for,
/// and a `seq` that can still grow.
pub fn open_state(keys: &TrustedKeys, key: &VariantKey, payload: &[u8]) -> Result<ReleaseState, Rejected> {
    let state = claim(Some(keys), key, payload)?;
    if state.seq == u64::MAX {
        return Err(Rejected::SeqExhausted(state.seq));
    }
    Ok(state)
}

/// Reads a published state without checking who signed it (the operator commands without keys, to show it).
pub fn read_state(key: &VariantKey, payload: &[u8]) -> Result<ReleaseState, Rejected> {
    claim(None, key, payload)
}

/// The state a published envelope claims for `key`, its signature checked against `keys` when given.
fn claim(keys: Option<&TrustedKeys>, key: &VariantKey, payload: &[u8]) -> Result<ReleaseState, Rejected> {
    let malformed = |reason: String| Rejected::Malformed { kind: "release state", reason };
    let doc: SignedState = serde_json::from_slice(payload).map_err(|e| malformed(e.to_string()))?;
    if let Some(keys) = keys {
        keys.verify(&doc.key_id, &doc.state, &doc.signature)?;
    }
    let claim: StateClaim = serde_json::from_str(&doc.state).map_err(|e| malformed(e.to_string()))?;
    if (claim.platform.as_str(), claim.variant.as_str()) != (key.0.as_str(), key.1.as_str()) {
        return Err(Rejected::Mismatch {
            signed: format!("{}/{}", claim.platform, claim.variant),
            topic: format!("{}/{}", key.0, key.1),
        });
    }
    Ok(claim.release)
}

/// A state of `key`, signed by `signer`, as published.
pub fn seal_state(key: &VariantKey, state: &ReleaseState, signer: &Signer) -> Vec<u8> {
    let claim = StateClaim { platform: key.0.clone(), variant: key.1.clone(), release: state.clone() };
    let text = serde_json::to_string(&claim).unwrap_or_default();
    let doc = SignedState { signature: signer.sign_text(&text), state: text, key_id: signer.key_id.clone() };
    serde_json::to_vec(&doc).unwrap_or_default()
}

/// A stored bundle with its manifest signed by `signer`, as published to other instances.
pub fn seal_bundle(bundle: &Bundle, signer: &Signer) -> Vec<u8> {
    let signed = signer.sign_bundle(bundle, bundle.issued_at);
    let stored = serde_json::from_slice(&super::store::encode(bundle)).unwrap_or_default();
    let doc =
        SignedBundle { bundle: stored, manifest: signed.manifest, signature: signed.signature, key_id: signed.key_id };
    serde_json::to_vec(&doc).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{CompileOptions, ModuleFormat, Script, Target};
    use std::time::SystemTime;

    fn key() -> VariantKey {
        ("ios".to_string(), "next".to_string())
    }

    fn trust(operator: &Signer, instance: &Signer) -> Trust {
        Trust::new(&TrustedKeys::of(operator.public_key()), &TrustedKeys::of(instance.public_key()))
    }

    fn bundle(code: &str) -> Bundle {
        let opts =
            CompileOptions { target: Target::Es2017, module: ModuleFormat::Esm, minify: false, source_maps: false };
        let sha256 = crate::catalog::bundle::sha256_hex(code.as_bytes());
        Bundle::new(
            "ios",
            "next",
            ">=3",
            opts,
            vec![Script { name: "a".into(), code: code.into(), sha256, source_map: None }],
        )
    }

    #[test]
    fn a_state_applies_only_signed_by_a_trusted_key_for_its_variant() {
        let (op, inst, stranger) =
            (Signer::from_bytes(&[1; 32]), Signer::from_bytes(&[2; 32]), Signer::from_bytes(&[3; 32]));
        let t = trust(&op, &inst);
        let s = ReleaseState::first("r1", "t", SystemTime::UNIX_EPOCH);
        assert_eq!(t.state(&key(), &seal_state(&key(), &s, &op)), Ok(s.clone()));
        assert_eq!(t.state(&key(), &seal_state(&key(), &s, &inst)), Ok(s.clone()));
        let by_stranger = t.state(&key(), &seal_state(&key(), &s, &stranger)).unwrap_err();
        assert_eq!(by_stranger.reason(), "unknown_key");
        let other = ("android".to_string(), "next".to_string());
        assert_eq!(t.state(&other, &seal_state(&key(), &s, &op)).unwrap_err().reason(), "mismatch");
        assert_eq!(t.state(&key(), &serde_json::to_vec(&s).unwrap()).unwrap_err().reason(), "malformed");
        let max = ReleaseState { seq: u64::MAX, ..s.clone() };
        assert_eq!(t.state(&key(), &seal_state(&key(), &max, &op)), Err(Rejected::SeqExhausted(u64::MAX)));
        // One character of the signed text changed: the signature no longer matches.
        let mut doc: SignedState = serde_json::from_slice(&seal_state(&key(), &s, &op)).unwrap();
        doc.state = doc.state.replace("\"r1\"", "\"r2\"");
        let tampered = t.state(&key(), &serde_json::to_vec(&doc).unwrap()).unwrap_err();
        assert_eq!(tampered.reason(), "bad_signature");
    }

    #[test]
    fn a_bundle_is_kept_only_as_its_trusted_manifest_says() {
        let (op, inst) = (Signer::from_bytes(&[1; 32]), Signer::from_bytes(&[2; 32]));
        let t = trust(&op, &inst);
        let b = bundle("export const a = 1;");
        let got = t.bundle(&key(), &b.revision, &seal_bundle(&b, &inst)).unwrap();
        assert_eq!(got.revision, b.revision);
        // Operator keys change states, they do not vouch for code.
        assert_eq!(t.bundle(&key(), &b.revision, &seal_bundle(&b, &op)).unwrap_err().reason(), "unknown_key");
        // The store format alone (self-consistent hashes) is not enough.
        let plain = crate::release::store::encode(&b);
        assert_eq!(t.bundle(&key(), &b.revision, &plain).unwrap_err().reason(), "malformed");
        assert_eq!(t.bundle(&key(), "0000", &seal_bundle(&b, &inst)).unwrap_err().reason(), "mismatch");
        // Someone else's code under a genuine manifest.
        let mut doc: SignedBundle = serde_json::from_slice(&seal_bundle(&b, &inst)).unwrap();
        doc.bundle = serde_json::from_slice(&crate::release::store::encode(&bundle("evil()"))).unwrap();
        let swapped = t.bundle(&key(), &b.revision, &serde_json::to_vec(&doc).unwrap()).unwrap_err();
        assert_eq!(swapped.reason(), "not_as_signed");
    }
}
