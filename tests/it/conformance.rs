//! Conformance: one snippet per feature (`tests/conformance/*.ts`, every ECMAScript syntax feature from ES2015 on
//! and the TypeScript-only constructs) compiled for every target × module format. Every served script must parse
//! with an independent parser (acorn, `tests/interop/conformance.js`) at its target's version; what cannot be
//! lowered must be refused with a `target` diagnostic instead; and where Node can run the output, it must compute
//! what TypeScript's own `transpileModule` computes from the same source.

use crate::common::{node_json, repo};
use connector_scripts::catalog::transpile::{transpile, Job, Output};
use connector_scripts::catalog::{CompileOptions, Diagnostic, ModuleFormat, Target};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

const TARGETS: [Target; 6] =
    [Target::Es5, Target::Es2015, Target::Es2017, Target::Es2019, Target::Es2020, Target::Es2022];
const FORMATS: [ModuleFormat; 3] = [ModuleFormat::Commonjs, ModuleFormat::Esm, ModuleFormat::Iife];

/// One compile of one corpus file.
struct Compiled {
    feature: String,
    source: String,
    target: Target,
    module: ModuleFormat,
    result: Result<Output, Vec<Diagnostic>>,
}

impl Compiled {
    fn code(&self) -> &str {
        &self.result.as_ref().expect("served").code
    }

    /// The built-ins the output needs that its target lacks (what a variant must provide or polyfill).
    fn needs(&self) -> Vec<&'static str> {
        self.result.as_ref().map(|o| o.builtins.iter().map(|u| u.builtin).collect()).unwrap_or_default()
    }
}

fn corpus() -> Vec<(String, PathBuf)> {
    let mut files: Vec<(String, PathBuf)> = std::fs::read_dir(repo().join("tests/conformance"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "ts"))
        .map(|p| (p.file_stem().unwrap().to_string_lossy().into_owned(), p))
        .collect();
    files.sort();
    assert!(files.len() >= 35, "the corpus is incomplete: {} files", files.len());
    files
}

fn compile(feature: &str, path: &Path, source: &str, target: Target, module: ModuleFormat) -> Compiled {
    let options = CompileOptions { target, module, minify: false, source_maps: false };
    let map_source = format!("{feature}.ts");
    let job = Job { path, map_source: &map_source, source, connector: feature, options };
    let result = transpile(&job);
    Compiled { feature: feature.into(), source: source.into(), target, module, result }
}

fn compile_all() -> Vec<Compiled> {
    let mut out = Vec::new();
    for (feature, path) in corpus() {
        let source = std::fs::read_to_string(&path).unwrap();
        for target in TARGETS {
            for module in FORMATS {
                out.push(compile(&feature, &path, &source, target, module));
            }
        }
    }
    out
}

/// Runs the Node checker over the served scripts; one result per item, in order.
fn check_with_node(served: &[&Compiled], run: bool) -> Vec<Value> {
    let items: Vec<Value> = served
        .iter()
        .map(|c| {
            json!({"name": c.feature, "code": c.code(), "format": c.module.name(),
                   "target": c.target.name(), "source": c.source, "polyfill": !c.needs().is_empty()})
        })
        .collect();
    let doc = node_json("conformance.js", &json!({"items": items, "run": run, "timeoutMs": 5000}));
    doc["results"].as_array().expect("results").clone()
}

/// Features that cannot be lowered below their edition, and module syntax that no script can hold: a compile for
/// such a target must be refused.
fn must_refuse(feature: &str, target: Target, module: ModuleFormat) -> bool {
    match feature {
        "es2020-bigint" => target < Target::Es2020,
        "es2022-top-level-await" => module != ModuleFormat::Esm || target < Target::Es2022,
        // Named groups and the s flag are rewritten for older targets; a lookbehind has no lowering.
        "es2018-regex-lookbehind" => target < Target::Es2018,
        // Its `u` flag (ES2015) and its `\p{…}` escape (ES2018) have no lowering.
        "es2018-regex-named-groups-unicode" => target < Target::Es2018,
        "es2022-regex-d-flag" => target < Target::Es2022,
        _ => false,
    }
}

