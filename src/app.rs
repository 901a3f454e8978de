//! `serve` wiring only: build the shared state, start the embedded broker when no broker is configured, start
//! every task (reload loop, watcher, SIGHUP, ops HTTP, MQTT) under one [`CancellationToken`] and one
//! [`TaskTracker`], and await them all on shutdown. [`start`] returns a handle so tests drive the whole service
//! in-process on free ports.

use crate::broker::{self, RunningBroker};
use crate::config::{BrokerChoice, BrokerList, BrokerUrl, Credentials, Scheme, Secret, ServeConfig};
use crate::handler::Handler;
use crate::mqtt::announce::Liveness;
use crate::mqtt::connection::mqtt_options;
use crate::mqtt::event_loop::{self, Session};
use crate::ops::{self, systemd};
use crate::release::Releases;
use crate::reload;
use crate::signing::{Signer, TrustedKeys};
use crate::state::State;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Extra time granted after the drain deadline for the other tasks to notice the cancellation.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// A running service.
pub struct Running {
    /// Catalog, link, counters, handler.
    pub state: Arc<State>,
    /// The embedded broker, when one was started.
    pub broker: Option<RunningBroker>,
    /// Where the ops HTTP listener listens, when on.
    pub http_addr: Option<SocketAddr>,
    cancel: CancellationToken,
    tracker: TaskTracker,
    drain_timeout: Duration,
    reload: mpsc::Sender<()>,
}

impl Running {
    /// Resolves once [`State::readiness`] says ready.
    pub async fn ready(&self) {
        self.state.wait_ready().await;
    }

    /// Asks for a rescan and rebuild (what SIGHUP does).
    pub fn reload(&self) {
        let _ = self.reload.try_send(());
    }

    /// Stops taking requests, flushes replies in flight, disconnects, and waits for every task it started.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        self.cancel.cancel();
        self.tracker.close();
        let deadline = self.drain_timeout + SHUTDOWN_GRACE;
        if tokio::time::timeout(deadline, self.tracker.wait()).await.is_err() {
            tracing::warn!(tasks = self.tracker.len(), "tasks still running after the shutdown deadline");
        }
        Ok(())
    }
}

/// Resolves the broker to connect to, starting the embedded one when configured. With `--embedded-users`, the
/// service's own connections get an account made for this process (their credentials go into `cfg`).
async fn broker(cfg: &mut ServeConfig) -> anyhow::Result<(BrokerList, Option<RunningBroker>)> {
    match &cfg.mqtt.broker {
        BrokerChoice::External(brokers) => Ok((brokers.clone(), None)),
        BrokerChoice::Embedded(e) => {
            let e = e.clone();
            let gate = match &e.users {
                Some(path) => {
                    let service =
                        Credentials { username: SERVICE_ACCOUNT.into(), password: Secret::new(random_hex()?) };
                    cfg.mqtt.credentials = Some(service.clone());
                    Some(Arc::new(broker::Gate::load(path.clone(), service, cfg.mqtt.client_id.clone())?))
                }
                None => None,
            };
            let running = broker::start(e, gate).await?;
            let target = loopback_if_unspecified(running.listen_v5);
            let url = BrokerUrl {
                scheme: Scheme::Mqtt,
                host: target.ip().to_string(),
                port: target.port(),
                username: None,
                client_id: None,
                path: String::new(),
            };
            Ok((BrokerList::one(url), Some(running)))
        }
    }
}

/// The account of the service's own connections to its embedded broker (its password is made per process).
const SERVICE_ACCOUNT: &str = "connector-scripts-service";

