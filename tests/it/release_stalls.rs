//! The release plane under load, at start and across a key rotation (issue #23): reports neither republish the
//! liveness message nor delay requests, requests queued before the release sync do not stall a starting instance,
//! and instances with an old and a new signing key converge instead of fighting.

use crate::common::mqtt::{nest, serve_with, Client, TIMEOUT};
use crate::common::release::ReleaseKeys;
use crate::common::{eventually, Mosquitto, TempCatalog};
use crate::releases::{ask, devices_on, manual, report, reports_counted, state_where};
use connector_scripts::release::state::Channel;
use connector_scripts::signing::TrustedKeys;
use serde_json::json;

async fn serve_with_manual(
    keys: &ReleaseKeys,
    catalog: &TempCatalog,
    url: &str,
    dir: &std::path::Path,
) -> connector_scripts::app::Running {
    serve_with(manual(keys, catalog, url, dir, &[])).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_neither_republish_the_liveness_message_nor_delay_requests() {
    let keys = ReleaseKeys::new();
    let catalog = TempCatalog::examples();
    let dir = tempfile::tempdir().unwrap();
    let mosquitto = Mosquitto::start().await;
    let (url, port) = (mosquitto.url(), mosquitto.port);
    let service = serve_with_manual(&keys, &catalog, &url, dir.path()).await;
    let stable = ask(port, "dev-a").await["revision"].as_str().unwrap().to_string();
    let state = state_where(port, "s1", |s| s.stable == stable).await;
    let mut status = Client::v4(port, "watcher").await;
    status.subscribe("connector-scripts/status/+").await;
    let _retained = status.recv().await;

    // 120 reports from 120 devices, each a vote; then requests (QoS 1) still answered at once.
    let app = Client::v4(port, "reporter").await;
    let started = std::time::Instant::now();
    report(&app, &devices_on(&state, Channel::Stable, 0, 120), &stable, 120, 0).await;
    eventually(TIMEOUT, "120 votes", || (reports_counted(&service) == 120).then_some(())).await;
    assert_eq!(ask(port, "dev-b").await["revision"], stable.as_str());
    // Watched for as long again as the reports took: at most one refresh of the per-revision figures per 5 s.
    let mut liveness = 0;
    while status.try_recv_within(std::time::Duration::from_millis(300)).await.is_some() {
        liveness += 1;
    }
    let periods = 1 + started.elapsed().as_secs() / 5;
    assert!(liveness as u64 <= periods, "{liveness} liveness messages in {:?} for 120 reports", started.elapsed());
    service.shutdown().await.unwrap();
}

const PERSISTENT: &str = "allow_anonymous true\npersistence true\npersistence_location {dir}/\nautosave_interval 1\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_queued_before_the_release_sync_do_not_stall_a_manual_start() {
    let keys = ReleaseKeys::new();
    let catalog = TempCatalog::examples();
    let dir = tempfile::tempdir().unwrap();
    let mosquitto = Mosquitto::start_with(PERSISTENT).await;
    let url = mosquitto.url();
    let session = ["--persistent-session", "--client-id", "cs-manual-start", "--rate-limit", "0"];
    let start = || serve_with(manual(&keys, &catalog, &url, dir.path(), &session));
    start().await.shutdown().await.unwrap();
    // Three requests (QoS 1) wait in the broker for the persistent session while the instance is down.
    let mut app = Client::v4(mosquitto.port, "queued-app").await;
    app.subscribe("getConnectors/queued-app/reply").await;
    for i in 0..3 {
        let body = nest(json!({"platform": "ios", "version": "3.1.0"}), &format!("q{i}"));
        app.publish("getConnectors/queued-app", body).await;
    }
    // serve_with waits for ready within TIMEOUT: each queued request used to hold the sync probe for 30 s.
    let started = std::time::Instant::now();
    let service = start().await;
    assert!(started.elapsed() < TIMEOUT, "ready after {:?}", started.elapsed());
    let mut answered = std::collections::BTreeSet::new();
    while answered.len() < 3 {
        let v = app.recv().await.json();
        answered.insert(v["id"].as_str().unwrap().to_string());
    }
    assert_eq!(ask(mosquitto.port, "after-start").await["channel"], "stable");
    service.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_with_two_trusted_keys_converge_instead_of_fighting() {
    let (old, new) = (ReleaseKeys::new(), ReleaseKeys::new());
    let mosquitto = Mosquitto::start().await;
    let url = mosquitto.url();
    // Rotation as the README documents it: the instance with the new key and the one still on the old key each
    // trust the other's public key.
    let flags = |own: &ReleaseKeys, other: &ReleaseKeys| {
        let path = |p: &std::path::PathBuf| p.display().to_string();
        vec!["--signing-key".to_string(), path(&own.signing.0), "--trusted-key".into(), path(&other.signing.1)]
    };
    let (ca, cb) = (TempCatalog::examples(), TempCatalog::examples());
    let mut phone = Client::v4(mosquitto.port, "rotation-phone").await;
    phone.subscribe("connectors/#").await;
    let fa = flags(&old, &new);
    let a = crate::common::mqtt::serve_with(crate::common::mqtt::config(
        &ca,
        &url,
        &fa.iter().map(String::as_str).collect::<Vec<_>>(),
    ))
    .await;
    let fb = flags(&new, &old);
    let b = crate::common::mqtt::serve_with(crate::common::mqtt::config(
        &cb,
        &url,
        &fb.iter().map(String::as_str).collect::<Vec<_>>(),
    ))
    .await;
    let started = std::time::Instant::now();
    let mut received = 0;
    while started.elapsed() < std::time::Duration::from_secs(5) {
        if phone.try_recv_within(std::time::Duration::from_millis(200)).await.is_some() {
            received += 1;
        }
    }
    // Each instance publishes each variant's manifest once (6 variants) and an event or two: a handful.
    assert!(received <= 40, "{received} messages to one phone in 5 s");
    let healed = |r: &connector_scripts::app::Running| {
        connector_scripts::ops::metrics_text(&r.state)
            .lines()
            .filter(|l| l.starts_with("connector_scripts_manifests_healed_total{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum::<u64>()
    };
    assert_eq!((healed(&a), healed(&b)), (0, 0), "the instances rewrote each other's manifests");
    // Whoever wrote last, the retained manifest verifies against the keys apps ship (old and new).
    let mut late = Client::v4(mosquitto.port, "late-phone").await;
    late.subscribe("connectors/ios/next").await;
    let doc = late.recv().await.json();
    let trusted = TrustedKeys::load(&[old.signing.1.clone(), new.signing.1.clone()]).unwrap();
    connector_scripts::signing::verify_manifest(&doc, &trusted).unwrap();
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
}
