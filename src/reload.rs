//! Hot reload: triggers (the first load, file events, SIGHUP) → one rebuild → one swap, with one [`RevisionDiff`]
//! per swap (logged once). Triggers that arrive during a build coalesce into one more build; what broke since the
//! last build keeps its last good form (see [`crate::catalog::build`]).

use crate::catalog::{self, Catalog, CompileCache, Sources};
use crate::config::ReloadConfig;
use crate::state::State;
use crate::watch;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// How often the polling fallback of the file watcher looks at the directories.
const POLL_INTERVAL: Duration = Duration::from_millis(500);

pub use crate::catalog::RevisionDiff;

/// How often the loop checks whether a catalog directory was replaced (a deploy that swaps directories or a
/// symlink): the watcher would go on watching the old one, so it is restarted on the new one and a rebuild runs.
const DIRECTORY_CHECK: Duration = Duration::from_secs(1);

/// Rebuilds the catalog on each trigger (and when a catalog directory is replaced) and swaps it in, until
/// `cancel`. Owns the file watcher.
pub async fn reload_loop(
    sources: Sources,
    cfg: ReloadConfig,
    state: Arc<State>,
    (trigger, mut triggers): (mpsc::Sender<()>, mpsc::Receiver<()>),
    cancel: CancellationToken,
) {
    let cache = Arc::new(Mutex::new(CompileCache::default()));
    let mut watching = Watching::start(sources.clone(), cfg, trigger);
    let mut check = tokio::time::interval(DIRECTORY_CHECK);
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            t = triggers.recv() => if t.is_none() { return },
            _ = check.tick() => if !watching.follow_replacements() { continue },
        }
        rebuild(&sources, &state, &cache).await;
    }
}

/// One rebuild: keeps the last good catalog when a directory cannot be read or most connectors would go.
async fn rebuild(sources: &Sources, state: &State, cache: &Arc<Mutex<CompileCache>>) {
    // With managed releases what is served is not the last build: compare with, and fall back to, the build.
    let previous = state.releases().map_or_else(|| state.catalog(), |r| r.built());
    if let (Some(_), Err(why)) = (&previous, readable(sources)) {
        // A deploy that swaps directories, or a typo: never replace what phones run with nothing.
        tracing::error!("{why}; keeping the last good catalog");
        state.hold(why);
        return;
    }
    let (sources_now, cache, prev) = (sources.clone(), cache.clone(), previous.clone());
    let built = tokio::task::spawn_blocking(move || {
        let mut cache = cache.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        catalog::build(&sources_now, &mut cache, prev.as_deref())
    })
    .await;
    let catalog = match built {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "catalog build failed; keeping the current catalog");
            return;
        }
    };
    if let Some(why) = previous.as_deref().and_then(|p| suspicious_removal(p, &catalog, sources)) {
        tracing::warn!("{why}");
        state.hold(why);
        return;
    }
    let diff = RevisionDiff::between(previous.as_deref(), &catalog);
    state.reloads.push(crate::activity::ReloadRecord::of(&catalog, diff.clone()));
    log_build(&catalog, previous.as_deref(), &diff);
    match state.releases() {
        // Manual mode: the build becomes a candidate (or the first stable); what is served comes from the states.
        Some(releases) => {
            if let Some(served) = releases.on_build(catalog) {
                state.swap_catalog(Arc::new(served));
            }
        }
        None => state.swap_catalog(Arc::new(catalog)),
    }
}

/// The file watcher and the identity of the directories it watches.
struct Watching {
    sources: Sources,
    cfg: ReloadConfig,
    trigger: mpsc::Sender<()>,
    watcher: Option<watch::Watcher>,
    ids: [Option<(u64, u64)>; 2],
}

/// Device and inode of a directory (following symlinks), `None` when it is missing.
fn directory_id(dir: &std::path::Path) -> Option<(u64, u64)> {
    let meta = std::fs::metadata(dir).ok()?;
    #[cfg(unix)]
    let id = std::os::unix::fs::MetadataExt::dev(&meta);
    #[cfg(unix)]
    let ino = std::os::unix::fs::MetadataExt::ino(&meta);
    #[cfg(not(unix))]
    let (id, ino) = (0, meta.is_dir() as u64);
    Some((id, ino))
}

impl Watching {
    fn ids(sources: &Sources) -> [Option<(u64, u64)>; 2] {
        [directory_id(&sources.snippets), directory_id(&sources.platforms)]
    }

    fn start(sources: Sources, cfg: ReloadConfig, trigger: mpsc::Sender<()>) -> Watching {
        let watcher = start_watcher(&sources, &cfg, &trigger);
        let ids = Watching::ids(&sources);
        Watching { sources, cfg, trigger, watcher, ids }
    }