/// Where swc's output computes something else than TypeScript's, each with the targets it holds for (up to and
/// including) and the reason (asserted to still differ, so that a fix upstream is noticed).
const KNOWN_DIVERGENCES: [(&str, Target, &str); 3] = [
    (
        "ts-namespace",
        Target::EsNext,
        "swc does not resolve, inside one declaration of a merged namespace, a member exported by another \
         declaration (`square` inside the second `namespace Geometry`): authors write `Geometry.square`",
    ),
    (
        "es2015-for-of",
        Target::Es5,
        "on an engine without Symbol, for...of over a string walks UTF-16 code units (TypeScript's own es5 output \
         does the same); with Symbol (native or polyfilled) it walks code points",
    ),
    (
        "es2022-private-methods",
        Target::Es5,
        "for es5, private members are non-enumerable properties with generated names (no WeakMap needed): \
         Object.getOwnPropertyNames lists them",
    ),
];

fn known_divergence(feature: &str, target: Target) -> bool {
    KNOWN_DIVERGENCES.iter().any(|(f, upto, _)| *f == feature && target <= *upto)
}

fn label(c: &Compiled) -> String {
    format!("{} → {}/{}", c.feature, c.target.name(), c.module.name())
}

#[test]
fn every_served_script_parses_on_its_target_and_the_rest_is_refused() {
    let all = compile_all();
    let mut problems = Vec::new();
    for c in &all {
        match (&c.result, must_refuse(&c.feature, c.target, c.module)) {
            (Ok(_), true) => problems.push(format!("{}: served, but its target cannot run it", label(c))),
            (Err(d), false) => problems.push(format!("{}: refused: {}", label(c), d[0])),
            (Err(d), true) => {
                if let Some(other) = d.iter().find(|d| d.code != "target" || d.position.is_none()) {
                    problems.push(format!("{}: refused without a located target diagnostic: {other}", label(c)));
                }
            }
            (Ok(_), false) => {}
        }
    }
    let served: Vec<&Compiled> = all.iter().filter(|c| c.result.is_ok()).collect();
    for (c, r) in served.iter().zip(check_with_node(&served, false)) {
        if r["parses"] != true {
            problems.push(format!("{}: does not parse on its target: {}", label(c), r["error"]));
        }
    }
    assert!(problems.is_empty(), "{} problem(s):\n{}", problems.len(), problems.join("\n"));
    assert!(served.len() > 500, "only {} scripts served", served.len());
}

#[test]
fn served_scripts_compute_what_typescript_computes() {
    // Node runs CommonJS and iife output, each in a context stripped of the built-ins its target lacks. An output
    // the compiler says needs none must run as it is (no false negatives in the built-in scan); one that needs
    // some runs after core-js, as a variant's polyfill would provide them.
    let all = compile_all();
    let runnable: Vec<&Compiled> = all.iter().filter(|c| c.result.is_ok() && c.module != ModuleFormat::Esm).collect();
    let mut problems = Vec::new();
    let mut compared = 0;
    let polyfilled = runnable.iter().filter(|c| !c.needs().is_empty()).count();
    assert!(polyfilled >= 10, "only {polyfilled} outputs needed a polyfill: is the built-in scan running?");
    for (c, r) in runnable.iter().zip(check_with_node(&runnable, true)) {
        let differs = r["same"] == false || r["ran"] == false;
        let known = known_divergence(&c.feature, c.target);
        if differs != known {
            let what = if known { "now agrees: remove it from KNOWN_DIVERGENCES" } else { "differs" };
            problems.push(format!(
                "{}: {what}: got {} ({}), TypeScript gives {}",
                label(c),
                r["value"],
                r["runError"],
                r["expected"]
            ));
        }
        compared += usize::from(r["same"] == true);
    }
    assert!(problems.is_empty(), "{} problem(s):\n{}", problems.len(), problems.join("\n"));
    assert!(compared > 200, "only {compared} outputs compared");
    assert!(runnable.iter().any(|c| c.target == Target::Es5), "no es5 output ran");
}

