//! The embedded default broker (rumqttd), so that `connector-scripts serve` works with one command.
//!
//! rumqttd listeners speak one protocol version each: apps and NestJS clients use the MQTT 3.1.1 listener, MQTT 5
//! clients (and the service itself, which needs Response Topic / Correlation Data) use the MQTT 5 listener. Both
//! share one router, so messages flow between them. rumqttd has no shutdown API: the listeners live as long as
//! the tokio runtime that runs them, the router thread as long as the process.

use crate::config::EmbeddedBroker;
use rumqttd::{ConnectionSettings, LinkType, Router, RouterConfig, Server, ServerSettings};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

/// Why the embedded broker did not start.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// The address is taken (typically by another MQTT broker).
    #[error(
        "cannot start the embedded MQTT broker: {addr} is already in use (another MQTT broker, such as Mosquitto, \
         may be running there).\n  Either pick free ports: {flag} 127.0.0.1:{suggest}\n  \
         or serve through it:    --broker mqtt://{addr}"
    )]
    AddrInUse {
        /// The address.
        addr: SocketAddr,
        /// The flag that sets it.
        flag: &'static str,
        /// A port to suggest.
        suggest: u16,
    },
    /// Any other failure to listen.
    #[error("cannot start the embedded MQTT broker on {addr} ({flag}): {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// The flag that sets it.
        flag: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
    /// It bound but did not accept connections in time.
    #[error("the embedded MQTT broker on {addr} did not come up: {reason}")]
    NotListening {
        /// The address.
        addr: SocketAddr,
        /// What happened.
        reason: String,
    },
}

/// Largest message the embedded broker accepts (whole scripts travel in replies).
pub const MAX_PAYLOAD: usize = 16 << 20;

/// A running embedded broker.
pub struct RunningBroker {
    /// The MQTT 3.1.1 listener.
    pub listen: SocketAddr,
    /// The MQTT 5 listener.
    pub listen_v5: SocketAddr,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for RunningBroker {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

fn settings(name: &str, listen: SocketAddr) -> ServerSettings {
    ServerSettings {
        name: name.to_string(),
        listen,
        tls: None,
        next_connection_delay_ms: 0,
        connections: ConnectionSettings {
            connection_timeout_ms: 10_000,
            max_payload_size: MAX_PAYLOAD,
            max_inflight_count: 100,
            auth: None,
            external_auth: None,
            dynamic_filters: true,
        },
    }
}

/// Checks that `addr` can be bound, turning "in use" into an error that names the flag to change.
fn check_free(addr: SocketAddr, flag: &'static str) -> Result<(), BrokerError> {
    match std::net::TcpListener::bind(addr) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
            let suggest = free_port_near(addr).unwrap_or(addr.port().wrapping_add(10_000));
            Err(BrokerError::AddrInUse { addr, flag, suggest })
        }
        Err(source) => Err(BrokerError::Listen { addr, flag, source }),
    }
}

/// A free port above `addr`'s, to suggest in the error (and two free in a row, for both listeners).
fn free_port_near(addr: SocketAddr) -> Option<u16> {
    (1..200u16).map(|d| addr.port().wrapping_add(d * 2)).find(|&p| {
        p > 1024
            && std::net::TcpListener::bind(SocketAddr::new(addr.ip(), p)).is_ok()
            && std::net::TcpListener::bind(SocketAddr::new(addr.ip(), p.wrapping_add(1))).is_ok()
    })
}

