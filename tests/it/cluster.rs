//! Scale-out on a real clustered MQTT broker (rmqtt, `tests/cluster/`): instances in one share group spread over
//! nodes, devices on every node, retained manifests and release states seen on every node, a broker node killed
//! under load (repeatedly, at varied moments), a service instance killed.

use crate::common::cluster::{Cluster, ONE_CLUSTER};
use crate::common::mqtt::{answered, checked_ios_next, config, nest, serve_with, Client, TIMEOUT};
use crate::common::process::{ops_get, spawn_ready_as};
use crate::common::{eventually, TempCatalog};
use connector_scripts::app::Running;
use connector_scripts::ops::status::StatusDoc;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const CLI: &str = env!("CARGO_BIN_EXE_connector-scripts");

/// Starts a cluster of `n` nodes without blocking the runtime's other tasks.
fn cluster(n: usize) -> Cluster {
    tokio::task::block_in_place(|| Cluster::start(n))
}

/// An in-process instance in share group `g` on the nodes `brokers` (`--broker`: one URL or a list).
async fn instance(catalog: &TempCatalog, brokers: &str, name: &str, extra: &[&str]) -> Running {
    let mut flags = vec!["--share-group", "g", "--instance", name];
    flags.extend_from_slice(extra);
    serve_with(config(catalog, brokers, &flags)).await
}

fn ask(id: &str) -> String {
    nest(json!({"platform": "ios", "version": "3.1.0"}), id)
}

/// A phone on `port`: subscribed to its reply topic.
async fn phone(port: u16, device: &str) -> Client {
    let mut app = Client::v4(port, device).await;
    app.subscribe(&format!("getConnectors/{device}/reply")).await;
    app
}

