//! Key files: `keygen` (PKCS#8 PEM private, mode 0600; SPKI PEM public), the key id, and the refusal of private
//! keys that others may read.

use crate::catalog::bundle::sha256_hex;
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{EncodePrivateKey, EncodePublicKey};
use ed25519_dalek::{SigningKey, VerifyingKey};
use std::path::{Path, PathBuf};

/// A key file that cannot be used, named in every message.
#[derive(Debug, thiserror::Error)]
#[allow(missing_docs)] // the fields are what the messages say
pub enum KeyError {
    /// Missing or unreadable.
    #[error("{}: cannot read the key file: {cause}", path.display())]
    Unreadable { path: PathBuf, cause: std::io::Error },
    /// Not an Ed25519 PKCS#8 PEM private key.
    #[error(
        "{}: not an Ed25519 private key in PKCS#8 PEM ({reason}); `connector-scripts keygen` writes one",
        path.display()
    )]
    NotPrivateKey { path: PathBuf, reason: String },
    /// Not an Ed25519 SPKI PEM public key.
    #[error(
        "{}: not an Ed25519 public key in SPKI PEM ({reason}); use the .pub file `connector-scripts keygen` wrote",
        path.display()
    )]
    NotPublicKey { path: PathBuf, reason: String },
    /// `keygen` would overwrite a file.
    #[error("{}: already exists; keygen never overwrites a key: choose another --out", path.display())]
    Exists { path: PathBuf },
    /// `keygen` cannot write.
    #[error("{}: cannot write: {cause}", path.display())]
    Unwritable { path: PathBuf, cause: std::io::Error },
    /// No randomness from the OS.
    #[error("the operating system gave no random bytes for the key: {0}")]
    NoRandomness(String),
    /// A private key file that others may read (refused, as ssh refuses such keys).
    #[error(
        "{}: the private key is readable by {who} (mode {mode:o}); refusing to use it: run `chmod 600 {}`",
        path.display(),
        path.display()
    )]
    Exposed { path: PathBuf, who: &'static str, mode: u32 },
}

/// The key id of a public key: the first 8 bytes of the SHA-256 of its 32 raw bytes, in hex.
pub fn key_id(key: &VerifyingKey) -> String {
    sha256_hex(key.as_bytes())[..16].to_string()
}

/// A private key file must be readable by its owner only (any group or other permission bit refuses it).
#[cfg(unix)]
pub fn check_private(path: &Path) -> Result<(), KeyError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path)
        .map_err(|cause| KeyError::Unreadable { path: path.to_path_buf(), cause })?
        .permissions()
        .mode()
        & 0o777;
    let who = match (mode & 0o070 != 0, mode & 0o007 != 0) {
        (false, false) => return Ok(()),
        (true, false) => "its group",
        (false, true) => "other users",
        (true, true) => "its group and other users",
    };
    Err(KeyError::Exposed { path: path.to_path_buf(), who, mode })
}

/// No permission bits to check off Unix.
#[cfg(not(unix))]
pub fn check_private(_: &Path) -> Result<(), KeyError> {
    Ok(())
}

/// What `keygen` wrote.
#[derive(Debug)]
pub struct KeyPair {
    /// `NAME.key`, PKCS#8 PEM, mode 0600.
    pub private: PathBuf,
    /// `NAME.pub`, SPKI PEM.
    pub public: PathBuf,
    /// The key id replies will name.
    pub key_id: String,
}

/// Writes a new Ed25519 key pair `OUT.key` and `OUT.pub`; never overwrites.
pub fn keygen(out: &Path) -> Result<KeyPair, KeyError> {
    let with = |ext: &str| {
        let mut name = out.file_name().unwrap_or_default().to_os_string();
        name.push(ext);
        out.with_file_name(name)
    };
    let (private, public) = (with(".key"), with(".pub"));
    for path in [&private, &public] {
        if path.exists() {
            return Err(KeyError::Exists { path: path.clone() });
        }
    }
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty() && !d.exists()) {
        std::fs::create_dir_all(dir).map_err(|cause| KeyError::Unwritable { path: dir.to_path_buf(), cause })?;
    }
    let mut seed = [0u8; 32];
    getrandom::getrandom(&mut seed).map_err(|e| KeyError::NoRandomness(e.to_string()))?;
    let key = SigningKey::from_bytes(&seed);
    let unwritable = |path: &Path| {
        let path = path.to_path_buf();
        move |cause| KeyError::Unwritable { path, cause }
    };
    let pem = key.to_pkcs8_pem(LineEnding::LF).map_err(|e| KeyError::NoRandomness(e.to_string()))?;
    write_private(&private, pem.as_bytes()).map_err(unwritable(&private))?;
    let pub_pem =
        key.verifying_key().to_public_key_pem(LineEnding::LF).map_err(|e| KeyError::NoRandomness(e.to_string()))?;
    std::fs::write(&public, pub_pem).map_err(unwritable(&public))?;
    Ok(KeyPair { private, public, key_id: key_id(&key.verifying_key()) })
}

#[cfg(unix)]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

#[cfg(not(unix))]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::write(path, bytes)
}