/// Starts the embedded broker on the current tokio runtime and returns once both listeners accept connections.
pub async fn start(cfg: EmbeddedBroker) -> Result<RunningBroker, BrokerError> {
    check_free(cfg.listen, "--embedded-listen")?;
    check_free(cfg.listen_v5, "--embedded-listen-v5")?;
    let router = RouterConfig {
        max_connections: 100_000,
        max_outgoing_packet_count: 1000,
        max_segment_size: 1 << 20,
        max_segment_count: 2,
        ..Default::default()
    };
    let router_tx = Router::new(0, router).spawn();
    let mut v4 = Server::new(settings("v4", cfg.listen), router_tx.clone(), rumqttd::protocol::v4::V4);
    let mut v5 = Server::new(settings("v5", cfg.listen_v5), router_tx, rumqttd::protocol::v5::V5);
    let (tx4, rx4) = tokio::sync::oneshot::channel();
    let (tx5, rx5) = tokio::sync::oneshot::channel();
    let t4 = tokio::spawn(async move {
        let _ = tx4.send(v4.start(LinkType::Remote).await.map_err(|e| e.to_string()));
    });
    let t5 = tokio::spawn(async move {
        let _ = tx5.send(v5.start(LinkType::Remote).await.map_err(|e| e.to_string()));
    });
    let running = RunningBroker { listen: cfg.listen, listen_v5: cfg.listen_v5, tasks: vec![t4, t5] };
    wait_listening(cfg.listen, rx4).await?;
    wait_listening(cfg.listen_v5, rx5).await?;
    for addr in [cfg.listen, cfg.listen_v5] {
        if let Err(e) = nodelay_on_listener(addr) {
            tracing::warn!(%addr, error = %e, "cannot set TCP_NODELAY on the embedded broker: replies may stall ~40 ms");
        }
    }
    tracing::info!(mqtt = %cfg.listen, mqtt5 = %cfg.listen_v5, "embedded MQTT broker listening");
    Ok(running)
}

/// Waits until `addr` accepts a TCP connection, or the server task reports why it stopped.
async fn wait_listening(
    addr: SocketAddr,
    mut ended: tokio::sync::oneshot::Receiver<Result<(), String>>,
) -> Result<(), BrokerError> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut pause = Duration::from_millis(1);
    loop {
        if let Ok(result) = ended.try_recv() {
            let reason = match result {
                Ok(()) => "listener stopped".to_string(),
                Err(e) => e,
            };
            return Err(BrokerError::NotListening { addr, reason });
        }
        if TcpStream::connect(addr).await.is_ok() {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            return Err(BrokerError::NotListening { addr, reason: "no connection accepted within 10 s".into() });
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

/// Sets TCP_NODELAY on rumqttd's listening socket for `addr`; Linux copies it to every accepted connection.
///
/// rumqttd binds its own listener and does not set TCP_NODELAY on the connections it accepts, so a 15 KB reply
/// waits for Nagle + delayed ACK (~40 ms) on its way to the app. The listener is found among this process's
/// file descriptors by its local address.
#[cfg(target_os = "linux")]
fn nodelay_on_listener(addr: SocketAddr) -> std::io::Result<()> {
    use std::os::fd::{BorrowedFd, RawFd};
    for entry in std::fs::read_dir("/proc/self/fd")?.flatten() {
        let Some(fd) = entry.file_name().to_str().and_then(|n| n.parse::<RawFd>().ok()) else { continue };
        let is_socket = std::fs::read_link(entry.path()).is_ok_and(|l| l.to_string_lossy().starts_with("socket:"));
        if !is_socket {
            continue;
        }
        // SAFETY: the descriptor is open in this process (listed in /proc/self/fd) and only borrowed for the
        // duration of these calls; the listener it names lives as long as the runtime.
        let fd = unsafe { BorrowedFd::borrow_raw(fd) };
        let sock = socket2::SockRef::from(&fd);
        let listening = sock.is_listener().unwrap_or(false);
        if listening && sock.local_addr().ok().and_then(|a| a.as_socket()) == Some(addr) {
            return sock.set_tcp_nodelay(true);
        }
    }
    Err(std::io::Error::new(std::io::ErrorKind::NotFound, "listening socket not found"))
}

#[cfg(not(target_os = "linux"))]
fn nodelay_on_listener(_addr: SocketAddr) -> std::io::Result<()> {
    Ok(())
}
