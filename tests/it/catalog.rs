//! Black-box tests of the catalog: compile output per target (executed under node), diagnostics with file,
//! line and column, hostile input, variant assembly.

use crate::common::{node_json, run_js, TempCatalog};
use connector_scripts::catalog::transpile::{transpile, Job, Output};
use connector_scripts::catalog::{AppVersion, CompileOptions, Diagnostic, ModuleFormat, Target};
use serde_json::json;
use std::path::Path;

const SAMPLE: &str = r#"
interface Point { x: number; y?: number }
type Id = string | number;
declare const injected: unknown;
export enum Color { Red, Green = 5, Blue }
export class Counter<T> {
  private items: T[] = [];
  constructor(private readonly label: string, public step: number = 1) {}
  add(item: T): this { this.items.push(item); return this; }
  get total(): number { return this.items.length * this.step; }
  describe(): string { return `${this.label}:${this.total}`; }
}
export async function sumLater(points: Point[]): Promise<number> {
  let sum = 0;
  for (const p of points) {
    sum += await Promise.resolve(p.x + (p.y ?? 0));
  }
  return sum;
}
export const firstY = (points?: Point[]): number | undefined => points?.[0]?.y;
export function ids(...xs: Id[]): string { return xs.map((x) => String(x as string)).join(',') satisfies string; }
"#;

const CALL: &str = r#"async (m) => {
  const c = new m.Counter('c', 2).add(1).add(2);
  return [m.Color.Green, m.Color[6], c.describe(), await m.sumLater([{x: 1}, {x: 2, y: 3}]),
          m.firstY(undefined), m.firstY([{x: 0, y: 9}]), m.ids(1, 'a')];
}"#;

const EXPECTED: &str = r#"[5,"Blue","c:4",6,null,9,"1,a"]"#;

fn compile(target: Target, module: ModuleFormat) -> Output {
    let options = CompileOptions { target, module, minify: false, source_maps: false };
    let job = Job {
        path: Path::new("snippets/sample.ts"),
        map_source: "snippet.ts",
        source: SAMPLE,
        connector: "sample",
        options,
    };
    transpile(&job).unwrap_or_else(|d| panic!("{target:?}: {}", d[0]))
}

fn assert_runs(code: &str, module: ModuleFormat, es5: bool) {
    let verdict = run_js(code, module.name(), "sample", es5, CALL);
    assert_eq!(verdict["ok"], true, "{verdict}\n---\n{code}");
    assert_eq!(verdict["result"].to_string(), EXPECTED, "{code}");
}

#[test]
fn type_only_constructs_are_gone_for_every_target() {
    for (target, name) in Target::ALL {
        let out = compile(target, ModuleFormat::Esm);
        for gone in
            ["interface", "type Id", "declare", ": number", "private readonly", "satisfies", " as string", "<T>"]
        {
            assert!(!out.code.contains(gone), "{name}: `{gone}` survived:\n{}", out.code);
        }
        // Enums and parameter properties are lowered to plain JavaScript.
        assert!(
            out.code.contains("Color[\"Green\"] = 5") || out.code.contains("Color[Color[\"Green\"] = 5]"),
            "{name}"
        );
        assert!(out.code.contains("this.label = label"), "{name}:\n{}", out.code);
    }
}

#[test]
fn downlevels_async_and_optional_chaining_for_es2015_and_es5() {
    for target in [Target::Es5, Target::Es2015] {
        let out = compile(target, ModuleFormat::Commonjs);
        for gone in ["async ", "await ", "?.", "??"] {
            assert!(!out.code.contains(gone), "{target:?}: `{gone}` survived:\n{}", out.code);
        }
        // Helpers are inlined: nothing to import at run time.
        assert!(!out.code.contains("@swc/helpers"), "{target:?}");
        assert!(!out.code.contains("require("), "{target:?}");
    }
    let es5 = compile(Target::Es5, ModuleFormat::Commonjs).code;
    for gone in ["class Counter", "=>", "const ", "let ", "`"] {
        assert!(!es5.contains(gone), "es5: `{gone}` survived:\n{es5}");
    }
    let es2017 = compile(Target::Es2017, ModuleFormat::Esm).code;
    assert!(es2017.contains("async function sumLater"), "es2017 keeps async");
    assert!(!es2017.contains("?."), "es2017 lowers optional chaining");
    let es2020 = compile(Target::Es2020, ModuleFormat::Esm).code;
    assert!(es2020.contains("?."), "es2020 keeps optional chaining");
}

