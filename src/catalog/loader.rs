//! Reads `snippets/` and `platforms/` from disk into memory, turning every unreadable file into a diagnostic.
//!
//! Only this module touches the file system; the rest of the catalog works on what it returns.

use super::diagnostic::Diagnostic;
use super::platforms::{parse_manifest, Platform};
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The default per-file size limit (1 MiB).
pub const DEFAULT_MAX_FILE_SIZE: u64 = 1 << 20;

/// A snippet file read successfully.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceFile {
    /// Path relative to the snippets directory, with `/` separators (`fleet/tracking.ios.ts`).
    pub rel: String,
    /// Path for diagnostics (the snippets directory joined with `rel`).
    pub path: PathBuf,
    /// UTF-8 text, BOM removed.
    pub text: Arc<str>,
}

/// Everything read from the snippets directory.
#[derive(Debug, Default)]
pub struct Snippets {
    /// Readable `.ts` files by relative path.
    pub files: BTreeMap<String, SourceFile>,
    /// Relative paths of `.ts` files that could not be used, with why.
    pub broken: BTreeMap<String, Diagnostic>,
}

/// Reads every `*.ts` file (not `*.d.ts`, not hidden) under `dir`, recursively.
pub fn load_snippets(dir: &Path, max_file_size: u64) -> (Snippets, Vec<Diagnostic>) {
    let mut out = Snippets::default();
    let mut diags = Vec::new();
    let mut paths = Vec::new();
    if let Err(d) = walk(dir, dir, &mut paths, &mut diags) {
        return (out, vec![d]);
    }
    for (rel, path) in paths {
        if !rel.ends_with(".ts") || rel.ends_with(".d.ts") {
            continue;
        }
        match read_source(&path, max_file_size) {
            Ok(text) => {
                out.files.insert(rel.clone(), SourceFile { rel, path, text: Arc::from(text) });
            }
            Err(d) => {
                out.broken.insert(rel, d);
            }
        }
    }
    (out, diags)
}

/// Platform manifests read from disk.
#[derive(Debug, Default)]
pub struct Platforms {
    /// Valid manifests.
    pub valid: Vec<Platform>,
    /// Names of platforms whose manifest exists but cannot be used (unreadable or invalid).
    pub broken: Vec<String>,
}

/// Reads each variant's polyfill files (relative to the platforms directory); one that cannot be read makes the
/// platform unusable, as a manifest error does.
fn read_polyfills(dir: &Path, platform: &mut Platform) -> Result<(), Diagnostic> {
    for variant in &mut platform.variants {
        for polyfill in &mut variant.polyfills {
            let path = dir.join(&polyfill.file);
            let text = read_source(&path, DEFAULT_MAX_FILE_SIZE).map_err(|d| {
                let msg = format!("variant {:?}: polyfill {}: {}", variant.name, polyfill.file.display(), d.message);
                Diagnostic::error("polyfill", platform.file.clone(), msg)
                    .with_help("polyfill files are relative to the platforms directory")
            })?;
            polyfill.text = Arc::from(text.as_str());
        }
    }
    Ok(())
}

/// Reads every platform manifest in `dir`: `<platform>.toml`; other files are reported as an unknown format.
/// Subdirectories are skipped (polyfill files live in one).
pub fn load_platforms(dir: &Path) -> (Platforms, Vec<Diagnostic>) {
    let mut platforms = Platforms::default();
    let mut diags = Vec::new();
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            let d =
                Diagnostic::error("platforms-dir", dir.to_path_buf(), format!("cannot read platforms directory: {e}"))
                    .with_help("pass --platforms DIR");
            return (platforms, vec![d]);
        }
    };
    let mut files: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    files.sort();
    for path in files {
        let Some(file_name) = path.file_name().and_then(|n| n.to_str()).map(str::to_string) else {
            diags.push(Diagnostic::error("file-name", path.clone(), "file name is not valid UTF-8"));
            continue;
        };
        if file_name.starts_with('.') || path.is_dir() {
            continue;
        }
        let Some(name) = file_name.strip_suffix(".toml") else {
            diags.push(
                Diagnostic::error("manifest-format", path.clone(), "unknown platform file format")
                    .with_help("platform files are TOML: platforms/<platform>.toml"),
            );
            continue;
        };
        if !valid_platform_name(name) {
            diags.push(Diagnostic::error(
                "platform-name",
                path.clone(),
                format!("platform name {name:?} must be lowercase letters, digits, '-' or '_'"),
            ));
            continue;
        }
        let text = match read_source(&path, DEFAULT_MAX_FILE_SIZE) {
            Ok(t) => t,
            Err(d) => {
                diags.push(d);
                platforms.broken.push(name.to_string());
                continue;
            }
        };
        let (mut platform, mut d) = parse_manifest(name, &path, &text);
        diags.append(&mut d);
        if let Some(p) = &mut platform {
            if let Err(d) = read_polyfills(dir, p) {
                diags.push(d);
                platform = None;
            }
        }
        match platform {
            Some(p) => platforms.valid.push(p),
            None => platforms.broken.push(name.to_string()),
        }
    }
    if platforms.valid.is_empty() && !diags.iter().any(Diagnostic::is_error) {
        diags.push(
            Diagnostic::error("no-platforms", dir.to_path_buf(), "no platform manifest found")
                .with_help("add platforms/android.toml or platforms/ios.toml (see README)"),
        );
    }
    (platforms, diags)
}

