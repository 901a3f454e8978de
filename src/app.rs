//! `serve`: load the catalog, start the embedded broker when no broker is configured, connect, answer requests,
//! shut down cleanly. [`start`] returns a handle so tests drive the whole service in-process on free ports.

use crate::announce::Topics;
use crate::broker::{self, RunningBroker};
use crate::catalog::{self, CompileCache, Sources};
use crate::config::{BrokerChoice, BrokerUrl, Credentials, Scheme};
use crate::ops::{self, systemd, Ops};
use crate::ratelimit::RateLimit;
use crate::service::Service;
use crate::transport::{self, Link, StatusMessages, TlsFiles, TransportConfig};
use crate::watch;
use crate::wire::Limits;
use rumqttc::v5::mqttbytes::QoS;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use std::time::SystemTime;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Everything `serve` needs, validated.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Catalog sources.
    pub sources: Sources,
    /// Embedded or external broker.
    pub broker: BrokerChoice,
    /// TLS files for `mqtts://`.
    pub tls: TlsFiles,
    /// Client id.
    pub client_id: String,
    /// Broker credentials.
    pub credentials: Option<Credentials>,
    /// Request topic.
    pub request_topic: String,
    /// Shared-subscription group.
    pub share_group: Option<String>,
    /// Request subscription QoS.
    pub qos_in: QoS,
    /// Reply QoS (`None`: as the request).
    pub qos_out: Option<QoS>,
    /// Largest MQTT packet accepted.
    pub max_packet_size: u32,
    /// Request limits.
    pub limits: Limits,
    /// Keep-alive.
    pub keep_alive: Duration,
    /// Reconnect backoff bounds.
    pub backoff: (Duration, Duration),
    /// Shutdown drain deadline.
    pub drain_timeout: Duration,
    /// Watch the catalog directories and reload on change.
    pub watch: bool,
    /// Quiet time before a burst of file changes is acted on.
    pub debounce: Duration,
    /// Manifest and event topics.
    pub topics: Topics,
    /// Ops HTTP listener (`None`: off).
    pub http_listen: Option<SocketAddr>,
    /// Instance name, on the status topic and in health output.
    pub instance: String,
    /// Prefix of the retained liveness topic: `<prefix>/<instance>`.
    pub status_prefix: String,
    /// Per-device rate limit (`None`: off).
    pub rate_limit: Option<RateLimit>,
    /// Persistent session expiry (`None`: clean session). With it, requests are acknowledged only after their
    /// reply is published, and requests sent while the service is away are answered when it is back.
    pub session_expiry: Option<Duration>,
}

impl ServeConfig {
    /// The defaults `serve` documents, for `sources` through `broker`: QoS 1 in, replies at the request's QoS,
    /// 16 MiB packets, 64 KiB requests, hot reload on, no ops listener, no rate limit, a clean session.
    pub fn new(sources: Sources, broker: BrokerChoice, instance: &str) -> ServeConfig {
        ServeConfig {
            sources,
            broker,
            tls: TlsFiles::default(),
            client_id: instance.to_string(),
            credentials: None,
            request_topic: "getConnectors".into(),
            share_group: None,
            qos_in: QoS::AtLeastOnce,
            qos_out: None,
            max_packet_size: 16 << 20,
            limits: Limits::default(),
            keep_alive: Duration::from_secs(30),
            backoff: (Duration::from_millis(100), Duration::from_secs(10)),
            drain_timeout: Duration::from_secs(5),
            watch: true,
            debounce: Duration::from_millis(30),
            topics: Topics::default(),
            http_listen: None,
            instance: instance.to_string(),
            status_prefix: "connector-scripts/status".into(),
            rate_limit: None,
            session_expiry: None,
        }
    }
}

/// A running service.
pub struct Running {
    /// The request handler (catalog, counters).
    pub service: Arc<Service>,
    /// The broker connection state.
    pub link: Arc<Link>,
    /// The embedded broker, when one was started.
    pub broker: Option<RunningBroker>,
    /// Health, readiness and metrics.
    pub ops: Arc<Ops>,
    /// Where the ops HTTP listener listens, when on.
    pub http_addr: Option<SocketAddr>,
    cancel: CancellationToken,
    transport: JoinHandle<Result<(), transport::TransportError>>,
    catalog_loaded: tokio::sync::watch::Receiver<bool>,
    reload: mpsc::Sender<()>,
    _watcher: Option<watch::Watcher>,
}

