//! The node's logger: rmqtt logs through the `log` facade; each line goes to stderr, which `up` sends to
//! node-<id>.log. One line per record with a UTC time of day, so the logs of several nodes can be interleaved.
//!
//! While a peer is down, rmqtt logs one error per forwarded publish and two warnings per reconnect attempt; lines
//! that start alike (same target, same first words) are kept to a few per 10 s, and how many were left out is
//! said on the next one that is written.

use std::collections::HashMap;
use std::io::Write;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use log::{LevelFilter, Log, Metadata, Record};

/// Lines kept per kind and window.
const LINES_PER_WINDOW: u32 = 3;
/// The window.
const WINDOW: Duration = Duration::from_secs(10);
/// Kinds remembered at most.
const MAX_KINDS: usize = 1000;
/// Characters of a message that make its kind (rmqtt puts the variable parts, ids and addresses, after them).
const KIND_PREFIX: usize = 40;

struct StderrLogger {
    level: LevelFilter,
    limiter: Mutex<Limiter>,
}

impl Log for StderrLogger {
    fn enabled(&self, metadata: &Metadata) -> bool {
        metadata.level() <= self.level
    }

    fn log(&self, record: &Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let message = record.args().to_string();
        let kind = format!("{} {}", record.target(), message.chars().take(KIND_PREFIX).collect::<String>());
        let verdict = match self.limiter.lock() {
            Ok(mut limiter) => limiter.admit(&kind, Instant::now()),
            Err(_) => Verdict::Write { suppressed_before: 0 },
        };
        let Verdict::Write { suppressed_before } = verdict else {
            return;
        };
        let note = match suppressed_before {
            0 => String::new(),
            n => format!(" ({n} similar lines left out before this one)"),
        };
        let line =
            format!("{} {:5} {}: {message}{note}\n", time_of_day(SystemTime::now()), record.level(), record.target());
        // One write per line keeps lines whole when several threads log at once.
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }

    fn flush(&self) {
        let _ = std::io::stderr().flush();
    }
}

/// Installs the logger at `level`; `Off` installs nothing.
pub fn init(level: LevelFilter) -> Result<(), log::SetLoggerError> {
    if level == LevelFilter::Off {
        return Ok(());
    }
    // Leaked once: the logger lives as long as the process.
    log::set_logger(Box::leak(Box::new(StderrLogger { level, limiter: Mutex::new(Limiter::default()) })))?;
    log::set_max_level(level);
    Ok(())
}

#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    /// Write the line, saying how many of its kind were left out since the last one written.
    Write {
        suppressed_before: u32,
    },
    Skip,
}

/// Per kind of line: when its window started, lines written in it, lines left out since the last written one.
#[derive(Default)]
struct Limiter {
    kinds: HashMap<String, (Instant, u32, u32)>,
}

impl Limiter {
    fn admit(&mut self, kind: &str, now: Instant) -> Verdict {
        // Messages that start with a connection's id make a kind per connection: forget them now and then.
        if self.kinds.len() >= MAX_KINDS {
            self.kinds.clear();
        }
        let entry = self.kinds.entry(kind.to_owned()).or_insert((now, 0, 0));
        let (started, written, suppressed) = entry;
        if now.duration_since(*started) >= WINDOW {
            *started = now;
            *written = 0;
        }
        if *written >= LINES_PER_WINDOW {
            *suppressed += 1;
            return Verdict::Skip;
        }
        *written += 1;
        let suppressed_before = std::mem::take(suppressed);
        Verdict::Write { suppressed_before }
    }
}

/// `HH:MM:SS.mmm` (UTC) of `t`.
fn time_of_day(t: SystemTime) -> String {
    let since_epoch = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since_epoch.as_secs() % 86_400;
    format!("{:02}:{:02}:{:02}.{:03}", secs / 3600, secs / 60 % 60, secs % 60, since_epoch.subsec_millis())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_of_day_is_utc_hours_minutes_seconds_millis() {
        let t = UNIX_EPOCH + Duration::from_millis(86_400_000 * 3 + 13 * 3_600_000 + 7 * 60_000 + 9_042);
        assert_eq!(time_of_day(t), "13:07:09.042");
    }

    #[test]
    fn a_kind_gets_a_few_lines_per_window_then_the_count_of_those_left_out() {
        let mut limiter = Limiter::default();
        let t0 = Instant::now();
        let write = |n| Verdict::Write { suppressed_before: n };
        for _ in 0..LINES_PER_WINDOW {
            assert_eq!(limiter.admit("a", t0), write(0));
        }
        assert_eq!(limiter.admit("a", t0 + Duration::from_secs(1)), Verdict::Skip);
        assert_eq!(limiter.admit("a", t0 + Duration::from_secs(2)), Verdict::Skip);
        assert_eq!(limiter.admit("b", t0 + Duration::from_secs(2)), write(0));
        assert_eq!(limiter.admit("a", t0 + WINDOW), write(2));
        assert_eq!(limiter.admit("a", t0 + WINDOW), write(0));
    }
}
