//! Accounts of the embedded broker (`serve --embedded-users FILE`): a password file in Mosquitto's format, so
//! `mosquitto_passwd` creates and edits it and the same file serves a Mosquitto in front later. Pure but for
//! [`Accounts::load`].
//!
//! Lines are `name:hash`; Mosquitto 2 writes `$7$ITERATIONS$SALT$HASH` (PBKDF2-HMAC-SHA512, base64), Mosquitto 1.x
//! `$6$SALT$HASH` (SHA-512 of password then salt). Plain-text passwords are refused: the file is meant to be
//! hashed.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use sha2::{Digest, Sha512};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use subtle::ConstantTimeEq;

/// A password file that cannot be used, naming the file and the line.
#[derive(Debug, thiserror::Error)]
pub enum PasswdError {
    /// Missing or unreadable.
    #[error("{}: cannot read the password file: {cause}", path.display())]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// Why.
        cause: std::io::Error,
    },
    /// A line that is not `name:$7$…` or `name:$6$…`.
    #[error(
        "{}:{line}: {reason} (expected NAME:HASH as `mosquitto_passwd -c {} NAME` writes it)",
        path.display(),
        path.display()
    )]
    BadLine {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// No account at all: every client would be refused.
    #[error("{}: no account in the password file", path.display())]
    Empty {
        /// The file.
        path: PathBuf,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Hash {
    Pbkdf2Sha512 { iterations: u32, salt: Vec<u8>, hash: Vec<u8> },
    Sha512 { salt: Vec<u8>, hash: Vec<u8> },
}

impl Hash {
    fn parse(text: &str) -> Result<Hash, String> {
        let b64 = |s: &str, what: &str| BASE64.decode(s).map_err(|e| format!("the {what} is not base64: {e}"));
        match text.split('$').collect::<Vec<_>>().as_slice() {
            ["", "7", iterations, salt, hash] => Ok(Hash::Pbkdf2Sha512 {
                iterations: iterations
                    .parse()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| format!("{iterations:?} is not an iteration count"))?,
                salt: b64(salt, "salt")?,
                hash: b64(hash, "hash")?,
            }),
            ["", "6", salt, hash] => Ok(Hash::Sha512 { salt: b64(salt, "salt")?, hash: b64(hash, "hash")? }),
            _ => Err("not a $7$ or $6$ hash (plain-text passwords are refused)".into()),
        }
    }

    fn matches(&self, password: &str) -> bool {
        let computed = match self {
            Hash::Pbkdf2Sha512 { iterations, salt, hash } => {
                let mut out = vec![0u8; hash.len()];
                pbkdf2::pbkdf2_hmac::<Sha512>(password.as_bytes(), salt, *iterations, &mut out);
                out
            }
            Hash::Sha512 { salt, .. } => {
                let mut h = Sha512::new();
                h.update(password.as_bytes());
                h.update(salt);
                h.finalize().to_vec()
            }
        };
        let expected = match self {
            Hash::Pbkdf2Sha512 { hash, .. } | Hash::Sha512 { hash, .. } => hash,
        };
        computed.ct_eq(expected).into()
    }
}

/// The accounts of one password file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Accounts {
    by_name: HashMap<String, Hash>,
}

impl Accounts {
    /// Reads and parses `path`.
    pub fn load(path: &Path) -> Result<Accounts, PasswdError> {
        let text = std::fs::read_to_string(path)
            .map_err(|cause| PasswdError::Unreadable { path: path.to_path_buf(), cause })?;
        Accounts::parse(&text).map_err(|(line, reason)| match line {
            0 => PasswdError::Empty { path: path.to_path_buf() },
            line => PasswdError::BadLine { path: path.to_path_buf(), line, reason },
        })
    }

    /// Parses the text of a password file; the error is (line, reason), line 0 for an empty file.
    pub fn parse(text: &str) -> Result<Accounts, (usize, String)> {
        let mut by_name = HashMap::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (name, hash) = line.split_once(':').ok_or((n + 1, "no ':' after the name".to_string()))?;
            if name.is_empty() {
                return Err((n + 1, "empty name".into()));
            }
            by_name.insert(name.to_string(), Hash::parse(hash).map_err(|r| (n + 1, r))?);
        }
        if by_name.is_empty() {
            return Err((0, String::new()));
        }
        Ok(Accounts { by_name })
    }

    /// True when `name` exists and `password` is its password.
    pub fn check(&self, name: &str, password: &str) -> bool {
        self.by_name.get(name).is_some_and(|h| h.matches(password))
    }

    /// How many accounts there are.
    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    /// True without any account.
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Written by `mosquitto_passwd -c -b FILE alice secret` (Mosquitto 2.0.11).
    const ALICE: &str = "alice:$7$101$J0elviNi8uCUK+Cy$H0nCpxVMq+bsgGrwVy6h/gcwsbi9GquVAvOylpl6qR7SvE2S/qvzsI7qK8blPRuzIy6x8L1GlIvz8c5qERDv0A==";

    #[test]
    fn mosquitto_passwd_hashes_verify() {
        let a = Accounts::parse(&format!("# devices\n{ALICE}\n\n")).unwrap();
        assert!(a.check("alice", "secret"));
        assert!(!a.check("alice", "Secret"));
        assert!(!a.check("bob", "secret"));
        // $6$: SHA-512 of password then salt.
        let salt = b"0123456789ab";
        let hash = Sha512::new().chain_update(b"pw").chain_update(salt).finalize();
        let old = format!("old:$6${}${}", BASE64.encode(salt), BASE64.encode(hash));
        assert!(Accounts::parse(&old).unwrap().check("old", "pw"));
    }

    #[test]
    fn bad_files_name_the_line() {
        for (text, line, needle) in [
            ("alice:secret", 1, "plain-text passwords are refused"),
            ("# x\nnocolon", 2, "no ':'"),
            (":$6$AA==$AA==", 1, "empty name"),
            ("a:$7$x$AA==$AA==", 1, "iteration count"),
            ("a:$7$101$!!$AA==", 1, "salt is not base64"),
        ] {
            let (l, reason) = Accounts::parse(text).unwrap_err();
            assert_eq!(l, line, "{text}");
            assert!(reason.contains(needle), "{text}: {reason}");
        }
        assert_eq!(Accounts::parse("# nothing\n").unwrap_err().0, 0);
    }
}
