//! getConnectors over real MQTT: the embedded broker and a Mosquitto started by the test, NestJS envelopes,
//! per-device reply topics, MQTT 5 request/response, not-modified, typed errors, events.

use crate::common::mqtt::{config, nest, serve_embedded, serve_external, Client, Ports, TIMEOUT};
use crate::common::{eventually, Mosquitto, TempCatalog};
use connector_scripts::state::State;
use connector_scripts::wire::ErrorCode;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

/// Runs `f` against both brokers: the embedded one and a test-owned Mosquitto.
async fn on_both_brokers<F, Fut>(f: F)
where
    F: Fn(Ports, Arc<State>) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let catalog = TempCatalog::examples();
    let (running, ports) = serve_embedded(&catalog).await;
    f(ports, running.state.clone()).await;
    running.shutdown().await.unwrap();

    let mosquitto = Mosquitto::start().await;
    let running = serve_external(&catalog, &mosquitto.url()).await;
    f(Ports { v4: mosquitto.port, v5: mosquitto.port, ws: None }, running.state.clone()).await;
    running.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nest_envelope_round_trip() {
    on_both_brokers(|ports, _| async move {
        let mut app = Client::v4(ports.v4, "app-1").await;
        app.subscribe("getConnectors/reply").await;
        app.publish("getConnectors", nest(json!({"platform": "ios", "version": "3.1.0"}), "req-1")).await;
        let reply = app.recv().await;
        assert_eq!(reply.topic, "getConnectors/reply");
        let v = reply.json();
        assert_eq!(v["id"], "req-1");
        assert_eq!(v["isDisposed"], true);
        let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
        assert_eq!(keys.len(), 3, "only response, isDisposed, id: {keys:?}");
        let r = &v["response"];
        assert_eq!(
            (r["platform"].as_str(), r["version"].as_str(), r["variant"].as_str()),
            (Some("ios"), Some("3.1.0"), Some("next"))
        );
        assert_eq!(r["revision"].as_str().unwrap().len(), 16);
        let names: Vec<&str> =
            r["connectors"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
        assert!(names.contains(&"fleet/tracking"), "{names:?}");
        for c in r["connectors"].as_array().unwrap() {
            let code = c["code"].as_str().unwrap();
            assert_eq!(c["sha256"].as_str().unwrap(), connector_scripts::catalog::bundle::sha256_hex(code.as_bytes()));
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_device_reply_topics_isolate_devices() {
    on_both_brokers(|ports, _| async move {
        let mut a = Client::v4(ports.v4, "device-a").await;
        let mut b = Client::v4(ports.v4, "device-b").await;
        a.subscribe("getConnectors/device-a/reply").await;
        b.subscribe("getConnectors/device-b/reply").await;
        // B asks several times first; then A asks once. A's first (and only) message must be its own reply.
        for i in 0..5 {
            b.publish("getConnectors/device-b", nest(json!({"platform": "android", "version": "9"}), &format!("b{i}")))
                .await;
        }
        a.publish("getConnectors/device-a", nest(json!({"platform": "ios", "version": "1.0"}), "a0")).await;
        let mine = a.recv().await;
        assert_eq!(mine.topic, "getConnectors/device-a/reply");
        assert_eq!(mine.json()["id"], "a0");
        assert_eq!(mine.json()["response"]["variant"], "legacy");
        for i in 0..5 {
            let m = b.recv().await;
            assert_eq!(m.topic, "getConnectors/device-b/reply");
            assert_eq!(m.json()["id"], format!("b{i}"));
        }
        // Why 200 ms is enough: B's reply was already delivered to B (received above) through the same broker,
        // which fans a publish out to all its subscribers at once; a copy for A would have arrived with it.
        assert!(a.try_recv_within(Duration::from_millis(200)).await.is_none(), "device A saw someone else's reply");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt5_response_topic_and_correlation_data() {
    on_both_brokers(|ports, _| async move {
        let mut app = Client::v5(ports.v5, "app-v5").await;
        app.subscribe("replies/app-v5/#").await;
        let body = json!({"platform": "android", "version": "8.0.1"}).to_string();
        app.publish_rr("getConnectors/app-v5", body.clone(), "replies/app-v5/x", b"corr-1").await;
        let reply = app.recv().await;
        assert_eq!(reply.topic, "replies/app-v5/x");
        assert_eq!(reply.correlation.as_deref(), Some(&b"corr-1"[..]));
        let v = reply.json();
        // A bare request gets a bare reply: no envelope.
        assert!(v.get("response").is_none() && v.get("id").is_none(), "{v}");
        assert_eq!(v["variant"], "modern");
        assert!(v["connectors"][0]["sourceMap"].is_string(), "modern android variant ships source maps");
        // Errors are bare too, and keep the correlation data.
        app.publish_rr(
            "getConnectors/app-v5",
            json!({"platform": "ios", "version": "x.y"}).to_string(),
            "replies/app-v5/y",
            b"corr-2",
        )
        .await;
        let err = app.recv().await;
        assert_eq!(err.correlation.as_deref(), Some(&b"corr-2"[..]));
        assert_eq!(err.json()["err"]["code"], "INVALID_VERSION");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_modified_and_connector_subsets() {
    on_both_brokers(|ports, _| async move {
        let mut app = Client::v4(ports.v4, "app-nm").await;
        app.subscribe("getConnectors/app-nm/reply").await;
        let ask = |data: serde_json::Value, id: &str| nest(data, id);
        app.publish("getConnectors/app-nm", ask(json!({"platform": "ios", "version": "2.4.1"}), "1")).await;
        let full = app.recv().await;
        let revision = full.json()["response"]["revision"].as_str().unwrap().to_string();
        app.publish(
            "getConnectors/app-nm",
            ask(json!({"platform": "ios", "version": "2.4.1", "revision": revision}), "2"),
        )
        .await;
        let nm = app.recv().await;
        assert_eq!(nm.json()["response"], json!({"revision": revision, "notModified": true}));
        assert!(nm.payload.len() < 100, "not-modified reply is {} bytes", nm.payload.len());
        assert!(full.payload.len() > 20 * nm.payload.len());
        // A stale revision gets the bundle.
        app.publish(
            "getConnectors/app-nm",
            ask(json!({"platform": "ios", "version": "2.4.1", "revision": "0000"}), "3"),
        )
        .await;
        assert_eq!(app.recv().await.json()["response"]["revision"], revision.as_str());
        // Only the connectors asked for.
        app.publish(
            "getConnectors/app-nm",
            ask(json!({"platform": "ios", "version": "2.4.1", "connectors": ["smart-home/thermostat"]}), "4"),
        )
        .await;
        let subset = app.recv().await.json();
        let names: Vec<&str> =
            subset["response"]["connectors"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["smart-home/thermostat"]);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_typed_error() {
    on_both_brokers(|ports, _| async move {
        let mut app = Client::v4(ports.v4, "app-err").await;
        app.subscribe("getConnectors/app-err/reply").await;
        let cases: Vec<(String, &str, &str)> = vec![
            (
                r#"{"pattern":"getConnectors","data":{"platform":7,"version":"1"},"id":"e1"}"#.into(),
                "BAD_REQUEST",
                "request data",
            ),
            (r#"{"pattern":"getConnectors","data":{"platform":"ios"},"id":"e2"}"#.into(), "BAD_REQUEST", "version"),
            (
                nest(json!({"platform": "ios", "version": "1", "pad": "x".repeat(70_000)}), "e3"),
                "BAD_REQUEST",
                "byte limit",
            ),
            (nest(json!({"platform": "windows", "version": "1"}), "e4"), "UNKNOWN_PLATFORM", "android, ios"),
            (nest(json!({"platform": "ios", "version": "banana"}), "e5"), "INVALID_VERSION", "expected MAJOR"),
            (
                nest(json!({"platform": "ios", "version": "1", "connectors": ["nope"]}), "e6"),
                "UNKNOWN_CONNECTOR",
                "nope",
            ),
        ];
        for (payload, code, needle) in &cases {
            app.publish("getConnectors/app-err", payload.clone()).await;
            let v = app.recv().await.json();
            assert_eq!(v["err"]["status"], "error", "{v}");
            assert_eq!(v["err"]["code"], *code, "{v}");
            assert!(v["err"]["message"].as_str().unwrap().contains(needle), "{v}");
            assert_eq!(v["isDisposed"], true);
            assert!(v.get("response").is_none());
        }
        let v_unknown = {
            app.publish("getConnectors/app-err", nest(json!({"platform": "windows", "version": "1"}), "e7")).await;
            app.recv().await.json()
        };
        assert_eq!(v_unknown["err"]["known"], json!(["android", "ios"]));
    })
    .await;

    let mosquitto = Mosquitto::start().await;
    let mut app = Client::v4(mosquitto.port, "app-err").await;
    app.subscribe("getConnectors/app-err/reply").await;

    // NO_VARIANT: a platform whose ranges leave a gap.
    let gap = TempCatalog::new();
    gap.platform("ios.toml", "[[variant]]\nname='only2'\nversions='>=2, <3'\ntarget='es2020'\n");
    gap.snippet("a.ts", "export const a = 1;\n");
    let running = serve_external(&gap, &mosquitto.url()).await;
    app.publish("getConnectors/app-err", nest(json!({"platform": "ios", "version": "5.0"}), "e8")).await;
    let v = app.recv().await.json();
    assert_eq!(v["err"]["code"], "NO_VARIANT", "{v}");
    assert!(v["err"]["message"].as_str().unwrap().contains("only2: >=2, <3"), "{v}");
    running.shutdown().await.unwrap();

    // NOT_READY: no platform could be loaded.
    let broken = TempCatalog::new();
    broken.platform("ios.toml", "this is not toml [");
    // Never ready (no usable platform): wait for the catalog and the subscriptions instead.
    let running = connector_scripts::app::start(config(&broken, &mosquitto.url(), &[])).await.unwrap();
    let state = running.state.clone();
    eventually(TIMEOUT, "catalog and subscriptions", || (state.has_catalog() && state.link.subscribed()).then_some(()))
        .await;
    app.publish("getConnectors/app-err", nest(json!({"platform": "ios", "version": "1"}), "e9")).await;
    let v = app.recv().await.json();
    assert_eq!(v["err"]["code"], "NOT_READY", "{v}");
    assert_eq!(running.state.metrics.errors_of(ErrorCode::NotReady), 1);
    running.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_and_garbage_get_no_reply_and_are_counted() {
    on_both_brokers(|ports, service| async move {
        let mut app = Client::v4(ports.v4, "app-ev").await;
        app.subscribe("getConnectors/app-ev/reply").await;
        // NestJS emit() (no id), an external payload (no pattern, no data), garbage, a foreign reply topic.
        let event = json!({"pattern": "getConnectors", "data": {"platform": "ios", "version": "1"}});
        app.publish("getConnectors/app-ev", event.to_string()).await;
        app.publish("getConnectors/app-ev", json!({"platform": "ios", "version": "1"}).to_string()).await;
        app.publish("getConnectors/app-ev", b"\x00\x01 not json".to_vec()).await;
        app.publish("getConnectors/reply", nest(json!({"platform": "ios", "version": "1"}), "loop")).await;
        app.publish("getConnectors/app-ev", nest(json!({"platform": "ios", "version": "1"}), "real")).await;
        let first = app.recv().await;
        assert_eq!(first.json()["id"], "real", "the events and garbage got a reply");
        let m = &service.metrics;
        assert_eq!((m.events.get(), m.dropped.get(), m.replies.get()), (2, 1, 1));
    })
    .await;
}

/// Every connection the embedded broker accepted in this process, with its TCP_NODELAY setting.
fn accepted_nodelay(port: u16) -> Vec<bool> {
    use std::os::fd::{BorrowedFd, RawFd};
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc/self/fd").unwrap().flatten() {
        let Some(fd) = entry.file_name().to_str().and_then(|n| n.parse::<RawFd>().ok()) else { continue };
        if !std::fs::read_link(entry.path()).is_ok_and(|l| l.to_string_lossy().starts_with("socket:")) {
            continue;
        }
        // SAFETY: listed in /proc/self/fd, borrowed only for these calls.
        let fd = unsafe { BorrowedFd::borrow_raw(fd) };
        let sock = socket2::SockRef::from(&fd);
        let local = sock.local_addr().ok().and_then(|a| a.as_socket());
        if local.is_some_and(|a| a.port() == port) && !sock.is_listener().unwrap_or(true) {
            out.push(sock.tcp_nodelay().unwrap_or(false));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_broker_sends_without_nagle_delay() {
    // A 15 KB reply behind Nagle + delayed ACK waits ~40 ms; rumqttd does not set TCP_NODELAY itself.
    let catalog = TempCatalog::examples();
    let (running, ports) = serve_embedded(&catalog).await;
    let mut app = Client::v4(ports.v4, "nagle-check").await;
    app.subscribe("getConnectors/nagle-check/reply").await;
    let flags = accepted_nodelay(ports.v4);
    assert!(!flags.is_empty(), "no accepted connection found on port {}", ports.v4);
    assert!(flags.iter().all(|on| *on), "TCP_NODELAY off on an accepted connection: {flags:?}");
    assert!(accepted_nodelay(ports.v5).iter().all(|on| *on));
    running.shutdown().await.unwrap();
}

/// A catalog with one variant whose full reply is ~600 KB and a small second connector.
fn oversized_catalog() -> TempCatalog {
    let t = TempCatalog::new();
    t.platform("ios.toml", "[[variant]]\nname = 'all'\nversions = '*'\ntarget = 'es2020'\n");
    t.snippet("huge.ts", format!("export const blob: string = '{}';\n", "x".repeat(600_000)));
    t.snippet("small.ts", "export const small = 1;\n");
    t
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_over_the_broker_limit_is_a_typed_error_not_a_lost_connection() {
    let catalog = oversized_catalog();
    // The old system's runbook limit; Mosquitto announces it as Maximum Packet Size in CONNACK.
    let mosquitto = Mosquitto::start_with("allow_anonymous true\nmax_packet_size 524288\n").await;
    let running = serve_external(&catalog, &mosquitto.url()).await;
    let mut app = Client::v4_with(mosquitto.port, "app-big", |_| {}).await;
    app.subscribe("getConnectors/app-big/reply").await;
    for round in 0..2 {
        app.publish("getConnectors/app-big", nest(json!({"platform": "ios", "version": "1"}), &format!("all{round}")))
            .await;
        let v = app.recv().await.json();
        assert_eq!(v["err"]["code"], "REPLY_TOO_LARGE", "{v}");
        let message = v["err"]["message"].as_str().unwrap();
        assert!(message.contains("524288") && message.contains("connectors: [...]"), "{message}");
        // The subset still comes, on the same connection.
        let subset = json!({"platform": "ios", "version": "1", "connectors": ["small"]});
        app.publish("getConnectors/app-big", nest(subset, &format!("small{round}"))).await;
        let v = app.recv().await.json();
        assert_eq!(v["response"]["connectors"][0]["name"], "small", "{v}");
    }
    assert_eq!(running.state.metrics.reconnects.get(), 0, "the service lost its connection");
    assert_eq!(running.state.metrics.errors_of(ErrorCode::ReplyTooLarge), 2);
    running.shutdown().await.unwrap();
}

#[test]
fn check_warns_when_a_full_reply_exceeds_the_reply_limit() {
    let catalog = oversized_catalog();
    let check = |extra: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_connector-scripts"))
            .arg("check")
            .arg("--snippets")
            .arg(catalog.snippets())
            .arg("--platforms")
            .arg(catalog.platforms())
            .args(extra)
            .output()
            .unwrap()
    };
    let out = check(&["--max-reply-size", "524288"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("warning[reply-too-large]") && text.contains("ios/all"), "{text}");
    assert_eq!(out.status.code(), Some(0), "a warning alone passes");
    assert_eq!(check(&["--max-reply-size", "524288", "--deny-warnings"]).status.code(), Some(1));
    let default = check(&[]);
    assert!(!String::from_utf8_lossy(&default.stdout).contains("reply-too-large"));
}
