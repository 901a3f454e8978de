//! Managed releases (`--release-mode manual`) against real brokers and the real operator commands: a save becomes
//! the candidate, `rollout`/`promote`/`rollback`/`disable` take effect on every instance, restarts keep it all,
//! and an instance that never built a revision serves the same bytes.

use crate::common::mqtt::{config, nest, serve_with, Client, TIMEOUT};
use crate::common::release::{parse_state, ReleaseKeys};
use crate::common::{eventually, Mosquitto, TempCatalog};
use connector_scripts::app::Running;
use connector_scripts::release::state::{bucket, Channel, ReleaseState};
use serde_json::{json, Value};
use std::path::Path;
use std::process::{Command, Output};

const CLI: &str = env!("CARGO_BIN_EXE_connector-scripts");
const PERSISTENT: &str = "allow_anonymous true\npersistence true\npersistence_location {dir}/\nautosave_interval 1\n";

/// Manual mode with `keys` (the instance signs with `keys.signing` and applies states `keys.operator` signed).
pub fn manual(
    keys: &ReleaseKeys,
    catalog: &TempCatalog,
    url: &str,
    state_dir: &Path,
    extra: &[&str],
) -> connector_scripts::config::ServeConfig {
    let key_flags = keys.serve_flags();
    let mut flags = vec!["--release-mode", "manual", "--state-dir", state_dir.to_str().unwrap()];
    flags.extend(key_flags.iter().map(String::as_str));
    flags.extend_from_slice(extra);
    config(catalog, url, &flags)
}

/// Runs a release command against `url`, signed with the operator key of `keys`.
pub fn operator(url: &str, keys: &ReleaseKeys, args: &[&str]) -> Output {
    Command::new(CLI).args(args).args(["--broker", url]).args(keys.operator_flags()).output().unwrap()
}

pub fn ok(out: Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    stdout
}

/// The reply body for `device` (ios 3.1.0: variant next).
pub async fn ask(port: u16, device: &str) -> Value {
    let mut app = Client::v4(port, device).await;
    app.subscribe(&format!("getConnectors/{device}/reply")).await;
    app.publish(&format!("getConnectors/{device}"), nest(json!({"platform": "ios", "version": "3.1.0"}), "1")).await;
    app.recv().await.json()["response"].clone()
}

async fn state_of(port: u16, who: &str) -> ReleaseState {
    let mut sub = Client::v4(port, who).await;
    sub.subscribe("connector-scripts/releases/ios/next").await;
    parse_state(&sub.recv().await.payload)
}

/// The retained state once it satisfies `f` (the service publishes its changes a moment after applying them).
pub async fn state_where(port: u16, who: &str, f: impl Fn(&ReleaseState) -> bool) -> ReleaseState {
    let mut sub = Client::v4(port, who).await;
    sub.subscribe("connector-scripts/releases/ios/next").await;
    loop {
        let s = parse_state(&sub.recv().await.payload);
        if f(&s) {
            return s;
        }
    }
}

/// Waits until the state retained on the broker (what the operator commands read) names `candidate`.
pub async fn on_broker(port: u16, candidate: &str) -> ReleaseState {
    state_where(port, "s-staged", |s| s.candidate.as_deref() == Some(candidate)).await
}

pub fn touch(catalog: &TempCatalog, marker: &str) {
    let path = catalog.snippets().join("smart-home/thermostat.ts");
    let text = std::fs::read_to_string(&path).unwrap();
    catalog.snippet("smart-home/thermostat.ts", format!("{text}\nexport const {marker} = true;\n"));
}

