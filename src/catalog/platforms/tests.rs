//! Unit tests of `catalog/platforms.rs`.

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
        let (platform, diags) = parse(&format!("[[variant]]\nname = {name:?}\nversions = '*'\ntarget = 'es2020'\n"));
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
