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
mod tests {
    use super::*;

    fn parse(text: &str) -> (Option<Platform>, Vec<Diagnostic>) {
        parse_manifest("ios", Path::new("platforms/ios.toml"), text)
    }

    const IOS: &str = r#"
format = 1
[[variant]]
name = "legacy"
versions = "<2.0"
target = "es5"
module = "iife"
minify = true
exclude = ["experimental/*"]
[variant.overrides]
"fleet/tracking" = "fleet/tracking.legacy.ts"

[[variant]]
name = "current"
versions = ">=2.0, <3"
target = "es2017"
module = "commonjs"

[[variant]]
name = "next"
versions = ">=3"
target = "es2022"
source_maps = true
"#;

    #[test]
    fn resolves_first_matching_variant() {
        let (p, d) = parse(IOS);
        assert!(d.is_empty(), "{d:?}");
        let p = p.unwrap();
        let cases = [
            ("1.9.9", Some("legacy")),
            ("0.1", Some("legacy")),
            ("2", Some("current")),
            ("2.0.0-beta.1", Some("current")),
            ("2.99", Some("current")),
            ("3", Some("next")),
            ("3.0.0-rc.1", Some("next")),
            ("42.0.0", Some("next")),
        ];
        for (version, want) in cases {
            let got = p.resolve(&AppVersion::parse(version).unwrap()).map(|v| v.name.as_str());
            assert_eq!(got, want, "{version}");
        }
        let legacy = &p.variants[0];
        assert_eq!(legacy.options.target, Target::Es5);
        assert!(legacy.options.minify);
        assert!(legacy.includes("fleet/tracking"));
        assert!(!legacy.includes("experimental/radar"));
        assert!(legacy.includes("experimental/deep/radar"), "`*` does not cross folders");
        assert_eq!(legacy.overrides["fleet/tracking"], PathBuf::from("fleet/tracking.legacy.ts"));
    }

    #[test]
    fn no_match_is_none() {
        let (p, _) = parse("[[variant]]\nname='a'\nversions='>=2, <3'\ntarget='es2015'\n");
        assert!(p.unwrap().resolve(&AppVersion::parse("3.0.0").unwrap()).is_none());
    }

    #[test]
    fn overlapping_ranges_warn_but_load() {
        let (p, d) = parse(
            "[[variant]]\nname='a'\nversions='>=2'\ntarget='es2015'\n[[variant]]\nname='b'\nversions='>=2.5, <4'\ntarget='es2020'\n",
        );
        assert!(p.is_some());
        assert_eq!(d.len(), 1, "{d:?}");
        assert_eq!(d[0].code, "overlapping-ranges");
        assert!(d[0].message.contains("e.g. at 2.5.0"), "{}", d[0].message);
    }

    #[test]
    fn variant_names_that_cannot_be_a_topic_level_are_errors() {
        for name in ["x/y", "p+#", "a#", "tab\there"] {
            let (platform, diags) =
                parse(&format!("[[variant]]\nname = {name:?}\nversions = '*'\ntarget = 'es2020'\n"));
            assert!(platform.is_none(), "{name:?}");
            assert!(
                diags.iter().any(|d| d.code == "variant-name" && d.message.contains("MQTT topic")),
                "{name:?}: {diags:?}"
            );
        }
        let (platform, _) = parse("[[variant]]\nname = 'next-2.0_b'\nversions = '*'\ntarget = 'es2020'\n");
        assert!(platform.is_some());
    }

    #[test]
    fn invalid_manifests_give_diagnostics() {
        let cases: &[(&str, &str)] = &[
            ("[[variant]]\nname='a'\nversions='>=3, <2'\ntarget='es5'\n", "empty-range"),
            ("[[variant]]\nname='a'\nversions='banana'\ntarget='es5'\n", "version-range"),
            ("[[variant]]\nname='a'\nversions='*'\ntarget='es1999'\n", "unknown-target"),
            ("[[variant]]\nname='a'\nversions='*'\ntarget='es5'\nmodule='amd'\n", "manifest"),
            ("[[variant]]\nname='a'\nversions='*'\ntarget='es5'\ncolour='red'\n", "manifest"),
            ("format = 2\n", "manifest-format"),
            ("", "no-variants"),
            ("[[variant]]\nname='a'\nversions='*'\ntarget='es5'\ninclude=['[']\n", "glob"),
            (
                "[[variant]]\nname='a'\nversions='<2'\ntarget='es5'\n[[variant]]\nname='a'\nversions='>=2'\ntarget='es5'\n",
                "duplicate-variant",
            ),
            ("this is = not toml [", "manifest"),
        ];
        for (text, code) in cases {
            let (p, d) = parse(text);
            assert!(p.is_none(), "{text}");
            assert!(d.iter().any(|d| d.code == *code && d.is_error()), "{text}: {d:?}");
        }
    }

    #[test]
    fn toml_errors_point_at_the_line() {
        let (_, d) = parse("[[variant]]\nname='a'\nversions='*'\ntarget=es5\n");
        let pos = d[0].position.unwrap();
        assert_eq!(pos.line, 4, "{d:?}");
        assert!(d[0].frame.as_ref().unwrap().contains("target=es5"));
    }

    #[test]
    fn polyfills_and_provided_built_ins_must_be_known_built_ins() {
        let base = "[[variant]]\nname = \"legacy\"\nversions = \"*\"\ntarget = \"es5\"\nmodule = \"iife\"\n";
        let (p, d) = parse(&format!(
            "{base}provided = [\"Promise\"]\n[[variant.polyfill]]\nfile = \"m.js\"\nprovides = [\"Map\"]\n"
        ));
        let v = &p.expect("valid").variants[0];
        assert!(d.is_empty(), "{d:?}");
        assert_eq!(v.provide(["Promise"]).map(|p| p.len()), Ok(0));
        assert_eq!(v.provide(["Map", "Promise"]).map(|p| p[0].file.clone()), Ok("m.js".into()));
        assert_eq!(v.provide(["Map", "WeakMap"]).err(), Some(vec!["WeakMap"]));
        let (p, d) = parse(&format!("{base}provided = [\"Promis\"]\n"));
        assert!(p.is_none());
        assert_eq!(d[0].code, "unknown-builtin", "{d:?}");
        assert!(d[0].message.contains("Promis"), "{d:?}");
    }

    #[test]
    fn es5_with_esm_warns() {
        let (p, d) = parse("[[variant]]\nname='a'\nversions='*'\ntarget='es5'\n");
        assert!(p.is_some());
        assert_eq!(d.iter().map(|d| d.code).collect::<Vec<_>>(), ["es5-esm"]);
    }
}
