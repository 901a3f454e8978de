//! The embedded default broker (rumqttd), so that `connector-scripts serve` works with one command.
//!
//! rumqttd listeners speak one protocol version each: apps and NestJS clients use the MQTT 3.1.1 listener, MQTT 5
//! clients (and the service itself, which needs Response Topic / Correlation Data) use the MQTT 5 listener, React
//! Native and browser apps the WebSocket listener (MQTT 3.1.1 over WebSocket, any path; apps use `/mqtt`). All
//! share one router, so messages flow between them. rumqttd has no shutdown API: the listeners live as long as
//! the tokio runtime that runs them, the router thread as long as the process.

use crate::config::{Credentials, EmbeddedBroker};
use crate::passwd::{Accounts, PasswdError};
use rumqttd::{ConnectionSettings, LinkType, Router, RouterConfig, Server, ServerSettings};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
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
    /// `--embedded-users` cannot be used.
    #[error("--embedded-users: {0}")]
    Users(#[from] PasswdError),
    /// It bound but did not accept connections in time.
    #[error("the embedded MQTT broker on {addr} did not come up: {reason}")]
    NotListening {
        /// The address.
        addr: SocketAddr,
        /// What happened.
        reason: String,
    },
}

/// A running embedded broker.
pub struct RunningBroker {
    /// The MQTT 3.1.1 listener.
    pub listen: SocketAddr,
    /// The MQTT 5 listener.
    pub listen_v5: SocketAddr,
    /// The MQTT-over-WebSocket listener (MQTT 3.1.1), if on.
    pub listen_ws: Option<SocketAddr>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for RunningBroker {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

fn settings(name: &str, listen: SocketAddr, max_packet: usize, gate: Option<&Arc<Gate>>) -> ServerSettings {
    let mut connections = ConnectionSettings {
        connection_timeout_ms: 10_000,
        max_payload_size: max_packet,
        max_inflight_count: 100,
        auth: None,
        external_auth: None,
        dynamic_filters: true,
    };
    if let Some(gate) = gate.cloned() {
        connections.set_auth_handler(move |client_id, username, password| {
            let allowed = gate.allows(&client_id, &username, &password);
            async move { allowed }
        });
    }
    ServerSettings { name: name.to_string(), listen, tls: None, next_connection_delay_ms: 0, connections }
}

/// Who may connect when `--embedded-users` is given: the accounts of the password file, each under its own name
/// as client id only (so no account can take over another's session, or the service's), and the service itself
/// under an account made for this process.
///
/// rumqttd 0.20 has an authentication hook but no authorization hook: it cannot restrict which topics an account
/// publishes or subscribes to. Devices therefore cannot impersonate each other's connections, but can publish on
/// any topic; what the service reads from the bus is verified (signatures, device topics), and a deployment that
/// needs per-topic rules puts Mosquitto with `deploy/mosquitto/` in front.
pub struct Gate {
    path: PathBuf,
    accounts: arc_swap::ArcSwap<Accounts>,
    service: Credentials,
    /// The service's client ids start with this; no account but the service's may use one.
    service_client_id: String,
}

impl Gate {
    /// Reads the password file; `service` is the account the service's own connections use.
    pub fn load(path: PathBuf, service: Credentials, service_client_id: String) -> Result<Gate, BrokerError> {
        let accounts = arc_swap::ArcSwap::from_pointee(Accounts::load(&path)?);
        Ok(Gate { path, accounts, service, service_client_id })
    }

    /// The CONNECT check.
    pub fn allows(&self, client_id: &str, username: &str, password: &str) -> bool {
        use subtle::ConstantTimeEq;
        if username == self.service.username {
            return password.as_bytes().ct_eq(self.service.password.expose().as_bytes()).into();
        }
        client_id == username
            && !client_id.starts_with(&self.service_client_id)
            && self.accounts.load().check(username, password)
    }

    /// Reads the password file again; on an error the accounts in force stay.
    pub fn reload(&self) -> Result<usize, PasswdError> {
        let accounts = Accounts::load(&self.path)?;
        let n = accounts.len();
        self.accounts.store(Arc::new(accounts));
        Ok(n)
    }
}

/// Rereads the password file on every SIGHUP (as Mosquitto does), for as long as the broker runs.
async fn reload_on_sighup(gate: Arc<Gate>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut hup) = signal(SignalKind::hangup()) else { return };
        while hup.recv().await.is_some() {
            match gate.reload() {
                Ok(n) => {
                    tracing::info!(accounts = n, file = %gate.path.display(), "SIGHUP: embedded broker accounts reloaded")
                }
                Err(e) => tracing::error!(error = %e, "SIGHUP: embedded broker accounts kept as they were"),
            }
        }
    }
    #[cfg(not(unix))]
    let _ = gate;
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

/// A free port above `addr`'s, to suggest in the error (and three free in a row, for every listener).
fn free_port_near(addr: SocketAddr) -> Option<u16> {
    (1..200u16).map(|d| addr.port().wrapping_add(d * 2)).find(|&p| {
        p > 1024 && (0..3).all(|k| std::net::TcpListener::bind(SocketAddr::new(addr.ip(), p.wrapping_add(k))).is_ok())
    })
}

/// Starts the embedded broker on the current tokio runtime and returns once both listeners accept connections.
/// With `gate`, only its accounts (and the service) may connect.
pub async fn start(cfg: EmbeddedBroker, gate: Option<Arc<Gate>>) -> Result<RunningBroker, BrokerError> {
    let listeners: Vec<(SocketAddr, &'static str)> =
        [(cfg.listen, "--embedded-listen"), (cfg.listen_v5, "--embedded-listen-v5")]
            .into_iter()
            .chain(cfg.listen_ws.map(|ws| (ws, "--embedded-ws-listen")))
            .collect();
    for (addr, flag) in &listeners {
        check_free(*addr, flag)?;
    }
    let router = RouterConfig {
        max_connections: 100_000,
        max_outgoing_packet_count: 1000,
        max_segment_size: 1 << 20,
        max_segment_count: 2,
        ..Default::default()
    };
    let router_tx = Router::new(0, router).spawn();
    let settings = |name, addr| settings(name, addr, cfg.max_packet, gate.as_ref());
    let v4 = Server::new(settings("v4", cfg.listen), router_tx.clone(), rumqttd::protocol::v4::V4);
    let v5 = Server::new(settings("v5", cfg.listen_v5), router_tx.clone(), rumqttd::protocol::v5::V5);
    let mut started = vec![serve(v4, LinkType::Remote), serve(v5, LinkType::Remote)];
    // rumqttd's WebSocket listener speaks MQTT 3.1.1 only (upstream has no v5 over WebSocket yet).
    if let Some(ws) = cfg.listen_ws {
        started.push(serve(Server::new(settings("ws", ws), router_tx, rumqttd::protocol::v4::V4), LinkType::Websocket));
    }
    let (mut tasks, ended): (Vec<_>, Vec<_>) = started.into_iter().unzip();
    if let Some(gate) = &gate {
        tasks.push(tokio::spawn(reload_on_sighup(gate.clone())));
    }
    let running = RunningBroker { listen: cfg.listen, listen_v5: cfg.listen_v5, listen_ws: cfg.listen_ws, tasks };
    for ((addr, _), ended) in listeners.iter().zip(ended) {
        wait_listening(*addr, ended).await?;
        if let Err(e) = nodelay_on_listener(*addr) {
            tracing::warn!(%addr, error = %e, "cannot set TCP_NODELAY on the embedded broker: replies may stall ~40 ms");
        }
    }
    let ws = cfg.listen_ws.map_or("off".to_string(), |a| format!("ws://{a}/mqtt"));
    tracing::info!(mqtt = %cfg.listen, mqtt5 = %cfg.listen_v5, websocket = %ws, authenticated = gate.is_some(),
        "embedded MQTT broker listening");
    let exposed = listeners.iter().any(|(addr, _)| !addr.ip().is_loopback());
    match (exposed, &gate) {
        (true, None) => tracing::warn!(
            "the embedded broker listens beyond loopback and lets anyone connect (--embedded-allow-anonymous): \
             anyone who reaches it can publish requests and read every reply"
        ),
        (true, Some(_)) => tracing::warn!(
            "the embedded broker checks each account and binds it to its client id, but cannot restrict topics \
             (rumqttd has no authorization hook): for per-topic rules put Mosquitto with deploy/mosquitto/ in front"
        ),
        (false, _) => {}
    }
    Ok(running)
}

/// Runs one listener on the current runtime; the receiver says why it stopped, if it does.
fn serve<P: rumqttd::protocol::Protocol + Clone + Send + Sync + 'static>(
    mut server: Server<P>,
    link: LinkType,
) -> (JoinHandle<()>, tokio::sync::oneshot::Receiver<Result<(), String>>) {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(async move {
        let _ = tx.send(server.start(link).await.map_err(|e| e.to_string()));
    });
    (task, rx)
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
