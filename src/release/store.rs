//! The release store under `--state-dir`: every revision that was ever stable or candidate (its scripts, content
//! addressed by revision) and each variant's last applied state. Written atomically and durably (a temporary
//! file, fsync, rename, fsync of the directory); read back only after its hash checks out, so a corrupt or
//! truncated file is reported and never served. History is bounded per variant.
//!
//! Layout: `bundles/<platform>/<variant>/<revision>.json` and `states/<platform>/<variant>.json`. The bundle
//! format, with its signed manifest next to it ([`super::trust::seal_bundle`]), is what instances publish to each
//! other.

use super::state::ReleaseState;
use super::state::VariantKey;
use crate::catalog::{Bundle, CompileOptions, ModuleFormat, Script, Target};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

/// Revisions kept per variant (the stable and the candidate are never the ones dropped: they are the newest).
pub const HISTORY: usize = 10;

/// A store problem, naming the file.
#[derive(Debug, thiserror::Error)]
#[allow(missing_docs)] // the fields are what the messages say
pub enum StoreError {
    /// Cannot read or write.
    #[error("{}: {cause}", path.display())]
    Io { path: PathBuf, cause: std::io::Error },
    /// Present but not what was written: never served.
    #[error("{}: corrupt, not served: {reason}", path.display())]
    Corrupt { path: PathBuf, reason: String },
}

/// A bundle as stored and as published between instances.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Stored {
    platform: String,
    variant: String,
    versions: String,
    target: String,
    module: String,
    minify: bool,
    source_maps: bool,
    /// RFC 3339: the revision's `signedAt`.
    issued_at: String,
    scripts: Vec<StoredScript>,
    revision: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StoredScript {
    name: String,
    code: String,
    sha256: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    source_map: Option<String>,
}

/// Encodes a bundle in the stored format.
pub fn encode(b: &Bundle) -> Vec<u8> {
    let stored = Stored {
        platform: b.platform.clone(),
        variant: b.variant.clone(),
        versions: b.versions.clone(),
        target: b.options.target.name().into(),
        module: b.options.module.name().into(),
        minify: b.options.minify,
        source_maps: b.options.source_maps,
        issued_at: super::state::stamp(b.issued_at),
        scripts: b
            .scripts
            .iter()
            .map(|s| StoredScript {
                name: s.name.clone(),
                code: s.code.to_string(),
                sha256: s.sha256.clone(),
                source_map: s.source_map.as_deref().map(str::to_string),
            })
            .collect(),
        revision: b.revision.clone(),
    };
    serde_json::to_vec(&stored).unwrap_or_default()
}

/// Decodes and verifies: every script's hash, and the revision recomputed from the content.
pub fn decode(bytes: &[u8]) -> Result<Bundle, String> {
    let s: Stored = serde_json::from_slice(bytes).map_err(|e| format!("not a stored bundle: {e}"))?;
    let target: Target = s.target.parse()?;
    let module: ModuleFormat =
        serde_json::from_value(serde_json::Value::String(s.module.clone())).map_err(|e| e.to_string())?;
    let options = CompileOptions { target, module, minify: s.minify, source_maps: s.source_maps };
    let mut scripts = Vec::with_capacity(s.scripts.len());
    for sc in s.scripts {
        let actual = crate::catalog::bundle::sha256_hex(sc.code.as_bytes());
        if actual != sc.sha256 {
            return Err(format!("script {:?} hashes to {actual}, not {}", sc.name, sc.sha256));
        }
        scripts.push(Script {
            name: sc.name,
            code: Arc::from(sc.code),
            sha256: sc.sha256,
            source_map: sc.source_map.map(Arc::from),
        });
    }
    let mut b = Bundle::new(&s.platform, &s.variant, &s.versions, options, scripts);
    if b.revision != s.revision {
        return Err(format!("its content is revision {}, not {}", b.revision, s.revision));
    }
    b.issued_at = humantime::parse_rfc3339(&s.issued_at).unwrap_or(SystemTime::UNIX_EPOCH);
    Ok(b)
}

