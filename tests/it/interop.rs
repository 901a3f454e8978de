//! Interop with the real peers: an unchanged NestJS v12 `ClientMqtt` (node), `mosquitto_rr -V 5`, and the
//! `connector-scripts` binary itself (`request`, `serve` on a taken port).

use crate::common::mqtt::{config, serve_embedded, serve_external, serve_with};
use crate::common::{node_dir, Mosquitto, TempCatalog};
use std::process::{Command, Output};

fn nest_client(url: &str, data: &serde_json::Value, emit: bool) -> serde_json::Value {
    let dir = node_dir();
    let mut cmd = Command::new("node");
    cmd.arg(dir.join("nest_client.js")).args(["--url", url, "--data", &data.to_string(), "--timeout-ms", "10000"]);
    if emit {
        cmd.arg("--emit");
    }
    let out = cmd.current_dir(&dir).output().expect("node runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "nest_client failed: {stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

async fn nest_client_async(url: String, data: serde_json::Value, emit: bool) -> serde_json::Value {
    tokio::task::spawn_blocking(move || nest_client(&url, &data, emit)).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nestjs_v12_client_mqtt_gets_the_answer() {
    let catalog = TempCatalog::examples();
    let (running, ports) = serve_embedded(&catalog).await;
    let mosquitto = Mosquitto::start().await;
    // The external service signs: the new fields must not disturb an unchanged NestJS client.
    let keys = tempfile::tempdir().unwrap();
    let pair = connector_scripts::signing::keygen(&keys.path().join("k")).unwrap();
    let signing = ["--signing-key", pair.private.to_str().unwrap()];
    let external = serve_with(config(&catalog, &mosquitto.url(), &signing)).await;
    for url in [format!("mqtt://127.0.0.1:{}", ports.v4), mosquitto.url()] {
        let ok =
            nest_client_async(url.clone(), serde_json::json!({"platform": "ios", "version": "2.4.1"}), false).await;
        assert_eq!(ok["ok"], true, "{url}: {ok}");
        let signed = url == mosquitto.url();
        assert_eq!(ok["response"]["keyId"].as_str() == Some(pair.key_id.as_str()), signed, "{url}: {ok}");
        assert_eq!(ok["response"]["variant"], "current", "{url}: {ok}");
        assert_eq!(ok["response"]["version"], "2.4.1");
        assert!(ok["response"]["connectors"].as_array().unwrap().len() >= 4);
        // Errors reach NestJS as `err`, typed.
        let err =
            nest_client_async(url.clone(), serde_json::json!({"platform": "ios", "version": "nope"}), false).await;
        assert_eq!(err["ok"], false, "{url}: {err}");
        assert_eq!(err["error"]["code"], "INVALID_VERSION", "{url}: {err}");
        assert_eq!(err["error"]["status"], "error");
        // emit() is an event: published, no reply, counted.
        let emitted =
            nest_client_async(url.clone(), serde_json::json!({"platform": "ios", "version": "1"}), true).await;
        assert_eq!(emitted["emitted"], true);
    }
    crate::common::eventually(std::time::Duration::from_secs(10), "both services to count the event", || {
        let a = running.state.metrics.events.get();
        let b = external.state.metrics.events.get();
        (a == 1 && b == 1).then_some(())
    })
    .await;
    running.shutdown().await.unwrap();
    external.shutdown().await.unwrap();
}

fn mosquitto_rr(port: u16, topic: &str, message: &str) -> Output {
    Command::new("mosquitto_rr")
        .args(["-V", "5", "-h", "127.0.0.1", "-p", &port.to_string(), "-t", topic, "-e"])
        .arg(format!("{topic}/reply"))
        .args(["-m", message, "-W", "10"])
        .output()
        .expect("mosquitto_rr must be installed (apt-get install mosquitto-clients)")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mosquitto_rr_v5_works_against_the_service() {
    let catalog = TempCatalog::examples();
    let mosquitto = Mosquitto::start().await;
    let external = serve_external(&catalog, &mosquitto.url()).await;
    let (embedded, ports) = serve_embedded(&catalog).await;
    for port in [mosquitto.port, ports.v5] {
        let out = tokio::task::spawn_blocking(move || {
            mosquitto_rr(port, "getConnectors/rr-device", r#"{"platform":"android","version":"5.1"}"#)
        })
        .await
        .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "port {port}: {stdout} {}", String::from_utf8_lossy(&out.stderr));
        let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"));
        assert_eq!(v["variant"], "current", "{v}");
        assert_eq!(v["platform"], "android");
    }
    external.shutdown().await.unwrap();
    embedded.shutdown().await.unwrap();
}

fn binary() -> Command {
    Command::new(env!("CARGO_BIN_EXE_connector-scripts"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_command_prints_the_reply_and_fails_on_errors() {
    let catalog = TempCatalog::examples();
    let (running, ports) = serve_embedded(&catalog).await;
    let run = |args: Vec<String>| async move {
        tokio::task::spawn_blocking(move || binary().args(args).output().unwrap()).await.unwrap()
    };
    let v4 = format!("mqtt://127.0.0.1:{}", ports.v4);
    let v5 = format!("mqtt://127.0.0.1:{}", ports.v5);
    let args = |extra: &[&str]| -> Vec<String> {
        let mut a: Vec<String> = vec!["request".into()];
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    let out =
        run(args(&["--broker", &v4, "--platform", "ios", "--version", "3.1.0", "--device", "ops-1", "--count", "20"]))
            .await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("reply on getConnectors/ops-1/reply"), "{text}");
    assert!(text.contains("variant next"), "{text}");
    assert!(text.contains("fleet/tracking"), "{text}");
    assert!(text.contains("round trip over 20 requests"), "{text}");
    let revision = text.split("revision ").nth(1).unwrap().split_whitespace().next().unwrap().to_string();

    let out =
        run(args(&["--broker", &v5, "--mqtt5", "--platform", "ios", "--version", "3.1.0", "--revision", &revision]))
            .await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains(&format!("not modified: revision {revision}")), "{text}");

    let out = run(args(&["--broker", &v4, "--platform", "tizen", "--version", "1"])).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("error UNKNOWN_PLATFORM"));

    // Nobody home: a clear timeout, non-zero exit.
    let dead_broker = crate::common::dead_broker();
    let dead = dead_broker.url.clone();
    let out = run(args(&["--broker", &dead, "--platform", "ios", "--version", "1", "--timeout", "2"])).await;
    assert_ne!(out.status.code(), Some(0));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("error:"), "{err}");
    running.shutdown().await.unwrap();
}

#[test]
fn serve_on_a_taken_port_names_the_port_and_the_flag() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let out = binary()
        .args(["serve", "--embedded-listen", &format!("127.0.0.1:{port}")])
        .current_dir(crate::common::repo())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("127.0.0.1:{port} is already in use")), "{err}");
    assert!(err.contains("--embedded-listen 127.0.0.1:"), "{err}");
    assert!(err.contains(&format!("--broker mqtt://127.0.0.1:{port}")), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_count_on_a_device_topic_keeps_under_the_default_rate_limit() {
    // The README's example with --count, against a service with the production rate limit (10/s, burst 30).
    let catalog = TempCatalog::examples();
    let (running, ports) = serve_embedded(&catalog).await;
    let broker = format!("mqtt://127.0.0.1:{}", ports.v4);
    let out = tokio::task::spawn_blocking(move || {
        binary()
            .args(["request", "--broker", &broker, "--platform", "ios", "--version", "3.1.0", "--device", "my-phone"])
            .args(["--count", "45"])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("round trip over 45 requests"), "{stdout}");
    assert_eq!(running.state.metrics.errors_of(connector_scripts::wire::ErrorCode::RateLimited), 0);
    running.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_over_websocket_takes_the_path_a_react_native_app_takes_and_verifies() {
    let catalog = TempCatalog::examples();
    let keys = tempfile::tempdir().unwrap();
    let (private, public, key_id) = crate::signing::keygen(keys.path(), "prod");
    // The embedded broker with its WebSocket listener on a port of the test's own.
    let signing = ["--signing-key".to_string(), private.display().to_string()];
    let (running, ports) = crate::common::mqtt::serve_embedded_with(&catalog, &signing, true).await;
    let ws = ports.ws.expect("a WebSocket port");
    let url = format!("ws://127.0.0.1:{ws}/mqtt");
    let public = public.display().to_string();
    // An Android versionName with a build number, as apps send it.
    let args = ["request", "--broker", &url, "--platform", "ios", "--version", "3.1.0.2", "--device", "rn-phone"];
    let args: Vec<String> = args.iter().map(|s| s.to_string()).chain(["--verify-key".into(), public]).collect();
    let out = tokio::task::spawn_blocking(move || binary().args(args).output().unwrap()).await.unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("variant next") && text.contains("app 3.1.0+2"), "{text}");
    assert!(text.contains(&format!("signature ok (key {key_id})")), "{text}");
    running.shutdown().await.unwrap();
}
