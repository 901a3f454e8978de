//! Build step one: which platforms to build and which source each variant ships for each connector.
//!
//! The result is a list of compile jobs per variant. Jobs are keyed so that equal work (the same file, connector
//! and options in several variants) is done once by [`super::compile`]. Problems found here (an override naming
//! a missing file, a connector no variant ships) are diagnostics; the build goes on without the affected script.

use super::cache::CacheKey;
use super::diagnostic::Diagnostic;
use super::loader::{self, Snippets};
use super::platforms::{Platform, VariantSpec};
use super::snapshot::{Catalog, Sources};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

/// One connector of one variant, and the job that compiles it (`None` when its file did not load).
pub(super) struct Planned {
    pub(super) connector: String,
    pub(super) key: Option<CacheKey>,
}

/// The connectors one variant ships, by index into the platform list and the platform's variants.
pub(super) struct VariantPlan {
    pub(super) platform: usize,
    pub(super) variant: usize,
    pub(super) scripts: Vec<Planned>,
}

/// Everything a build ships.
pub(super) struct Plan {
    /// Every connector name found in the snippets.
    pub(super) connectors: BTreeSet<String>,
    /// One entry per variant, platform by platform, in manifest order.
    pub(super) variants: Vec<VariantPlan>,
}

impl Plan {
    /// The distinct compile jobs the plan needs.
    pub(super) fn jobs(&self) -> BTreeSet<&CacheKey> {
        self.variants.iter().flat_map(|v| v.scripts.iter().filter_map(|p| p.key.as_ref())).collect()
    }
}

/// The platforms to build, by name. With `previous` (a reload), a platform whose manifest broke keeps its previous
/// configuration, so that one bad edit does not take a platform off the air.
pub(super) fn platforms(dir: &Path, previous: Option<&Catalog>, diags: &mut Vec<Diagnostic>) -> Vec<Platform> {
    let (loaded, mut load_diags) = loader::load_platforms(dir);
    diags.append(&mut load_diags);
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
    platforms
}

/// Plans every variant of every platform and warns about connectors that no variant ships.
pub(super) fn plan(
    sources: &Sources,
    platforms: &[Platform],
    snippets: &Snippets,
    diags: &mut Vec<Diagnostic>,
) -> Plan {
    let planner = Planner {
        snippets_dir: &sources.snippets,
        snippets,
        connectors: connector_sources(platforms, snippets),
        source_sha: snippets
            .files
            .iter()
            .map(|(rel, f)| (rel.as_str(), Sha256::digest(f.text.as_bytes()).into()))
            .collect(),
    };
    let mut variants = Vec::new();
    for (pi, platform) in platforms.iter().enumerate() {
        for (vi, variant) in platform.variants.iter().enumerate() {
            let scripts = planner.variant(platform, variant, diags);
            variants.push(VariantPlan { platform: pi, variant: vi, scripts });
        }
    }
    let shipped: BTreeSet<&str> = variants.iter().flat_map(|v| &v.scripts).map(|p| p.connector.as_str()).collect();
    for name in planner.connectors.keys() {
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
    Plan { connectors: planner.connectors.into_keys().collect(), variants }
}

/// A connector's files: the default one and the platform-specific ones (`name.<platform>.ts`).
#[derive(Default)]
struct ConnectorFiles {
    default: Option<String>,
    /// Platform name → file.
    per_platform: BTreeMap<String, String>,
}

/// Connector name → its files. Broken files count as present so that a connector whose file is broken is
/// reported, not silently dropped.
fn connector_sources(platforms: &[Platform], snippets: &Snippets) -> BTreeMap<String, ConnectorFiles> {
    let platform_names: BTreeSet<&str> = platforms.iter().map(|p| p.name.as_str()).collect();
    // Files referenced by a variant override are sources, not connectors of their own.
    let override_files: BTreeSet<&PathBuf> =
        platforms.iter().flat_map(|p| &p.variants).flat_map(|v| v.overrides.values()).collect();
    let mut connectors: BTreeMap<String, ConnectorFiles> = BTreeMap::new();
    for rel in snippets.files.keys().chain(snippets.broken.keys()) {
        if override_files.contains(&PathBuf::from(rel)) {
            continue;
        }
        let stem = rel.trim_end_matches(".ts");
        let entry = match stem.rsplit_once('.') {
            Some((name, platform)) if platform_names.contains(platform) => {
                connectors.entry(name.to_string()).or_default().per_platform.insert(platform.to_string(), rel.clone())
            }
            _ => connectors.entry(stem.to_string()).or_default().default.replace(rel.clone()),
        };
        debug_assert!(entry.is_none());
    }
    connectors
}

/// What planning a variant needs to know about the snippets.
struct Planner<'a> {
    snippets_dir: &'a Path,
    snippets: &'a Snippets,
    connectors: BTreeMap<String, ConnectorFiles>,
    /// Content hash of each loaded file, computed once for all variants.
    source_sha: HashMap<&'a str, [u8; 32]>,
}

impl Planner<'_> {
    /// The connectors `variant` ships, in name order, each with its compile job.
    fn variant(&self, platform: &Platform, variant: &VariantSpec, diags: &mut Vec<Diagnostic>) -> Vec<Planned> {
        let names: BTreeSet<&str> = self
            .connectors
            .keys()
            .map(String::as_str)
            .chain(variant.overrides.keys().map(String::as_str))
            .filter(|n| variant.includes(n))
            .collect();
        let mut planned = Vec::new();
        for name in names {
            let Some(rel) = self.source(platform, variant, name, diags) else { continue };
            let key = self.source_sha.get(rel.as_str()).map(|sha| CacheKey {
                rel: rel.clone(),
                connector: name.to_string(),
                options: variant.options,
                source_sha: *sha,
            });
            planned.push(Planned { connector: name.to_string(), key });
        }
        planned
    }

    /// The file `variant` compiles `name` from: its override, else the platform-specific file, else the default.
    /// `None` when the override names no snippet (an error) or the connector exists only for other platforms.
    fn source(
        &self,
        platform: &Platform,
        variant: &VariantSpec,
        name: &str,
        diags: &mut Vec<Diagnostic>,
    ) -> Option<String> {
        let Some(path) = variant.overrides.get(name) else {
            let files = &self.connectors[name];
            return files.per_platform.get(&platform.name).or(files.default.as_ref()).cloned();
        };
        let rel = path.to_string_lossy().replace('\\', "/");
        if !self.snippets.files.contains_key(&rel) && !self.snippets.broken.contains_key(&rel) {
            diags.push(
                Diagnostic::error(
                    "missing-override",
                    platform.file.clone(),
                    format!(
                        "variant {:?}: override for {name:?} names {rel:?}, which is not a snippet file",
                        variant.name
                    ),
                )
                .with_help(format!("create {} or remove the override", self.snippets_dir.join(&rel).display())),
            );
            return None;
        }
        Some(rel)
    }
}
