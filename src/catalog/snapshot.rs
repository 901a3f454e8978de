//! An immutable snapshot of everything the service can serve, and which bundle a request gets from it. Pure.

use super::bundle::Bundle;
use super::diagnostic::Diagnostic;
use super::platforms::Platform;
use super::version::AppVersion;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// Where the catalog comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sources {
    /// The snippets directory.
    pub snippets: PathBuf,
    /// The platforms directory.
    pub platforms: PathBuf,
    /// Files larger than this are refused with a diagnostic.
    pub max_file_size: u64,
    /// Largest reply the broker will carry: a variant whose full reply is larger gets a warning.
    pub max_reply_size: u64,
}

/// A connector a variant should ship but cannot: its source does not compile and there is no last good version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Missing {
    /// Platform.
    pub platform: String,
    /// Variant.
    pub variant: String,
    /// Connector.
    pub connector: String,
}

/// A compiled platform: its manifest and one bundle per variant, in manifest order.
#[derive(Debug, Clone)]
pub struct PlatformCatalog {
    /// The validated manifest.
    pub spec: Platform,
    /// `bundles[i]` is the bundle of `spec.variants[i]` (with managed releases: its stable revision).
    pub bundles: Vec<Arc<Bundle>>,
    /// `candidates[i]`: the candidate of `spec.variants[i]` being rolled out, if any (empty without managed
    /// releases).
    pub candidates: Vec<Option<Candidate>>,
}

/// Which devices get a candidate: decided by the release plane (a rollout's seed and percentage), asked by
/// [`Catalog::resolve_for`]. A trait, so that the pure catalog does not depend on the release plane.
pub trait Audience: std::fmt::Debug + Send + Sync {
    /// True when `device` (`None`: a request that names no device) gets the candidate.
    fn includes(&self, device: Option<&str>) -> bool;
}

/// A candidate revision and the devices that get it.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// Its bundle.
    pub bundle: Arc<Bundle>,
    /// Which devices get it.
    pub audience: Arc<dyn Audience>,
}

/// Figures about one build.
#[derive(Debug, Clone, Copy)]
pub struct BuildStats {
    /// Distinct (source, options) compile jobs needed.
    pub jobs: usize,
    /// Jobs actually compiled (the rest came from the cache).
    pub compiled: usize,
    /// Wall time of the build.
    pub elapsed: Duration,
    /// When the build finished.
    pub built_at: SystemTime,
}

impl Default for BuildStats {
    fn default() -> Self {
        BuildStats { jobs: 0, compiled: 0, elapsed: Duration::ZERO, built_at: SystemTime::UNIX_EPOCH }
    }
}

/// An immutable snapshot of everything the service can serve.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    /// Platforms by name.
    pub platforms: BTreeMap<String, PlatformCatalog>,
    /// Every connector name found in the snippets.
    pub connectors: BTreeSet<String>,
    /// Errors and warnings, sorted by file and position.
    pub diagnostics: Vec<Diagnostic>,
    /// Figures about the build.
    pub stats: BuildStats,
    /// Connectors that variants should ship but cannot (broken source, no last good version).
    pub missing: Vec<Missing>,
}

/// Why a request cannot be matched to a bundle.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// No manifest for that platform.
    #[error("unknown platform {platform:?}; known platforms: {}", known.join(", "))]
    UnknownPlatform {
        /// What was asked for.
        platform: String,
        /// What exists.
        known: Vec<String>,
    },
    /// The platform has no variant for that app version.
    #[error("no variant of platform {platform:?} serves app version {version}; ranges: {}", ranges.join(" | "))]
    NoVariant {
        /// Platform asked for.
        platform: String,
        /// Normalized app version.
        version: String,
        /// The ranges that exist, in order.
        ranges: Vec<String>,
    },
}

impl Catalog {
    /// The bundle an app of `platform`/`version` receives (the stable one, with managed releases).
    pub fn resolve(&self, platform: &str, version: &AppVersion) -> Result<&Arc<Bundle>, ResolveError> {
        self.resolve_for(platform, version, None)
    }

    /// The bundle device `device` of `platform`/`version` receives: the candidate when a rollout includes it.
    pub fn resolve_for(
        &self,
        platform: &str,
        version: &AppVersion,
        device: Option<&str>,
    ) -> Result<&Arc<Bundle>, ResolveError> {
        let p = self.platforms.get(platform).ok_or_else(|| ResolveError::UnknownPlatform {
            platform: platform.chars().take(64).collect(),
            known: self.platforms.keys().cloned().collect(),
        })?;
        let i = p.spec.variants.iter().position(|v| v.versions.matches(version)).ok_or_else(|| {
            ResolveError::NoVariant {
                platform: platform.to_string(),
                version: version.to_string(),
                ranges: p.spec.variants.iter().map(|v| format!("{}: {}", v.name, v.versions)).collect(),
            }
        })?;
        match p.candidates.get(i).and_then(Option::as_ref) {
            Some(c) if c.audience.includes(device) => Ok(&c.bundle),
            _ => Ok(&p.bundles[i]),
        }
    }

    /// Number of error diagnostics.
    pub fn error_count(&self) -> usize {
        self.diagnostics.iter().filter(|d| d.is_error()).count()
    }

    /// Every bundle, platform by platform, in manifest order.
    pub fn bundles(&self) -> impl Iterator<Item = &Arc<Bundle>> {
        self.platforms.values().flat_map(|p| p.bundles.iter())
    }
}
