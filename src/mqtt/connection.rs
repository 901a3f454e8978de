//! The service's MQTT connection settings: rumqttc options (session, flow control, TCP_NODELAY, Last Will), the
//! subscription filters, reconnect backoff, and connection errors in words an operator can act on.

use super::announce::Liveness;
use super::tls::TlsError;
use crate::config::{BrokerUrl, MqttConfig};
use crate::wire::topics::Subscription;
use rumqttc::v5::mqttbytes::v5::{Filter, LastWill};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, ConnectionError, Event, EventLoop, MqttOptions, Request};
use rumqttc::NetworkOptions;
use rumqttc::Outgoing;
use std::time::Duration;

/// Most unacknowledged requests the broker may send us at once.
pub const RECEIVE_MAXIMUM: u16 = 1024;
/// Most QoS 1 replies (and status messages) we keep unacknowledged by the broker at once.
pub const OUTGOING_INFLIGHT: u16 = 1024;
/// Capacity of rumqttc's request channel (publishes queued for the event loop).
pub const REQUEST_CHANNEL: usize = 1024;

/// What every connection of the service shares: broker, credentials, TLS, keep-alive, packet limits, TCP_NODELAY,
/// bounded queues.
pub fn base_options(client_id: &str, cfg: &MqttConfig, broker: &BrokerUrl) -> Result<MqttOptions, TlsError> {
    let (address, transport) = super::tls::endpoint(broker, &cfg.tls)?;
    let mut opts = MqttOptions::new(client_id, address, broker.port);
    opts.set_keep_alive(cfg.keep_alive.max(Duration::from_secs(5)));
    opts.set_max_packet_size(Some(cfg.max_packet_size));
    // rumqttc preallocates one `Option<Publish>` slot per possible in-flight QoS 1 reply: left unset that is
    // 65 536 slots, 14 MB resident from the first byte (docs/PERFORMANCE.md, RSS). QoS 1 replies beyond the
    // limit wait in the request channel until the broker acknowledges earlier ones.
    opts.set_outgoing_inflight_upper_limit(OUTGOING_INFLIGHT);
    opts.set_request_channel_capacity(REQUEST_CHANNEL);
    if let Some(c) = &cfg.credentials {
        opts.set_credentials(&c.username, c.password.expose());
    }
    let mut net = NetworkOptions::new();
    // Replies carry whole scripts: without NODELAY a 15 KB reply waits ~40 ms for Nagle + delayed ACK.
    net.set_tcp_nodelay(true);
    net.set_connection_timeout(10);
    opts.set_network_options(net);
    if let Some(t) = transport {
        opts.set_transport(t);
    }
    Ok(opts)
}

/// rumqttc options for the request connection: [`base_options`] plus the session, manual acknowledgements,
/// flow control and the Last Will.
pub fn mqtt_options(
    cfg: &MqttConfig,
    broker: &BrokerUrl,
    last_will: Option<&Liveness>,
) -> Result<MqttOptions, TlsError> {
    let mut opts = base_options(&cfg.client_id, cfg, broker)?;
    match cfg.session_expiry {
        Some(expiry) => {
            opts.set_clean_start(false);
            opts.set_session_expiry_interval(Some(expiry.as_secs().min(u32::MAX as u64) as u32));
        }
        None => {
            opts.set_clean_start(true);
        }
    }
    // Requests are acknowledged by the reply worker once answered, in arrival order, and a broker that keeps to
    // RECEIVE_MAXIMUM has at most that many unacknowledged QoS 1/2 requests out to us: the backpressure that keeps
    // the worker's queue (larger than that) from overflowing under a flood. QoS 0 requests are answered on the
    // reply connection, which waits for room instead (reply_link.rs).
    opts.set_manual_acks(true);
    opts.set_receive_maximum(Some(RECEIVE_MAXIMUM));
    if let Some(status) = last_will {
        opts.set_last_will(LastWill::new(&status.topic, status.offline.clone(), QoS::AtLeastOnce, true, None));
    }
    Ok(opts)
}

/// The rumqttc filters of the service's subscriptions.
pub fn filters(cfg: &MqttConfig) -> Vec<Filter> {
    cfg.topics
        .subscriptions(cfg.share_group.as_deref())
        .into_iter()
        .map(|Subscription { filter, no_local, requests }| {
            // Reports (`connectorsReport`, `connectorsReport/+`) at QoS 0: whatever QoS a sender uses, they take
            // the report queue, never the one QoS 1 requests and release states share.
            let report = cfg.topics.release_topic(&filter).is_some_and(|t| t.is_report());
            let qos = match (requests, report) {
                (true, _) => cfg.qos_in,
                (false, true) => QoS::AtMostOnce,
                (false, false) => QoS::AtLeastOnce,
            };
            let mut f = Filter::new(filter, qos);
            f.nolocal = no_local;
            f
        })
        .collect()
}

/// A connection error in words an operator can act on.
pub fn describe(e: &ConnectionError, broker: &BrokerUrl) -> String {
    match e {
        ConnectionError::ConnectionRefused(code) => {
            format!("broker {broker} refused the connection: {code:?} (check the username/password and the broker ACL)")
        }
        ConnectionError::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
            format!("nothing listens on {broker} (connection refused)")
        }
        ConnectionError::Tls(t) => format!("TLS handshake with {broker} failed: {t}"),
        other => match tls_alert(other) {
            // TLS 1.3 completes the client's side of the handshake first: a refused client certificate arrives as
            // an alert on the first read, buried in rumqttc's decoding error.
            Some(rustls::AlertDescription::CertificateRequired) => {
                format!("broker {broker} requires a client certificate: pass --tls-cert and --tls-key")
            }
            Some(alert) => format!(
                "broker {broker} ended TLS with alert {alert:?}: if it requires client certificates, --tls-cert must \
                 be signed by a CA in its cafile"
            ),
            None => format!("{broker}: {other}"),
        },
    }
}

