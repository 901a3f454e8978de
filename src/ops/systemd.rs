//! systemd `Type=notify`: READY=1 once serving, STOPPING=1 on shutdown, WATCHDOG=1 from the serving path.
//! Without `NOTIFY_SOCKET` every call is a no-op.

use sd_notify::NotifyState;
use std::time::Duration;

/// Tells systemd the service is ready, with a one-line status.
pub fn ready(status: &str) {
    let _ = sd_notify::notify(&[NotifyState::Ready, NotifyState::Status(status)]);
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
