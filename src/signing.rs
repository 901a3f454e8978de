//! Signed manifests: a phone can prove the code it is about to run came from us.
//!
//! For each variant revision the service writes a manifest `{platform, variant, revision, signedAt, connectors:
//! [{name, sha256, size}]}`, serialises it once, signs those exact bytes with Ed25519 and ships them as they are:
//! replies and the retained manifest carry `"manifest": "<the text>"`, `"signature": "<base64>"`, `"keyId"`. A
//! verifier never re-serialises: it checks the signature over the text, parses it, then checks every script's
//! sha256 and size against it ([`verify_reply`]). Signing happens once per revision, when a catalog is swapped in;
//! replies stay pre-serialized.
//!
//! Keys are PKCS#8 PEM (private, mode 0600) and SPKI PEM (public), as `keygen` writes them: what Node's `crypto`,
//! OpenSSL, Tink and CryptoKit load. The key id is the first 8 bytes of the SHA-256 of the raw public key, in hex.

use crate::catalog::bundle::sha256_hex;
use crate::catalog::{Bundle, Catalog};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey};
use ed25519_dalek::{Signature, Signer as _, SigningKey, Verifier as _, VerifyingKey};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

mod keys;
pub mod notice;
pub use keys::{check_private, key_id, keygen, KeyError, KeyPair};
pub use notice::{notice_json, Notice};

/// The service's signing key.
pub struct Signer {
    key: SigningKey,
    /// Derived from the public key.
    pub key_id: String,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key itself.
        f.debug_struct("Signer").field("key_id", &self.key_id).finish_non_exhaustive()
    }
}

impl Signer {
    /// Reads a PKCS#8 PEM Ed25519 private key; refuses a file that its group or others may read.
    pub fn load(path: &Path) -> Result<Signer, KeyError> {
        let text =
            std::fs::read_to_string(path).map_err(|cause| KeyError::Unreadable { path: path.to_path_buf(), cause })?;
        let key = SigningKey::from_pkcs8_pem(&text)
            .map_err(|e| KeyError::NotPrivateKey { path: path.to_path_buf(), reason: e.to_string() })?;
        check_private(path)?;
        let key_id = key_id(&key.verifying_key());
        Ok(Signer { key, key_id })
    }

    /// A signer from raw key bytes (tests).
    pub fn from_bytes(secret: &[u8; 32]) -> Signer {
        let key = SigningKey::from_bytes(secret);
        let key_id = key_id(&key.verifying_key());
        Signer { key, key_id }
    }

    /// The matching public key.
    pub fn public_key(&self) -> VerifyingKey {
        self.key.verifying_key()
    }

    /// The manifest of `bundle`, signed: the text, exactly as shipped, and its signature.
    pub fn sign_bundle(&self, bundle: &Bundle, signed_at: SystemTime) -> Signed {
        let manifest = Manifest::of(bundle, signed_at);
        let text = serde_json::to_string(&manifest).unwrap_or_default();
        let signature = self.sign_text(&text);
        let m = &manifest;
        let notice = Notice::of(&m.platform, &m.variant, &m.revision, &m.signed_at);
        let notice = serde_json::to_string(&notice).unwrap_or_default();
        let notice_signature = self.sign_text(&notice);
        Signed { manifest: text, signature, key_id: self.key_id.clone(), notice, notice_signature }
    }

    /// The base64 Ed25519 signature of `text` (a release state, a manifest: always the exact bytes shipped).
    pub fn sign_text(&self, text: &str) -> String {
        BASE64.encode(self.key.sign(text.as_bytes()).to_bytes())
    }
}

/// Signs every bundle of `catalog`. A bundle that `previous` already signed with this key for the same revision
/// and issue time keeps that signature: the same bytes in replies and in the retained manifest, no churn.
pub fn sign_catalog(catalog: &mut Catalog, previous: Option<&Catalog>, signer: &Signer) {
    for (name, platform) in &mut catalog.platforms {
        let before = previous.and_then(|p| p.platforms.get(name));
        for bundle in &mut platform.bundles {
            let reused = before
                .and_then(|p| p.bundles.iter().find(|b| b.variant == bundle.variant))
                .filter(|b| b.revision == bundle.revision && b.issued_at == bundle.issued_at)
                .and_then(|b| b.signed.clone())
                .filter(|s| s.key_id == signer.key_id);
            let signed = reused.unwrap_or_else(|| signer.sign_bundle(bundle, bundle.issued_at));
            *bundle = Arc::new(bundle.with_signature(signed));
        }
        // Candidates are replies too: an app that verifies must be able to accept one.
        let before = before.map(|p| &p.candidates[..]).unwrap_or_default();
        for candidate in platform.candidates.iter_mut().flatten() {
            let b = &candidate.bundle;
            let reused = before
                .iter()
                .flatten()
                .map(|c| &c.bundle)
                .find(|p| p.variant == b.variant && p.revision == b.revision && p.issued_at == b.issued_at)
                .and_then(|p| p.signed.clone())
                .filter(|s| s.key_id == signer.key_id);
            let signed = reused.unwrap_or_else(|| signer.sign_bundle(b, b.issued_at));
            candidate.bundle = Arc::new(b.with_signature(signed));
        }
    }
}