/// 32 random bytes in hex, from the operating system.
fn random_hex() -> anyhow::Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::getrandom(&mut bytes).map_err(|e| anyhow::anyhow!("no random bytes from the operating system: {e}"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Starts the service; returns once the broker (if embedded) and the ops listener listen. Loading and
/// connecting continue in the background: await [`Running::ready`].
pub async fn start(mut cfg: ServeConfig) -> anyhow::Result<Running> {
    let (brokers, embedded) = broker(&mut cfg).await?;
    let handler = Handler::new(cfg.mqtt.topics.clone(), cfg.limits.request, cfg.limits.rate_limits);
    let signer = match &cfg.signing_key {
        Some(path) => {
            let signer = Signer::load(path)?;
            tracing::info!(key_id = %signer.key_id, "signing every manifest");
            Some(Arc::new(signer))
        }
        None => {
            tracing::info!("manifests are not signed: production should sign (serve --signing-key)");
            None
        }
    };
    // The instances' signing keys this one trusts (its own and --trusted-key): peers' manifests and bundles.
    let own = signer.as_ref().map(|s| s.public_key());
    let signers = own.into_iter().fold(TrustedKeys::load(&cfg.trusted_keys)?, TrustedKeys::with);
    let releases = match &cfg.releases {
        Some(rc) => {
            let trust = crate::release::trust::Trust::new(&TrustedKeys::load(&rc.operator_keys)?, &signers);
            Some(Arc::new(Releases::open(rc.clone(), trust)?))
        }
        None => None,
    };
    let state = Arc::new(
        State::new(handler, cfg.ops.instance.clone(), brokers.iter().map(ToString::to_string).collect())
            .with_signer(signer, signers)
            .with_releases(releases),
    );
    let session = Session {
        liveness: Liveness::new(&cfg.mqtt.topics, &state.identity),
        brokers,
        watchdog: systemd::watchdog_interval(),
    };
    // Fail fast on configuration the connection cannot use (unreadable TLS files), for every node.
    for b in session.brokers.iter() {
        mqtt_options(&cfg.mqtt, b, None)?;
    }
    let cancel = CancellationToken::new();
    let tracker = TaskTracker::new();
    // One slot: triggers that arrive during a build coalesce into one more build.
    let (reload_tx, reload_rx) = mpsc::channel::<()>(1);
    let triggers = (reload_tx.clone(), reload_rx);
    tracker.spawn(reload::reload_loop(
        cfg.catalog.clone(),
        cfg.reload.clone(),
        state.clone(),
        triggers,
        cancel.clone(),
    ));
    let _ = reload_tx.try_send(());
    tracker.spawn(reload::sighup(reload_tx.clone(), cancel.clone()));
    ops::set_instance_info(&state, cfg.mqtt.share_group.as_deref());
    let http_addr = match cfg.ops.http_listen {
        Some(addr) => Some(ops::http::start(addr, state.clone(), cancel.clone(), &tracker).await?),
        None => None,
    };
    let mqtt = event_loop::run(cfg.mqtt.clone(), session, state.clone(), cancel.clone(), tracker.clone());
    tracker.spawn(async move {
        if let Err(e) = mqtt.await {
            tracing::error!(error = %e, "MQTT connection stopped");
        }
    });
    Ok(Running {
        state,
        broker: embedded,
        http_addr,
        cancel,
        tracker,
        drain_timeout: cfg.mqtt.drain_timeout,
        reload: reload_tx,
    })
}

/// Tells systemd READY=1 once the one readiness function says so, and STATUS= with the reasons until then.
async fn notify_when_ready(state: &State) {
    let mut catalog = state.catalog_changes();
    let mut link = state.link.watch();
    // Reasons can change without a watched change (the last connection error): look again now and then.
    let mut refresh = tokio::time::interval(Duration::from_secs(1));
    let mut told: Option<Vec<String>> = None;
    loop {
        let readiness = state.readiness();
        if readiness.is_ready() {
            let variants = state.catalog().map_or(0, |c| c.bundles().count());
            tracing::info!(variants, "ready: catalog loaded and subscribed");
            for warning in &readiness.warnings {
                tracing::warn!("{warning}");
            }
            let warnings = match readiness.warnings.len() {
                0 => String::new(),
                n => format!("; {n} warning(s): run `connector-scripts status`"),
            };
            systemd::ready(&format!("serving {variants} variants{warnings}"));
            return;
        }
        if told.as_ref() != Some(&readiness.reasons) {
            systemd::not_ready(&readiness.reasons);
            told = Some(readiness.reasons);
        }
        tokio::select! {
            _ = catalog.changed() => {}
            _ = link.changed() => {}
            _ = refresh.tick() => {}
        }
    }
}

/// Runs until `shutdown` resolves (before or after the service is ready), then drains and waits for every task.
pub async fn run(cfg: ServeConfig, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let running = start(cfg).await?;
    tokio::pin!(shutdown);
    let stopped_early = tokio::select! {
        // `shutdown` first: its first poll installs the signal handlers, which must be in place before
        // systemd (or a test) hears the first STATUS= and may send SIGTERM.
        biased;
        _ = &mut shutdown => true,
        _ = notify_when_ready(&running.state) => false,
    };
    // `shutdown` is awaited at most once: polling a completed future again panics.
    if !stopped_early {
        shutdown.await;
    }
    tracing::info!("shutting down: draining replies in flight");
    systemd::stopping();
    running.shutdown().await?;
    tracing::info!("stopped");
    Ok(())
}

fn loopback_if_unspecified(addr: SocketAddr) -> SocketAddr {
    if addr.ip().is_unspecified() {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), addr.port())
    } else {
        addr
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
