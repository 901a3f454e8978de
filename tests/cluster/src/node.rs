//! `node` mode: one rmqtt node, configured by an rmqtt.toml as rmqtt's own `rmqttd` is, with the three plugins
//! this harness needs (cluster-broadcast, shared-subscription, retainer) and TCP listeners only.
//!
//! rmqtt-conf also reads `./rmqtt.toml`, `/etc/rmqtt/rmqtt.toml` and `RMQTT_*` variables before the `-f` file;
//! `up` runs each node in its own directory, where `rmqtt.toml` is that node's file.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{anyhow, Context as _};
use log::LevelFilter;
use rmqtt::context::{
    CircuitBreakerConfig, CountBasedWindowConfig, ServerContext, TimeBasedWindowConfig, WindowConfig,
};
use rmqtt::net::Builder;
use rmqtt::node::Node;
use rmqtt::server::MqttServer;
use rmqtt_conf::logging::Level;
use rmqtt_conf::{Listener, Options, Settings};
use tokio::io::AsyncReadExt as _;
use tokio::signal::unix::{signal, SignalKind};

use crate::cli::NodeArgs;

// The plugins this program links, by the names `plugins.default_startups` and the files in `plugins.dir` use.
/// Clustering (gRPC broadcast to every peer).
pub const CLUSTER_PLUGIN: &str = "rmqtt-cluster-broadcast";
/// `$share/<group>/<topic>` subscriptions.
pub const SHARED_SUBSCRIPTION_PLUGIN: &str = "rmqtt-shared-subscription";
/// Retained messages.
pub const RETAINER_PLUGIN: &str = "rmqtt-retainer";

/// Runs the node until SIGTERM/SIGINT (or stdin EOF with `--exit-on-stdin-eof`), then exits the process.
pub fn run(args: &NodeArgs) -> anyhow::Result<()> {
    let config = args.config.to_str().ok_or_else(|| anyhow!("config path is not UTF-8: {:?}", args.config))?;
    let opts = Options { cfg_name: Some(config.to_owned()), ..Options::default() };
    let settings = Settings::init(opts).with_context(|| format!("reading {config}"))?;
    if !args.config.is_file() {
        // rmqtt-conf treats the -f file as optional; a missing one would silently give a default node.
        return Err(anyhow!("no such config file: {config}"));
    }
    crate::logger::init(level_filter(settings)).map_err(|e| anyhow!("installing the logger: {e}"))?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting tokio")?;
    runtime.block_on(serve(settings, args))?;
    // rmqtt keeps background tasks that never end; leave without waiting for them.
    std::process::exit(0)
}

async fn serve(conf: &'static Settings, args: &NodeArgs) -> anyhow::Result<()> {
    let node =
        Node::new(conf.node.id, conf.node.busy.loadavg, conf.node.busy.cpuloadavg, conf.node.busy.update_interval);
    log::info!("starting rmqtt node {} (rmqtt {})", conf.node.id, Node::version());
    let scx = ServerContext::new()
        .node(node)
        .task_exec_workers(conf.task.exec_workers)
        .task_exec_queue_max(conf.task.exec_queue_max)
        .busy_check_enable(conf.node.busy.check_enable)
        .busy_handshaking_limit(conf.node.busy.handshaking)
        .mqtt_max_sessions(conf.mqtt.max_sessions)
        .plugins_config_dir(conf.plugins.dir.as_str())
        .circuit_breaker_config(circuit_breaker(conf))
        .build()
        .await;

    scx.node.start_grpc_server(scx.clone(), conf.rpc.server_addr, conf.rpc.reuseaddr, conf.rpc.reuseport);
    wait_for_peers(&args.wait_for, Duration::from_secs(args.wait_timeout)).await;
    register_plugins(&scx, &conf.plugins.default_startups).await?;

    let mut server = MqttServer::new(scx);
    if conf.listeners.tcps.is_empty() {
        return Err(anyhow!("no TCP listener configured"));
    }
    if !(conf.listeners.tlss.is_empty() && conf.listeners.wss.is_empty() && conf.listeners.wsss.is_empty()) {
        log::warn!("only TCP listeners are served; TLS and WebSocket listeners in the config are ignored");
    }
    for listener in conf.listeners.tcps.values() {
        let bound = listener_builder(listener)
            .bind()
            .and_then(|b| b.tcp())
            .map_err(|e| anyhow!("binding the MQTT listener on {}: {e}", listener.addr))?;
        server = server.listener(bound);
        log::info!("MQTT listener {} on {}", listener.name, listener.addr);
    }
    server.build().start();

    shutdown(args.exit_on_stdin_eof).await;
    log::info!("node {} stopping", conf.node.id);
    Ok(())
}

