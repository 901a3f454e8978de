//! The catalog commands for authors: `check`, `show`, `list`. Each builds the catalog once and prints.

use crate::catalog::{self, diagnostic, AppVersion, Catalog, CompileCache};
use crate::cli::{CatalogArgs, CheckArgs, CheckFormat, ShowArgs, ShowFormat};
use anyhow::{bail, Context};
use std::io::Write;
use std::process::ExitCode;

/// Builds the catalog the flags name, once.
fn build(args: &CatalogArgs) -> Catalog {
    catalog::build(&args.sources(), &mut CompileCache::default(), None)
}

/// `check`: every diagnostic, a summary, exit 1 on errors (or warnings with `--deny-warnings`).
pub fn check(args: &CheckArgs, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let catalog = build(&args.catalog);
    let (errors, warnings) = diagnostic::count(&catalog.diagnostics);
    let variants: usize = catalog.platforms.values().map(|p| p.bundles.len()).sum();
    match args.format {
        CheckFormat::Human => {
            for d in &catalog.diagnostics {
                writeln!(out, "{d}")?;
            }
            writeln!(
                out,
                "check: {} connectors, {} platforms, {variants} variants, {} compile jobs in {} ms: {errors} error(s), {warnings} warning(s)",
                catalog.connectors.len(),
                catalog.platforms.len(),
                catalog.stats.jobs,
                catalog.stats.elapsed.as_millis(),
            )?;
            writeln!(
                out,
                "note: `serve` signs manifests and replies only with --signing-key; production should sign \
                 (README \"Signing\")"
            )?;
        }
        CheckFormat::Json => {
            let doc = serde_json::json!({
                "errors": errors,
                "warnings": warnings,
                "connectors": catalog.connectors,
                "platforms": catalog.platforms.keys().collect::<Vec<_>>(),
                "variants": variants,
                "diagnostics": catalog.diagnostics,
            });
            serde_json::to_writer_pretty(&mut *out, &doc)?;
            writeln!(out)?;
        }
    }
    let failed = errors > 0 || (args.deny_warnings && warnings > 0);
    Ok(if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

/// `show`: the variant an app gets and exactly its JavaScript.
pub fn show(args: &ShowArgs, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let version = AppVersion::parse(&args.version)?;
    let catalog = build(&args.catalog);
    for d in catalog.diagnostics.iter().filter(|d| d.is_error()) {
        eprintln!("{d}");
    }
    let bundle = catalog.resolve(&args.platform, &version)?;
    let mut only = Vec::new();
    for name in &args.connector {
        match bundle.script_index(name) {
            Some(i) => only.push(i),
            None => bail!(
                "variant {:?} of {} has no connector {name:?}; it has: {}",
                bundle.variant,
                bundle.platform,
                bundle.scripts.iter().map(|s| s.name.as_str()).collect::<Vec<_>>().join(", ")
            ),
        }
    }
    let selected: Vec<usize> = if args.connector.is_empty() { (0..bundle.scripts.len()).collect() } else { only };
    match args.format {
        ShowFormat::Json => {
            let mut buf = Vec::with_capacity(bundle.reply_len_hint());
            let subset = (!args.connector.is_empty()).then_some(selected.as_slice());
            bundle.write_reply(&version.to_string(), subset, &mut buf);
            out.write_all(&buf)?;
            writeln!(out)?;
        }
        ShowFormat::Js => {
            writeln!(
                out,
                "// platform {} app {version} → variant {:?} (versions {}), {}, revision {}",
                bundle.platform, bundle.variant, bundle.versions, bundle.options, bundle.revision
            )?;
            for i in selected {
                let s = &bundle.scripts[i];
                writeln!(out, "\n// ── {} ({} bytes, sha256 {})", s.name, s.code.len(), s.sha256)?;
                out.write_all(s.code.as_bytes())?;
                if !s.code.ends_with('\n') {
                    writeln!(out)?;
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `list`: one row per variant.
pub fn list(args: &CatalogArgs, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let catalog = build(args);
    let mut rows = vec![["PLATFORM", "VARIANT", "VERSIONS", "COMPILE", "REVISION", "CONNECTORS"].map(String::from)];
    for p in catalog.platforms.values() {
        for b in &p.bundles {
            let names: Vec<&str> = b.scripts.iter().map(|s| s.name.as_str()).collect();
            rows.push([
                b.platform.clone(),
                b.variant.clone(),
                b.versions.clone(),
                b.options.to_string(),
                b.revision.clone(),
                format!("{} ({})", names.len(), names.join(", ")),
            ]);
        }
    }
    let widths: Vec<usize> = (0..6).map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0)).collect();
    for row in &rows {
        let line: Vec<String> = row.iter().zip(&widths).map(|(cell, w)| format!("{cell:w$}")).collect();
        writeln!(out, "{}", line.join("  ").trim_end())?;
    }
    let errors = catalog.error_count();
    if errors > 0 {
        writeln!(out, "\n{errors} error(s); run `connector-scripts check` for details").context("writing to stdout")?;
    }
    Ok(ExitCode::SUCCESS)
}