fn names(body: &Value) -> Vec<String> {
    body["connectors"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap().to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_save_becomes_the_candidate_and_operators_move_it() {
    let keys = ReleaseKeys::new();
    let catalog = TempCatalog::examples();
    let state = tempfile::tempdir().unwrap();
    let mosquitto = Mosquitto::start().await;
    let url = mosquitto.url();
    let service = serve_with(manual(&keys, &catalog, &url, state.path(), &[])).await;
    let first = ask(mosquitto.port, "dev-a").await;
    assert_eq!(first["channel"], "stable", "{first}");
    let r1 = first["revision"].as_str().unwrap().to_string();
    state_where(mosquitto.port, "s1", |s| s.stable == r1).await;

    // A save is staged: still stable for everyone.
    touch(&catalog, "v2");
    let staged = eventually(TIMEOUT, "the save to become the candidate", || {
        let s = service.state.releases().unwrap().states();
        s.get(&("ios".to_string(), "next".to_string())).and_then(|s| s.candidate.clone())
    })
    .await;
    on_broker(mosquitto.port, &staged).await;
    assert_ne!(staged, r1);
    assert_eq!(ask(mosquitto.port, "dev-a").await["revision"], r1.as_str());
    let listed = ok(operator(&url, &keys, &["releases", "--platform", "ios"]));
    assert!(listed.contains(&format!("candidate  {staged} at 0 %")), "{listed}");
    // Requests per revision, summed over the live instances' liveness messages (refreshed every few seconds).
    let served = format!("served     {r1}: 2 requests");
    eventually(TIMEOUT, "requests per revision in `releases`", || {
        let listed = ok(operator(&url, &keys, &["releases", "--platform", "ios"]));
        listed.contains(&served).then_some(())
    })
    .await;

    // 100 %: the candidate for every device that names itself.
    let out = ok(operator(&url, &keys, &["rollout", "--platform", "ios", "--variant", "next", "--percent", "100"]));
    assert!(out.contains("applied by 1/1 instances in"), "{out}");
    let body = ask(mosquitto.port, "dev-a").await;
    assert_eq!((body["channel"].as_str(), body["revision"].as_str()), (Some("candidate"), Some(staged.as_str())));

    // Kill switch: the connector leaves the replies (a new revision), then comes back.
    ok(operator(&url, &keys, &["disable", "--connector", "fleet/tracking", "--platform", "ios"]));
    let off = ask(mosquitto.port, "dev-a").await;
    assert!(!names(&off).contains(&"fleet/tracking".to_string()), "{off}");
    assert_ne!(off["revision"], staged.as_str());
    ok(operator(&url, &keys, &["enable", "--connector", "fleet/tracking", "--platform", "ios"]));
    assert!(names(&ask(mosquitto.port, "dev-a").await).contains(&"fleet/tracking".to_string()));

    // Rollback: stable for everyone at once; the rolled-back build does not come back by itself.
    ok(operator(&url, &keys, &["rollback", "--platform", "ios", "--variant", "next"]));
    let back = ask(mosquitto.port, "dev-a").await;
    assert_eq!((back["channel"].as_str(), back["revision"].as_str()), (Some("stable"), Some(r1.as_str())));
    let refused = operator(&url, &keys, &["promote", "--platform", "ios", "--variant", "next"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("no candidate"), "{refused:?}");

    // A newer save is the next candidate; promote makes it stable for everyone.
    touch(&catalog, "v3");
    let newer = eventually(TIMEOUT, "the newer save to become the candidate", || {
        let s = service.state.releases().unwrap().states();
        s.get(&("ios".to_string(), "next".to_string())).and_then(|s| s.candidate.clone()).filter(|c| *c != staged)
    })
    .await;
    on_broker(mosquitto.port, &newer).await;
    ok(operator(&url, &keys, &["promote", "--platform", "ios", "--variant", "next"]));
    let promoted = ask(mosquitto.port, "dev-b").await;
    assert_eq!(promoted["channel"], "stable");
    assert_ne!(promoted["revision"], r1.as_str());
    service.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_in_a_share_group_apply_every_change() {
    let keys = ReleaseKeys::new();
    let mosquitto = Mosquitto::start().await;
    let url = mosquitto.url();
    let group = ["--share-group", "rollout"];
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let catalogs: Vec<_> = (0..3).map(|_| TempCatalog::examples()).collect();
    let mut services: Vec<Running> = Vec::new();
    for (c, d) in catalogs.iter().zip(&dirs) {
        services.push(serve_with(manual(&keys, c, &url, d.path(), &group)).await);
    }
    for c in &catalogs {
        touch(c, "v2");
    }
    let key = ("ios".to_string(), "next".to_string());
    let candidate = eventually(TIMEOUT, "every instance to stage the same candidate", || {
        let cands: Vec<Option<String>> = services
            .iter()
            .map(|s| s.state.releases().unwrap().states().get(&key).and_then(|s| s.candidate.clone()))
            .collect();
        (cands.iter().all(|c| c.is_some() && *c == cands[0])).then(|| cands[0].clone().unwrap())
    })
    .await;
    on_broker(mosquitto.port, &candidate).await;
    let out = ok(operator(&url, &keys, &["rollout", "--platform", "ios", "--variant", "next", "--percent", "30"]));
    assert!(out.contains("applied by 3/3 instances in"), "{out}");
    println!("rollout: {}", out.lines().last().unwrap());
    // Every instance answers its share of 90 devices, each with the channel its bucket says.
    let state = state_of(mosquitto.port, "s-three").await;
    let before: Vec<u64> = services.iter().map(|s| s.state.metrics.replies.get()).collect();
    for i in 0..90 {
        let device = format!("herd-{i}");
        let body = ask(mosquitto.port, &device).await;
        let want = if bucket(&state.seed, &device) < state.basis_points { "candidate" } else { "stable" };
        assert_eq!(body["channel"], want, "{device}: {body}");
        if want == "candidate" {
            assert_eq!(body["revision"], candidate.as_str());
        }
    }
    let answered: Vec<u64> = services.iter().zip(&before).map(|(s, b)| s.state.metrics.replies.get() - b).collect();
    assert!(answered.iter().all(|n| *n > 0), "not every instance answered: {answered:?}");
    // The kill switch, then a rollback: every instance, every reply.
    let out = ok(operator(&url, &keys, &["disable", "--connector", "fleet/tracking", "--platform", "ios"]));
    assert!(out.contains("applied by 3/3"), "{out}");
    println!("disable: {}", out.lines().last().unwrap());
    let before: Vec<u64> = services.iter().map(|s| s.state.metrics.replies.get()).collect();
    for i in 0..30 {
        let body = ask(mosquitto.port, &format!("off-{i}")).await;
        assert!(!names(&body).contains(&"fleet/tracking".to_string()), "{body}");
    }
    let answered: Vec<u64> = services.iter().zip(&before).map(|(s, b)| s.state.metrics.replies.get() - b).collect();
    assert!(answered.iter().all(|n| *n > 0), "not every instance answered: {answered:?}");
    let out = ok(operator(&url, &keys, &["rollback", "--platform", "ios", "--variant", "next"]));
    assert!(out.contains("applied by 3/3"), "{out}");
    println!("rollback: {}", out.lines().last().unwrap());
    for i in 0..30 {
        let body = ask(mosquitto.port, &format!("back-{i}")).await;
        assert_eq!(body["channel"], "stable", "{body}");
        assert_ne!(body["revision"], candidate.as_str());
    }
    for s in services {
        s.shutdown().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarts_keep_the_state_and_a_new_instance_serves_the_same_bytes() {
    let keys = ReleaseKeys::new();
    let mut mosquitto = Mosquitto::start_with(PERSISTENT).await;
    let url = mosquitto.url();
    let catalog = TempCatalog::examples();
    let dir = tempfile::tempdir().unwrap();
    let a = serve_with(manual(&keys, &catalog, &url, dir.path(), &[])).await;
    touch(&catalog, "v2");
    let key = ("ios".to_string(), "next".to_string());
    let staged = eventually(TIMEOUT, "a candidate", || {
        a.state.releases().unwrap().states().get(&key).and_then(|s| s.candidate.clone())
    })
    .await;
    on_broker(mosquitto.port, &staged).await;
    ok(operator(&url, &keys, &["rollout", "--platform", "ios", "--variant", "next", "--percent", "40"]));
    ok(operator(&url, &keys, &["disable", "--connector", "payments/card-reader", "--platform", "ios"]));
    let before = state_of(mosquitto.port, "s-before").await;
    let reply_before = ask(mosquitto.port, "dev-r").await;
    a.shutdown().await.unwrap();

    // Broker and instance restart: the same state, the same reply.
    mosquitto.restart().await;
    let a = serve_with(manual(&keys, &catalog, &url, dir.path(), &[])).await;
    assert_eq!(state_of(mosquitto.port, "s-after").await, before);
    assert_eq!(ask(mosquitto.port, "dev-r").await, reply_before);
    a.shutdown().await.unwrap();

    // A new instance with an empty state directory and an older catalog serves the group's revisions, from the
    // bundles on the broker.
    let older = TempCatalog::examples();
    let fresh = tempfile::tempdir().unwrap();
    let b = serve_with(manual(&keys, &older, &url, fresh.path(), &[])).await;
    assert_eq!(state_of(mosquitto.port, "s-fresh").await, before, "the new instance must not change the state");
    assert_eq!(ask(mosquitto.port, "dev-r").await, reply_before);
    b.shutdown().await.unwrap();
}

/// The `n` devices after the first `skip` whose bucket puts them on `channel` of `state`.
pub fn devices_on(state: &ReleaseState, channel: Channel, skip: usize, n: usize) -> Vec<String> {
    (0..).map(|i| format!("rep-{i}")).filter(|d| state.channel(Some(d)) == channel).skip(skip).take(n).collect()
}

/// One outcome report for `revision` as an app would send it (a NestJS event, QoS 0) on `topic`.
pub async fn report_on(app: &Client, topic: &str, revision: &str, ok: bool) {
    let data = json!({"platform": "ios", "version": "3.1.0", "revision": revision, "connector": "fleet/tracking",
                      "ok": ok, "error": if ok { Value::Null } else { "TypeError: x is undefined".into() }});
    app.publish_qos0(topic, json!({"pattern": "connectorsReport", "data": data}).to_string()).await;
}

/// `ok` then `failed` reports for `revision`, each from another device of `devices` on its own topic.
pub async fn report(app: &Client, devices: &[String], revision: &str, ok: usize, failed: usize) {
    assert_eq!(devices.len(), ok + failed);
    for (i, device) in devices.iter().enumerate() {
        report_on(app, &format!("connectorsReport/{device}"), revision, i < ok).await;
    }
}

pub fn reports_counted(r: &Running) -> u64 {
    let text = connector_scripts::ops::metrics_text(&r.state);
    text.lines()
        .filter(|l| l.starts_with("connector_scripts_reports_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_halt_rolls_back_a_failing_candidate_and_leaves_an_equal_one() {
    let keys = ReleaseKeys::new();
    let catalog = TempCatalog::examples();
    let dir = tempfile::tempdir().unwrap();
    let mosquitto = Mosquitto::start().await;
    let url = mosquitto.url();
    let service = serve_with(manual(&keys, &catalog, &url, dir.path(), &["--auto-halt"])).await;
    let stable = ask(mosquitto.port, "dev-h").await["revision"].as_str().unwrap().to_string();
    let key = ("ios".to_string(), "next".to_string());
    let staged = |marker: &'static str| {
        touch(&catalog, marker);
        let previous = service.state.releases().unwrap().states()[&key].candidate.clone();
        let service = &service;
        let key = key.clone();
        eventually(TIMEOUT, "a new candidate", move || {
            service.state.releases().unwrap().states()[&key].candidate.clone().filter(|c| Some(c) != previous.as_ref())
        })
    };
    let app = Client::v4(mosquitto.port, "reporter").await;

    // Equal failure rates: every report counted, the candidate stays.
    let candidate = staged("v2").await;
    on_broker(mosquitto.port, &candidate).await;
    ok(operator(&url, &keys, &["rollout", "--platform", "ios", "--variant", "next", "--percent", "50"]));
    let half = state_where(mosquitto.port, "s-half", |s| s.basis_points == 5_000).await;
    report(&app, &devices_on(&half, Channel::Stable, 0, 100), &stable, 90, 10).await;
    report(&app, &devices_on(&half, Channel::Candidate, 0, 100), &candidate, 90, 10).await;
    eventually(TIMEOUT, "200 reports counted", || (reports_counted(&service) == 200).then_some(())).await;
    assert_eq!(service.state.releases().unwrap().states()[&key].candidate.as_deref(), Some(candidate.as_str()));
    assert_eq!(service.state.metrics.auto_halts.get(), 0);

    // The candidate fails far more often: rolled back by itself, on the broker too.
    report(&app, &devices_on(&half, Channel::Candidate, 100, 100), &candidate, 40, 60).await;
    let halted = eventually(TIMEOUT, "the candidate halted", || {
        let s = service.state.releases().unwrap().states()[&key].clone();
        s.candidate.is_none().then_some(s)
    })
    .await;
    assert_eq!((halted.by.as_str(), halted.stable.as_str()), ("auto-halt", stable.as_str()));
    eventually(TIMEOUT, "the halt counted", || (service.state.metrics.auto_halts.get() == 1).then_some(())).await;
    state_where(mosquitto.port, "s-halt", |s| s.by == "auto-halt" && s.candidate.is_none()).await;
    assert_eq!(ask(mosquitto.port, "dev-h").await["revision"], stable.as_str());
    service.shutdown().await.unwrap();
}
