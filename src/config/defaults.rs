//! Every default value, in one place; the CLI's `default_value_t`s refer to these.

use std::fmt;
use std::time::Duration;

/// A duration given in seconds on the command line (fractions allowed), printed back the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seconds(pub Duration);

impl Seconds {
    /// From milliseconds (usable in constants).
    pub const fn millis(ms: u64) -> Seconds {
        Seconds(Duration::from_millis(ms))
    }
}

impl fmt::Display for Seconds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.as_secs_f64())
    }
}

impl std::str::FromStr for Seconds {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let v: f64 = s.parse().map_err(|_| format!("{s:?} is not a number of seconds"))?;
        if !(0.0..=86_400.0).contains(&v) {
            return Err(format!("{s} s is out of range (0 to 86400)"));
        }
        Ok(Seconds(Duration::from_secs_f64(v)))
    }
}

/// Where snippets are read from.
pub const SNIPPETS: &str = "snippets";
/// Where platform manifests are read from.
pub const PLATFORMS: &str = "platforms";
/// Request topic.
pub const TOPIC: &str = "getConnectors";
/// Prefix of the retained manifests.
pub const MANIFEST_TOPIC: &str = "connectors";
/// Topic of the `connectorsChanged` events.
pub const CHANGED_TOPIC: &str = "connectorsChanged";
/// Prefix of the retained liveness messages.
pub const STATUS_TOPIC: &str = "connector-scripts/status";
/// Topic of the apps' `connectorsReport` events.
pub const REPORT_TOPIC: &str = "connectorsReport";
/// How long release commands wait for every live instance to apply a change.
pub const OPERATOR_TIMEOUT: Seconds = Seconds::millis(10_000);
/// Prefix of the retained rollout states and bundles (`--release-mode manual`).
pub const RELEASE_TOPIC: &str = "connector-scripts/releases";
/// The embedded broker's MQTT 3.1.1 listener (MQTT 5 on the next port).
pub const EMBEDDED_LISTEN: &str = "127.0.0.1:1883";
/// Broker `request` sends through.
pub const REQUEST_BROKER: &str = "mqtt://127.0.0.1:1883";
/// Ops HTTP listener.
pub const HTTP_LISTEN: &str = "127.0.0.1:9464";
/// Where `status` finds the ops listener.
pub const STATUS_URL: &str = "http://127.0.0.1:9464";
/// Request subscription QoS.
pub const QOS_IN: u8 = 1;
/// Largest MQTT packet accepted (whole scripts travel in replies).
pub const MAX_PACKET_SIZE: u32 = 16 << 20;
/// Largest reply published (the embedded broker's limit; Mosquitto's `max_packet_size` should match).
pub const MAX_REPLY_SIZE: u64 = 16 << 20;
/// Largest request payload decoded.
pub const MAX_REQUEST_SIZE: usize = 64 << 10;
/// Longest string field of a request (platform, version, revision, id, device id, connector name), in bytes.
pub const MAX_FIELD_LEN: usize = 256;
/// Most connector names in one request.
pub const MAX_CONNECTORS: usize = 256;
/// Longest MQTT 5 Correlation Data echoed in a reply, in bytes (a UUID is 16 or 36).
pub const MAX_CORRELATION_BYTES: usize = 256;
/// Where MQTT 5 requesters may have replies sent besides `TOPIC/DEVICE/reply`: `replies/DEVICE/…`.
pub const REPLY_PREFIX: &str = "replies";
/// MQTT keep-alive.
pub const KEEP_ALIVE: Seconds = Seconds::millis(30_000);
/// First reconnect delay.
pub const RECONNECT_MIN: Seconds = Seconds::millis(100);
/// Longest reconnect delay.
pub const RECONNECT_MAX: Seconds = Seconds::millis(10_000);
/// Shutdown drain deadline.
pub const DRAIN_TIMEOUT: Seconds = Seconds::millis(5_000);
/// Quiet time before a burst of file changes is acted on.
pub const DEBOUNCE: Seconds = Seconds::millis(30);
/// Sustained requests per second per device.
pub const RATE_LIMIT: f64 = 10.0;
/// Requests a quiet device may send at once.
pub const RATE_BURST: f64 = 30.0;
/// Sustained requests per second on the bare request topic (it names no device: every caller there shares it).
pub const RATE_LIMIT_BARE: f64 = 100.0;
/// Sustained requests per second over all devices together; 2 s of it may come at once (an update herd).
pub const RATE_LIMIT_GLOBAL: f64 = 10_000.0;
/// Persistent session expiry.
pub const SESSION_EXPIRY: Seconds = Seconds::millis(3_600_000);
/// Seconds `request` waits for each reply.
pub const REQUEST_TIMEOUT: Seconds = Seconds::millis(5_000);
/// Seconds between the two samples of `status`.
pub const STATUS_INTERVAL: Seconds = Seconds::millis(1_000);
/// Environment variable holding the MQTT password (never a flag: it would show in `ps`).
pub const PASSWORD_ENV: &str = "CONNECTOR_SCRIPTS_MQTT_PASSWORD";

/// The default client id: `connector-scripts-HOST[-PID]` (no pid for a persistent session, which needs the same
/// id after a restart).
pub fn client_id(with_pid: bool) -> String {
    let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
    let host: String = host.trim().chars().filter(|c| c.is_ascii_alphanumeric() || *c == '-').take(32).collect();
    let host = if host.is_empty() { "host" } else { &host };
    if with_pid {
        format!("connector-scripts-{host}-{}", std::process::id())
    } else {
        format!("connector-scripts-{host}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_round_trip_and_range() {
        for s in ["30", "0.1", "0.03", "3600"] {
            assert_eq!(s.parse::<Seconds>().unwrap().to_string(), s);
        }
        assert!("-1".parse::<Seconds>().is_err());
        assert!("x".parse::<Seconds>().is_err());
        assert_eq!(KEEP_ALIVE.to_string(), "30");
    }
}