/// The one compile of `feature` for `target`/`module`.
fn one(feature: &str, target: Target, module: ModuleFormat) -> Compiled {
    let path = repo().join(format!("tests/conformance/{feature}.ts"));
    let source = std::fs::read_to_string(&path).unwrap();
    compile(feature, Path::new(&format!("snippets/{feature}.ts")), &source, target, module)
}

/// Served, and parses on its target.
fn assert_served(feature: &str, targets: &[Target], module: ModuleFormat) {
    let compiled: Vec<Compiled> = targets.iter().map(|t| one(feature, *t, module)).collect();
    for c in &compiled {
        if let Err(d) = &c.result {
            panic!("{}: refused: {}", label(c), d[0]);
        }
    }
    let refs: Vec<&Compiled> = compiled.iter().collect();
    for (c, r) in refs.iter().zip(check_with_node(&refs, false)) {
        assert_eq!(r["parses"], true, "{}: {}\n{}", label(c), r["error"], c.code());
    }
}

/// Refused with a `target` error at file:line:col naming the feature and the way out.
fn assert_refused(feature: &str, target: Target, module: ModuleFormat, needle: &str) -> Diagnostic {
    let c = one(feature, target, module);
    let all = c.result.err().unwrap_or_else(|| panic!("{feature} → {}/{}: served", target.name(), module.name()));
    let d = all.iter().find(|d| d.message.contains(needle)).cloned();
    let d = d.unwrap_or_else(|| panic!("no diagnostic about {needle:?}: {}", all[0]));
    assert_eq!(d.code, "target", "{d}");
    assert!(d.position.is_some(), "no position: {d}");
    assert!(d.message.contains(needle) && d.message.contains(target.name()), "{d}");
    d
}

#[test]
fn decorators_are_lowered_with_typescript_semantics() {
    assert_served("esnext-decorators-legacy", &[Target::Es2015, Target::Es2020, Target::Es2022], ModuleFormat::Esm);
}

#[test]
fn auto_accessors_are_lowered() {
    assert_served("esnext-auto-accessor", &[Target::Es2015, Target::Es2022], ModuleFormat::Esm);
}

#[test]
fn using_declarations_are_lowered() {
    assert_served("esnext-using", &TARGETS, ModuleFormat::Commonjs);
}

#[test]
fn async_generators_and_for_await_are_lowered_for_es2017() {
    assert_served("es2018-async-generator", &[Target::Es2017], ModuleFormat::Esm);
    assert_served("es2018-for-await", &[Target::Es2017], ModuleFormat::Esm);
}

#[test]
fn top_level_await_is_refused_outside_an_es2022_esm_variant() {
    let d = assert_refused("es2022-top-level-await", Target::Es2022, ModuleFormat::Commonjs, "top-level await");
    assert!(d.help.as_deref().unwrap_or_default().contains("esm"), "{d}");
    assert_refused("es2022-top-level-await", Target::Es2020, ModuleFormat::Esm, "top-level await");
    assert_served("es2022-top-level-await", &[Target::Es2022], ModuleFormat::Esm);
}

#[test]
fn bigint_literals_are_refused_below_es2020() {
    let d = assert_refused("es2020-bigint", Target::Es5, ModuleFormat::Iife, "BigInt literal");
    assert!(d.help.as_deref().unwrap_or_default().contains("es2020"), "{d}");
    assert_served("es2020-bigint", &[Target::Es2020, Target::Es2022], ModuleFormat::Commonjs);
}

#[test]
fn regex_named_groups_with_the_u_flag_are_refused_for_es5() {
    assert_refused("es2018-regex-named-groups-unicode", Target::Es5, ModuleFormat::Iife, "regular expression");
    assert_served("es2018-regex-named-groups-unicode", &[Target::Es2018, Target::Es2022], ModuleFormat::Iife);
}

#[test]
fn tagged_templates_with_invalid_escapes_are_lowered_for_es2015_and_es2017() {
    assert_served("es2018-template-invalid-escape", &[Target::Es2015, Target::Es2017], ModuleFormat::Commonjs);
}

#[test]
fn a_hashbang_is_dropped_so_the_iife_parses() {
    assert_served("hashbang", &TARGETS, ModuleFormat::Iife);
    assert!(!one("hashbang", Target::Es2022, ModuleFormat::Iife).code().contains("#!"));
}
