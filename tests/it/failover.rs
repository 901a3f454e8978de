//! Several broker addresses (`--broker a,b` or the flag repeated): the service moves to the next node when its
//! node dies and comes back when that one dies in turn; `request` and the operator commands use the first node
//! that answers; a bad list is a one-line error naming the entry.

use crate::common::mqtt::{nest, serve_external, Client, TIMEOUT};
use crate::common::{eventually, free_port, Mosquitto, TempCatalog};
use connector_scripts::catalog::bundle::sha256_hex;
use connector_scripts::ops::status::StatusDoc;
use connector_scripts::state::State;
use serde_json::json;
use std::process::Command;
use std::time::Duration;

/// Asks as a phone on `port` would (NestJS envelope, per-device topic), retrying every second as the docs
/// recommend, and checks what comes back: the ios 3.1.0 variant with every script matching its hash.
async fn ask_and_check(port: u16, device: &str) {
    let mut app = Client::v4(port, device).await;
    app.subscribe(&format!("getConnectors/{device}/reply")).await;
    let request = nest(json!({"platform": "ios", "version": "3.1.0"}), device);
    for _ in 0..10 {
        app.publish(&format!("getConnectors/{device}"), request.clone()).await;
        let Some(reply) = app.try_recv_within(Duration::from_secs(1)).await else { continue };
        let v = reply.json();
        assert_eq!(v["id"], device, "{v}");
        let r = &v["response"];
        assert_eq!((r["platform"].as_str(), r["variant"].as_str()), (Some("ios"), Some("next")), "{v}");
        let scripts = r["connectors"].as_array().expect("connectors");
        assert!(!scripts.is_empty(), "{v}");
        for c in scripts {
            assert_eq!(c["sha256"].as_str(), Some(sha256_hex(c["code"].as_str().unwrap().as_bytes()).as_str()));
        }
        return;
    }
    panic!("{device} on port {port} got no reply in 10 tries");
}

/// Waits until the service is connected, subscribed and answering through `url`.
async fn on_node(state: &State, url: &str) -> StatusDoc {
    eventually(TIMEOUT, &format!("the service to be ready on {url}"), || {
        let doc = StatusDoc::of(state);
        (doc.ready && doc.broker.url == url && doc.broker.connected).then_some(doc)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_brokers_fail_over_when_the_first_dies_and_come_back_when_the_second_dies() {
    let catalog = TempCatalog::examples();
    let mut first = Mosquitto::start().await;
    let mut second = Mosquitto::start().await;
    let running = serve_external(&catalog, &format!("{},{}", first.url(), second.url())).await;
    let state = running.state.clone();
    let doc = on_node(&state, &first.url()).await;
    assert_eq!(doc.broker.nodes, [first.url(), second.url()]);
    ask_and_check(first.port, "phone-1").await;

    first.kill();
    on_node(&state, &second.url()).await;
    ask_and_check(second.port, "phone-2").await;

    first.start_again().await;
    second.kill();
    on_node(&state, &first.url()).await;
    ask_and_check(first.port, "phone-3").await;

    let metrics = connector_scripts::ops::metrics_text(&state);
    let failovers = metrics
        .lines()
        .find_map(|l| l.strip_prefix("connector_scripts_broker_failovers_total "))
        .and_then(|n| n.parse::<u64>().ok())
        .expect("the failover counter");
    assert!(failovers >= 2, "{metrics}");
    let node = format!("connector_scripts_broker_node{{url=\"{}\"}} 1", first.url());
    assert!(metrics.contains(&node), "{metrics}");
    running.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_flag_repeated_is_a_list_and_request_uses_the_first_node_that_answers() {
    let catalog = TempCatalog::examples();
    let broker = Mosquitto::start().await;
    let dead = format!("mqtt://127.0.0.1:{}", free_port());
    // The service is told about a dead node first, with the flag repeated: it moves on by itself.
    let cfg = crate::common::mqtt::parse_serve(&crate::common::mqtt::test_flags(
        &catalog,
        &["--broker".into(), dead.clone(), "--broker".into(), broker.url()],
    ));
    let running = crate::common::mqtt::serve_with(cfg).await;
    on_node(&running.state, &broker.url()).await;
    let out = Command::new(env!("CARGO_BIN_EXE_connector-scripts"))
        .args(["request", "--broker", &format!("{dead},{}", broker.url())])
        .args(["--platform", "ios", "--version", "3.1.0", "--device", "cli-phone", "--json"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    let reply: serde_json::Value = serde_json::from_str(stdout.lines().next().unwrap()).unwrap();
    assert_eq!(reply["variant"], "next", "{reply}");
    // The operator commands too: past the dead node, the live one says there is no release state (auto mode).
    let out = Command::new(env!("CARGO_BIN_EXE_connector-scripts"))
        .args(["releases", "--broker", &dead, "--broker", &broker.url()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no release state on the broker"), "{stderr}");
    // No node answers: every node's failure is said.
    let out = Command::new(env!("CARGO_BIN_EXE_connector-scripts"))
        .args(["request", "--broker", &format!("{dead},{dead}0"), "--platform", "ios", "--version", "3.1.0"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains(&dead) && stderr.contains(&format!("{dead}0")), "{stderr}");
    running.shutdown().await.unwrap();
}

#[test]
fn bad_broker_lists_are_one_line_errors_naming_the_entry() {
    let dir = tempfile::tempdir().unwrap();
    let missing_ca = dir.path().join("no-such-ca.pem");
    let ca = missing_ca.display().to_string();
    let cases: [(&[&str], &[&str]); 7] = [
        (&["serve", "--broker", ""], &["--broker", "empty list"]),
        (&["serve", "--broker", "mqtt://a:1883,,mqtt://b:1883"], &["entry 2 of 3", "empty entry"]),
        (&["serve", "--broker", "mqtt://a:1883,mqtt://b:x"], &["entry 2 of 2", "mqtt://b:x", "port must be"]),
        (&["serve", "--broker", "mqtt://a:1883", "--broker", "http://b"], &["entry 2 of 2", "unknown scheme"]),
        (
            &["serve", "--broker", "mqtt://a:1883,mqtts://b:8883", "--tls-ca", &ca],
            &["entry 2 of 2", "mqtts://b:8883", "--tls-ca", "no-such-ca.pem"],
        ),
        (
            &["request", "--broker", "mqtt://a,mqtt://svc:pw@b", "--platform", "ios", "--version", "1"],
            &["entry 2 of 2", "password"],
        ),
        (&["releases", "--broker", "mqtt://a:1,mqtt://a:1"], &["entry 2 of 2", "listed twice"]),
    ];
    for (args, needles) in cases {
        let out = Command::new(env!("CARGO_BIN_EXE_connector-scripts"))
            .args(args)
            .env_remove("CONNECTOR_SCRIPTS_BROKER")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} must fail");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{args:?}: one line, got {stderr}");
        for needle in needles {
            assert!(stderr.contains(needle), "{args:?}: {needle:?} not in {stderr}");
        }
        assert!(!stderr.contains(":pw@"), "{stderr}");
    }
}