/// Public keys a verifier trusts, by key id.
#[derive(Debug, Clone, Default)]
pub struct TrustedKeys(Vec<(String, VerifyingKey)>);

impl TrustedKeys {
    /// Reads SPKI PEM public keys.
    pub fn load(paths: &[PathBuf]) -> Result<TrustedKeys, KeyError> {
        let mut keys = Vec::new();
        for path in paths {
            let text =
                std::fs::read_to_string(path).map_err(|cause| KeyError::Unreadable { path: path.clone(), cause })?;
            let key = VerifyingKey::from_public_key_pem(&text)
                .map_err(|e| KeyError::NotPublicKey { path: path.clone(), reason: e.to_string() })?;
            keys.push((key_id(&key), key));
        }
        Ok(TrustedKeys(keys))
    }

    /// Trusts one key (tests, and the service checking its peers' manifests).
    pub fn of(key: VerifyingKey) -> TrustedKeys {
        TrustedKeys(vec![(key_id(&key), key)])
    }

    /// Adds a key (the service trusts its own signing key next to `--trusted-key`).
    pub fn with(mut self, key: VerifyingKey) -> TrustedKeys {
        let id = key_id(&key);
        if self.get(&id).is_none() {
            self.0.push((id, key));
        }
        self
    }

    /// The public keys.
    pub fn keys(&self) -> impl Iterator<Item = VerifyingKey> + '_ {
        self.0.iter().map(|(_, k)| *k)
    }

    /// No key at all.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Checks a base64 signature by key `key_id` over `text`.
    pub fn verify(&self, key_id: &str, text: &str, signature: &str) -> Result<(), VerifyError> {
        let key = self
            .get(key_id)
            .ok_or_else(|| VerifyError::UnknownKey { key_id: key_id.to_string(), trusted: self.ids() })?;
        let bad = || VerifyError::BadSignature { key_id: key_id.to_string() };
        let bytes: [u8; 64] = BASE64.decode(signature).map_err(|_| bad())?.try_into().map_err(|_| bad())?;
        key.verify(text.as_bytes(), &Signature::from_bytes(&bytes)).map_err(|_| bad())
    }

    fn get(&self, id: &str) -> Option<&VerifyingKey> {
        self.0.iter().find(|(k, _)| k == id).map(|(_, v)| v)
    }

    fn ids(&self) -> String {
        self.0.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>().join(", ")
    }
}

pub use crate::catalog::bundle::Signed;

/// One connector in a manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Connector name.
    pub name: String,
    /// Hex SHA-256 of its code.
    pub sha256: String,
    /// Bytes of its code.
    pub size: u64,
}

/// What is signed for one variant revision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    /// Platform name.
    pub platform: String,
    /// Variant name.
    pub variant: String,
    /// The bundle revision.
    pub revision: String,
    /// RFC 3339, milliseconds: only grows for a variant's new content (see README "Signing").
    pub signed_at: String,
    /// Every script of the revision.
    pub connectors: Vec<Entry>,
}

impl Manifest {
    /// The manifest of a bundle.
    pub fn of(bundle: &Bundle, signed_at: SystemTime) -> Manifest {
        Manifest {
            platform: bundle.platform.clone(),
            variant: bundle.variant.clone(),
            revision: bundle.revision.clone(),
            signed_at: humantime::format_rfc3339_millis(signed_at).to_string(),
            connectors: bundle
                .scripts
                .iter()
                .map(|s| Entry { name: s.name.clone(), sha256: s.sha256.clone(), size: s.code.len() as u64 })
                .collect(),
        }
    }
}

/// Why a reply or a retained manifest does not verify, naming what failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[allow(missing_docs)] // the fields are what the messages say
pub enum VerifyError {
    /// No `manifest`, `signature` or `keyId`.
    #[error("not signed: the reply has no manifest, signature and keyId (is the service run with --signing-key?)")]
    Unsigned,
    /// Signed with a key the verifier does not trust.
    #[error("unknown key id {key_id}: signed with a key that is not among the trusted ones ({trusted})")]
    UnknownKey { key_id: String, trusted: String },
    /// The signature does not match the manifest text.
    #[error("signature check failed: the manifest text is not what key {key_id} signed")]
    BadSignature { key_id: String },
    /// The signed text is not a manifest.
    #[error("the signed manifest is not a manifest: {0}")]
    BadManifest(String),
    /// The manifest is for another variant or revision than the reply.
    #[error("the manifest is for {signed}, the reply for {reply}")]
    Mismatch { signed: String, reply: String },
    /// A script's code does not hash to what the manifest says.
    #[error(
        "hash check failed for connector {name:?}: its code hashes to {actual}, the signed manifest says {expected}"
    )]
    Hash { name: String, expected: String, actual: String },
    /// A script's size differs.
    #[error("size check failed for connector {name:?}: {actual} bytes, the signed manifest says {expected}")]
    Size { name: String, expected: u64, actual: u64 },
    /// A script the manifest does not list.
    #[error("connector {0:?} is not in the signed manifest")]
    NotInManifest(String),
}

