//! The catalog: snippets on disk → compiled, per-platform, per-variant bundles ready to serve.
//!
//! [`build`] reads `snippets/` and `platforms/`, plans the compile work (each distinct source × options pair once),
//! compiles it in parallel, and assembles one [`Bundle`] per variant. A [`CompileCache`] carried from one build to
//! the next makes unchanged files free on reload. Bad input never aborts a build: it becomes a [`Diagnostic`] and
//! the affected connector is left out of the variants that would have shipped it.

pub mod bundle;
pub mod diagnostic;
pub mod loader;
pub mod platforms;
pub mod transpile;
pub mod version;

pub use bundle::{Bundle, Script};
pub use diagnostic::{Diagnostic, Severity};
pub use platforms::{CompileOptions, ModuleFormat, Platform, Target, VariantSpec};
pub use version::{AppVersion, VersionError, VersionRange};

use rayon::prelude::*;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// Where the catalog comes from.
#[derive(Debug, Clone)]
pub struct Sources {
    /// The snippets directory.
    pub snippets: PathBuf,
    /// The platforms directory.
    pub platforms: PathBuf,
    /// Files larger than this are refused with a diagnostic.
    pub max_file_size: u64,
}

/// A compiled platform: its manifest and one bundle per variant, in manifest order.
#[derive(Debug, Clone)]
pub struct PlatformCatalog {
    /// The validated manifest.
    pub spec: Platform,
    /// `bundles[i]` is the bundle of `spec.variants[i]`.
    pub bundles: Vec<Arc<Bundle>>,
}

