//! Build step two: compile the jobs the plan needs and the cache lacks, in parallel on the compile pool.
//!
//! Afterwards the cache holds exactly the plan's jobs: outputs no variant needs any more are dropped, so the cache
//! cannot grow across reloads.

use super::cache::{CacheKey, CompileCache, CompileResult};
use super::diagnostic::Diagnostic;
use super::loader::Snippets;
use super::transpile;
use rayon::prelude::*;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

/// Brings `cache` to exactly `jobs`, compiling each missing job once, and reports every failed job's
/// diagnostics (cached failures too, so they stay visible until fixed). Returns how many jobs were compiled.
pub(super) fn compile(
    jobs: &BTreeSet<&CacheKey>,
    snippets: &Snippets,
    cache: &mut CompileCache,
    diags: &mut Vec<Diagnostic>,
) -> usize {
    let missing: Vec<&CacheKey> = jobs.iter().copied().filter(|k| !cache.entries.contains_key(*k)).collect();
    let compiled: Vec<(CacheKey, CompileResult)> = transpile::pool().install(|| {
        missing
            .par_iter()
            .map(|key| {
                let file = &snippets.files[&key.rel];
                let job = transpile::Job {
                    path: &file.path,
                    map_source: &key.rel,
                    source: &file.text,
                    connector: &key.connector,
                    options: key.options,
                };
                ((*key).clone(), Arc::new(transpile::transpile(&job)))
            })
            .collect()
    });
    let count = compiled.len();
    let mut next: HashMap<CacheKey, CompileResult> =
        jobs.iter().filter_map(|k| cache.entries.get(*k).map(|r| ((*k).clone(), r.clone()))).collect();
    next.extend(compiled);
    for result in next.values() {
        if let Err(d) = result.as_ref() {
            diags.extend(d.iter().cloned());
        }
    }
    cache.entries = next;
    count
}