/// A verified reply: who signed and what.
#[derive(Debug, Clone)]
pub struct Verified {
    /// The signing key.
    pub key_id: String,
    /// The parsed manifest.
    pub manifest: Manifest,
    /// How many scripts of the reply were checked.
    pub scripts: usize,
}

/// Checks the signature over the manifest text (`manifest`, or `manifestGz` as what it inflates to), then that
/// text itself, against `keys`.
pub fn verify_manifest(doc: &serde_json::Value, keys: &TrustedKeys) -> Result<(String, Manifest), VerifyError> {
    let inflated = doc["manifestGz"].as_str().map(crate::catalog::bundle::gunzip_base64);
    let text = match (doc["manifest"].as_str(), inflated) {
        (Some(text), _) => Some(text.to_string()),
        (None, Some(Some(text))) => Some(text),
        (None, Some(None)) => return Err(VerifyError::BadManifest("manifestGz does not inflate".into())),
        (None, None) => None,
    };
    let (Some(text), Some(signature), Some(key_id)) = (text, doc["signature"].as_str(), doc["keyId"].as_str()) else {
        return Err(VerifyError::Unsigned);
    };
    let text = text.as_str();
    keys.verify(key_id, text, signature)?;
    let manifest: Manifest = serde_json::from_str(text).map_err(|e| VerifyError::BadManifest(e.to_string()))?;
    Ok((key_id.to_string(), manifest))
}

/// Checks a retained notice: the signature over its text, that the text is a notice, and that it names the
/// revision the message says.
pub fn verify_notice(doc: &serde_json::Value, keys: &TrustedKeys) -> Result<(String, Notice), VerifyError> {
    let (Some(text), Some(signature), Some(key_id)) =
        (doc["notice"].as_str(), doc["signature"].as_str(), doc["keyId"].as_str())
    else {
        return Err(VerifyError::Unsigned);
    };
    keys.verify(key_id, text, signature)?;
    let notice: Notice = serde_json::from_str(text).map_err(|e| VerifyError::BadManifest(e.to_string()))?;
    if notice.kind != notice::KIND {
        return Err(VerifyError::BadManifest(format!("a signed {:?}, not a revision notice", notice.kind)));
    }
    let said = doc["revision"].as_str().unwrap_or_default();
    if said != notice.revision {
        return Err(VerifyError::Mismatch {
            signed: format!("{}/{} revision {}", notice.platform, notice.variant, notice.revision),
            reply: format!("revision {said}"),
        });
    }
    Ok((key_id.to_string(), notice))
}

/// Verifies a reply body (`{platform, variant, revision, manifest, signature, keyId, connectors}`): the signature,
/// then every script's sha256 and size against the signed manifest.
pub fn verify_reply(reply: &serde_json::Value, keys: &TrustedKeys) -> Result<Verified, VerifyError> {
    let (key_id, manifest) = verify_manifest(reply, keys)?;
    let said = |k: &str| reply[k].as_str().unwrap_or_default().to_string();
    if said("platform") != manifest.platform
        || said("variant") != manifest.variant
        || said("revision") != manifest.revision
    {
        return Err(VerifyError::Mismatch {
            signed: format!("{}/{} revision {}", manifest.platform, manifest.variant, manifest.revision),
            reply: format!("{}/{} revision {}", said("platform"), said("variant"), said("revision")),
        });
    }
    let scripts = reply["connectors"].as_array().map(Vec::as_slice).unwrap_or_default();
    for script in scripts {
        let name = script["name"].as_str().unwrap_or_default();
        // Gzipped code (`accept: ["gzip"]`) is checked as what it decodes to: the signature covers plain code.
        let code = crate::catalog::bundle::code_of(script).unwrap_or_default();
        let code = code.as_str();
        let entry = manifest
            .connectors
            .iter()
            .find(|e| e.name == name)
            .ok_or_else(|| VerifyError::NotInManifest(name.into()))?;
        let actual = sha256_hex(code.as_bytes());
        if actual != entry.sha256 {
            return Err(VerifyError::Hash { name: name.into(), expected: entry.sha256.clone(), actual });
        }
        if code.len() as u64 != entry.size {
            return Err(VerifyError::Size { name: name.into(), expected: entry.size, actual: code.len() as u64 });
        }
    }
    Ok(Verified { key_id, manifest, scripts: scripts.len() })
}
