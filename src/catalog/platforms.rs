//! Platform manifests (`platforms/<platform>.toml`): the ordered variants of a platform, parsed and validated.
//!
//! Pure: takes the file's text, returns a [`Platform`] or diagnostics (the loader reads polyfill files after). Resolution of an app version to a variant
//! is [`Platform::resolve`]: the first variant whose range matches wins.

pub use super::options::{CompileOptions, ModuleFormat, Target};

use super::builtins;
use super::diagnostic::Diagnostic;
use super::version::{AppVersion, VersionRange};
use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The manifest format this build understands (`format = 1`).
pub const FORMAT: u32 = 1;

/// One variant of a platform, validated.
#[derive(Debug, Clone)]
pub struct VariantSpec {
    /// Name, unique within the platform.
    pub name: String,
    /// App versions it serves.
    pub versions: VersionRange,
    /// Compile options.
    pub options: CompileOptions,
    include: GlobSet,
    exclude: GlobSet,
    /// Connector name → snippet path (relative to the snippets directory) used instead of the default source.
    pub overrides: BTreeMap<String, PathBuf>,
    /// Built-ins newer than the target that the app's engine has anyway (`provided = ["Promise"]`).
    pub provided: BTreeSet<String>,
    /// Polyfill files, in declaration order, prepended to the scripts that need what they provide.
    pub polyfills: Vec<Polyfill>,
}

/// One `[[variant.polyfill]]`: a JavaScript file (relative to the platforms directory) that defines `provides`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Polyfill {
    /// As written in the manifest.
    pub file: PathBuf,
    /// Built-ins it defines (`Map`, `Object.entries`).
    pub provides: Vec<String>,
    /// Prepend it to every script of the variant (for what the scan cannot see: prototype methods).
    #[serde(default)]
    pub always: bool,
    /// The file's text, read by the loader.
    #[serde(skip)]
    pub text: Arc<str>,
}

impl VariantSpec {
    /// Where each built-in in `needs` comes from: the polyfills to prepend (in declaration order, each once), or
    /// the built-ins nothing provides.
    pub fn provide<'a>(&self, needs: impl IntoIterator<Item = &'a str>) -> Result<Vec<&Polyfill>, Vec<&'a str>> {
        let mut chosen: Vec<bool> = self.polyfills.iter().map(|p| p.always).collect();
        let mut lacking = Vec::new();
        for need in needs {
            if self.provided.contains(need) {
                continue;
            }
            match self.polyfills.iter().position(|p| p.provides.iter().any(|b| b == need)) {
                Some(i) => chosen[i] = true,
                None => lacking.push(need),
            }
        }
        if !lacking.is_empty() {
            return Err(lacking);
        }
        Ok(self.polyfills.iter().zip(chosen).filter(|(_, c)| *c).map(|(p, _)| p).collect())
    }
}

impl VariantSpec {
    /// Does this variant ship the connector?
    pub fn includes(&self, connector: &str) -> bool {
        self.include.is_match(connector) && !self.exclude.is_match(connector)
    }
}

/// A platform manifest, validated.
#[derive(Debug, Clone)]
pub struct Platform {
    /// Platform name: the file stem (`ios`).
    pub name: String,
    /// The manifest file.
    pub file: PathBuf,
    /// Variants in declaration order.
    pub variants: Vec<VariantSpec>,
}