    /// Restarts the watcher when a directory was replaced; true when one was (a rebuild is due).
    fn follow_replacements(&mut self) -> bool {
        let ids = Watching::ids(&self.sources);
        if ids == self.ids {
            return false;
        }
        self.ids = ids;
        tracing::info!("a catalog directory was replaced or came back; watching it again and rebuilding");
        self.watcher = None;
        self.watcher = start_watcher(&self.sources, &self.cfg, &self.trigger);
        true
    }
}

/// The file an operator creates in the snippets directory to let a held mass removal through (then removed).
pub const CONFIRM_FILE: &str = ".confirm-removal";

/// A reload that would take away more than this share of the connectors at once is held.
pub const MAX_REMOVED_SHARE: f64 = 0.5;

/// Both catalog directories can be listed.
fn readable(sources: &Sources) -> Result<(), String> {
    for (what, dir) in [("snippets", &sources.snippets), ("platforms", &sources.platforms)] {
        if let Err(e) = std::fs::read_dir(dir) {
            return Err(format!("the {what} directory {} cannot be read ({e})", dir.display()));
        }
    }
    Ok(())
}

/// Why `next` must not replace `previous` yet: it removes most connectors at once (an emptied directory, a bad
/// deploy), unless the operator confirmed it with [`CONFIRM_FILE`], which this consumes.
fn suspicious_removal(previous: &Catalog, next: &Catalog, sources: &Sources) -> Option<String> {
    let removed = previous.connectors.iter().filter(|c| !next.connectors.contains(*c)).count();
    if removed < 2 || (removed as f64) <= previous.connectors.len() as f64 * MAX_REMOVED_SHARE {
        return None;
    }
    let confirm = sources.snippets.join(CONFIRM_FILE);
    if std::fs::remove_file(&confirm).is_ok() {
        tracing::warn!(removed, "removal of most connectors confirmed by {}", confirm.display());
        return None;
    }
    Some(format!(
        "reload held: it would remove {removed} of {} connectors at once; the last good catalog is still served \
         (create {} and send SIGHUP to apply it)",
        previous.connectors.len(),
        confirm.display()
    ))
}

/// Starts the file watcher on the catalog directories; `None` (with a warning) when it cannot.
pub fn start_watcher(sources: &Sources, cfg: &ReloadConfig, reload: &mpsc::Sender<()>) -> Option<watch::Watcher> {
    if !cfg.watch {
        return None;
    }
    let dirs = [sources.snippets.clone(), sources.platforms.clone()];
    let tx = reload.clone();
    match watch::watch(&dirs, cfg.debounce, POLL_INTERVAL, move || {
        let _ = tx.try_send(());
    }) {
        Ok(w) => {
            tracing::info!(polling = w.is_polling(), "watching snippets and platforms for changes");
            Some(w)
        }
        Err(e) => {
            tracing::warn!(error = %e, "hot reload is off: cannot watch the catalog directories (SIGHUP still reloads)");
            None
        }
    }
}

/// SIGHUP forces a full rescan and reload, until `cancel`.
pub async fn sighup(reload: mpsc::Sender<()>, cancel: CancellationToken) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut hup) = signal(SignalKind::hangup()) else { return };
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                r = hup.recv() => if r.is_none() { return },
            }
            tracing::info!("SIGHUP: rescanning snippets and platforms");
            let _ = reload.try_send(());
        }
    }
    #[cfg(not(unix))]
    let _ = (reload, cancel);
}

/// Logs the diagnostics that are new since `previous`, a summary, and each new revision once.
fn log_build(catalog: &Catalog, previous: Option<&Catalog>, diff: &RevisionDiff) {
    let is_new = |d: &&catalog::Diagnostic| previous.is_none_or(|p| !p.diagnostics.contains(d));
    for d in catalog.diagnostics.iter().filter(is_new) {
        if d.is_error() {
            tracing::error!(code = d.code, location = d.location().unwrap_or_default(), "{}", d.message);
        } else {
            tracing::warn!(code = d.code, location = d.location().unwrap_or_default(), "{}", d.message);
        }
    }
    tracing::info!(
        platforms = catalog.platforms.len(),
        variants = catalog.bundles().count(),
        connectors = catalog.connectors.len(),
        compiled = catalog.stats.compiled,
        errors = catalog.error_count(),
        elapsed_ms = catalog.stats.elapsed.as_millis() as u64,
        "catalog built"
    );
    if previous.is_some() {
        for (platform, variant, revision) in &diff.changed {
            tracing::info!(%platform, %variant, %revision, "new revision");
        }
        for (platform, variant) in &diff.removed {
            tracing::info!(%platform, %variant, "variant removed");
        }
    }
}