/// The store of one instance.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |cause| StoreError::Io { path: path.to_path_buf(), cause }
}

/// Writes `bytes` to `path` so that a crash leaves the old file or the new one, never half of one.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp).map_err(io(&tmp))?;
    f.write_all(bytes).map_err(io(&tmp))?;
    f.sync_all().map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))?;
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))
}

/// A name usable as one path component (platform and variant names already are; revisions are hex).
pub fn component(s: &str) -> bool {
    !s.is_empty() && s != "." && s != ".." && !s.contains(['/', '\\', '\0'])
}

impl Store {
    /// Opens (creates) the store under `dir`.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        for sub in ["bundles", "states"] {
            let d = dir.join(sub);
            std::fs::create_dir_all(&d).map_err(io(&d))?;
        }
        Ok(Store { dir: dir.to_path_buf() })
    }

    fn bundle_path(&self, (p, v): &VariantKey, rev: &str) -> Option<PathBuf> {
        [p, v, rev]
            .iter()
            .all(|c| component(c))
            .then(|| self.dir.join("bundles").join(p).join(v).join(format!("{rev}.json")))
    }

    fn state_path(&self, (p, v): &VariantKey) -> PathBuf {
        self.dir.join("states").join(p).join(format!("{v}.json"))
    }

    /// Keeps a revision (once; then prunes the variant's history to [`HISTORY`], never dropping a revision in
    /// `keep`: the ones the variant's state names).
    pub fn put(&self, b: &Bundle, keep: &BTreeSet<String>) -> Result<bool, StoreError> {
        let key = (b.platform.clone(), b.variant.clone());
        let Some(path) = self.bundle_path(&key, &b.revision) else { return Ok(false) };
        if path.exists() {
            return Ok(false);
        }
        write_atomic(&path, &encode(b))?;
        self.prune(&key, keep);
        Ok(true)
    }

    /// Revision `rev` of a variant, verified; a corrupt file is reported (warning) and not returned.
    pub fn get(&self, key: &VariantKey, rev: &str) -> Option<Bundle> {
        let path = self.bundle_path(key, rev)?;
        let bytes = std::fs::read(&path).ok()?;
        match decode(&bytes) {
            Ok(b) if b.revision == rev && b.platform == key.0 && b.variant == key.1 => Some(b),
            Ok(b) => {
                tracing::warn!(file = %path.display(), revision = %b.revision, "a stored bundle is filed under the wrong revision: not served");
                None
            }
            Err(reason) => {
                tracing::warn!(file = %path.display(), %reason, "a stored bundle is corrupt: not served");
                None
            }
        }
    }

    /// The revisions kept for a variant.
    pub fn revisions(&self, (p, v): &VariantKey) -> BTreeSet<String> {
        let dir = self.dir.join("bundles").join(p).join(v);
        let Ok(entries) = std::fs::read_dir(dir) else { return BTreeSet::new() };
        entries.filter_map(|e| e.ok()?.file_name().to_str()?.strip_suffix(".json").map(str::to_string)).collect()
    }

    fn prune(&self, (p, v): &VariantKey, keep: &BTreeSet<String>) {
        let dir = self.dir.join("bundles").join(p).join(v);
        let Ok(entries) = std::fs::read_dir(&dir) else { return };
        let mut files: Vec<(SystemTime, PathBuf)> = entries
            .filter_map(|e| {
                let e = e.ok()?;
                Some((e.metadata().ok()?.modified().ok()?, e.path()))
            })
            .filter(|(_, p)| p.extension().is_some_and(|x| x == "json"))
            .filter(|(_, p)| p.file_stem().and_then(|s| s.to_str()).is_none_or(|rev| !keep.contains(rev)))
            .collect();
        files.sort();
        let excess = (files.len() + keep.len()).saturating_sub(HISTORY);
        for (_, path) in files.into_iter().take(excess) {
            let _ = std::fs::remove_file(path);
        }
    }

    /// Keeps a variant's state (never outside `states/`: a name that is no plain component is refused).
    pub fn put_state(&self, key: &VariantKey, s: &ReleaseState) -> Result<(), StoreError> {
        let path = self.state_path(key);
        if !component(&key.0) || !component(&key.1) {
            return Err(StoreError::Corrupt { path, reason: "not a plain platform/variant name".into() });
        }
        write_atomic(&path, &serde_json::to_vec_pretty(s).unwrap_or_default())
    }

    /// Every kept state; a corrupt one is reported and skipped (the broker's retained state then applies).
    pub fn states(&self) -> Result<BTreeMap<VariantKey, ReleaseState>, StoreError> {
        let mut out = BTreeMap::new();
        let root = self.dir.join("states");
        let platforms = std::fs::read_dir(&root).map_err(io(&root))?;
        for p in platforms.filter_map(Result::ok) {
            let Ok(variants) = std::fs::read_dir(p.path()) else { continue };
            for v in variants.filter_map(Result::ok) {
                let path = v.path();
                let (Some(platform), Some(variant)) = (
                    p.file_name().to_str().map(str::to_string),
                    path.file_stem().and_then(|s| s.to_str()).map(str::to_string),
                ) else {
                    continue;
                };
                if path.extension().is_none_or(|x| x != "json") {
                    continue;
                }
                match std::fs::read(&path).ok().and_then(|b| serde_json::from_slice::<ReleaseState>(&b).ok()) {
                    Some(s) => {
                        out.insert((platform, variant), s);
                    }
                    None => tracing::warn!(file = %path.display(), "a kept release state is corrupt: ignored"),
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::bundle::sha256_hex;

    fn bundle(code: &str) -> Bundle {
        let opts =
            CompileOptions { target: Target::Es2017, module: ModuleFormat::Esm, minify: false, source_maps: false };
        let script =
            Script { name: "a".into(), code: code.into(), sha256: sha256_hex(code.as_bytes()), source_map: None };
        Bundle::new("ios", "next", ">=3", opts, vec![script])
    }

    #[test]
    fn round_trip_and_a_corrupt_file_is_never_served() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let b = bundle("export const a = 1;");
        assert!(store.put(&b, &BTreeSet::new()).unwrap());
        assert!(!store.put(&b, &BTreeSet::new()).unwrap(), "content-addressed: stored once");
        let key = ("ios".to_string(), "next".to_string());
        let back = store.get(&key, &b.revision).expect("stored");
        assert_eq!((back.revision.as_str(), &*back.scripts[0].code), (b.revision.as_str(), "export const a = 1;"));
        // One byte changed in the code: the hash check refuses it.
        let path = dir.path().join(format!("bundles/ios/next/{}.json", b.revision));
        let text = std::fs::read_to_string(&path).unwrap().replace("a = 1", "a = 2");
        std::fs::write(&path, text).unwrap();
        assert!(store.get(&key, &b.revision).is_none());
        // Truncated.
        std::fs::write(&path, b"{\"platform\":").unwrap();
        assert!(store.get(&key, &b.revision).is_none());
        assert!(decode(b"{}").is_err());
    }

    #[test]
    fn history_is_bounded_and_states_survive() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        // The first revision is the stable one: never pruned however many builds follow.
        let stable = bundle("export const a = 'stable';");
        let keep: BTreeSet<String> = [stable.revision.clone()].into();
        store.put(&stable, &keep).unwrap();
        for i in 0..(HISTORY + 3) {
            store.put(&bundle(&format!("export const a = {i};")), &keep).unwrap();
        }
        let key = ("ios".to_string(), "next".to_string());
        assert_eq!(store.revisions(&key).len(), HISTORY);
        assert!(store.get(&key, &stable.revision).is_some(), "the stable revision was pruned");
        let s = ReleaseState::first("r1", "test", SystemTime::UNIX_EPOCH);
        store.put_state(&key, &s).unwrap();
        assert_eq!(Store::open(dir.path()).unwrap().states().unwrap().get(&key), Some(&s));
    }
}