impl Running {
    /// Resolves once the catalog is loaded and the subscriptions are confirmed.
    pub async fn ready(&self) {
        let mut loaded = self.catalog_loaded.clone();
        let _ = loaded.wait_for(|l| *l).await;
        self.link.wait_subscribed().await;
    }

    /// Asks for a rescan and rebuild (what SIGHUP does).
    pub fn reload(&self) {
        let _ = self.reload.try_send(());
    }

    /// Stops taking requests, flushes replies in flight, disconnects.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        self.cancel.cancel();
        self.transport.await??;
        Ok(())
    }
}

/// Starts the service; returns once the broker (if embedded) listens. Loading and connecting continue in the
/// background: await [`Running::ready`].
pub async fn start(cfg: ServeConfig) -> anyhow::Result<Running> {
    let service = Arc::new(Service::new(cfg.request_topic.clone(), cfg.limits).with_rate_limit(cfg.rate_limit));
    let (broker_url, embedded) = match &cfg.broker {
        BrokerChoice::External(url) => (url.clone(), None),
        BrokerChoice::Embedded(e) => {
            let running = broker::start(*e).await?;
            let target = loopback_if_unspecified(running.listen_v5);
            let url = BrokerUrl {
                scheme: Scheme::Mqtt,
                host: target.ip().to_string(),
                port: target.port(),
                username: None,
                client_id: None,
            };
            (url, Some(running))
        }
    };
    let tcfg = TransportConfig {
        client_id: broker_url.client_id.clone().unwrap_or_else(|| cfg.client_id.clone()),
        broker: broker_url,
        tls: cfg.tls.clone(),
        credentials: cfg.credentials.clone(),
        keep_alive: cfg.keep_alive,
        max_packet_size: cfg.max_packet_size,
        request_topic: cfg.request_topic.clone(),
        share_group: cfg.share_group.clone(),
        qos_in: cfg.qos_in,
        qos_out: cfg.qos_out,
        backoff_min: cfg.backoff.0,
        backoff_max: cfg.backoff.1,
        drain_timeout: cfg.drain_timeout,
        topics: cfg.topics.clone(),
        status: Some(StatusMessages::new(&cfg.status_prefix, &cfg.instance, SystemTime::now())),
        watchdog: systemd::watchdog_interval(),
        session_expiry: cfg.session_expiry,
    };
    let broker_shown = tcfg.broker.to_string();
    // Fail fast on configuration the transport cannot use (unreadable TLS files).
    transport::mqtt_options(&tcfg)?;
    let cancel = CancellationToken::new();
    let (loaded_tx, loaded_rx) = tokio::sync::watch::channel(false);
    // One slot: triggers that arrive during a build coalesce into one more build.
    let (reload_tx, reload_rx) = mpsc::channel::<()>(1);
    tokio::spawn(reload_loop(cfg.sources.clone(), service.clone(), reload_rx, loaded_tx, cancel.clone()));
    let _ = reload_tx.try_send(());
    let watcher = if cfg.watch { start_watcher(&cfg, &reload_tx) } else { None };
    spawn_sighup(reload_tx.clone(), cancel.clone());
    let link = Arc::new(Link::default());
    let ops = Arc::new(Ops::new(service.clone(), link.clone(), cfg.instance.clone(), broker_shown));
    let http_addr = match cfg.http_listen {
        Some(addr) => Some(ops::http::start(addr, ops.clone(), cancel.clone()).await?),
        None => None,
    };
    let transport = tokio::spawn(transport::run(tcfg, service.clone(), link.clone(), cancel.clone()));
    Ok(Running {
        service,
        link,
        broker: embedded,
        ops,
        http_addr,
        cancel,
        transport,
        catalog_loaded: loaded_rx,
        reload: reload_tx,
        _watcher: watcher,
    })
}