/// The TLS alert the broker sent, when that is what ended the connection.
fn tls_alert(e: &ConnectionError) -> Option<rustls::AlertDescription> {
    use rumqttc::v5::{mqttbytes::Error as Mqtt, StateError};
    let io = match e {
        ConnectionError::Io(io) => io,
        ConnectionError::MqttState(StateError::Io(io)) => io,
        ConnectionError::MqttState(StateError::Deserialization(Mqtt::Io(io))) => io,
        _ => return None,
    };
    match io.get_ref()?.downcast_ref::<rustls::Error>()? {
        rustls::Error::AlertReceived(alert) => Some(*alert),
        _ => None,
    }
}

/// What a lost connection still had to send (replies, acknowledgements, the liveness message), kept across the
/// reconnect by the service itself.
///
/// rumqttc moves everything unsent (unacknowledged QoS 1 publishes, and whatever waited in its request channel)
/// into its pending queue when a connection fails, and then **clears that queue when the CONNACK of the next
/// connection says the session is new**: a broker that lost the session, a clean-start connection (the reply
/// connection), or another node of a cluster. Every reply produced while the broker was away was lost that way,
/// silently (issue #14: a burst of replies missing after a broker restart). So the service takes the queue out
/// after a failure and puts it back once connected: all of it when the session was resumed (as rumqttc would),
/// and in a new session the publishes, with fresh packet ids (the broker forgot the old ones), without the
/// acknowledgements and releases that belonged to the old session.
#[derive(Debug, Default)]
pub struct Unsent(Vec<Request>);

impl Unsent {
    /// After a failed poll: takes what rumqttc queued for the next connection.
    pub fn take(&mut self, eventloop: &mut EventLoop) {
        self.0.extend(eventloop.pending.drain(..));
    }

    /// On CONNACK: gives it back to be sent first; returns how many publishes go out again.
    pub fn restore(&mut self, eventloop: &mut EventLoop, session_present: bool) -> usize {
        let mut publishes = 0;
        for request in self.0.drain(..) {
            let request = match request {
                Request::Publish(mut p) => {
                    publishes += 1;
                    if !session_present {
                        p.pkid = 0;
                    }
                    Request::Publish(p)
                }
                Request::PubAck(_) | Request::PubRec(_) | Request::PubRel(_) | Request::PubComp(_)
                    if !session_present =>
                {
                    continue
                }
                Request::PingReq | Request::PingResp => continue,
                other => other,
            };
            eventloop.pending.push_back(request);
        }
        publishes
    }
}

/// Exponential backoff with jitter.
#[derive(Debug)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    current: Duration,
    seed: u64,
}

impl Backoff {
    /// Starts at `min`, doubles up to `max`.
    pub fn new(min: Duration, max: Duration) -> Backoff {
        let seed =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64) | 1;
        Backoff { min, max: max.max(min), current: min, seed }
    }

    /// Back to the first delay (after a successful connection).
    pub fn reset(&mut self) {
        self.current = self.min;
    }

    /// The next delay: the current step with ±25 % jitter; the step doubles.
    pub fn next_delay(&mut self) -> Duration {
        // xorshift: spreading reconnects of many instances needs no cryptographic randomness.
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        let jitter = 0.75 + (self.seed % 1000) as f64 / 2000.0;
        let delay = self.current.mul_f64(jitter).min(self.max);
        self.current = (self.current * 2).min(self.max);
        delay
    }
}

/// Closes a connection cleanly: keeps polling (so publishes still queued go out) until `before` resolves, then
/// queues a DISCONNECT after them and keeps reading until the broker closes — closing our end with unread input
/// makes the kernel reset the connection, which can discard replies still in the send buffer. False when
/// `timeout` came first. Serves the request connection and the reply connection.
pub(super) async fn close_after(
    client: &AsyncClient,
    eventloop: &mut EventLoop,
    before: impl std::future::Future<Output = ()>,
    timeout: Duration,
) -> bool {
    let deadline = tokio::time::sleep(timeout);
    tokio::pin!(deadline, before);
    let mut ready = false;
    let mut disconnect_sent = false;
    loop {
        tokio::select! {
            _ = &mut deadline => return false,
            _ = &mut before, if !ready => {
                ready = true;
                if client.try_disconnect().is_err() {
                    return true;
                }
            }
            event = eventloop.poll() => match event {
                Ok(Event::Outgoing(Outgoing::Disconnect)) => disconnect_sent = true,
                Ok(_) => {}
                Err(_) => return ready && disconnect_sent,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_and_caps() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        let delays: Vec<Duration> = (0..8).map(|_| b.next_delay()).collect();
        assert!(delays[0] >= Duration::from_millis(75) && delays[0] <= Duration::from_millis(125), "{delays:?}");
        assert!(delays[3] >= Duration::from_millis(600), "{delays:?}");
        assert!(delays.iter().all(|d| *d <= Duration::from_secs(2)), "{delays:?}");
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(125));
    }
}
