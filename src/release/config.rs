//! What managed releases are configured with: the mode and where states, bundles and keys come from.

use super::reports::HaltPolicy;
use std::path::PathBuf;

/// `--release-mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ReleaseMode {
    /// Every good build is served to everyone at once (development, staging).
    #[default]
    Auto,
    /// Builds become candidates; operators roll them out (production).
    Manual,
}

/// What [`super::Releases`] needs to know.
#[derive(Debug, Clone, PartialEq)]
pub struct ReleaseConfig {
    /// Where states and bundles are kept.
    pub state_dir: PathBuf,
    /// Retained states on `<prefix>/<platform>/<variant>`, bundles on `…/<variant>/bundles/<revision>`.
    pub topic_prefix: String,
    /// Who this instance is (`by` of the states it writes).
    pub instance: String,
    /// `--auto-halt`: when to roll a candidate back by itself.
    pub auto_halt: Option<HaltPolicy>,
    /// `--operator-key`: public keys whose signed states this instance applies.
    pub operator_keys: Vec<PathBuf>,
}