/// Platform names become topic segments and file-name infixes: keep them plain.
pub fn valid_platform_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 32
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// Collects (relative path, path) of regular files under `dir`. Symlinked directories are not entered (no cycles).
fn walk(
    root: &Path,
    dir: &Path,
    out: &mut Vec<(String, PathBuf)>,
    diags: &mut Vec<Diagnostic>,
) -> Result<(), Diagnostic> {
    let entries = fs::read_dir(dir).map_err(|e| {
        Diagnostic::error("snippets-dir", dir.to_path_buf(), format!("cannot read directory: {e}"))
            .with_help("pass --snippets DIR")
    })?;
    let mut entries: Vec<_> = entries.filter_map(Result::ok).collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            diags.push(Diagnostic::error("file-name", path, "file name is not valid UTF-8; the file is ignored"));
            continue;
        };
        if name.starts_with('.') {
            continue;
        }
        let Ok(file_type) = entry.file_type() else {
            continue;
        };
        if file_type.is_dir() {
            if let Err(d) = walk(root, &path, out, diags) {
                diags.push(d);
            }
        } else if file_type.is_file() || (file_type.is_symlink() && path.is_file()) {
            let rel = path.strip_prefix(root).unwrap_or(&path);
            let rel: Vec<&str> = rel.components().filter_map(|c| c.as_os_str().to_str()).collect();
            out.push((rel.join("/"), path));
        }
    }
    Ok(())
}

/// Reads one text file: size-limited, UTF-8, not binary, not empty.
pub fn read_source(path: &Path, max_file_size: u64) -> Result<String, Diagnostic> {
    let err = |code, msg: String| Diagnostic::error(code, path.to_path_buf(), msg);
    let meta = fs::metadata(path).map_err(|e| err("read", format!("cannot read file: {e}")))?;
    if meta.len() > max_file_size {
        return Err(err("too-large", format!("file is {} bytes, over the {} byte limit", meta.len(), max_file_size))
            .with_help("connectors are small scripts; raise --max-file-size if this one really must be this big"));
    }
    let bytes = fs::read(path).map_err(|e| err("read", format!("cannot read file: {e}")))?;
    if bytes.len() as u64 > max_file_size {
        return Err(err("too-large", format!("file is over the {max_file_size} byte limit")));
    }
    decode_text(path, bytes)
}

/// Bytes → text, with diagnostics for binary content, invalid UTF-8 and emptiness.
pub fn decode_text(path: &Path, bytes: Vec<u8>) -> Result<String, Diagnostic> {
    let err = |code, msg: String| Diagnostic::error(code, path.to_path_buf(), msg);
    if let Some(pos) = bytes.iter().take(8192).position(|&b| b == 0) {
        return Err(err("binary", format!("binary file (NUL byte at offset {pos}); expected TypeScript text")));
    }
    let text = match String::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => {
            let valid = e.utf8_error().valid_up_to();
            let bytes = e.into_bytes();
            let before = String::from_utf8_lossy(&bytes[..valid]).into_owned();
            let line = before.matches('\n').count() as u32 + 1;
            let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) as u32 + 1;
            let shown = String::from_utf8_lossy(&bytes).into_owned();
            return Err(err("invalid-utf8", format!("invalid UTF-8 at byte {valid}"))
                .at(&shown, line, col)
                .with_help("save the file as UTF-8"));
        }
    };
    let text = text.strip_prefix('\u{feff}').map(str::to_string).unwrap_or(text);
    if text.trim().is_empty() {
        return Err(err("empty", "file is empty".into()).with_help("write the connector or delete the file"));
    }
    Ok(text)
}