/// Reads replies until none arrives for `quiet`: every id with how often it was answered.
async fn drain(app: &mut Client, quiet: Duration, counts: &mut BTreeMap<String, u32>) {
    while let Some(m) = app.try_recv_within(quiet).await {
        *counts.entry(checked_ios_next(&m.json())).or_default() += 1;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_over_two_nodes_answer_each_request_exactly_once_across_nodes() {
    let _one = ONE_CLUSTER.lock().await;
    let c = cluster(2);
    let (n1, n2) = (c.node(1).url(), c.node(2).url());
    let catalog = TempCatalog::examples();
    let a = instance(&catalog, &n1, "a", &[]).await;
    let b = instance(&catalog, &n2, "b", &[]).await;
    let cc = instance(&catalog, &n1, "c", &[]).await;
    let on_node1 = |a: &Running, cc: &Running| answered(&a.state) + answered(&cc.state);
    // Phase 1: only phones on node 2 ask. Two of the three instances are on node 1, so the share group hands them
    // requests from node 2, and their replies must cross back to node 2.
    let per_phone = 20;
    let mut phones = Vec::new();
    for (node, port) in [(2, c.node(2).port()), (1, c.node(1).port())] {
        for k in 0..3 {
            let device = format!("phone-n{node}-{k}");
            phones.push((node, device.clone(), phone(port, &device).await));
        }
    }
    let mut total = 0;
    for phase_node in [2, 1] {
        let before = (on_node1(&a, &cc), answered(&b.state));
        for (node, device, app) in phones.iter_mut().filter(|(n, _, _)| *n == phase_node) {
            let topic = format!("getConnectors/{device}");
            for i in 0..per_phone {
                app.publish_qos0(&topic, ask(&format!("{device}-{i}"))).await;
            }
            let mut counts = BTreeMap::new();
            let deadline = Instant::now() + TIMEOUT;
            while counts.len() < per_phone && Instant::now() < deadline {
                drain(app, Duration::from_millis(200), &mut counts).await;
            }
            let want: BTreeSet<String> = (0..per_phone).map(|i| format!("{device}-{i}")).collect();
            assert_eq!(counts.keys().cloned().collect::<BTreeSet<_>>(), want, "{device} on node {node}");
            drain(app, Duration::from_millis(300), &mut counts).await;
            assert!(counts.values().all(|n| *n == 1), "answered more than once: {counts:?}");
            total += per_phone as u64;
        }
        let after = (on_node1(&a, &cc), answered(&b.state));
        if phase_node == 2 {
            assert!(after.0 > before.0, "instances on node 1 answered none of node 2's phones: {before:?} {after:?}");
        }
    }
    // Each request was handled by exactly one instance of the group.
    let each = [answered(&a.state), answered(&b.state), answered(&cc.state)];
    assert_eq!(each.iter().sum::<u64>(), total, "answered per instance: {each:?}");
    assert!(each.iter().all(|n| *n > 0), "every instance takes a share: {each:?}");
    for r in [a, b, cc] {
        r.shutdown().await.unwrap();
    }
}

/// Every retained message under `filters` as a new subscriber on `port` sees it (read until a probe published
/// after subscribing comes back: the retained ones arrive before it).
async fn retained(port: u16, who: &str, filters: &[&str]) -> BTreeMap<String, Vec<u8>> {
    let mut sub = Client::v4(port, who).await;
    for f in filters {
        sub.subscribe(f).await;
    }
    let probe = format!("probe/{who}");
    sub.subscribe(&probe).await;
    sub.publish(&probe, b"end".to_vec()).await;
    let mut seen = BTreeMap::new();
    loop {
        let m = sub.recv().await;
        if m.topic == probe {
            return seen;
        }
        seen.insert(m.topic, m.payload.to_vec());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retained_manifests_and_release_states_published_via_one_node_are_seen_on_every_node() {
    let _one = ONE_CLUSTER.lock().await;
    let c = cluster(2);
    let (n1, n2) = (c.node(1).url(), c.node(2).url());
    let catalog = TempCatalog::examples();
    let dir = tempfile::tempdir().unwrap();
    let state_dir = dir.path().display().to_string();
    let keys = crate::common::release::ReleaseKeys::new();
    let mut flags = vec!["--release-mode".to_string(), "manual".into(), "--state-dir".into(), state_dir];
    flags.extend(keys.serve_flags());
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let svc = instance(&catalog, &n1, "rel", &flags).await;
    let filters = ["connectors/+/+", "connector-scripts/releases/+/+"];
    let want: BTreeMap<String, String> = svc
        .state
        .catalog()
        .unwrap()
        .bundles()
        .map(|b| (format!("connectors/{}/{}", b.platform, b.variant), b.revision.clone()))
        .collect();
    // What the instance published through node 1, as new subscribers on each node see it.
    let complete = |seen: &BTreeMap<String, Vec<u8>>| {
        want.iter().all(|(topic, rev)| {
            let release = topic.replacen("connectors/", "connector-scripts/releases/", 1);
            seen.get(topic).is_some_and(|m| serde_json::from_slice::<Value>(m).unwrap()["revision"] == **rev)
                && seen.contains_key(&release)
        })
    };
    let mut views = Vec::new();
    for (id, port) in [(1, c.node(1).port()), (2, c.node(2).port())] {
        let mut tries = 0;
        let seen = loop {
            tries += 1;
            let seen = retained(port, &format!("reader-{id}-{tries}"), &filters).await;
            if complete(&seen) || tries == 50 {
                break seen;
            }
        };
        let topics: Vec<&String> = seen.keys().collect();
        assert!(complete(&seen), "node {id} is missing retained messages: {topics:?}\n{}", c.log_tail(id));
        views.push(seen);
    }
    assert_eq!(views[0], views[1], "both nodes hold the same retained messages, byte for byte");

    // An operator on node 2 flips the kill switch; the instance on node 1 applies it, and the new release state
    // and manifests it publishes through node 1 are what readers on both nodes then see.
    let out = std::process::Command::new(CLI)
        .args(["disable", "--connector", "fleet/tracking", "--broker", &n2])
        .args(keys.operator_flags())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("applied by 1/1"), "{stdout}");
    for (id, port) in [(1, c.node(1).port()), (2, c.node(2).port())] {
        let mut tries = 0;
        loop {
            tries += 1;
            let seen = retained(port, &format!("after-{id}-{tries}"), &filters).await;
            let state = crate::common::release::parse_state(&seen["connector-scripts/releases/ios/next"]);
            let manifest: Value = serde_json::from_slice(&seen["connectors/ios/next"]).unwrap();
            let names: Vec<&str> =
                manifest["connectors"].as_array().unwrap().iter().filter_map(|c| c["name"].as_str()).collect();
            if state.disabled.iter().eq(["fleet/tracking"]) && !names.contains(&"fleet/tracking") {
                break;
            }
            assert!(tries < 50, "node {id}: the kill switch never showed: {state:?} {manifest}");
        }
    }
    svc.shutdown().await.unwrap();
}

/// How long a phone keeps asking.
#[derive(Clone)]
struct Until {
    /// At least this many requests.
    count: usize,
    /// Then until this is set.
    stop: Arc<AtomicBool>,
}

/// A phone that asks one request at a time every `pace` (until `until`), and asks again (same id) when no reply
/// came within a second, as the docs tell apps to. Returns how many retries it needed; panics if a request stays
/// unanswered after 20 tries. Every reply is checked; `replies` counts them across phones.
async fn steady_phone(mut app: Client, device: String, until: Until, pace: Duration, replies: Arc<AtomicU64>) -> u32 {
    let topic = format!("getConnectors/{device}");
    let mut retries = 0;
    let mut i = 0;
    while i < until.count || !until.stop.load(Ordering::Relaxed) {
        i += 1;
        let id = format!("{device}-{i}");
        let started = Instant::now();
        'ask: for attempt in 0..20 {
            if attempt > 0 {
                retries += 1;
            }
            app.publish_qos0(&topic, ask(&id)).await;
            let deadline = Instant::now() + Duration::from_secs(1);
            while let Some(m) = app.try_recv_within(deadline.saturating_duration_since(Instant::now())).await {
                if checked_ios_next(&m.json()) == id {
                    replies.fetch_add(1, Ordering::Relaxed);
                    break 'ask;
                }
            }
            assert!(attempt < 19, "{id} unanswered after 20 tries");
        }
        tokio::time::sleep(pace.saturating_sub(started.elapsed())).await;
    }
    retries
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_node_killed_under_load_moves_its_instance_and_retrying_phones_lose_nothing() {
    let _one = ONE_CLUSTER.lock().await;
    let mut c = cluster(3);
    let urls: Vec<String> = (1..=3).map(|i| c.node(i).url()).collect();
    let catalog = TempCatalog::examples();
    // B stays on node 3; the phones are on nodes 2 and 3; each round a fresh A starts on node 1, node 1 is killed
    // at a different moment of the load, A moves to node 2, and node 1 comes back for the next round.
    let b = instance(&catalog, &urls[2], "b", &[]).await;
    let rounds: u32 = std::env::var("CLUSTER_KILL_ROUNDS").ok().and_then(|r| r.parse().ok()).unwrap_or(30);
    let mut failovers = Vec::new();
    let mut retries = 0;
    for round in 0..rounds {
        let a = instance(&catalog, &urls[0..2].join(","), &format!("a{round}"), &[]).await;
        let replies = Arc::new(AtomicU64::new(0));
        // The phones keep asking until A has answered through node 2, and at least 20 times each.
        let until = Until { count: 20, stop: Arc::new(AtomicBool::new(false)) };
        let mut load = Vec::new();
        for (k, node) in [2, 3, 2, 3].into_iter().enumerate() {
            let device = format!("phone-{round}-{k}");
            let app = phone(c.node(node).port(), &device).await;
            let pace = Duration::from_millis(150);
            load.push(tokio::spawn(steady_phone(app, device, until.clone(), pace, replies.clone())));
        }
        // The moment varies from round to round: after 3 to 40 replies of the ~27 per second.
        let at = 3 + (round as u64 * 17) % 38;
        eventually(TIMEOUT, "the load to run", || (replies.load(Ordering::Relaxed) >= at).then_some(())).await;
        let killed = Instant::now();
        c.send_kill(1);
        // Baseline of the same moment: how long a new client takes to connect and subscribe on the survivor.
        let port2 = c.node(2).port();
        let bystander = tokio::spawn(async move {
            let _subscribed = phone(port2, &format!("bystander-{round}")).await;
            killed.elapsed()
        });
        // A on node 2 with its subscriptions confirmed, then the first reply it sends from there.
        let ready = eventually(TIMEOUT, "A to be ready on node 2", || {
            let doc = StatusDoc::of(&a.state);
            (doc.ready && doc.broker.url == urls[1]).then(|| answered(&a.state))
        })
        .await;
        let ready_after = killed.elapsed();
        eventually(TIMEOUT, "A to answer through node 2", || (answered(&a.state) > ready).then_some(())).await;
        let first_reply = killed.elapsed();
        failovers.push((bystander.await.unwrap(), ready_after, first_reply));
        until.stop.store(true, Ordering::Relaxed);
        tokio::task::block_in_place(|| c.kill_done());
        for phone in load {
            retries += phone.await.expect("every request of every phone answered");
        }
        a.shutdown().await.unwrap();
        tokio::task::block_in_place(|| c.restart(1));
    }
    let spread = |mut v: Vec<Duration>| {
        v.sort();
        let ms = |d: &Duration| d.as_millis();
        format!("min {} / median {} / max {} ms", ms(&v[0]), ms(&v[v.len() / 2]), ms(v.last().unwrap()))
    };
    println!(
        "node SIGKILLed under load, {rounds} rounds: a new client is subscribed on a survivor after {}; the \
         instance is ready there after {}; its first reply through it after {}; {retries} retries by the phones, \
         0 requests lost",
        spread(failovers.iter().map(|f| f.0).collect()),
        spread(failovers.iter().map(|f| f.1).collect()),
        spread(failovers.iter().map(|f| f.2).collect()),
    );
    b.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_instance_turns_offline_on_every_node_and_the_others_keep_answering() {
    let _one = ONE_CLUSTER.lock().await;
    let c = cluster(2);
    let (n1, n2) = (c.node(1).url(), c.node(2).url());
    let catalog = TempCatalog::examples();
    let b = instance(&catalog, &n2, "b", &[]).await;
    let mut a = spawn_ready_as("a", &catalog, &n1, &["--share-group", "g"], &[]).await;
    let liveness = |want: &'static str| {
        let ports = [c.node(1).port(), c.node(2).port()];
        async move {
            for (i, port) in ports.into_iter().enumerate() {
                let mut tries = 0;
                loop {
                    tries += 1;
                    let seen =
                        retained(port, &format!("live-{want}-{i}-{tries}"), &["connector-scripts/status/a"]).await;
                    let state =
                        seen.get("connector-scripts/status/a").map(|p| serde_json::from_slice::<Value>(p).unwrap());
                    if state.as_ref().is_some_and(|s| s["state"] == want) {
                        break;
                    }
                    assert!(tries < 50, "node {}: A's liveness never became {want}: {state:?}", i + 1);
                }
            }
        }
    };
    liveness("online").await;
    assert!(ops_get(&a.ops, "/metrics").contains("connector_scripts_ready 1"));
    a.kill();
    liveness("offline").await;
    // B answers phones on both nodes.
    let before = answered(&b.state);
    let replies = Arc::new(AtomicU64::new(0));
    let mut load = Vec::new();
    for node in [1, 2] {
        let device = format!("after-kill-{node}");
        let app = phone(c.node(node).port(), &device).await;
        let until = Until { count: 10, stop: Arc::new(AtomicBool::new(true)) };
        load.push(tokio::spawn(steady_phone(app, device, until, Duration::from_millis(50), replies.clone())));
    }
    for phone in load {
        phone.await.expect("answered");
    }
    assert_eq!(answered(&b.state) - before, 20, "B answered every request");
    b.shutdown().await.unwrap();
}
