//! The node's logger: rmqtt logs through the `log` facade; each line goes to stderr, which `up` sends to
//! node-<id>.log. One line per record with a UTC time of day, so the logs of several nodes can be interleaved.

use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use log::{LevelFilter, Log, Metadata, Record};

struct StderrLogger {
    level: LevelFilter,
}

impl Log for StderrLogger {
    fn enabled(&self, metadata: &Metadata) -> bool {
        metadata.level() <= self.level
    }

    fn log(&self, record: &Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let line =
            format!("{} {:5} {}: {}\n", time_of_day(SystemTime::now()), record.level(), record.target(), record.args());
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
    log::set_logger(Box::leak(Box::new(StderrLogger { level })))?;
    log::set_max_level(level);
    Ok(())
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
    use std::time::Duration;

    #[test]
    fn time_of_day_is_utc_hours_minutes_seconds_millis() {
        let t = UNIX_EPOCH + Duration::from_millis(86_400_000 * 3 + 13 * 3_600_000 + 7 * 60_000 + 9_042);
        assert_eq!(time_of_day(t), "13:07:09.042");
    }
}