fn start_watcher(cfg: &ServeConfig, reload: &mpsc::Sender<()>) -> Option<watch::Watcher> {
    let dirs = [cfg.sources.snippets.clone(), cfg.sources.platforms.clone()];
    let tx = reload.clone();
    match watch::watch(&dirs, cfg.debounce, Duration::from_millis(500), move || {
        let _ = tx.try_send(());
    }) {
        Ok(w) => {
            tracing::info!(polling = w.is_polling(), "watching snippets and platforms for changes");
            Some(w)
        }
        Err(e) => {
            tracing::warn!(error = %e, "hot reload is off: cannot watch the catalog directories (SIGHUP still reloads)");
            None
        }
    }
}

/// SIGHUP forces a full rescan and reload.
fn spawn_sighup(reload: mpsc::Sender<()>, cancel: CancellationToken) {
    #[cfg(unix)]
    tokio::spawn(async move {
        let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else { return };
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                r = hup.recv() => if r.is_none() { return },
            }
            tracing::info!("SIGHUP: rescanning snippets and platforms");
            let _ = reload.try_send(());
        }
    });
    #[cfg(not(unix))]
    let _ = (reload, cancel);
}

/// Rebuilds the catalog on each trigger and swaps it in; what broke since the last build keeps its last good form.
async fn reload_loop(
    sources: Sources,
    service: Arc<Service>,
    mut triggers: mpsc::Receiver<()>,
    loaded: tokio::sync::watch::Sender<bool>,
    cancel: CancellationToken,
) {
    let cache = Arc::new(std::sync::Mutex::new(CompileCache::default()));
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            t = triggers.recv() => if t.is_none() { return },
        }
        let previous = service.catalog.load_full();
        let (sources, cache, prev) = (sources.clone(), cache.clone(), previous.clone());
        let built = tokio::task::spawn_blocking(move || {
            let mut cache = cache.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            catalog::build(&sources, &mut cache, prev.as_deref())
        })
        .await;
        let catalog = match built {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "catalog build failed; keeping the current catalog");
                continue;
            }
        };
        log_build(&catalog, previous.as_deref());
        service.publish_catalog(Arc::new(catalog));
        service.stats.reloads.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        loaded.send_replace(true);
    }
}

/// Runs until `shutdown` resolves.
pub async fn run(cfg: ServeConfig, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let running = start(cfg).await?;
    tokio::pin!(shutdown);
    tokio::select! {
        _ = running.ready() => {
            let catalog = running.service.catalog.load_full();
            let variants = catalog.as_ref().map_or(0, |c| c.bundles().count());
            tracing::info!(variants, "ready: catalog loaded and subscribed");
            systemd::ready(&format!("serving {variants} variants"));
        }
        _ = &mut shutdown => {}
    }
    shutdown.await;
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

/// Logs the diagnostics that are new since `previous`, and a summary.
fn log_build(catalog: &catalog::Catalog, previous: Option<&catalog::Catalog>) {
    let is_new = |d: &&catalog::Diagnostic| previous.is_none_or(|p| !p.diagnostics.contains(d));
    for d in catalog.diagnostics.iter().filter(is_new) {
        if d.is_error() {
            tracing::error!(code = d.code, location = d.location().unwrap_or_default(), "{}", d.message);
        } else {
            tracing::warn!(code = d.code, location = d.location().unwrap_or_default(), "{}", d.message);
        }
    }
    tracing::info!(
        platforms = catalog.platforms.len(),
        variants = catalog.bundles().count(),
        connectors = catalog.connectors.len(),
        compiled = catalog.stats.compiled,
        errors = catalog.error_count(),
        elapsed_ms = catalog.stats.elapsed.as_millis() as u64,
        "catalog built"
    );
    if let Some(prev) = previous {
        let prev_revs: std::collections::BTreeMap<(&str, &str), &str> =
            prev.bundles().map(|b| ((b.platform.as_str(), b.variant.as_str()), b.revision.as_str())).collect();
        for b in catalog.bundles() {
            if prev_revs.get(&(b.platform.as_str(), b.variant.as_str())) != Some(&b.revision.as_str()) {
                tracing::info!(platform = %b.platform, variant = %b.variant, revision = %b.revision, "new revision");
            }
        }
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