/// Waits until every address in `peers` accepts TCP connections, or `limit` passes. The cluster plugin creates its
/// gRPC clients when it starts; one whose peer is not listening yet retries only ~3 s later, which is how long
/// forming took when every node started at once without this.
async fn wait_for_peers(peers: &[SocketAddr], limit: Duration) {
    let deadline = tokio::time::Instant::now() + limit;
    for &peer in peers {
        while tokio::net::TcpStream::connect(peer).await.is_err() {
            if tokio::time::Instant::now() >= deadline {
                log::warn!("peer {peer} not listening after {limit:?}; starting the cluster plugin anyway");
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Registers the linked plugins; those named in `plugins.default_startups` start now. The cluster plugin is
/// immutable (cannot be stopped through rmqtt's API), as in rmqttd.
async fn register_plugins(scx: &ServerContext, startups: &[String]) -> anyhow::Result<()> {
    let starts = |name: &str| startups.iter().any(|s| s == name);
    let fail = |name: &'static str| move |e| anyhow!("plugin {name}: {e}");
    rmqtt_cluster_broadcast::register(scx, starts(CLUSTER_PLUGIN), true).await.map_err(fail(CLUSTER_PLUGIN))?;
    rmqtt_shared_subscription::register(scx, starts(SHARED_SUBSCRIPTION_PLUGIN), false)
        .await
        .map_err(fail(SHARED_SUBSCRIPTION_PLUGIN))?;
    rmqtt_retainer::register(scx, starts(RETAINER_PLUGIN), false).await.map_err(fail(RETAINER_PLUGIN))?;
    Ok(())
}

/// The listener settings of rmqtt.toml, TCP only (rmqttd's mapping without the TLS ones).
fn listener_builder(cfg: &Listener) -> Builder {
    Builder::new()
        .name(cfg.name.as_str())
        .laddr(cfg.addr)
        .max_connections(cfg.max_connections)
        .max_handshaking_limit(cfg.max_handshaking_limit)
        .max_packet_size(cfg.max_packet_size.as_u32())
        .backlog(cfg.backlog)
        .nodelay(cfg.nodelay)
        .reuseaddr(cfg.reuseaddr)
        .reuseport(cfg.reuseport)
        .tcp_keepalive(cfg.tcp_keepalive)
        .allow_anonymous(cfg.allow_anonymous)
        .min_keepalive(cfg.min_keepalive)
        .max_keepalive(cfg.max_keepalive)
        .allow_zero_keepalive(cfg.allow_zero_keepalive)
        .keepalive_backoff(cfg.keepalive_backoff)
        .max_inflight(cfg.max_inflight)
        .handshake_timeout(cfg.handshake_timeout)
        .max_mqueue_len(cfg.max_mqueue_len)
        .mqueue_rate_limit(cfg.mqueue_rate_limit.0, cfg.mqueue_rate_limit.1)
        .max_clientid_len(cfg.max_clientid_len)
        .max_qos_allowed(cfg.max_qos_allowed)
        .max_topic_levels(cfg.max_topic_levels)
        .session_expiry_interval(cfg.session_expiry_interval)
        .max_session_expiry_interval(cfg.max_session_expiry_interval)
        .message_retry_interval(cfg.message_retry_interval)
        .message_expiry_interval(cfg.message_expiry_interval)
        .max_subscriptions(cfg.max_subscriptions)
        .max_topic_aliases(cfg.max_topic_aliases)
        .limit_subscription(cfg.limit_subscription)
        .proxy_protocol(cfg.proxy_protocol)
        .proxy_protocol_timeout(cfg.proxy_protocol_timeout)
        .idle_timeout(cfg.idle_timeout)
}

/// The `circuit_breaker` section, in the form rmqtt's gRPC clients take (per peer node).
fn circuit_breaker(conf: &Settings) -> CircuitBreakerConfig {
    let cb = &conf.circuit_breaker;
    let window = match cb.sliding_window_type.as_str() {
        "CountBased" => {
            WindowConfig::CountBased(CountBasedWindowConfig { sliding_window_size: cb.sliding_window_size })
        }
        _ => WindowConfig::TimeBased(TimeBasedWindowConfig {
            sliding_window_duration: cb.sliding_window_duration,
            sliding_window_size: cb.sliding_window_size,
        }),
    };
    CircuitBreakerConfig {
        failure_rate_threshold: cb.failure_rate_threshold,
        window,
        minimum_number_of_calls: cb.minimum_number_of_calls,
        wait_duration_in_open: cb.wait_duration_in_open,
        slow_call_duration_threshold: cb.slow_call_duration_threshold,
        slow_call_rate_threshold: cb.slow_call_rate_threshold,
        name: "grpc".into(),
    }
}

fn level_filter(conf: &Settings) -> LevelFilter {
    if !conf.log.to.console() && !conf.log.to.file() {
        return LevelFilter::Off;
    }
    match conf.log.level {
        Level::Trace => LevelFilter::Trace,
        Level::Debug => LevelFilter::Debug,
        Level::Info => LevelFilter::Info,
        Level::Warn => LevelFilter::Warn,
        Level::Error => LevelFilter::Error,
    }
}

/// Resolves on SIGTERM, SIGINT, or (when asked) stdin EOF.
async fn shutdown(exit_on_stdin_eof: bool) {
    let stdin_eof = async {
        if !exit_on_stdin_eof {
            return std::future::pending().await;
        }
        let mut stdin = tokio::io::stdin();
        let mut buf = [0u8; 256];
        // Anything written is ignored; only EOF (or a read error: the other end is gone) counts.
        while let Ok(n) = stdin.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
        log::info!("stdin closed: the supervisor is gone");
    };
    let term = async {
        match signal(SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                log::warn!("cannot watch SIGTERM: {e}");
                std::future::pending::<()>().await
            }
        }
    };
    tokio::select! {
        _ = stdin_eof => {}
        _ = term => log::info!("SIGTERM"),
        _ = tokio::signal::ctrl_c() => log::info!("SIGINT"),
    }
}
