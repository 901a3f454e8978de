//! Operations: health, readiness and metrics over HTTP; liveness on the bus (online, Last Will on SIGKILL);
//! graceful shutdown with requests in flight; the systemd notify protocol; `status`.

use crate::common::mqtt::{config, nest, parse_serve, serve_external, Client, TIMEOUT};
use crate::common::{eventually, free_port, Mosquitto, TempCatalog};
use connector_scripts::app;
use connector_scripts::commands::status::get as http_get;
use connector_scripts::config::{BrokerUrl, ServeConfig};
use serde_json::json;
use std::os::unix::net::UnixDatagram;
use std::process::{Child, Command};
use std::time::Duration;

async fn get(addr: std::net::SocketAddr, path: &str) -> (u16, serde_json::Value) {
    let (code, body) = http_get(&format!("http://{addr}{path}"), TIMEOUT).await.expect("ops endpoint answers");
    (code, serde_json::from_slice(&body).expect("JSON"))
}

async fn metrics_text(addr: std::net::SocketAddr) -> String {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut tx, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await.unwrap();
    tokio::spawn(conn);
    let req = hyper::Request::get("/metrics")
        .header("host", addr.to_string())
        .body(http_body_util::Empty::<hyper::body::Bytes>::new())
        .unwrap();
    let resp = tx.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let body = http_body_util::BodyExt::collect(resp.into_body()).await.unwrap().to_bytes();
    String::from_utf8(body.to_vec()).unwrap()
}