#[test]
fn es5_commonjs_and_iife_outputs_parse_as_es5_and_run_under_node() {
    for module in [ModuleFormat::Commonjs, ModuleFormat::Iife] {
        let out = compile(Target::Es5, module);
        assert_runs(&out.code, module, true);
    }
}

#[test]
fn every_target_and_format_runs_under_node() {
    for (target, _) in Target::ALL {
        for module in [ModuleFormat::Esm, ModuleFormat::Commonjs, ModuleFormat::Iife] {
            let out = compile(target, module);
            assert_runs(&out.code, module, false);
        }
    }
}

#[test]
fn minified_es5_iife_still_runs_and_is_smaller() {
    let plain = compile(Target::Es5, ModuleFormat::Iife);
    let options = CompileOptions { target: Target::Es5, module: ModuleFormat::Iife, minify: true, source_maps: false };
    let job = Job { path: Path::new("s.ts"), map_source: "snippet.ts", source: SAMPLE, connector: "sample", options };
    let min = transpile(&job).unwrap();
    assert!(min.code.len() * 2 < plain.code.len(), "{} vs {}", min.code.len(), plain.code.len());
    assert_runs(&min.code, ModuleFormat::Iife, true);
}

#[test]
fn source_maps_point_back_to_the_typescript() {
    for module in [ModuleFormat::Esm, ModuleFormat::Iife] {
        let options = CompileOptions { target: Target::Es2017, module, minify: false, source_maps: true };
        let job = Job {
            path: Path::new("snippets/sample.ts"),
            map_source: "sample.ts",
            source: SAMPLE,
            connector: "sample",
            options,
        };
        let out = transpile(&job).unwrap();
        let map: serde_json::Value = serde_json::from_str(out.source_map.as_deref().unwrap()).unwrap();
        assert_eq!(map["version"], 3);
        assert!(map["sources"][0].as_str().unwrap().ends_with("sample.ts"), "{map}");
        assert_eq!(map["sourcesContent"][0], SAMPLE);
        let mappings = map["mappings"].as_str().unwrap();
        assert!(!mappings.is_empty());
        if module == ModuleFormat::Iife {
            // The wrapper's first line has no mapping.
            assert!(mappings.starts_with(';'), "{mappings}");
        }
    }
}

fn diag_at(source: &str) -> Diagnostic {
    let options =
        CompileOptions { target: Target::Es2017, module: ModuleFormat::Esm, minify: false, source_maps: false };
    let job =
        Job { path: Path::new("snippets/broken.ts"), map_source: "snippet.ts", source, connector: "broken", options };
    let mut diags = transpile(&job).unwrap_err();
    assert!(!diags.is_empty());
    diags.remove(0)
}

#[test]
fn parse_errors_carry_file_line_column_and_a_code_frame() {
    let cases: &[(&str, u32, u32)] = &[
        ("const a = 1;\nconst b = ;\n", 2, 11),
        ("export function f(x: number {\n  return x;\n}\n", 1, 29),
        ("let s = 'unterminated\n", 1, 9),
        ("class A {\n  m() {\n    return 1\n  }\n", 4, 5),
        ("\tconst é = 1; const z = @;\n", 1, 26),
    ];
    for (source, line, column) in cases {
        let d = diag_at(source);
        assert_eq!(d.code, "parse", "{source:?}");
        assert_eq!(d.file.as_deref(), Some(Path::new("snippets/broken.ts")));
        let pos = d.position.unwrap_or_else(|| panic!("no position for {source:?}: {d}"));
        assert_eq!((pos.line, pos.column), (*line, *column), "{source:?}\n{d}");
        let text = d.to_string();
        assert!(text.contains(&format!("--> snippets/broken.ts:{line}:{column}")), "{text}");
        assert!(text.contains(&format!("{line} | ")), "code frame missing:\n{text}");
        assert!(text.contains('^'), "{text}");
    }
}

