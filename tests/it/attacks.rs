//! One device against everyone else (issue #24): each finding of the attack on the running service, as a test that
//! failed on the code before the fix. A poison request, impersonation under the shipped Mosquitto setup, Response
//! Topics pointing elsewhere, rotating device ids and the bare topic, the embedded broker's accounts, and a
//! message of the broker's own size limit.

use crate::common::mqtt::{config, nest, parse_serve, serve_with, test_flags, Client, TIMEOUT};
use crate::common::release::ReleaseKeys;
use crate::common::{eventually, free_port_pair, password_file_at, Mosquitto, ShippedMosquitto, TempCatalog};
use connector_scripts::app::Running;
use serde_json::{json, Value};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const CLI: &str = env!("CARGO_BIN_EXE_connector-scripts");

/// A NestJS envelope whose id is a JSON number of about `size` bytes: as long as a broker packet may be.
fn poison(size: usize) -> Vec<u8> {
    format!(r#"{{"id":1.{}}}"#, "0".repeat(size - 8)).into_bytes()
}

/// The value of one series in the service's metrics, 0 if absent.
fn metric(r: &Running, series: &str) -> u64 {
    let text = connector_scripts::ops::metrics_text(&r.state);
    text.lines().find_map(|l| l.strip_prefix(series)?.trim().parse().ok()).unwrap_or(0)
}

/// Asks once as `device` (already subscribed to its reply topic) and returns the reply and how long it took.
async fn ask_timed(app: &mut Client, device: &str, id: &str) -> (Value, Duration) {
    let sent = Instant::now();
    app.publish(&format!("getConnectors/{device}"), nest(json!({"platform": "ios", "version": "3.1.0"}), id)).await;
    loop {
        let m = app.try_recv_within(TIMEOUT).await.unwrap_or_else(|| panic!("{device}: no reply to {id}"));
        let v = m.json();
        if v["id"] == id {
            return (v, sent.elapsed());
        }
    }
}

async fn device(port: u16, name: &str) -> Client {
    let mut c = Client::v4(port, name).await;
    c.subscribe(&format!("getConnectors/{name}/reply")).await;
    c
}

/// Another device is answered at once, with a bundle, while the service stays ready and connected.
async fn others_are_served(r: &Running, port: u16, name: &str) {
    let mut other = device(port, name).await;
    let (reply, took) = ask_timed(&mut other, name, "after-poison").await;
    assert_eq!(reply["response"]["platform"], "ios", "{reply}");
    assert!(took < Duration::from_secs(1), "another device waited {took:?}");
    assert!(r.state.readiness().is_ready(), "{:?}", r.state.readiness().reasons);
    assert_eq!(metric(r, "connector_scripts_broker_reconnects_total"), 0, "the poison cost the service its connection");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_request_is_counted_and_stops_nobody_even_across_a_restart() {
    let catalog = TempCatalog::examples();
    // As the shipped config: 16 MiB packets, persistence; the service with a persistent session (the unit's).
    let mosquitto = Mosquitto::start_with(
        "allow_anonymous true\nmax_packet_size 16777216\npersistence true\npersistence_location {dir}/\n",
    )
    .await;
    let flags = ["--persistent-session", "--client-id", "cs-poison"];
    let r = serve_with(config(&catalog, &mosquitto.url(), &flags)).await;
    let attacker = Client::v4(mosquitto.port, "attacker").await;
    attacker.publish("getConnectors/attacker", poison((16 << 20) - 1024)).await;
    eventually(TIMEOUT, "the poison to be counted", || {
        (metric(&r, "connector_scripts_refused_total{reason=\"too_large\"}") == 1).then_some(())
    })
    .await;
    // The same echo through MQTT 5 Correlation Data (at most 64 KiB in MQTT 5): refused, not answered.
    let mut v5 = Client::v5(mosquitto.port, "attacker-v5").await;
    v5.subscribe("replies/attacker-v5/#").await;
    let ask = json!({"platform": "ios", "version": "3.1.0"}).to_string();
    v5.publish_rr("getConnectors/attacker-v5", ask, "replies/attacker-v5", &vec![b'c'; 65_000]).await;
    eventually(TIMEOUT, "the correlation data to be refused", || {
        (metric(&r, "connector_scripts_refused_total{reason=\"correlation_too_long\"}") == 1).then_some(())
    })
    .await;
    assert!(v5.try_recv_within(Duration::from_millis(200)).await.is_none(), "an oversized echo was answered");
    others_are_served(&r, mosquitto.port, "bystander").await;
    r.shutdown().await.unwrap();

    // While the service is away, the poison waits in its session; it comes first when the service is back.
    attacker.publish("getConnectors/attacker", poison((16 << 20) - 1024)).await;
    let r = serve_with(config(&catalog, &mosquitto.url(), &flags)).await;
    eventually(TIMEOUT, "the redelivered poison to be counted", || {
        (metric(&r, "connector_scripts_refused_total{reason=\"too_large\"}") == 1).then_some(())
    })
    .await;
    others_are_served(&r, mosquitto.port, "bystander-2").await;
    r.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_broker_keeps_every_message_within_what_the_service_accepts() {
    let catalog = TempCatalog::examples();
    let (r, ports) = crate::common::mqtt::serve_embedded(&catalog).await;
    let attacker = Client::v4_with(ports.v4, "attacker", |o| {
        o.set_max_packet_size(32 << 20, 32 << 20);
    })
    .await;
    // Exactly 16 MiB: over the embedded broker's limit, which drops the sender, not the service.
    attacker.publish_qos0("getConnectors/attacker", vec![b'x'; 16 << 20]).await;
    // Just under its limit: delivered, refused by the service unparsed, counted.
    let poisoned = Client::v4(ports.v4, "attacker-2").await;
    poisoned.publish("getConnectors/attacker-2", poison((16 << 20) - 8192)).await;
    eventually(TIMEOUT, "the poison to be counted", || {
        (metric(&r, "connector_scripts_refused_total{reason=\"too_large\"}") == 1).then_some(())
    })
    .await;
    others_are_served(&r, ports.v4, "bystander").await;
    r.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_topics_outside_the_requesters_namespace_get_no_publish() {
    let catalog = TempCatalog::examples();
    let (r, ports) = crate::common::mqtt::serve_embedded(&catalog).await;
    let mut watcher = Client::v4(ports.v4, "watcher").await;
    for filter in ["connectors/#", "getConnectors/victim/#", "connector-scripts/#", "replies/victim/#"] {
        watcher.subscribe(filter).await;
    }
    // The retained manifests arrive first; wait for them to stop.
    while watcher.try_recv_within(Duration::from_millis(300)).await.is_some() {}
    let mut app = Client::v5(ports.v5, "app").await;
    app.subscribe("replies/app/#").await;
    let ask = json!({"platform": "ios", "version": "3.1.0"}).to_string();
    let targets = ["connectors/ios/next", "getConnectors/victim/reply", "connector-scripts/status/x", "replies/victim"];
    for target in targets {
        app.publish_rr("getConnectors/app", ask.clone(), target, b"c").await;
    }
    // Its own namespace works, and arrives after anything the service would have published for the others.
    app.publish_rr("getConnectors/app", ask, "replies/app/x", b"ok").await;
    let own = app.recv().await;
    assert_eq!((own.topic.as_str(), own.correlation.as_deref()), ("replies/app/x", Some(&b"ok"[..])));
    if let Some(m) = watcher.try_recv_within(Duration::from_millis(300)).await {
        panic!("the service published on {} for a stranger", m.topic);
    }
    assert_eq!(metric(&r, "connector_scripts_refused_total{reason=\"response_topic\"}"), targets.len() as u64);
    r.shutdown().await.unwrap();
}

/// A release command run as `user` through the broker at `url`.
fn operator_as(url: &str, user: &str, password: &str, args: &[&str]) -> Output {
    Command::new(CLI)
        .args(args)
        .args(["--broker", url, "--mqtt-username", user])
        .env("CONNECTOR_SCRIPTS_MQTT_PASSWORD", password)
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_the_shipped_setup_a_device_is_only_itself_and_operators_can_work() {
    let catalog = TempCatalog::examples();
    let shipped = ShippedMosquitto::start(
        &[("device-a", "a-pw"), ("device-b", "b-pw")],
        &[("connector-scripts", "svc-pw"), ("release-operator", "op-pw")],
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("svc-pw");
    std::fs::write(&pw, "svc-pw").unwrap();
    let service_id = "connector-scripts-host";
    let keys = ReleaseKeys::new();
    let mut flags: Vec<String> = [
        "--mqtt-username",
        "connector-scripts",
        "--mqtt-password-file",
        pw.to_str().unwrap(),
        "--client-id",
        service_id,
        "--release-mode",
        "manual",
        "--state-dir",
        dir.path().to_str().unwrap(),
    ]
    .map(String::from)
    .into();
    flags.extend(keys.serve_flags());
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let r = serve_with(config(&catalog, &shipped.service_url(), &flags)).await;
    let port = shipped.mosquitto.port;
    let mut b = Client::v4_login(port, "device-b", "device-b", "b-pw").await;
    b.subscribe("getConnectors/device-b/reply").await;
    // Device A tries B's client id, the service's, and B's reply topic as its client id (the old ACL's %c).
    for stolen in ["device-b", service_id, &format!("{service_id}-replies"), "device-b/reply"] {
        let a = Client::v4_login(port, stolen, "device-a", "a-pw").await;
        a.publish("getConnectors/device-b/reply", json!({"id": "b1", "response": "forged"}).to_string()).await;
        a.publish("getConnectors/device-b", nest(json!({"platform": "ios", "version": "3.1.0"}), "a-as-b")).await;
    }
    // And the poison request, sent by a device on its own permitted topic under the shipped limits: counted, and it
    // stops nobody.
    let poisoner = Client::v4_login(port, "device-a", "device-a", "a-pw").await;
    poisoner.publish("getConnectors/device-a", poison((16 << 20) - 1024)).await;
    eventually(TIMEOUT, "the poison to be counted", || {
        (metric(&r, "connector_scripts_refused_total{reason=\"too_large\"}") == 1).then_some(())
    })
    .await;
    // B is still connected under its own id and gets exactly its own answer: nothing forged, nothing spoofed.
    let (reply, _) = ask_timed(&mut b, "device-b", "b1").await;
    assert_eq!(reply["response"]["platform"], "ios", "B got a forged reply first: {reply}");
    assert!(b.try_recv_within(Duration::from_millis(300)).await.is_none(), "B received something not its own");
    assert_eq!(metric(&r, "connector_scripts_broker_reconnects_total"), 0, "a device knocked the service off");
    // A device account cannot log in where the service does.
    let out = operator_as(&shipped.service_url(), "device-a", "a-pw", &["releases"]);
    assert!(!out.status.success(), "a device account got onto the service listener");
    // The release commands all work as release-operator under the shipped ACL (the kill switch included).
    let url = shipped.service_url();
    for args in [
        &["releases", "--platform", "ios"][..],
        &["disable", "--connector", "fleet/tracking", "--platform", "ios"],
        &["rollback", "--platform", "ios", "--variant", "next"],
    ] {
        let signed: Vec<String> = keys.operator_flags();
        let args: Vec<&str> = args.iter().copied().chain(signed.iter().map(String::as_str)).collect();
        let out = operator_as(&url, "release-operator", "op-pw", &args);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{args:?}: {stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    }
    r.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotating_device_ids_and_the_bare_topic_cannot_delay_another_device() {
    let catalog = TempCatalog::examples();
    let mosquitto = Mosquitto::start().await;
    // A global ceiling this debug build serves with room to spare; the bare topic at its default.
    let r = serve_with(config(&catalog, &mosquitto.url(), &["--rate-limit-global", "300"])).await;
    let mut victim = device(mosquitto.port, "victim").await;
    let attacker = Client::v4(mosquitto.port, "rotator").await;
    let hammer = Client::v4(mosquitto.port, "hammer").await;
    // 10 000 made-up device ids at 2 000 requests/s, and the bare topic at 1 000/s: every id is new, so the
    // per-device limit never applies; the global ceiling and the bare topic's bucket keep what each costs the
    // service to a small error reply, so it keeps up and the victim waits behind nothing. (A flood as fast as
    // one connection can publish only measures how fast this debug build drains the broker's queue.)
    let flood = tokio::spawn(async move {
        let ask = |i: usize| nest(json!({"platform": "ios", "version": "3.1.0"}), &format!("r{i}"));
        let mut tick = tokio::time::interval(Duration::from_millis(10));
        for batch in 0..500 {
            tick.tick().await;
            for i in batch * 20..(batch + 1) * 20 {
                attacker.publish_qos0(&format!("getConnectors/rot-{i}"), ask(i)).await;
                if i % 2 == 0 {
                    hammer.publish_qos0("getConnectors", ask(i)).await;
                }
            }
        }
    });
    let mut worst = Duration::ZERO;
    let mut bundles = 0;
    let mut asked = 0;
    while !flood.is_finished() || asked < 5 {
        let (reply, took) = ask_timed(&mut victim, "victim", &format!("v{asked}")).await;
        asked += 1;
        worst = worst.max(took);
        if reply["response"]["platform"] == "ios" {
            bundles += 1;
        } else {
            assert_eq!(reply["err"]["code"], "RATE_LIMITED", "{reply}");
        }
        // Under the victim's own per-device limit (10/s).
        tokio::time::sleep(Duration::from_millis(120)).await;
    }
    flood.await.unwrap();
    println!("victim: {asked} asked, {bundles} bundles, slowest answer {worst:?}");
    assert!(worst < Duration::from_secs(1), "the victim waited {worst:?} for an answer");
    assert!(metric(&r, "connector_scripts_rate_limited_total{scope=\"global\"}") > 0);
    assert!(metric(&r, "connector_scripts_rate_limited_total{scope=\"bare\"}") > 0);
    assert!(r.state.readiness().is_ready());
    // Once the flood is over the victim is served in full again (as soon as the ceiling's bucket has refilled).
    for n in 0.. {
        let (reply, _) = ask_timed(&mut victim, "victim", &format!("after-{n}")).await;
        if reply["response"]["platform"] == "ios" {
            break;
        }
        assert!(n < 20, "still refused after the flood: {reply}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    r.shutdown().await.unwrap();
}

/// Connects once and reports whether the broker accepted the connection.
async fn connects(port: u16, id: &str, login: Option<(&str, &str)>) -> bool {
    let mut opts = rumqttc::MqttOptions::new(id, "127.0.0.1", port);
    if let Some((u, p)) = login {
        opts.set_credentials(u, p);
    }
    let (_client, mut el) = rumqttc::AsyncClient::new(opts, 8);
    let polled = tokio::time::timeout(TIMEOUT, async {
        loop {
            match el.poll().await {
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(a))) => {
                    return a.code == rumqttc::ConnectReturnCode::Success
                }
                Ok(_) => {}
                Err(_) => return false,
            }
        }
    })
    .await;
    polled.expect("the broker answers or closes")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_broker_with_accounts_binds_each_to_its_client_id_and_reloads_on_sighup() {
    let catalog = TempCatalog::examples();
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("users");
    password_file_at(&users, &[("device-a", "a-pw")]);
    let (v4, v5) = free_port_pair();
    let ops = format!("127.0.0.1:{}", crate::common::free_port());
    let args = [
        "--embedded-listen".to_string(),
        format!("127.0.0.1:{v4}"),
        "--embedded-listen-v5".into(),
        format!("127.0.0.1:{v5}"),
        "--embedded-ws-listen".into(),
        "off".into(),
        "--embedded-users".into(),
        users.display().to_string(),
        "--http-listen".into(),
        ops.clone(),
        "--client-id".into(),
        "cs-embedded".into(),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut service = crate::common::process::Process(crate::common::spawn_service(&catalog, &args, &[]));
    let readyz = format!("http://{ops}/readyz");
    let get = |u: &str| crate::common::process::block_on(connector_scripts::commands::status::get(u, TIMEOUT));
    eventually(TIMEOUT, "the service behind its own accounts", || get(&readyz).ok().filter(|r| r.0 == 200)).await;
    assert!(!connects(v4, "anon", None).await, "anonymous");
    assert!(!connects(v4, "device-a", Some(("device-a", "wrong"))).await, "wrong password");
    assert!(!connects(v4, "device-b", Some(("device-a", "a-pw"))).await, "another client id");
    assert!(!connects(v4, "cs-embedded", Some(("device-a", "a-pw"))).await, "the service's client id");
    assert!(connects(v4, "device-a", Some(("device-a", "a-pw"))).await, "its own client id");
    // The device is served, through the broker the service authenticated to with its own account.
    let mut a = Client::v4_login(v4, "device-a", "device-a", "a-pw").await;
    a.subscribe("getConnectors/device-a/reply").await;
    let (reply, _) = ask_timed(&mut a, "device-a", "1").await;
    assert_eq!(reply["response"]["platform"], "ios", "{reply}");
    // A new account takes effect on SIGHUP, without a restart.
    assert!(!connects(v4, "device-b", Some(("device-b", "b-pw"))).await);
    password_file_at(&users, &[("device-a", "a-pw"), ("device-b", "b-pw")]);
    let pid = service.0.id().to_string();
    assert!(Command::new("kill").args(["-HUP", &pid]).status().unwrap().success());
    eventually(TIMEOUT, "device-b's account after SIGHUP", || {
        crate::common::process::block_on(connects(v4, "device-b", Some(("device-b", "b-pw")))).then_some(())
    })
    .await;
    service.0.kill().unwrap();
}

#[test]
fn an_embedded_broker_open_to_the_network_needs_accounts_or_a_stated_choice() {
    let catalog = TempCatalog::examples();
    let flags = |extra: &[&str]| {
        let mut f = vec!["serve".to_string()];
        f.extend(test_flags(&catalog, &extra.iter().map(|s| s.to_string()).collect::<Vec<_>>()));
        f
    };
    let refused = Command::new(CLI).args(flags(&["--embedded-listen", "0.0.0.0:0"])).output().unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{stderr}");
    assert!(stderr.contains("--embedded-users") && stderr.contains("--embedded-allow-anonymous"), "{stderr}");
    // Stated: it is accepted (and warned about at start, see broker.rs).
    let _ = parse_serve(&test_flags(
        &catalog,
        &["--embedded-listen", "0.0.0.0:1883", "--embedded-allow-anonymous"].map(String::from),
    ));
}
