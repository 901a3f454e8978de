//! The one error type of configuration: what is wrong with a flag, a URL or a credential file, in words that name
//! the flag or the entry.

use std::path::PathBuf;

/// A configuration mistake.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The broker URL does not parse.
    #[error("invalid broker URL {url:?}: {reason}")]
    BrokerUrl {
        /// The URL with any password removed.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// One entry of a `--broker` list is wrong.
    #[error("--broker entry {n} of {count} {url:?}: {reason}")]
    BrokerEntry {
        /// Which entry (from 1).
        n: usize,
        /// How many entries.
        count: usize,
        /// The entry with any password removed.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// A credential file cannot be read.
    #[error("cannot read {what} from {path}: {source}")]
    CredentialFile {
        /// Which credential.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A flag has a value that cannot work.
    #[error("{flag}: {reason}")]
    Flag {
        /// The flag to fix.
        flag: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// Some other invalid combination.
    #[error("{0}")]
    Invalid(String),
}
