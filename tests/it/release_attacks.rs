//! The release plane attacked from the broker (issue #23): whoever can publish under the release prefix must not
//! change what phones get. Forged states and bundles are refused, counted and never stored; a `seq` that cannot
//! grow is refused; candidates and rollbacks verify in an app; one device cannot move an auto-halt.

use crate::common::mqtt::{Client, TIMEOUT};
use crate::common::release::{rejected, serve_embedded_manual, ReleaseKeys};
use crate::common::{eventually, node_json, Mosquitto, TempCatalog};
use crate::releases::{
    ask, devices_on, manual, ok, on_broker, operator, report, report_on, reports_counted, state_where, touch,
};
use connector_scripts::catalog::{Bundle, Script};
use connector_scripts::release::state::{Channel, ReleaseState};
use connector_scripts::release::{store, trust};
use connector_scripts::signing::{verify_reply, Signer, TrustedKeys};
use serde_json::json;

const STATE: &str = "connector-scripts/releases/ios/next";

fn ios_next() -> (String, String) {
    ("ios".to_string(), "next".to_string())
}

/// A bundle of the attacker's code in the genuine format of `genuine`'s variant: its hashes and revision only
/// prove it is consistent with itself.
fn evil_bundle(genuine: &Bundle) -> Bundle {
    let code = "globalThis.pwned = true;";
    let script = Script {
        name: genuine.scripts[0].name.clone(),
        code: code.into(),
        sha256: connector_scripts::catalog::bundle::sha256_hex(code.as_bytes()),
        source_map: None,
    };
    Bundle::new("ios", "next", &genuine.versions, genuine.options, vec![script])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_anonymous_forged_state_and_bundle_on_the_embedded_broker_change_nothing() {
    let keys = ReleaseKeys::new();
    let catalog = TempCatalog::examples();
    let dir = tempfile::tempdir().unwrap();
    let (service, port) = serve_embedded_manual(&keys, &catalog, dir.path(), &[]).await;
    let genuine = ask(port, "dev-a").await;
    let r1 = genuine["revision"].as_str().unwrap().to_string();
    let before = state_where(port, "s1", |s| s.stable == r1).await;
    let built =
        service.state.catalog().unwrap().bundles().find(|b| b.variant == "next" && b.platform == "ios").cloned();
    let evil = evil_bundle(&built.unwrap());

    // An anonymous client publishes the bundle in the store format, then with a manifest signed by its own key,
    // and a state naming it far ahead with the signedAt it chose: unsigned, then signed by its own key.
    let attacker = Client::v4(port, "anonymous").await;
    let stranger = Signer::from_bytes(&[42; 32]);
    let bundle_topic = format!("{STATE}/bundles/{}", evil.revision);
    attacker.publish_retained(&bundle_topic, store::encode(&evil)).await;
    attacker.publish_retained(&bundle_topic, trust::seal_bundle(&evil, &stranger)).await;
    let forged = ReleaseState {
        stable: evil.revision.clone(),
        latest: evil.revision.clone(),
        seq: before.seq + 1_000,
        updated_at: "2030-01-01T00:00:00.000Z".into(),
        by: "attacker".into(),
        ..before.clone()
    };
    attacker.publish_retained(STATE, serde_json::to_vec(&forged).unwrap()).await;
    attacker.publish_retained(STATE, trust::seal_state(&ios_next(), &forged, &stranger)).await;
    eventually(TIMEOUT, "the forged states and bundles refused and counted", || {
        let s = &service.state;
        (rejected(s, "kind=\"state\"") == 2 && rejected(s, "kind=\"bundle\"") == 2).then_some(())
    })
    .await;
    assert_eq!(rejected(&service.state, "reason=\"unknown_key\""), 2, "signed by a stranger's key");

    // Not applied, not stored; phones keep the genuine signed revision.
    assert_eq!(service.state.releases().unwrap().states()[&ios_next()], before);
    assert!(
        !dir.path().join(format!("bundles/ios/next/{}.json", evil.revision)).exists(),
        "the forged bundle was stored"
    );
    let kept: ReleaseState =
        serde_json::from_slice(&std::fs::read(dir.path().join("states/ios/next.json")).unwrap()).unwrap();
    assert_eq!(kept, before, "the forged state was stored");
    let body = ask(port, "dev-b").await;
    assert_eq!(body["revision"], r1.as_str());
    let trusted = TrustedKeys::load(std::slice::from_ref(&keys.signing.1)).unwrap();
    let verified = verify_reply(&body, &trusted).unwrap();
    assert_eq!(
        verified.manifest.signed_at,
        genuine["manifest"]
            .as_str()
            .map(|m| {
                serde_json::from_str::<serde_json::Value>(m).unwrap()["signedAt"].as_str().unwrap().to_string()
            })
            .unwrap()
    );
    service.shutdown().await.unwrap();

    // A restart against an empty broker republishes the genuine state, not the forged one.
    let (again, port) = serve_embedded_manual(&keys, &catalog, dir.path(), &[]).await;
    let republished = state_where(port, "s2", |_| true).await;
    assert_eq!(republished, before);
    again.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_whose_seq_cannot_grow_is_refused_and_never_wraps() {
    let keys = ReleaseKeys::new();
    let catalog = TempCatalog::examples();
    let dir = tempfile::tempdir().unwrap();
    let mosquitto = Mosquitto::start().await;
    let url = mosquitto.url();
    let service = serve_with_manual(&keys, &catalog, &url, dir.path()).await;
    let r1 = ask(mosquitto.port, "dev-a").await["revision"].as_str().unwrap().to_string();
    let before = state_where(mosquitto.port, "s1", |s| s.stable == r1).await;

    // Even signed by a trusted operator key: no change could ever follow it.
    let operator_key = Signer::load(&keys.operator.0).unwrap();
    let last = ReleaseState { seq: u64::MAX, by: "operator".into(), ..before.clone() };
    let client = Client::v4(mosquitto.port, "publisher").await;
    client.publish_retained(STATE, trust::seal_state(&ios_next(), &last, &operator_key)).await;
    eventually(TIMEOUT, "the state refused", || {
        (rejected(&service.state, "reason=\"seq_exhausted\"") == 1).then_some(())
    })
    .await;
    assert_eq!(service.state.releases().unwrap().states()[&ios_next()], before);

    // The operator command does not build on it either: no wrapped seq 0, no "applied by".
    let out = operator(&url, &keys, &["rollback", "--platform", "ios", "--variant", "next"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success() && !stdout.contains("applied by"), "{stdout}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("seq 18446744073709551615"), "{out:?}");
    // A genuine change still applies, with exactly its seq.
    let genuine = before.switch("fleet/tracking", false, "operator", std::time::SystemTime::now()).unwrap();
    client.publish_retained(STATE, trust::seal_state(&ios_next(), &genuine, &operator_key)).await;
    eventually(TIMEOUT, "the genuine change applied", || {
        let s = service.state.releases().unwrap().states()[&ios_next()].clone();
        (s == genuine).then_some(())
    })
    .await;
    let listed = ok(operator(&url, &keys, &["releases", "--platform", "ios"]));
    assert!(listed.contains("disabled   fleet/tracking"), "{listed}");
    service.shutdown().await.unwrap();
}

async fn serve_with_manual(
    keys: &ReleaseKeys,
    catalog: &TempCatalog,
    url: &str,
    dir: &std::path::Path,
) -> connector_scripts::app::Running {
    crate::common::mqtt::serve_with(manual(keys, catalog, url, dir, &[])).await
}

/// `request --device DEVICE --verify-key` against `url`: the CLI's own verification of what that device gets.
fn verified_by_request(url: &str, keys: &ReleaseKeys, device: &str) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_connector-scripts"))
        .args(["request", "--platform", "ios", "--version", "3.1.0", "--device", device, "--broker", url])
        .arg("--verify-key")
        .arg(&keys.signing.1)
        .output()
        .unwrap();
    ok(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn candidates_rollbacks_and_promotes_are_signed_and_pass_the_apps_replay_rule() {
    let keys = ReleaseKeys::new();
    let catalog = TempCatalog::examples();
    let dir = tempfile::tempdir().unwrap();
    let mosquitto = Mosquitto::start().await;
    let (url, port) = (mosquitto.url(), mosquitto.port);
    let service = serve_with_manual(&keys, &catalog, &url, dir.path()).await;
    let states = || service.state.releases().unwrap().states()[&ios_next()].clone();
    let stage = |marker: &'static str| {
        touch(&catalog, marker);
        let previous = states().latest;
        async move {
            let c = eventually(TIMEOUT, "a new candidate", || states().candidate.filter(|c| *c != previous)).await;
            on_broker(port, &c).await;
            c
        }
    };
    let mut replies = vec![ask(port, "walker").await];
    // Rollout: the candidate reply is signed; the CLI and clients/js verify it.
    let first = stage("v2").await;
    ok(operator(&url, &keys, &["rollout", "--platform", "ios", "--variant", "next", "--percent", "100"]));
    let candidate = ask(port, "walker").await;
    assert_eq!((candidate["channel"].as_str(), candidate["revision"].as_str()), (Some("candidate"), Some(&*first)));
    let said = verified_by_request(&url, &keys, "walker");
    assert!(said.contains("signature ok"), "{said}");
    replies.push(candidate.clone());
    // Rollback: the old stable, freshly signed.
    ok(operator(&url, &keys, &["rollback", "--platform", "ios", "--variant", "next"]));
    replies.push(ask(port, "walker").await);
    // A new candidate, then promote.
    let second = stage("v3").await;
    ok(operator(&url, &keys, &["rollout", "--platform", "ios", "--variant", "next", "--percent", "100"]));
    replies.push(ask(port, "walker").await);
    ok(operator(&url, &keys, &["promote", "--platform", "ios", "--variant", "next"]));
    let promoted = ask(port, "walker").await;
    assert_eq!((promoted["channel"].as_str(), promoted["revision"].as_str()), (Some("stable"), Some(&*second)));
    replies.push(promoted);
    // Replays of older replies: the first candidate, the first stable.
    replies.push(candidate);
    replies.push(replies[0].clone());

    let pem = std::fs::read_to_string(&keys.signing.1).unwrap();
    let walk = node_json("accept_walk.mjs", &json!({"replies": replies, "keys": [pem]}));
    let steps: Vec<(bool, Option<&str>)> =
        walk["steps"].as_array().unwrap().iter().map(|s| (s["ok"] == true, s["code"].as_str())).collect();
    let accepted = (true, None);
    let replayed = (false, Some("replayed"));
    assert_eq!(steps, [accepted, accepted, accepted, accepted, accepted, replayed, replayed], "{walk}");
    service.shutdown().await.unwrap();
}

/// `connector_scripts_reports_ignored_total{reason}`.
fn ignored(r: &connector_scripts::app::Running, reason: &str) -> u64 {
    let text = connector_scripts::ops::metrics_text(&r.state);
    let label = format!("reason=\"{reason}\"");
    text.lines()
        .filter(|l| l.starts_with("connector_scripts_reports_ignored_total{") && l.contains(&label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_device_cannot_halt_a_rollout_and_sixty_distinct_failing_devices_do() {
    let keys = ReleaseKeys::new();
    let catalog = TempCatalog::examples();
    let dir = tempfile::tempdir().unwrap();
    let mosquitto = Mosquitto::start().await;
    let (url, port) = (mosquitto.url(), mosquitto.port);
    let service = crate::common::mqtt::serve_with(manual(&keys, &catalog, &url, dir.path(), &["--auto-halt"])).await;
    let stable = ask(port, "dev-h").await["revision"].as_str().unwrap().to_string();
    touch(&catalog, "v2");
    let candidate = eventually(TIMEOUT, "a candidate", || {
        service.state.releases().unwrap().states()[&ios_next()].candidate.clone()
    })
    .await;
    on_broker(port, &candidate).await;
    ok(operator(&url, &keys, &["rollout", "--platform", "ios", "--variant", "next", "--percent", "50"]));
    let half = state_where(port, "s-half", |s| s.basis_points == 5_000).await;
    let app = Client::v4(port, "reporter").await;
    report(&app, &devices_on(&half, Channel::Stable, 0, 60), &stable, 60, 0).await;

    // One candidate device: 10 000 failures on its own topic, 10 000 on the bare topic (no identity).
    let flooder = &devices_on(&half, Channel::Candidate, 0, 1)[0];
    for _ in 0..10_000 {
        report_on(&app, &format!("connectorsReport/{flooder}"), &candidate, false).await;
        report_on(&app, "connectorsReport", &candidate, false).await;
    }
    // A last report from another device: counted once everything before it on this connection was handled
    // (sent again while it is not: a flood may shed QoS 0 reports, at the broker or in the service).
    let last = &devices_on(&half, Channel::Candidate, 1, 1)[0];
    let deadline = std::time::Instant::now() + TIMEOUT;
    while reports_counted(&service) < 62 {
        assert!(std::time::Instant::now() < deadline, "the flood was never handled: {}", reports_counted(&service));
        report_on(&app, &format!("connectorsReport/{last}"), &candidate, true).await;
        let _ = tokio::time::timeout(std::time::Duration::from_millis(500), async {
            while reports_counted(&service) < 62 {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        })
        .await;
    }
    assert_eq!(reports_counted(&service), 62, "60 stable devices, the flooding device once, the last device");
    assert_eq!(service.state.releases().unwrap().states()[&ios_next()].candidate.as_deref(), Some(&*candidate));
    assert_eq!(service.state.metrics.auto_halts.get(), 0);
    assert!(ignored(&service, "unattributed") > 0 && ignored(&service, "rate_limited") > 0);

    // 60 distinct candidate devices failing: halted.
    report(&app, &devices_on(&half, Channel::Candidate, 2, 60), &candidate, 0, 60).await;
    let halted = eventually(TIMEOUT, "the candidate halted", || {
        let s = service.state.releases().unwrap().states()[&ios_next()].clone();
        s.candidate.is_none().then_some(s)
    })
    .await;
    assert_eq!(halted.by, "auto-halt");
    service.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_topics_are_bounded_to_the_catalog_and_free_text_prints_terminal_safe() {
    let keys = ReleaseKeys::new();
    let catalog = TempCatalog::examples();
    let dir = tempfile::tempdir().unwrap();
    let mosquitto = Mosquitto::start().await;
    let (url, port) = (mosquitto.url(), mosquitto.port);
    let service = serve_with_manual(&keys, &catalog, &url, dir.path()).await;
    let r1 = ask(port, "dev-a").await["revision"].as_str().unwrap().to_string();
    let before = state_where(port, "s1", |s| s.stable == r1).await;
    let variants = service.state.releases().unwrap().states().len();

    // Signed by a trusted operator key, so only the topic is wrong: `..` would write outside states/, an unknown
    // variant would grow the store, memory and the liveness message.
    let operator_key = Signer::load(&keys.operator.0).unwrap();
    let client = Client::v4(port, "publisher").await;
    for (platform, variant) in [("..", "evil"), ("ios", "nonexistent"), ("nowhere", "next")] {
        let key = (platform.to_string(), variant.to_string());
        let topic = format!("connector-scripts/releases/{platform}/{variant}");
        client.publish_retained(&topic, trust::seal_state(&key, &before, &operator_key)).await;
    }
    eventually(TIMEOUT, "three states refused", || {
        (rejected(&service.state, "reason=\"unknown_variant\"") == 3).then_some(())
    })
    .await;
    assert_eq!(service.state.releases().unwrap().states().len(), variants);
    assert!(!dir.path().join("evil.json").exists() && !dir.path().join("states/ios/nonexistent.json").exists());
    assert!(!dir.path().join("states/nowhere").exists());

    // A trusted key's free text with terminal escapes: printed escaped.
    let shouting = before.switch("fleet/tracking", false, "\u{1b}[2J\u{1b}[31mroot", std::time::SystemTime::now());
    client.publish_retained(STATE, trust::seal_state(&ios_next(), &shouting.unwrap(), &operator_key)).await;
    eventually(TIMEOUT, "the change applied", || {
        service.state.releases().unwrap().states()[&ios_next()].disabled.contains("fleet/tracking").then_some(())
    })
    .await;
    let listed = ok(operator(&url, &keys, &["releases", "--platform", "ios"]));
    assert!(!listed.contains('\u{1b}') && listed.contains("\\u{1b}[31mroot"), "{listed}");
    service.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_older_signed_state_is_put_right_for_the_next_instance() {
    let keys = ReleaseKeys::new();
    let catalog = TempCatalog::examples();
    let dir = tempfile::tempdir().unwrap();
    let mosquitto = Mosquitto::start().await;
    let (url, port) = (mosquitto.url(), mosquitto.port);
    let service = serve_with_manual(&keys, &catalog, &url, dir.path()).await;
    let r1 = ask(port, "dev-a").await["revision"].as_str().unwrap().to_string();
    // The genuine first state, exactly as it was retained: anyone could have kept a copy.
    let mut sub = Client::v4(port, "recorder").await;
    sub.subscribe(STATE).await;
    let old = sub.recv().await.payload;
    ok(operator(&url, &keys, &["disable", "--connector", "fleet/tracking", "--platform", "ios"]));
    let current = state_where(port, "s2", |s| !s.disabled.is_empty()).await;
    assert_eq!(crate::common::release::parse_state(&old).stable, r1);

    // Replayed over the retained state: the instance keeps its state and puts it back on the broker.
    // (`sub` sees every publish on the topic in order: the change, the replay, then the instance's answer.)
    let parse = crate::common::release::parse_state;
    while parse(&sub.recv().await.payload) != current {}
    let attacker = Client::v4(port, "replayer").await;
    attacker.publish_retained(STATE, old.to_vec()).await;
    while parse(&sub.recv().await.payload).seq >= current.seq {}
    assert_eq!(parse(&sub.recv().await.payload), current, "the instance did not put its state back");
    assert_eq!(service.state.releases().unwrap().states()[&ios_next()], current);
    // A new instance with nothing on disk applies the group's state, not the replayed one.
    let fresh = tempfile::tempdir().unwrap();
    let other = TempCatalog::examples();
    let b = serve_with_manual(&keys, &other, &url, fresh.path()).await;
    assert_eq!(b.state.releases().unwrap().states()[&ios_next()], current);
    b.shutdown().await.unwrap();
    service.shutdown().await.unwrap();
}