#[test]
fn hostile_files_give_diagnostics_not_a_crash() {
    let t = TempCatalog::new();
    t.platform("ios.toml", "[[variant]]\nname='all'\nversions='*'\ntarget='es5'\nmodule='iife'\n");
    t.snippet("good.ts", "export const ok = 1;\n");
    t.snippet("binary.ts", [0x7f, b'E', b'L', b'F', 0, 0, 1, 2, 3, 0xff]);
    t.snippet("latin1.ts", b"export const s = 'caf\xe9';\n");
    t.snippet("huge.ts", vec![b'a'; 5 << 20]);
    t.snippet("empty.ts", "");
    t.snippet("blank.ts", " \n\t\n");
    t.snippet("parens.ts", format!("export const x = {}1{};\n", "(".repeat(200_000), ")".repeat(200_000)));
    t.snippet("arrays.ts", format!("export const y = {}{};\n", "[".repeat(50_000), "]".repeat(50_000)));
    let chain: Vec<String> = (0..100_000).map(|i| format!("a{i}")).collect();
    t.snippet("chain.ts", format!("declare const a: any; export const z = {};\n", chain.join(" + ")));
    let ternary: String = (0..5_000).map(|i| format!("c{i} ? {i} : ")).collect();
    t.snippet("ternary.ts", format!("export const w = {ternary}0;\n"));
    t.snippet("unary.ts", format!("export const u = {}1;\n", "!".repeat(5_000)));
    t.snippet("garbage.ts", "}}}{{{ ))) export export class class ;;; <<<>>>\n");
    let catalog = t.build();
    let code_of = |file: &str| -> Vec<&'static str> {
        catalog
            .diagnostics
            .iter()
            .filter(|d| d.file.as_deref().is_some_and(|f| f.ends_with(file)))
            .map(|d| d.code)
            .collect()
    };
    assert_eq!(code_of("binary.ts"), ["binary"]);
    assert_eq!(code_of("latin1.ts"), ["invalid-utf8"]);
    let latin1 = catalog.diagnostics.iter().find(|d| d.code == "invalid-utf8").unwrap();
    assert_eq!(latin1.position.map(|p| (p.line, p.column)), Some((1, 22)), "{latin1}");
    assert_eq!(code_of("huge.ts"), ["too-large"]);
    assert_eq!(code_of("empty.ts"), ["empty"]);
    assert_eq!(code_of("blank.ts"), ["empty"]);
    assert_eq!(code_of("parens.ts"), ["too-deep"]);
    assert_eq!(code_of("arrays.ts"), ["too-deep"]);
    assert!(code_of("garbage.ts").contains(&"parse"), "{:?}", code_of("garbage.ts"));
    // Long flat chains and moderately deep ternaries/unaries either compile or are refused cleanly.
    for file in ["chain.ts", "ternary.ts", "unary.ts"] {
        assert!(code_of(file).iter().all(|c| *c == "too-deep"), "{file}: {:?}", code_of(file));
    }
    // The good connector is still served.
    let bundle = catalog.resolve("ios", &AppVersion::parse("1.0").unwrap()).unwrap();
    assert!(bundle.scripts.iter().any(|s| s.name == "good"));
    assert!(!bundle.scripts.iter().any(|s| s.name == "binary" || s.name == "huge"));
}

