//! The catalog: snippets on disk → compiled, per-platform, per-variant bundles ready to serve.
//!
//! [`build`] reads `snippets/` and `platforms/`, plans the compile work (each distinct source × options pair once),
//! compiles it in parallel, and assembles one [`Bundle`] per variant. A [`CompileCache`] carried from one build to
//! the next makes unchanged files free on reload. Bad input never aborts a build: it becomes a [`Diagnostic`] and
//! the affected connector is left out of the variants that would have shipped it.

mod assemble;
pub mod builtins;
pub mod bundle;
mod cache;
mod compile;
pub mod diagnostic;
pub mod diff;
mod emit;
pub mod guard;
pub mod loader;
mod nesting;
mod options;
mod plan;
pub mod platforms;
mod snapshot;
pub mod transpile;
pub mod version;

pub use bundle::{Bundle, Script, Selection};
pub use cache::CompileCache;
pub use diagnostic::{Diagnostic, Severity};
pub use diff::RevisionDiff;
pub use platforms::{CompileOptions, ModuleFormat, Platform, Target, VariantSpec};
pub use snapshot::{Audience, BuildStats, Candidate, Catalog, Missing, PlatformCatalog, ResolveError, Sources};
pub use version::{AppVersion, VersionError, VersionRange};

use std::path::PathBuf;
use std::time::{Instant, SystemTime};

/// Reads, compiles and assembles the whole catalog. Keeps in `cache` exactly what this build used.
///
/// With `previous` (a reload), what is broken now is replaced by what worked before: a platform whose manifest
/// became invalid keeps its previous configuration, and a connector whose file no longer compiles keeps its last
/// good script in every variant that shipped it. Both stay visible as warnings until fixed. A deleted file is
/// gone for good.
pub fn build(sources: &Sources, cache: &mut CompileCache, previous: Option<&Catalog>) -> Catalog {
    let started = Instant::now();
    let mut diags = Vec::new();
    let platforms = plan::platforms(&sources.platforms, previous, &mut diags);
    let (snippets, mut snippet_diags) = loader::load_snippets(&sources.snippets, sources.max_file_size);
    diags.append(&mut snippet_diags);
    diags.extend(snippets.broken.values().cloned());

    let plan = plan::plan(sources, &platforms, &snippets, &mut diags);
    let jobs = plan.jobs();
    let compiled = compile::compile(&jobs, &snippets, cache, &mut diags);
    let mut missing = Vec::new();
    let limits = assemble::Limits { max_reply_size: sources.max_reply_size };
    let platforms = assemble::assemble(platforms, &plan, cache, previous, limits, (&mut diags, &mut missing));

    // By file and position, errors first; every field that can differ is in the key so that `dedup` sees
    // identical diagnostics side by side.
    diags.sort_by(|a, b| sort_key(a).cmp(&sort_key(b)));
    diags.dedup();
    Catalog {
        platforms,
        diagnostics: diags,
        stats: BuildStats { jobs: jobs.len(), compiled, elapsed: started.elapsed(), built_at: SystemTime::now() },
        connectors: plan.connectors,
        missing,
    }
}

type SortKey<'a> = (Option<&'a PathBuf>, Option<(u32, u32)>, std::cmp::Reverse<Severity>, &'static str, &'a str);

fn sort_key(d: &Diagnostic) -> SortKey<'_> {
    (d.file.as_ref(), d.position.map(|p| (p.line, p.column)), std::cmp::Reverse(d.severity), d.code, &d.message)
}
