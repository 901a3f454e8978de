//! systemd `Type=notify`: READY=1 once [`crate::state::State::readiness`] says so (STATUS= with the reasons
//! before), STOPPING=1 on shutdown, WATCHDOG=1 from the serving path. Without `NOTIFY_SOCKET` every call is a
//! no-op.

use sd_notify::NotifyState;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Tells systemd the service is ready, with a one-line status.
pub fn ready(status: &str) {
    let _ = sd_notify::notify(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// Tells systemd why the service is not ready yet (shown by `systemctl status`).
pub fn not_ready(reasons: &[String]) {
    let status = format!("not ready: {}", reasons.join("; "));
    let _ = sd_notify::notify(&[NotifyState::Status(&status)]);
}

/// Tells systemd the service is stopping.
pub fn stopping() {
    let _ = sd_notify::notify(&[NotifyState::Stopping]);
}

/// One watchdog keep-alive.
pub fn watchdog() {
    let _ = sd_notify::notify(&[NotifyState::Watchdog]);
}

/// The interval at which to send keep-alives (half of `WatchdogSec`), if systemd asked for them.
pub fn watchdog_interval() -> Option<Duration> {
    sd_notify::watchdog_enabled().map(|d| d / 2).filter(|d| !d.is_zero())
}

/// Decides whether the serving path is healthy enough to send a watchdog keep-alive.
pub struct WatchdogCheck {
    interval: Option<tokio::time::Interval>,
    progress: Arc<AtomicU64>,
    last_progress: u64,
}

impl WatchdogCheck {
    /// Keep-alives every `every` (none when `None`), judged by the worker's `progress` counter.
    pub fn new(every: Option<Duration>, progress: Arc<AtomicU64>) -> WatchdogCheck {
        let interval = every.map(|d| {
            let mut i = tokio::time::interval(d);
            i.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            i
        });
        WatchdogCheck { interval, progress, last_progress: 0 }
    }

    /// Resolves at the next keep-alive time; never when the watchdog is off.
    pub async fn tick(&mut self) {
        match &mut self.interval {
            Some(i) => {
                i.tick().await;
            }
            None => std::future::pending().await,
        }
    }

    /// The reply worker is healthy when nothing waits for it or it made progress since the last tick.
    pub fn worker_healthy(&mut self, queued: usize) -> bool {
        let now = self.progress.load(Ordering::Relaxed);
        let healthy = queued == 0 || now != self.last_progress;
        self.last_progress = now;
        healthy
    }
}