/// The value of one sample line, e.g. `connector_scripts_events_total`.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_readyz_and_metrics_follow_the_traffic() {
    let catalog = TempCatalog::examples();
    let mosquitto = Mosquitto::start().await;
    let r = serve_external(&catalog, &mosquitto.url()).await;
    let http = r.http_addr.unwrap();
    let (code, health) = get(http, "/healthz").await;
    assert_eq!(code, 200);
    assert_eq!(health["alive"], true);
    let (code, ready) = get(http, "/readyz").await;
    assert_eq!(code, 200, "{ready}");
    assert_eq!(ready["ready"], true);
    assert_eq!(ready["broker"]["connected"], true);
    assert_eq!(ready["catalog"]["variants"].as_array().unwrap().len(), 6);
    assert!(ready["catalog"]["variants"][0]["revision"].as_str().unwrap().len() == 16);
    assert!(ready["uptimeSeconds"].as_f64().unwrap() >= 0.0);
    assert!(ready["catalog"]["builtAt"].as_str().unwrap().ends_with('Z'));

    let before = metrics_text(http).await;
    assert_eq!(sample(&before, "connector_scripts_broker_connected"), Some(1.0));
    assert_eq!(sample(&before, "connector_scripts_ready"), Some(1.0));
    assert_eq!(sample(&before, "connector_scripts_variants"), Some(6.0));
    assert_eq!(sample(&before, "connector_scripts_request_duration_seconds_count"), Some(0.0));

    let mut app = Client::v4(mosquitto.port, "app-metrics").await;
    app.subscribe("getConnectors/app-metrics/reply").await;
    for id in ["1", "2", "2"] {
        app.publish("getConnectors/app-metrics", nest(json!({"platform": "ios", "version": "3.0"}), id)).await;
        app.recv().await;
    }
    app.publish("getConnectors/app-metrics", nest(json!({"platform": "bada", "version": "3.0"}), "3")).await;
    app.recv().await;
    app.publish("getConnectors/app-metrics", json!({"pattern": "getConnectors", "data": {}}).to_string()).await;
    eventually(TIMEOUT, "the event to be counted", || (r.state.metrics.events.get() == 1).then_some(())).await;
    let after = metrics_text(http).await;
    let ok = r#"connector_scripts_requests_total{platform="ios",variant="next",result="ok"}"#;
    assert_eq!(sample(&after, ok), Some(3.0), "{after}");
    let unknown = r#"connector_scripts_requests_total{platform="other",variant="",result="UNKNOWN_PLATFORM"}"#;
    assert_eq!(sample(&after, unknown), Some(1.0), "{after}");
    assert_eq!(sample(&after, "connector_scripts_duplicate_requests_total"), Some(1.0), "{after}");
    assert_eq!(sample(&after, "connector_scripts_events_total"), Some(1.0));
    assert_eq!(sample(&after, "connector_scripts_request_duration_seconds_count"), Some(4.0));
    assert!(sample(&after, "connector_scripts_reply_bytes_total").unwrap() > 10_000.0);
    assert_eq!(sample(&after, "connector_scripts_compile_errors"), Some(0.0));
    let (_, ready) = get(http, "/readyz").await;
    assert_eq!(ready["requests"]["byPlatform"]["ios"], 3);
    assert_eq!(ready["requests"]["errors"]["UNKNOWN_PLATFORM"], 1);
    r.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_is_503_with_the_reason_when_the_broker_is_down_or_the_catalog_unusable() {
    // Broker down: nothing listens on the port.
    let catalog = TempCatalog::examples();
    let dead_broker = crate::common::dead_broker();
    let dead = dead_broker.url.clone();
    let r = app::start(config(&catalog, &dead, &[])).await.unwrap();
    let http = r.http_addr.unwrap();
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    let doc = loop {
        let (code, doc) = get(http, "/readyz").await;
        assert_eq!(code, 503);
        let reasons = doc["reasons"].to_string();
        if reasons.contains("connection refused") && doc["catalog"]["loaded"] == true {
            break doc;
        }
        assert!(tokio::time::Instant::now() < deadline, "{doc}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(doc["broker"]["connected"], false);
    assert!(doc["reasons"][0].as_str().unwrap().starts_with("broker not connected"), "{doc}");
    let (code, _) = get(http, "/healthz").await;
    assert_eq!(code, 200, "alive even when not ready");
    assert_eq!(sample(&metrics_text(http).await, "connector_scripts_ready"), Some(0.0));
    r.shutdown().await.unwrap();

    // Catalog unusable: the only platform file is broken.
    let broken = TempCatalog::new();
    broken.platform("ios.toml", "[[variant]]\nname = 'x'\n");
    let mosquitto = Mosquitto::start().await;
    let r = app::start(config(&broken, &mosquitto.url(), &[])).await.unwrap();
    let http = r.http_addr.unwrap();
    eventually(TIMEOUT, "the subscriptions", || r.state.link.subscribed().then_some(())).await;
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        let (code, doc) = get(http, "/readyz").await;
        assert_eq!(code, 503);
        if doc["reasons"].to_string().contains("no usable platform") {
            assert!(doc["catalog"]["errors"].as_u64().unwrap() >= 1);
            assert!(doc["catalog"]["diagnostics"][0]["location"].as_str().unwrap().contains("ios.toml:1:1"), "{doc}");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{doc}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(sample(&metrics_text(http).await, "connector_scripts_compile_errors").unwrap() >= 1.0);
    r.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_answers_every_request_in_flight() {
    let catalog = TempCatalog::examples();
    let mosquitto = Mosquitto::start().await;
    let r = serve_external(&catalog, &mosquitto.url()).await;
    let mut app = Client::v4(mosquitto.port, "app-drain").await;
    app.subscribe("getConnectors/app-drain/reply").await;
    let mut status = Client::v4(mosquitto.port, "watcher").await;
    status.subscribe("connector-scripts/status/+").await;
    assert_eq!(status.recv().await.json()["state"], "online");
    let n = 300;
    for i in 0..n {
        app.publish("getConnectors/app-drain", nest(json!({"platform": "android", "version": "9"}), &i.to_string()))
            .await;
    }
    // Shut down as soon as the first reply is built: the rest are in flight.
    eventually(TIMEOUT, "the first reply", || (r.state.metrics.replies.get() > 0).then_some(())).await;
    let state = r.state.clone();
    tokio::time::timeout(TIMEOUT, r.shutdown()).await.expect("shutdown within the deadline").unwrap();
    // Every reply the service built before it stopped reaches the app, and each is a real bundle.
    let built = state.metrics.replies.get();
    for answered in 0..built {
        let got = app.try_recv_within(TIMEOUT).await;
        let got = got.unwrap_or_else(|| panic!("only {answered} of {built} replies in flight arrived"));
        assert_eq!(got.json()["response"]["platform"], "android", "{}", got.json());
    }
    assert!(built > 0);
    // A clean shutdown says offline itself.
    let offline = status.try_recv_within(TIMEOUT).await.expect("offline status after a clean shutdown");
    assert_eq!(offline.json()["state"], "offline");
}

fn spawn_serve(broker: &str, catalog: &TempCatalog, http_port: u16, envs: &[(&str, String)]) -> Child {
    let http = format!("127.0.0.1:{http_port}");
    let args = ["--broker", broker, "--keep-alive", "5", "--instance", "svc-under-test", "--http-listen", &http];
    crate::common::spawn_service(catalog, &args, envs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_makes_the_broker_publish_offline() {
    let catalog = TempCatalog::examples();
    let mosquitto = Mosquitto::start().await;
    let mut watcher = Client::v4(mosquitto.port, "ops-watcher").await;
    watcher.subscribe("connector-scripts/status/svc-under-test").await;
    let mut child = spawn_serve(&mosquitto.url(), &catalog, free_port(), &[]);
    let online = watcher.recv().await.json();
    assert_eq!(online["state"], "online");
    assert_eq!(online["instance"], "svc-under-test");
    assert!(online["startedAt"].is_string() && online["version"].is_string());
    child.kill().unwrap(); // SIGKILL: no chance to say goodbye
    child.wait().unwrap();
    let offline = watcher.recv().await.json();
    assert_eq!(offline["state"], "offline", "the Last Will was not delivered");
    // Retained: whoever looks later sees it too.
    let mut late = Client::v4(mosquitto.port, "late-watcher").await;
    late.subscribe("connector-scripts/status/+").await;
    assert_eq!(late.recv().await.json()["state"], "offline");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn systemd_notify_ready_watchdog_and_stopping() {
    use std::os::unix::net::UnixDatagram;
    let catalog = TempCatalog::examples();
    let mosquitto = Mosquitto::start().await;
    let dir = tempfile::tempdir().unwrap();
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket.set_read_timeout(Some(TIMEOUT)).unwrap();
    let envs = [("NOTIFY_SOCKET", socket_path.display().to_string()), ("WATCHDOG_USEC", "200000".to_string())];
    let mut child = spawn_serve(&mosquitto.url(), &catalog, free_port(), &envs);
    let mut seen = String::new();
    let mut buf = [0u8; 512];
    while !(seen.contains("READY=1") && seen.matches("WATCHDOG=1").count() >= 3) {
        let n = socket.recv(&mut buf).expect("a notification before the timeout");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        seen.push('\n');
    }
    let ready_at = seen.find("READY=1").unwrap();
    assert!(seen[..ready_at].lines().all(|l| !l.starts_with("READY")), "{seen}");
    assert!(seen.contains("STATUS=serving 6 variants"), "{seen}");
    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    loop {
        let n = socket.recv(&mut buf).expect("STOPPING=1 before the timeout");
        if String::from_utf8_lossy(&buf[..n]).contains("STOPPING=1") {
            break;
        }
    }
    assert!(child.wait().unwrap().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_command_says_why_the_service_is_not_ready() {
    let catalog = TempCatalog::examples();
    let http_port = free_port();
    let dead_broker = crate::common::dead_broker();
    let dead = dead_broker.url.clone();
    let mut child = spawn_serve(&dead, &catalog, http_port, &[]);
    let status = move || {
        Command::new(env!("CARGO_BIN_EXE_connector-scripts"))
            .args(["status", "--interval", "0", "--http", &format!("http://127.0.0.1:{http_port}")])
            .output()
            .unwrap()
    };
    let out = eventually(TIMEOUT, "status to report the broker", || {
        let out = status();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        (text.contains("connection refused") && text.contains("catalog  built")).then_some((out.status.code(), text))
    })
    .await;
    child.kill().unwrap();
    child.wait().unwrap();
    let (code, text) = out;
    assert_eq!(code, Some(1), "{text}");
    assert!(text.starts_with("NOT READY"), "{text}");
    assert!(text.contains("why: broker not connected"), "{text}");
    assert!(text.contains("DISCONNECTED"), "{text}");
    // Nobody listening at all: exit 2.
    let out = Command::new(env!("CARGO_BIN_EXE_connector-scripts"))
        .args(["status", "--http", &format!("http://127.0.0.1:{}", free_port())])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("UNREACHABLE"));
}

#[test]
fn tests_run_the_production_defaults() {
    // The configuration every in-process test service gets, against the CLI's default: equal apart from the
    // directories, the broker address, the ops port and the identity (one pid for all services in this process).
    let catalog = TempCatalog::examples();
    let dirs = TempCatalog::new().sources();
    let blank = |mut c: ServeConfig| {
        c.catalog = dirs.clone();
        let x = connector_scripts::config::BrokerList::one(BrokerUrl::parse("mqtt://x:1").unwrap());
        c.mqtt.broker = connector_scripts::config::BrokerChoice::External(x);
        c.mqtt.client_id.clear();
        c.ops.http_listen = None;
        c.ops.instance.clear();
        c
    };
    let production = blank(parse_serve::<&str>(&[]));
    let tests = blank(config(&catalog, "mqtt://127.0.0.1:1", &[]));
    assert_eq!(tests, production);
    assert!(
        production.limits.rate_limits.device.is_some()
            && production.limits.rate_limits.global.is_some()
            && production.reload.watch,
        "the production defaults are on"
    );
}

/// Spawns the binary with a systemd notify socket; returns the child and the socket.
fn spawn_notified(
    catalog: &TempCatalog,
    broker: &str,
    http_port: u16,
    extra: &[&str],
) -> (Child, UnixDatagram, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket.set_read_timeout(Some(TIMEOUT)).unwrap();
    let http = format!("127.0.0.1:{http_port}");
    let mut args = vec!["--broker", broker, "--http-listen", &http];
    args.extend(extra);
    let child = crate::common::spawn_service(catalog, &args, &[("NOTIFY_SOCKET", socket_path.display().to_string())]);
    (child, socket, dir)
}

/// Reads notifications until one contains `needle`; returns everything read.
fn notifications_until(socket: &UnixDatagram, needle: &str) -> String {
    let mut seen = String::new();
    let mut buf = [0u8; 1024];
    while !seen.contains(needle) {
        let n = socket.recv(&mut buf).unwrap_or_else(|e| panic!("{needle} not notified ({e}); got:\n{seen}"));
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        seen.push('\n');
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_no_platform_loaded_neither_systemd_nor_readyz_says_ready() {
    let broken = TempCatalog::new();
    broken.platform("ios.toml", "this is not toml [");
    let mosquitto = Mosquitto::start().await;
    let http_port = free_port();
    let (mut child, socket, _dir) = spawn_notified(&broken, &mosquitto.url(), http_port, &[]);
    // The one readiness function reports its reasons to systemd instead of READY=1; once the broker side is up
    // only the catalog reason is left, and that is what /readyz says too.
    let seen = notifications_until(&socket, "STATUS=not ready: catalog has no usable platform");
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], http_port).into();
    let doc = eventually(TIMEOUT, "/readyz to report only the catalog reason", || {
        let doc = futures_lite_block(get(addr, "/readyz"));
        (doc.1["reasons"].as_array().map(Vec::len) == Some(1)).then_some(doc)
    })
    .await;
    assert_eq!(doc.0, 503, "{}", doc.1);
    assert!(doc.1["reasons"][0].as_str().unwrap().contains("no usable platform"), "{}", doc.1);
    assert!(!seen.contains("READY=1"), "{seen}");
    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    let rest = notifications_until(&socket, "STOPPING=1");
    assert!(!rest.contains("READY=1"), "READY=1 was sent for a service that never was ready:\n{rest}");
    assert!(child.wait().unwrap().success());
}

/// Runs an async request from a sync predicate (the service under test is another process).
fn futures_lite_block<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(f))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_exits_0_within_the_drain_deadline_with_every_task_running() {
    let catalog = TempCatalog::examples();
    let mosquitto = Mosquitto::start().await;
    let http_port = free_port();
    // Watcher on (the default), SIGHUP handler, HTTP listener, MQTT: every task is running when SIGTERM comes.
    let (mut child, socket, _dir) = spawn_notified(&catalog, &mosquitto.url(), http_port, &["--drain-timeout", "2"]);
    notifications_until(&socket, "READY=1");
    let (code, _) = get(([127, 0, 0, 1], http_port).into(), "/readyz").await;
    assert_eq!(code, 200);
    let stopped = std::time::Instant::now();
    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    let status = eventually(TIMEOUT, "the process to exit", || child.try_wait().ok().flatten()).await;
    assert!(status.success(), "{status}");
    // Drain deadline (2 s) plus the grace the other tasks get (2 s): the tracker waited for all of them.
    assert!(stopped.elapsed() < Duration::from_secs(4), "took {:?}", stopped.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_before_ready_exits_0_without_a_panic() {
    let catalog = TempCatalog::examples();
    let dead_broker = crate::common::dead_broker();
    let dead = dead_broker.url.clone();
    let http_port = free_port();
    let (mut child, socket, _dir) = spawn_notified(&catalog, &dead, http_port, &[]);
    notifications_until(&socket, "STATUS=not ready");
    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    let status = eventually(TIMEOUT, "the process to exit", || child.try_wait().ok().flatten()).await;
    assert_eq!(status.code(), Some(0), "a stop before ready must not panic (exit 101)");
}
