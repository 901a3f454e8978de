//! Build step three: one [`Bundle`] per variant from the compiled outputs, in manifest order.
//!
//! A connector whose job failed is left out of the bundle, unless the previous catalog (a reload) served it in the
//! same variant: then its last good script stays, with a warning, so that a bad save does not break devices.

use super::bundle::{self, Bundle, Script};
use super::cache::CompileCache;
use super::diagnostic::Diagnostic;
use super::plan::{Plan, VariantPlan};
use super::platforms::{Platform, VariantSpec};
use super::snapshot::{Catalog, Missing, PlatformCatalog};
use super::transpile::Output;
use std::collections::BTreeMap;
use std::sync::Arc;

/// What the assembled bundles are checked against.
#[derive(Debug, Clone, Copy)]
pub(super) struct Limits {
    /// Largest reply the broker carries.
    pub(super) max_reply_size: u64,
}

/// Bytes a NestJS envelope, an MQTT PUBLISH header and a reply topic add around a full reply, at most (a device id
/// is at most 128 bytes, a NestJS id at most 256).
const REPLY_OVERHEAD: usize = 512;

/// The platforms with their bundles, by name. `cache` must hold the plan's jobs (see [`super::compile`]).
pub(super) fn assemble(
    platforms: Vec<Platform>,
    plan: &Plan,
    cache: &CompileCache,
    previous: Option<&Catalog>,
    limits: Limits,
    (diags, missing): (&mut Vec<Diagnostic>, &mut Vec<Missing>),
) -> BTreeMap<String, PlatformCatalog> {
    let mut bundles_by_platform: Vec<Vec<Arc<Bundle>>> = vec![Vec::new(); platforms.len()];
    for vp in &plan.variants {
        let bundle = variant_bundle(&platforms[vp.platform], vp, cache, previous, (diags, missing));
        check_bundle(&platforms[vp.platform], &bundle, limits, diags);
        bundles_by_platform[vp.platform].push(Arc::new(bundle));
    }
    platforms
        .into_iter()
        .zip(bundles_by_platform)
        .map(|(platform, bundles)| {
            (platform.name.clone(), PlatformCatalog { spec: platform, bundles, candidates: Vec::new() })
        })
        .collect()
}

/// The bundle of one variant: each planned connector's compiled script, or its last good one.
fn variant_bundle(
    platform: &Platform,
    vp: &VariantPlan,
    cache: &CompileCache,
    previous: Option<&Catalog>,
    (diags, missing): (&mut Vec<Diagnostic>, &mut Vec<Missing>),
) -> Bundle {
    let variant = &platform.variants[vp.variant];
    let previous_bundle = previous
        .and_then(|prev| prev.platforms.get(&platform.name))
        .and_then(|p| p.bundles.iter().find(|b| b.variant == variant.name));
    let mut scripts = Vec::with_capacity(vp.scripts.len());
    for p in &vp.scripts {
        let output = p.key.as_ref().and_then(|k| cache.entries.get(k)).and_then(|r| r.as_ref().as_ref().ok());
        let script = output.and_then(|o| with_builtins(platform, variant, &p.connector, o, diags));
        if let Some(script) = script {
            scripts.push(script);
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
        } else {
            missing.push(Missing {
                platform: platform.name.clone(),
                variant: variant.name.clone(),
                connector: p.connector.clone(),
            });
        }
    }
    let mut bundle =
        Bundle::new(&platform.name, &variant.name, &variant.versions.to_string(), variant.options, scripts);
    if let Some(previous) = previous_bundle.filter(|p| p.revision == bundle.revision) {
        bundle.issued_at = previous.issued_at; // same content: same signedAt, same signature
    }
    bundle
}

/// The served script of one compiled output: with the polyfills the variant declares for the built-ins it uses,
/// or `None` (and a `builtin` error per built-in nothing provides) when the variant's engines could not run it.
fn with_builtins(
    platform: &Platform,
    variant: &VariantSpec,
    connector: &str,
    output: &Output,
    diags: &mut Vec<Diagnostic>,
) -> Option<Script> {
    let polyfills = match variant.provide(output.builtins.iter().map(|u| u.builtin)) {
        Ok(p) => p,
        Err(lacking) => {
            let target = variant.options.target.name();
            for u in output.builtins.iter().filter(|u| lacking.contains(&u.builtin)) {
                let mut d = u.site.clone();
                let how = if d.position.is_some() { "uses" } else { "needs (through a helper swc inlined)" };
                d.message = format!(
                    "connector {connector:?} {how} {}, which variant {}/{} (target {target}) lacks",
                    u.builtin, platform.name, variant.name
                );
                d.help = Some(format!(
                    "raise the variant's target to {}, list a polyfill for it under [[variant.polyfill]] in {}, or \
                     add it to the variant's `provided` if the app's engine has it",
                    u.since.name(),
                    platform.file.display()
                ));
                diags.push(d);
            }
            return None;
        }
    };
    let (code, source_map): (Arc<str>, Option<Arc<str>>) = if polyfills.is_empty() {
        (Arc::from(output.code.as_str()), output.source_map.as_deref().map(Arc::from))
    } else {
        // A script that starts strict stays strict: its directive goes first, before the polyfills.
        let mut code = String::new();
        if output.code.starts_with("\"use strict\";") {
            code.push_str("\"use strict\";\n");
        }
        for p in &polyfills {
            code.push_str(&p.text);
            if !p.text.ends_with('\n') {
                code.push('\n');
            }
        }
        let lines = code.matches('\n').count();
        code.push_str(&output.code);
        let map = output.source_map.as_deref().map(|m| bundle::shift_source_map(m, lines));
        (Arc::from(code.as_str()), map.map(Arc::from))
    };
    Some(Script { name: connector.to_string(), sha256: bundle::sha256_hex(code.as_bytes()), code, source_map })
}

/// Warns about a variant that ships nothing, and one whose full reply the broker would not carry.
fn check_bundle(platform: &Platform, bundle: &Bundle, limits: Limits, diags: &mut Vec<Diagnostic>) {
    let name = format!("{}/{}", platform.name, bundle.variant);
    if bundle.scripts.is_empty() {
        diags.push(
            Diagnostic::warning("empty-variant", platform.file.clone(), format!("variant {name} ships no connector"))
                .with_help("check its include/exclude globs and that its connectors compile"),
        );
    }
    let size = bundle.reply_len_hint() + REPLY_OVERHEAD;
    if size as u64 > limits.max_reply_size {
        diags.push(
            Diagnostic::warning(
                "reply-too-large",
                platform.file.clone(),
                format!(
                    "the full reply of variant {name} is about {size} bytes, over the {} byte reply limit: \
                     requests for all its connectors get REPLY_TOO_LARGE",
                    limits.max_reply_size
                ),
            )
            .with_help(
                "split the variant, minify it, or let apps fetch subsets with `connectors: [...]`; raise \
                        --max-reply-size only if the broker carries larger messages",
            ),
        );
    }
}