/// Figures about one build.
#[derive(Debug, Clone, Copy)]
pub struct BuildStats {
    /// Snippet files read.
    pub files: usize,
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
        BuildStats { files: 0, jobs: 0, compiled: 0, elapsed: Duration::ZERO, built_at: SystemTime::UNIX_EPOCH }
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
    /// The bundle an app of `platform`/`version` receives.
    pub fn resolve(&self, platform: &str, version: &AppVersion) -> Result<&Arc<Bundle>, ResolveError> {
        let p = self.platforms.get(platform).ok_or_else(|| ResolveError::UnknownPlatform {
            platform: platform.chars().take(64).collect(),
            known: self.platforms.keys().cloned().collect(),
        })?;
        p.spec.variants.iter().position(|v| v.versions.matches(version)).map(|i| &p.bundles[i]).ok_or_else(|| {
            ResolveError::NoVariant {
                platform: platform.to_string(),
                version: version.to_string(),
                ranges: p.spec.variants.iter().map(|v| format!("{}: {}", v.name, v.versions)).collect(),
            }
        })
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

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct CacheKey {
    rel: String,
    connector: String,
    options: CompileOptions,
    source_sha: [u8; 32],
}

type CompileResult = Arc<Result<transpile::Output, Vec<Diagnostic>>>;

/// Compiled outputs of earlier builds, keyed by file, content hash and options.
#[derive(Debug, Default)]
pub struct CompileCache {
    entries: HashMap<CacheKey, CompileResult>,
}

impl CompileCache {
    /// Number of cached outputs.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Where a variant's connector comes from.
struct Planned {
    connector: String,
    key: Option<CacheKey>,
}

type SortKey<'a> = (Option<&'a PathBuf>, Option<(u32, u32)>, std::cmp::Reverse<Severity>, &'static str, &'a str);

fn sort_key(d: &Diagnostic) -> SortKey<'_> {
    (d.file.as_ref(), d.position.map(|p| (p.line, p.column)), std::cmp::Reverse(d.severity), d.code, &d.message)
}

/// Reads, compiles and assembles the whole catalog. Keeps in `cache` exactly what this build used.
///
/// With `previous` (a reload), what is broken now is replaced by what worked before: a platform whose manifest
/// became invalid keeps its previous configuration, and a connector whose file no longer compiles keeps its last
/// good script in every variant that shipped it. Both stay visible as warnings until fixed. A deleted file is
/// gone for good.
pub fn build(sources: &Sources, cache: &mut CompileCache, previous: Option<&Catalog>) -> Catalog {
    let started = Instant::now();
    let (loaded, mut diags) = loader::load_platforms(&sources.platforms);
    let mut platforms = loaded.valid;
    if let Some(prev) = previous {
        for name in &loaded.broken {
            if let Some(p) = prev.platforms.get(name) {
                diags.push(
                    Diagnostic::warning(
                        "last-good-platform",
                        p.spec.file.clone(),
                        format!("keeping the previous configuration of platform {name:?} until its manifest is fixed"),
                    )
                    .with_help("run `connector-scripts check` for the error"),
                );
                platforms.push(p.spec.clone());
            }
        }
        platforms.sort_by(|a, b| a.name.cmp(&b.name));
    }
    let (snippets, mut snippet_diags) = loader::load_snippets(&sources.snippets, sources.max_file_size);
    diags.append(&mut snippet_diags);
    diags.extend(snippets.broken.values().cloned());
    let platform_names: BTreeSet<&str> = platforms.iter().map(|p| p.name.as_str()).collect();

    // Files referenced by a variant override are sources, not connectors of their own.
    let override_files: BTreeSet<&PathBuf> =
        platforms.iter().flat_map(|p| &p.variants).flat_map(|v| v.overrides.values()).collect();

    // Connector name → (default source, platform → platform-specific source). Broken files count as present so
    // that a connector whose file is broken is reported, not silently dropped.
    let mut connectors: BTreeMap<String, (Option<String>, BTreeMap<String, String>)> = BTreeMap::new();
    for rel in snippets.files.keys().chain(snippets.broken.keys()) {
        if override_files.contains(&PathBuf::from(rel)) {
            continue;
        }
        let stem = rel.trim_end_matches(".ts");
        let entry = match stem.rsplit_once('.') {
            Some((name, platform)) if platform_names.contains(platform) => {
                connectors.entry(name.to_string()).or_default().1.insert(platform.to_string(), rel.clone())
            }
            _ => connectors.entry(stem.to_string()).or_default().0.replace(rel.clone()),
        };
        debug_assert!(entry.is_none());
    }

    let source_sha: HashMap<&str, [u8; 32]> =
        snippets.files.iter().map(|(rel, f)| (rel.as_str(), Sha256::digest(f.text.as_bytes()).into())).collect();
    let mut plans: Vec<(usize, usize, Vec<Planned>)> = Vec::new();
    let mut shipped: BTreeSet<&str> = BTreeSet::new();
    for (pi, platform) in platforms.iter().enumerate() {
        for (vi, variant) in platform.variants.iter().enumerate() {
            let names: BTreeSet<&str> = connectors
                .keys()
                .map(String::as_str)
                .chain(variant.overrides.keys().map(String::as_str))
                .filter(|n| variant.includes(n))
                .collect();
            let mut planned = Vec::new();
            for name in names {
                let rel = match variant.overrides.get(name) {
                    Some(path) => {
                        let rel = path.to_string_lossy().replace('\\', "/");
                        if !snippets.files.contains_key(&rel) && !snippets.broken.contains_key(&rel) {
                            diags.push(
                                Diagnostic::error(
                                    "missing-override",
                                    platform.file.clone(),
                                    format!(
                                        "variant {:?}: override for {name:?} names {rel:?}, which is not a snippet file",
                                        variant.name
                                    ),
                                )
                                .with_help(format!("create {} or remove the override", sources.snippets.join(&rel).display())),
                            );
                            continue;
                        }
                        rel
                    }
                    None => {
                        let (default, per_platform) = &connectors[name];
                        match per_platform.get(&platform.name).or(default.as_ref()) {
                            Some(rel) => rel.clone(),
                            None => continue, // only exists for other platforms
                        }
                    }
                };
                shipped.insert(name);
                let key = source_sha.get(rel.as_str()).map(|sha| CacheKey {
                    rel: rel.clone(),
                    connector: name.to_string(),
                    options: variant.options,
                    source_sha: *sha,
                });
                planned.push(Planned { connector: name.to_string(), key });
            }
            plans.push((pi, vi, planned));
        }
    }
    for name in connectors.keys() {
        if !shipped.contains(name.as_str()) && !platforms.is_empty() {
            diags.push(
                Diagnostic::warning(
                    "unused-connector",
                    None,
                    format!("connector {name:?} is not shipped by any variant of any platform"),
                )
                .with_help("check the include/exclude globs in platforms/*.toml"),
            );
        }
    }

    // Compile each distinct job once, in parallel; reuse earlier outputs.
    let needed: BTreeSet<&CacheKey> =
        plans.iter().flat_map(|(_, _, p)| p.iter().filter_map(|p| p.key.as_ref())).collect();
    let missing: Vec<&CacheKey> = needed.iter().copied().filter(|k| !cache.entries.contains_key(*k)).collect();
    let compiled: Vec<(CacheKey, CompileResult)> = transpile::pool().install(|| {
        missing
            .par_iter()
            .map(|key| {
                let file = &snippets.files[&key.rel];
                let job = transpile::Job {
                    path: &file.path,
                    source: &file.text,
                    connector: &key.connector,
                    options: key.options,
                };
                ((*key).clone(), Arc::new(transpile::transpile(&job)))
            })
            .collect()
    });
    let stats_compiled = compiled.len();
    let mut next_cache: HashMap<CacheKey, CompileResult> =
        needed.iter().filter_map(|k| cache.entries.get(*k).map(|r| ((*k).clone(), r.clone()))).collect();
    next_cache.extend(compiled);
    for result in next_cache.values() {
        if let Err(d) = result.as_ref() {
            diags.extend(d.iter().cloned());
        }
    }

    // Assemble bundles.
    let mut out: BTreeMap<String, PlatformCatalog> = BTreeMap::new();
    let mut bundles_by_platform: Vec<Vec<Arc<Bundle>>> = vec![Vec::new(); platforms.len()];
    for (pi, vi, planned) in &plans {
        let platform = &platforms[*pi];
        let variant = &platform.variants[*vi];
        let previous_bundle = previous
            .and_then(|prev| prev.platforms.get(&platform.name))
            .and_then(|p| p.bundles.iter().find(|b| b.variant == variant.name));
        let mut scripts = Vec::with_capacity(planned.len());
        for p in planned {
            let output = p.key.as_ref().and_then(|k| next_cache.get(k)).and_then(|r| r.as_ref().as_ref().ok());
            if let Some(output) = output {
                scripts.push(Script {
                    name: p.connector.clone(),
                    sha256: bundle::sha256_hex(output.code.as_bytes()),
                    code: Arc::from(output.code.as_str()),
                    source_map: output.source_map.as_deref().map(Arc::from),
                });
            } else if let Some(last_good) = previous_bundle.and_then(|b| b.script(&p.connector)) {
                diags.push(Diagnostic::warning(
                    "last-good",
                    None,
                    format!(
                        "{}/{} keeps serving the last good version of {:?} until its source is fixed",
                        platform.name, variant.name, p.connector
                    ),
                ));
                scripts.push(last_good.clone());
            }
        }
        let bundle =
            Bundle::new(&platform.name, &variant.name, &variant.versions.to_string(), variant.options, scripts);
        bundles_by_platform[*pi].push(Arc::new(bundle));
    }
    for (platform, bundles) in platforms.into_iter().zip(bundles_by_platform) {
        out.insert(platform.name.clone(), PlatformCatalog { spec: platform, bundles });
    }

    // By file and position, errors first; every field that can differ is in the key so that `dedup` sees
    // identical diagnostics side by side.
    diags.sort_by(|a, b| sort_key(a).cmp(&sort_key(b)));
    diags.dedup();
    cache.entries = next_cache;
    Catalog {
        platforms: out,
        connectors: connectors.into_keys().collect(),
        diagnostics: diags,
        stats: BuildStats {
            files: snippets.files.len() + snippets.broken.len(),
            jobs: needed.len(),
            compiled: stats_compiled,
            elapsed: started.elapsed(),
            built_at: SystemTime::now(),
        },
    }
}
