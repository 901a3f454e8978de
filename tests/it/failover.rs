//! Several broker addresses (`--broker a,b` or the flag repeated): the service moves to the next node when its
//! node dies and comes back when that one dies in turn; `request` and the operator commands use the first node
//! that answers; a bad list is a one-line error naming the entry.

use crate::common::mqtt::{answered, checked_ios_next, nest, serve_external, Client, TIMEOUT};
use crate::common::{dead_broker, eventually, Mosquitto, TempCatalog};
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
        assert_eq!(checked_ios_next(&reply.json()), device);
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
    let ops = running.http_addr.expect("an ops listener");
    let out = Command::new(env!("CARGO_BIN_EXE_connector-scripts"))
        .args(["status", "--interval", "0", "--http", &format!("http://{ops}")])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(&format!("broker   {} (node 2 of 2)  connected", second.url())), "{text}");

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
    let first_dead = dead_broker();
    let dead = first_dead.url.clone();
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
    let other_dead = dead_broker();
    let out = Command::new(env!("CARGO_BIN_EXE_connector-scripts"))
        .args(["request", "--broker", &format!("{dead},{}", other_dead.url), "--platform", "ios", "--version", "3.1.0"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("no broker node accepted the connection"), "{stderr}");
    assert!(stderr.contains(&dead) && stderr.contains(&other_dead.url), "{stderr}");
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

/// A TCP proxy in front of a broker that can stop passing what its clients send (a node that hangs: requests
/// still reach them, nothing they publish gets through) and then cut every connection and refuse new ones (the
/// node dies).
struct Proxy {
    port: u16,
    frozen: tokio::sync::watch::Sender<bool>,
    cut: tokio_util::sync::CancellationToken,
}

impl Proxy {
    async fn start(upstream: u16) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let frozen = tokio::sync::watch::channel(false).0;
        let cut = tokio_util::sync::CancellationToken::new();
        let (f, c) = (frozen.clone(), cut.clone());
        tokio::spawn(async move {
            loop {
                let (client, _) = tokio::select! {
                    _ = c.cancelled() => return,
                    a = listener.accept() => a.unwrap(),
                };
                let server = tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await.unwrap();
                let (mut cr, mut cw) = client.into_split();
                let (mut sr, mut sw) = server.into_split();
                let (c1, c2, mut frozen) = (c.clone(), c.clone(), f.subscribe());
                tokio::spawn(async move {
                    tokio::select! {
                        _ = c1.cancelled() => {}
                        _ = tokio::io::copy(&mut sr, &mut cw) => {}
                    }
                });
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 16 << 10];
                    let pass = async {
                        loop {
                            // While frozen, nothing is read from the client: its socket buffers fill up. A read
                            // waiting when the proxy freezes is abandoned (cancel-safe: it has taken nothing).
                            frozen.wait_for(|f| !f).await.unwrap();
                            let n = tokio::select! {
                                n = tokio::io::AsyncReadExt::read(&mut cr, &mut buf) => n.unwrap_or(0),
                                _ = frozen.wait_for(|f| *f) => continue,
                            };
                            if n == 0 || tokio::io::AsyncWriteExt::write_all(&mut sw, &buf[..n]).await.is_err() {
                                return;
                            }
                        }
                    };
                    tokio::select! {
                        _ = c2.cancelled() => {}
                        _ = pass => {}
                    }
                });
            }
        });
        Proxy { port, frozen, cut }
    }

    fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_not_delivered_when_a_node_dies_are_sent_through_the_next_node() {
    // The service answers QoS 1 requests while its node no longer takes anything from it, then the node dies:
    // every reply it had not delivered goes out through the next node, although that one starts a new session
    // (rumqttc alone drops them then: `connection::Unsent`).
    let catalog = TempCatalog::examples();
    // Mosquitto sends a client 20 unacknowledged QoS 1 messages at most by default; the hung node gets no PUBACK.
    let first = Mosquitto::start_with("allow_anonymous true\nmax_inflight_messages 1000\n").await;
    let second = Mosquitto::start().await;
    let proxy = Proxy::start(first.port).await;
    let running = serve_external(&catalog, &format!("{},{}", proxy.url(), second.url())).await;
    let state = running.state.clone();
    on_node(&state, &proxy.url()).await;
    let phone = Client::v4(first.port, "hung-phone").await;
    let mut reader = Client::v4(second.port, "hung-phone-reader").await;
    reader.subscribe("getConnectors/hung-phone/reply").await;
    proxy.frozen.send_replace(true);
    let total = 25u64; // within the per-device burst
    for i in 0..total {
        phone
            .publish("getConnectors/hung-phone", nest(json!({"platform": "ios", "version": "3.1.0"}), &i.to_string()))
            .await;
    }
    eventually(TIMEOUT, "every request to be answered (into the hung node)", || {
        (answered(&state) == total).then_some(())
    })
    .await;
    proxy.cut.cancel();
    on_node(&state, &second.url()).await;
    let mut got = std::collections::BTreeSet::new();
    while (got.len() as u64) < total {
        let Some(m) = reader.try_recv_within(TIMEOUT).await else {
            panic!("{} of {total} replies arrived through the second node", got.len());
        };
        let v = m.json();
        assert_eq!(v["response"]["variant"], "next", "{v}");
        got.insert(v["id"].as_str().unwrap().to_string());
    }
    running.shutdown().await.unwrap();
}