#[test]
fn platform_specific_files_overrides_and_globs_shape_the_variants() {
    let t = TempCatalog::new();
    t.platform(
        "ios.toml",
        r#"
[[variant]]
name = "old"
versions = "<2"
target = "es5"
module = "iife"
exclude = ["lab/**"]
[variant.overrides]
"track" = "track.old.ts"

[[variant]]
name = "new"
versions = ">=2"
target = "es2020"
"#,
    );
    t.platform("android.toml", "[[variant]]\nname='all'\nversions='*'\ntarget='es2017'\ninclude=['track', 'pay']\n");
    t.snippet("track.ts", "export const v = 'default';\n");
    t.snippet("track.old.ts", "export const v = 'old';\n");
    t.snippet("pay.ts", "export const v = 'pay';\n");
    t.snippet("pay.android.ts", "export const v = 'pay-android';\n");
    t.snippet("lab/radar.ts", "export const v = 'radar';\n");
    t.snippet("types.d.ts", "declare const x: number;\n");
    t.snippet(".hidden.ts", "this is not parsed at all (\n");
    let c = t.build();
    assert!(c.diagnostics.is_empty(), "{:?}", c.diagnostics);
    assert_eq!(c.connectors.iter().map(String::as_str).collect::<Vec<_>>(), ["lab/radar", "pay", "track"]);
    let names = |p: &str, v: &str| -> Vec<String> {
        let b = c.resolve(p, &AppVersion::parse(v).unwrap()).unwrap();
        b.scripts
            .iter()
            .map(|s| format!("{}={}", s.name, s.code.contains("'old'") || s.code.contains("\"old\"")))
            .collect()
    };
    assert_eq!(names("ios", "1.5"), ["pay=false", "track=true"]);
    assert_eq!(names("ios", "2.0"), ["lab/radar=false", "pay=false", "track=false"]);
    let android = c.resolve("android", &AppVersion::parse("9").unwrap()).unwrap();
    let pay = &android.scripts[android.script_index("pay").unwrap()];
    assert!(pay.code.contains("pay-android"), "{}", pay.code);
    assert_eq!(android.scripts.len(), 2);
}

#[test]
fn configuration_mistakes_are_reported() {
    let t = TempCatalog::new();
    t.platform(
        "ios.toml",
        "[[variant]]\nname='a'\nversions='*'\ntarget='es2017'\nexclude=['orphan']\n[variant.overrides]\n'x' = 'missing.ts'\n",
    );
    t.platform("android.yaml", "variants: []\n");
    t.snippet("x.ts", "export const x = 1;\n");
    t.snippet("orphan.ts", "export const o = 1;\n");
    let c = t.build();
    let codes: Vec<(&str, bool)> = c.diagnostics.iter().map(|d| (d.code, d.is_error())).collect();
    assert!(codes.contains(&("missing-override", true)), "{codes:?}");
    assert!(codes.contains(&("manifest-format", true)), "{codes:?}");
    assert!(codes.contains(&("unused-connector", false)), "{codes:?}");
    let missing = c.diagnostics.iter().find(|d| d.code == "missing-override").unwrap();
    assert!(missing.message.contains("missing.ts"), "{missing}");
    // The platform still serves what it can.
    assert!(c.resolve("ios", &AppVersion::parse("1").unwrap()).is_ok());
}

#[test]
fn identical_work_is_compiled_once_and_cached_across_builds() {
    let t = TempCatalog::new();
    // Two platforms, four variants, but only two distinct compile option sets.
    t.platform(
        "ios.toml",
        "[[variant]]\nname='a'\nversions='<2'\ntarget='es5'\n[[variant]]\nname='b'\nversions='>=2'\ntarget='es2020'\n",
    );
    t.platform(
        "android.toml",
        "[[variant]]\nname='a'\nversions='<2'\ntarget='es5'\n[[variant]]\nname='b'\nversions='>=2'\ntarget='es2020'\n",
    );
    for i in 0..5 {
        t.snippet(&format!("c{i}.ts"), format!("export const v{i}: number = {i};\n"));
    }
    let mut cache = Default::default();
    let first = connector_scripts::catalog::build(&t.sources(), &mut cache, None);
    assert_eq!((first.stats.jobs, first.stats.compiled), (10, 10));
    let again = connector_scripts::catalog::build(&t.sources(), &mut cache, None);
    assert_eq!((again.stats.jobs, again.stats.compiled), (10, 0));
    t.snippet("c3.ts", "export const v3: number = 33;\n");
    let edited = connector_scripts::catalog::build(&t.sources(), &mut cache, None);
    assert_eq!(edited.stats.compiled, 2, "only the edited file, once per option set");
    let rev = |c: &connector_scripts::catalog::Catalog| c.bundles().map(|b| b.revision.clone()).collect::<Vec<_>>();
    assert_eq!(rev(&first), rev(&again));
    assert!(rev(&first).iter().zip(rev(&edited)).all(|(a, b)| *a != b));
}

