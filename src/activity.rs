//! Recent activity kept in memory for the status page: requests per platform for each second of the
//! last minute (a ring, so the page's chart is full as soon as it opens) and the last catalog swaps. Bounded:
//! nothing here grows with traffic or uptime.

use crate::catalog::Catalog;
use crate::catalog::RevisionDiff;
use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::time::{Instant, SystemTime};

/// Seconds covered by [`RequestWindow`].
pub const WINDOW_SECONDS: usize = 60;

/// Reloads kept by [`ReloadLog`].
pub const RELOADS_KEPT: usize = 10;

/// Requests per platform label in each of the last [`WINDOW_SECONDS`] seconds.
#[derive(Debug)]
pub struct RequestWindow {
    epoch: Instant,
    ring: Mutex<Ring>,
}

/// One slot per second modulo the window; a slot stamped with an older second counts as empty.
#[derive(Debug)]
struct Ring {
    stamps: [u64; WINDOW_SECONDS],
    counts: BTreeMap<String, Counts>,
}

/// One platform's requests: since start, and per second of the window.
#[derive(Debug)]
struct Counts {
    total: u64,
    per_second: [u32; WINDOW_SECONDS],
}

impl Default for RequestWindow {
    fn default() -> Self {
        let ring = Ring { stamps: [0; WINDOW_SECONDS], counts: BTreeMap::new() };
        RequestWindow { epoch: Instant::now(), ring: Mutex::new(ring) }
    }
}

impl RequestWindow {
    /// Counts one request of `platform` now.
    pub fn note(&self, platform: &str) {
        self.note_at(platform, self.second_now());
    }

    /// Per platform, the requests of each second of the last minute, oldest first, ending with the current one.
    pub fn last_minute(&self) -> BTreeMap<String, Vec<u32>> {
        self.last_minute_at(self.second_now())
    }

    /// Requests per platform label since start.
    pub fn totals(&self) -> BTreeMap<String, u64> {
        let Ok(ring) = self.ring.lock() else { return BTreeMap::new() };
        ring.counts.iter().map(|(platform, counts)| (platform.clone(), counts.total)).collect()
    }

    fn second_now(&self) -> u64 {
        // Seconds since start, plus a full window so "the second before the window" never underflows.
        self.epoch.elapsed().as_secs() + WINDOW_SECONDS as u64
    }

    fn note_at(&self, platform: &str, second: u64) {
        let Ok(mut ring) = self.ring.lock() else { return };
        let slot = (second % WINDOW_SECONDS as u64) as usize;
        if ring.stamps[slot] != second {
            ring.stamps[slot] = second;
            for counts in ring.counts.values_mut() {
                counts.per_second[slot] = 0;
            }
        }
        match ring.counts.get_mut(platform) {
            Some(counts) => {
                counts.total += 1;
                counts.per_second[slot] = counts.per_second[slot].saturating_add(1);
            }
            None => {
                let mut counts = Counts { total: 1, per_second: [0; WINDOW_SECONDS] };
                counts.per_second[slot] = 1;
                ring.counts.insert(platform.to_string(), counts);
            }
        }
    }

    fn last_minute_at(&self, now: u64) -> BTreeMap<String, Vec<u32>> {
        let Ok(ring) = self.ring.lock() else { return BTreeMap::new() };
        let seconds = (now + 1 - WINDOW_SECONDS as u64)..=now;
        (ring.counts.iter())
            .map(|(platform, counts)| {
                let series = (seconds.clone())
                    .map(|s| {
                        let slot = (s % WINDOW_SECONDS as u64) as usize;
                        if ring.stamps[slot] == s {
                            counts.per_second[slot]
                        } else {
                            0
                        }
                    })
                    .collect();
                (platform.clone(), series)
            })
            .collect()
    }
}

/// One catalog swap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReloadRecord {
    /// When the catalog was built.
    pub at: SystemTime,
    /// How long the build took.
    pub build_ms: u64,
    /// Error diagnostics in the new catalog.
    pub errors: usize,
    /// Which variants got a new revision or went away.
    pub diff: RevisionDiff,
}

impl ReloadRecord {
    /// The record of swapping in `catalog`, which changed `diff`.
    pub fn of(catalog: &Catalog, diff: RevisionDiff) -> ReloadRecord {
        ReloadRecord {
            at: catalog.stats.built_at,
            build_ms: catalog.stats.elapsed.as_millis() as u64,
            errors: catalog.error_count(),
            diff,
        }
    }
}

/// The last [`RELOADS_KEPT`] catalog swaps, newest first.
#[derive(Debug, Default)]
pub struct ReloadLog {
    records: Mutex<VecDeque<ReloadRecord>>,
}

impl ReloadLog {
    /// Records a swap, forgetting the oldest beyond [`RELOADS_KEPT`].
    pub fn push(&self, record: ReloadRecord) {
        if let Ok(mut records) = self.records.lock() {
            records.push_front(record);
            records.truncate(RELOADS_KEPT);
        }
    }

    /// The swaps kept, newest first.
    pub fn list(&self) -> Vec<ReloadRecord> {
        self.records.lock().map(|r| r.iter().cloned().collect()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_keeps_one_minute_per_second_and_forgets_older_seconds() {
        let w = RequestWindow::default();
        let start = 1_000;
        w.note_at("ios", start);
        w.note_at("ios", start);
        w.note_at("android", start + 1);
        let now = w.last_minute_at(start + 1);
        assert_eq!(now["ios"].len(), WINDOW_SECONDS);
        assert_eq!(now["ios"][WINDOW_SECONDS - 2..], [2, 0]);
        assert_eq!(now["android"][WINDOW_SECONDS - 2..], [0, 1]);
        // 59 s later the first second is the oldest in the window; one more and it is gone.
        assert_eq!(w.last_minute_at(start + 59)["ios"][0], 2);
        assert_eq!(w.last_minute_at(start + 60)["ios"].iter().sum::<u32>(), 0);
        // A slot reused a minute later starts from zero for every platform.
        w.note_at("android", start + 60);
        let later = w.last_minute_at(start + 60);
        assert_eq!((later["ios"].iter().sum::<u32>(), later["android"].iter().sum::<u32>()), (0, 2));
        // The totals since start forget nothing.
        let totals: Vec<(String, u64)> = w.totals().into_iter().collect();
        assert_eq!(totals, [("android".to_string(), 2), ("ios".to_string(), 2)]);
    }

    #[test]
    fn the_reload_log_keeps_the_newest() {
        let log = ReloadLog::default();
        for n in 0..RELOADS_KEPT + 3 {
            let at = SystemTime::UNIX_EPOCH;
            log.push(ReloadRecord { at, build_ms: n as u64, errors: 0, diff: RevisionDiff::default() });
        }
        let kept = log.list();
        assert_eq!(kept.len(), RELOADS_KEPT);
        assert_eq!((kept[0].build_ms, kept[RELOADS_KEPT - 1].build_ms), (RELOADS_KEPT as u64 + 2, 3));
    }
}