impl Platform {
    /// The first variant whose range matches `version`.
    pub fn resolve(&self, version: &AppVersion) -> Option<&VariantSpec> {
        self.variants.iter().find(|v| v.versions.matches(version))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    format: Option<u32>,
    #[serde(default, rename = "variant")]
    variants: Vec<RawVariant>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVariant {
    name: String,
    versions: String,
    target: String,
    #[serde(default = "default_module")]
    module: ModuleFormat,
    #[serde(default)]
    minify: bool,
    #[serde(default)]
    source_maps: bool,
    #[serde(default)]
    include: Option<Vec<String>>,
    #[serde(default)]
    exclude: Vec<String>,
    #[serde(default)]
    overrides: BTreeMap<String, PathBuf>,
    #[serde(default)]
    provided: BTreeSet<String>,
    #[serde(default, rename = "polyfill")]
    polyfills: Vec<Polyfill>,
}

fn default_module() -> ModuleFormat {
    ModuleFormat::Esm
}

/// Parses and validates one manifest. Errors make the platform unusable; warnings do not.
pub fn parse_manifest(name: &str, file: &Path, text: &str) -> (Option<Platform>, Vec<Diagnostic>) {
    let mut diags = Vec::new();
    let raw: RawManifest = match toml::from_str(text) {
        Ok(raw) => raw,
        Err(e) => {
            let mut d = Diagnostic::error("manifest", file.to_path_buf(), e.message().to_string());
            if let Some(span) = e.span() {
                let (line, col) = line_col(text, span.start);
                d = d.at(text, line, col);
            }
            return (None, vec![d]);
        }
    };
    let err = |code, msg: String| Diagnostic::error(code, file.to_path_buf(), msg);
    if let Some(format) = raw.format {
        if format != FORMAT {
            diags.push(
                err("manifest-format", format!("unknown platform file format {format}"))
                    .with_help(format!("this build reads `format = {FORMAT}`")),
            );
            return (None, diags);
        }
    }
    if raw.variants.is_empty() {
        diags.push(
            err("no-variants", format!("platform {name:?} declares no variant"))
                .with_help("add at least one [[variant]] table"),
        );
    }
    let mut variants: Vec<VariantSpec> = Vec::new();
    for rv in raw.variants {
        // A bad variant is left out, but the others are still checked so that one run reports every problem.
        match validate_variant(rv, &variants, file) {
            Ok(spec) => {
                diags.extend(variant_warnings(&spec, &variants, file));
                variants.push(spec);
            }
            Err(d) => diags.push(d),
        }
    }
    let ok = !diags.iter().any(Diagnostic::is_error);
    let platform = ok.then(|| Platform { name: name.to_string(), file: file.to_path_buf(), variants });
    (platform, diags)
}

/// `variant "name": message`, the way every per-variant diagnostic starts.
fn in_variant(name: &str, message: impl fmt::Display) -> String {
    format!("variant {name:?}: {message}")
}

/// One variant, validated against those declared before it; the first error found rejects it.
fn validate_variant(rv: RawVariant, earlier: &[VariantSpec], file: &Path) -> Result<VariantSpec, Diagnostic> {
    let err = |code, msg: String| Diagnostic::error(code, file.to_path_buf(), msg);
    let what = |m: String| in_variant(&rv.name, m);
    if rv.name.trim().is_empty() {
        return Err(err("variant-name", "a variant has an empty name".into()));
    }
    // The name becomes one level of the manifest topic `<prefix>/<platform>/<variant>` that phones subscribe to
    // with `+`: a `/` would move it out of reach, a wildcard would make it unpublishable.
    if !crate::wire::topics::valid_level(&rv.name) || rv.name.chars().any(char::is_control) {
        return Err(err(
            "variant-name",
            what(
                "the name becomes part of an MQTT topic: it must not contain '/', '+', '#' or control characters"
                    .into(),
            ),
        )
        .with_help("use letters, digits, '-', '_' or '.', e.g. name = \"legacy\""));
    }
    if earlier.iter().any(|v| v.name == rv.name) {
        return Err(err("duplicate-variant", what("declared twice".into())));
    }
    let versions = VersionRange::parse(&rv.versions).map_err(|e| {
        err("version-range", what(format!("invalid versions {:?}: {e}", rv.versions)))
            .with_help("write a semver requirement such as \">=2.0, <3\" or \"*\"")
    })?;
    if versions.is_empty() {
        return Err(err("empty-range", what(format!("versions {:?} matches no version at all", rv.versions))));
    }
    let target = rv.target.parse::<Target>().map_err(|e| err("unknown-target", what(e)))?;
    let include = rv.include.unwrap_or_else(|| vec!["**".to_string()]);
    let include = globs(&include).map_err(|e| err("glob", what(e)))?;
    let exclude = globs(&rv.exclude).map_err(|e| err("glob", what(e)))?;
    let declared = rv.provided.iter().chain(rv.polyfills.iter().flat_map(|p| p.provides.iter()));
    if let Some(unknown) = declared.into_iter().find(|b| !builtins::is_known(b)) {
        return Err(err("unknown-builtin", what(format!("{unknown:?} is not a built-in this build checks for")))
            .with_help("name globals or static members newer than ES5, as `Map` or `Object.entries`"));
    }
    Ok(VariantSpec {
        name: rv.name,
        versions,
        options: CompileOptions { target, module: rv.module, minify: rv.minify, source_maps: rv.source_maps },
        include,
        exclude,
        overrides: rv.overrides,
        provided: rv.provided,
        polyfills: rv.polyfills,
    })
}

/// What is allowed but probably a mistake: ranges that overlap an earlier variant's (the earlier one wins), and
/// ES5 with ES modules.
fn variant_warnings(spec: &VariantSpec, earlier: &[VariantSpec], file: &Path) -> Vec<Diagnostic> {
    let (vname, versions) = (&spec.name, &spec.versions);
    let mut diags = Vec::new();
    for earlier in earlier {
        if let Some(shared) = earlier.versions.overlap(versions) {
            diags.push(
                Diagnostic::warning(
                    "overlapping-ranges",
                    file.to_path_buf(),
                    format!(
                        "variants {:?} ({}) and {vname:?} ({versions}) overlap, e.g. at {shared}; {:?} wins there",
                        earlier.name, earlier.versions, earlier.name
                    ),
                )
                .with_help("the first matching variant wins; make the ranges disjoint if that is not intended"),
            );
        }
    }
    if spec.options.target == Target::Es5 && spec.options.module == ModuleFormat::Esm {
        diags.push(
            Diagnostic::warning(
                "es5-esm",
                file.to_path_buf(),
                in_variant(vname, "target es5 with module \"esm\": ES5 engines do not understand `export`"),
            )
            .with_help("use module = \"iife\" or \"commonjs\" for ES5 engines"),
        );
    }
    diags
}

/// Connector-name globs: `*` stays within a folder, `**` crosses folders.
fn globs(patterns: &[String]) -> Result<GlobSet, String> {
    let mut b = GlobSetBuilder::new();
    for p in patterns {
        let glob =
            GlobBuilder::new(p).literal_separator(true).build().map_err(|e| format!("invalid glob {p:?}: {e}"))?;
        b.add(glob);
    }
    b.build().map_err(|e| e.to_string())
}

/// 1-based line and column of a byte offset.
pub(crate) fn line_col(text: &str, offset: usize) -> (u32, u32) {
    let offset = offset.min(text.len());
    let before = &text[..text.floor_char_boundary_compat(offset)];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line as u32, col as u32)
}

/// `str::floor_char_boundary` is unstable; this is the same thing.
trait FloorCharBoundary {
    fn floor_char_boundary_compat(&self, i: usize) -> usize;
}

impl FloorCharBoundary for str {
    fn floor_char_boundary_compat(&self, mut i: usize) -> usize {
        while i > 0 && !self.is_char_boundary(i) {
            i -= 1;
        }
        i
    }
}

#[cfg(test)]
mod tests;