#[test]
fn example_catalog_is_clean() {
    let c = TempCatalog::examples().build();
    assert!(c.diagnostics.is_empty(), "{:#?}", c.diagnostics);
    assert!(c.connectors.len() >= 5);
    for bundle in c.bundles() {
        assert!(!bundle.scripts.is_empty(), "{}/{}", bundle.platform, bundle.variant);
    }
}

/// What each example connector is asked to compute, whatever variant serves it (a `null` where a variant's source
/// lacks the export).
const EXAMPLE_CALLS: [(&str, &str); 4] = [
    (
        "smart-home/thermostat",
        "(m) => { const s = new m.Schedule(); s.set({ hour: 7.9, celsius: 40 }).set({ hour: 20, celsius: 18 }); \
         return [s.size, s.at(9), s.at(23), s.at(3) || null, m.display(21), m.display(21, 'F')]; }",
    ),
    (
        "health/step-counter",
        "async (m) => { const t = m.totals([{ at: new Date(0), steps: 5 }, { at: new Date(0), steps: 7 }, \
         { at: new Date(86400000), steps: -3 }]); const seen = []; \
         async function* src() { yield { steps: 1 }; yield { steps: 2 }; } \
         for await (const n of m.stream(src())) seen.push(n); return [t, m.best(t), seen]; }",
    ),
    (
        "fleet/tracking",
        "async (m) => [m.describe({ lat: 1.5, lon: 2 }), m.describe(undefined), \
         m.upload ? await m.upload({ lat: 1, lon: 2 }, async () => 201) : null]",
    ),
    (
        "payments/card-reader",
        "async (m) => { const bridge = { transceive: async () => ({ status: 0x90 }), write: async () => {}, \
         read: async () => [0x90] }; const r = m.AndroidReader ? new m.AndroidReader(bridge) \
         : new m.GenericReader(bridge); return [await r.charge({ minor: 1250, currency: 'EUR' }), \
         m.encode ? m.encode(1250, 'EUR') : null]; }",
    ),
];

#[test]
fn example_es5_variants_run_on_an_engine_without_es2015_built_ins() {
    let c = TempCatalog::examples().build();
    assert!(c.diagnostics.is_empty(), "{:#?}", c.diagnostics);
    let mut ran = 0;
    for (platform, pc) in &c.platforms {
        for (spec, bundle) in pc.spec.variants.iter().zip(&pc.bundles) {
            if spec.options.target != Target::Es5 {
                continue;
            }
            assert_eq!(bundle.options.module, ModuleFormat::Iife, "{platform}/{}", bundle.variant);
            let engine = json!({"target": "es5", "provided": spec.provided});
            for script in &bundle.scripts {
                let (_, call) = EXAMPLE_CALLS.iter().find(|(n, _)| *n == script.name).expect("a call per connector");
                let input = json!({"code": &*script.code, "format": "iife", "name": script.name, "es5": true,
                                   "call": call, "engine": engine});
                let bare = node_json("run_script.js", &input);
                assert_eq!(bare["ok"], true, "{platform}/{} {}: {bare}", bundle.variant, script.name);
                // The same script on an engine with every built-in computes the same.
                let full = node_json(
                    "run_script.js",
                    &json!({"code": &*script.code, "format": "iife",
                                     "name": script.name, "call": call}),
                );
                assert_eq!(bare, full, "{platform}/{} {}", bundle.variant, script.name);
                ran += 1;
            }
        }
    }
    assert!(ran >= 8, "only {ran} legacy scripts ran");
}

