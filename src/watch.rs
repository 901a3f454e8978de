//! Watches `snippets/` and `platforms/` and calls back once per burst of changes.
//!
//! The directories are watched recursively (never single files: atomic saves replace the inode). Events are
//! debounced by notify-debouncer-full; every burst, a Rescan flag or a watcher error ends in one callback, and the
//! callback's consumer rebuilds the whole catalog from disk (the compile cache makes unchanged files free). A
//! rebuild from disk also picks up files written into a new folder before its watch was added. When inotify's
//! watch limit is reached, a polling watcher takes over.

use notify::event::{AccessKind, AccessMode, EventKind};
use notify::{PollWatcher, RecursiveMode};
use notify_debouncer_full::{new_debouncer, new_debouncer_opt, DebounceEventResult, Debouncer, RecommendedCache};
use std::path::PathBuf;
use std::time::Duration;

/// A running watcher; dropping it stops watching.
pub enum Watcher {
    /// inotify (or the platform's native API).
    Native(Debouncer<notify::RecommendedWatcher, RecommendedCache>),
    /// Polling, when the native watcher cannot watch everything.
    Poll(Debouncer<PollWatcher, RecommendedCache>),
}

impl Watcher {
    /// True when the polling fallback is in use.
    pub fn is_polling(&self) -> bool {
        matches!(self, Watcher::Poll(_))
    }
}

/// Why watching could not start at all.
#[derive(Debug, thiserror::Error)]
#[error("cannot watch {dir}: {source}")]
pub struct WatchError {
    /// The directory.
    pub dir: PathBuf,
    /// What notify said.
    pub source: notify::Error,
}

/// Does this burst call for a rebuild? Reads (our own rebuild opening files) do not.
fn relevant(result: &DebounceEventResult) -> bool {
    match result {
        Err(_) => true,
        Ok(events) => events.iter().any(|e| {
            e.need_rescan() || !matches!(e.kind, EventKind::Access(a) if a != AccessKind::Close(AccessMode::Write))
        }),
    }
}

/// Watches `dirs` recursively; `on_change` runs (on the watcher's thread) once per relevant burst.
pub fn watch(
    dirs: &[PathBuf],
    debounce: Duration,
    poll_interval: Duration,
    on_change: impl Fn() + Send + Sync + Clone + 'static,
) -> Result<Watcher, WatchError> {
    let handler = {
        let on_change = on_change.clone();
        move |result: DebounceEventResult| {
            if let Err(errors) = &result {
                tracing::warn!(?errors, "file watcher reported errors; rescanning");
            }
            if relevant(&result) {
                on_change();
            }
        }
    };
    let native = new_debouncer(debounce, None, handler.clone()).and_then(|mut d| {
        for dir in dirs {
            d.watch(dir, RecursiveMode::Recursive)?;
        }
        Ok(d)
    });
    match native {
        Ok(d) => Ok(Watcher::Native(d)),
        Err(e) => {
            tracing::warn!(error = %e, "native file watching failed; falling back to polling every {poll_interval:?}");
            let config = notify::Config::default().with_poll_interval(poll_interval);
            let mut d = new_debouncer_opt::<_, PollWatcher, RecommendedCache>(
                debounce,
                None,
                handler,
                RecommendedCache::new(),
                config,
            )
            .map_err(|source| WatchError { dir: dirs.first().cloned().unwrap_or_default(), source })?;
            for dir in dirs {
                d.watch(dir, RecursiveMode::Recursive).map_err(|source| WatchError { dir: dir.clone(), source })?;
            }
            Ok(Watcher::Poll(d))
        }
    }
}