#[test]
fn source_maps_name_files_by_their_place_in_the_catalog_not_on_the_server() {
    // Two copies of one catalog in different directories: the same revisions (instances of a group agree).
    let (a, b) = (TempCatalog::examples().build(), TempCatalog::examples().build());
    let next = |c: &connector_scripts::catalog::Catalog| {
        c.bundles().find(|b| b.platform == "ios" && b.variant == "next").unwrap().clone()
    };
    assert_eq!(next(&a).revision, next(&b).revision);
    let map: serde_json::Value = serde_json::from_str(next(&a).scripts[0].source_map.as_deref().unwrap()).unwrap();
    assert_eq!(map["sources"], json!(["experimental/geofence.ts"]), "{map}");
}

#[test]
fn a_polyfill_is_prepended_only_where_its_built_in_is_used() {
    let c = TempCatalog::examples().build();
    let legacy = c.bundles().find(|b| b.platform == "android" && b.variant == "legacy").unwrap();
    let code = |name: &str| legacy.script(name).unwrap().code.clone();
    assert!(code("smart-home/thermostat").contains("Map for ES5 engines"));
    assert!(!code("smart-home/thermostat").contains("Promise for ES5 engines"));
    assert!(code("fleet/tracking").contains("Promise for ES5 engines"));
    assert!(!code("fleet/tracking").contains("Map for ES5 engines"));
}

/// An android platform with an es5/iife `legacy` variant (< 5) and a `modern` one (>= 5, `modern` its target and
/// module lines), and one plain snippet every variant serves.
fn legacy_and_modern(modern: &str) -> TempCatalog {
    let t = TempCatalog::new();
    t.platform(
        "android.toml",
        &format!(
            "[[variant]]\nname = 'legacy'\nversions = '<5'\ntarget = 'es5'\nmodule = 'iife'\n\n\
             [[variant]]\nname = 'modern'\nversions = '>=5'\n{modern}\n"
        ),
    );
    t.snippet("plain.ts", "export const plain = 1;\n");
    t
}

#[test]
fn a_built_in_nothing_provides_is_refused_with_its_location_and_the_others_serve() {
    let t = legacy_and_modern("target = 'es2015'\nmodule = 'iife'");
    t.snippet("cache.ts", "export const make = () => {\n  return new WeakMap<object, number>();\n};\n");
    let c = t.build();
    let d = c.diagnostics.iter().find(|d| d.code == "builtin").expect("a builtin diagnostic");
    assert!(d.is_error(), "{d}");
    assert!(d.message.contains("WeakMap") && d.message.contains("android/legacy") && d.message.contains("es5"), "{d}");
    let pos = d.position.expect("located");
    assert_eq!((pos.line, pos.column), (2, 14), "{d}");
    assert!(d.help.as_deref().unwrap_or("").contains("[[variant.polyfill]]"), "{d}");
    let bundle = |v: &str| c.bundles().find(|b| b.variant == v).unwrap().clone();
    assert!(bundle("legacy").script("cache").is_none());
    assert!(bundle("legacy").script("plain").is_some());
    assert!(bundle("modern").script("cache").is_some());
}

#[test]
fn check_refuses_a_bigint_for_es5_and_the_es2020_variant_serves_it() {
    let t = legacy_and_modern("target = 'es2020'\nmodule = 'esm'");
    t.snippet("big.ts", "export const big = (): string => String(10n ** 3n);\n");
    let cli = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_connector-scripts"))
            .args(args)
            .arg("--snippets")
            .arg(t.snippets())
            .arg("--platforms")
            .arg(t.platforms())
            .output()
            .unwrap()
    };
    let out = cli(&["check"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("error[target]: a BigInt literal is es2020 syntax") && text.contains("target es5"), "{text}");
    assert!(text.contains("big.ts:1:"), "file:line:col: {text}");
    assert!(text.contains("raise the variant's target to es2020"), "{text}");
    // The es2020 variant serves it; the es5 variant serves the rest.
    let modern =
        String::from_utf8_lossy(&cli(&["show", "--platform", "android", "--version", "6"]).stdout).into_owned();
    assert!(modern.contains("── big") && modern.contains("10n"), "{modern}");
    let legacy =
        String::from_utf8_lossy(&cli(&["show", "--platform", "android", "--version", "4"]).stdout).into_owned();
    assert!(!legacy.contains("── big") && legacy.contains("── plain"), "{legacy}");
}
