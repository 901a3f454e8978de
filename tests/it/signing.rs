//! Signed manifests: keys from `keygen`, replies and retained manifests verified by Node's own `crypto` (shares no
//! code with the service) and by `clients/js`, tampering named in the error, manifests that heal themselves.

use crate::common::mqtt::{config, nest, serve_with, Client, TIMEOUT};
use crate::common::{eventually, node_json, Mosquitto, TempCatalog};
use connector_scripts::app::Running;
use connector_scripts::signing::{verify_reply, TrustedKeys, VerifyError};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

const CLI: &str = env!("CARGO_BIN_EXE_connector-scripts");

/// A key pair written by the `keygen` command: (private, public, key id).
pub(crate) fn keygen(dir: &Path, name: &str) -> (PathBuf, PathBuf, String) {
    let out = Command::new(CLI).args(["keygen", "--out"]).arg(dir.join(name)).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    let id = stdout.lines().find_map(|l| l.strip_prefix("key id")).expect("key id printed").trim().to_string();
    (dir.join(format!("{name}.key")), dir.join(format!("{name}.pub")), id)
}

/// Both independent verifiers' verdicts on a reply body or a retained manifest.
fn check(doc: &Value, keys: &[&Path], kind: &str) -> Value {
    let pems: Vec<String> = keys.iter().map(|k| std::fs::read_to_string(k).unwrap()).collect();
    node_json("verify_reply.mjs", &json!({"doc": doc, "keys": pems, "kind": kind}))
}

fn assert_verified(doc: &Value, public: &Path, key_id: &str, kind: &str) -> Value {
    let v = check(doc, &[public], kind);
    assert_eq!(v["node"]["ok"], true, "node crypto: {v}");
    assert_eq!(v["client"]["ok"], true, "clients/js: {v}");
    assert_eq!(v["client"]["keyId"], key_id, "{v}");
    v
}

struct Signed {
    _keys: tempfile::TempDir,
    public: PathBuf,
    key_id: String,
    mosquitto: Mosquitto,
    service: Running,
    catalog: TempCatalog,
}

async fn signed_service() -> Signed {
    let keys = tempfile::tempdir().unwrap();
    let (private, public, key_id) = keygen(keys.path(), "prod");
    let catalog = TempCatalog::examples();
    let mosquitto = Mosquitto::start().await;
    let service = serve_with(config(&catalog, &mosquitto.url(), &["--signing-key", private.to_str().unwrap()])).await;
    Signed { _keys: keys, public, key_id, mosquitto, service, catalog }
}

/// A NestJS-envelope request for ios 3.1.0 (the `next` variant); the reply body.
async fn nest_reply(port: u16, device: &str, data: Value) -> Value {
    let mut app = Client::v4(port, device).await;
    app.subscribe(&format!("getConnectors/{device}/reply")).await;
    app.publish(&format!("getConnectors/{device}"), nest(data, "1")).await;
    let reply = app.recv().await.json();
    reply["response"].clone()
}

async fn retained_manifest(port: u16, topic: &str) -> Value {
    let mut sub = Client::v4(port, &format!("sub-{}", topic.replace('/', "-"))).await;
    sub.subscribe(topic).await;
    sub.recv().await.json()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_replies_and_manifests_verify_with_node_crypto_and_the_js_client() {
    let s = signed_service().await;
    let port = s.mosquitto.port;
    // NestJS envelope.
    let body = nest_reply(port, "signed-nest", json!({"platform": "ios", "version": "3.1.0"})).await;
    let v = assert_verified(&body, &s.public, &s.key_id, "reply");
    assert!(v["client"]["scripts"].as_u64().unwrap() >= 4, "{v}");
    // A subset of the connectors verifies against the same (full) manifest.
    let subset = nest_reply(
        port,
        "signed-subset",
        json!({"platform": "ios", "version": "3.1.0", "connectors": ["fleet/tracking"]}),
    )
    .await;
    assert_eq!(assert_verified(&subset, &s.public, &s.key_id, "reply")["client"]["scripts"], 1);
    // MQTT 5 request/response: the bare body.
    let mut app = Client::v5(port, "signed-v5").await;
    app.subscribe("replies/signed-v5/#").await;
    let ask = json!({"platform": "ios", "version": "3.1.0"}).to_string();
    app.publish_rr("getConnectors/signed-v5", ask, "replies/signed-v5/x", b"c1").await;
    let bare = app.recv().await.json();
    assert_verified(&bare, &s.public, &s.key_id, "reply");
    // The retained manifest carries the same signed text.
    let retained = retained_manifest(port, "connectors/ios/next").await;
    let before = assert_verified(&retained, &s.public, &s.key_id, "manifest");
    assert_eq!(retained["manifest"], body["manifest"]);
    // The revision notice beside it: small, signed, the same revision and signing time.
    let notice = retained_manifest(port, "connectors/ios/next/rev").await;
    let n = assert_verified(&notice, &s.public, &s.key_id, "notice");
    assert_eq!((&notice["revision"], &n["node"]["signedAt"]), (&retained["revision"], &before["node"]["signedAt"]));
    assert!(notice.to_string().len() < 400, "{notice}");
    // Gzipped, the signed manifest travels as manifestGz, and verifies as what it inflates to.
    let gz = json!({"platform": "ios", "version": "3.1.0", "accept": ["gzip"]});
    let gz = nest_reply(port, "signed-gzip", gz).await;
    assert!(gz.get("manifest").is_none() && gz["manifestGz"].is_string(), "{gz}");
    assert_verified(&gz, &s.public, &s.key_id, "reply");
    // After a hot reload the new manifest verifies and was signed later.
    let mut sub = Client::v4(port, "signed-reload").await;
    sub.subscribe("connectors/ios/next").await;
    let old_revision = sub.recv().await.json()["revision"].clone();
    s.catalog.snippet("smart-home/thermostat.ts", {
        let path = s.catalog.snippets().join("smart-home/thermostat.ts");
        format!("{}\nexport const reloaded = 1;\n", std::fs::read_to_string(path).unwrap())
    });
    let fresh = loop {
        let m = sub.recv().await.json();
        if m["revision"] != old_revision {
            break m;
        }
    };
    let after = assert_verified(&fresh, &s.public, &s.key_id, "manifest");
    let at = |v: &Value| humantime::parse_rfc3339(v["node"]["signedAt"].as_str().unwrap()).unwrap();
    assert!(at(&after) > at(&before), "signedAt did not grow: {before} then {after}");
    s.service.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_replies_fail_and_name_what_failed() {
    let s = signed_service().await;
    let body = nest_reply(s.mosquitto.port, "tamper", json!({"platform": "ios", "version": "3.1.0"})).await;
    let trusted = TrustedKeys::load(std::slice::from_ref(&s.public)).unwrap();
    assert!(verify_reply(&body, &trusted).is_ok());

    // One byte of a script's code.
    let mut code = body.clone();
    let first = code["connectors"][0]["code"].as_str().unwrap().to_string();
    code["connectors"][0]["code"] = format!("{}X", &first[..first.len() - 1]).into();
    let v = check(&code, &[&s.public], "reply");
    assert!(v["node"]["error"].as_str().unwrap().contains("hash check failed"), "{v}");
    assert_eq!(v["client"]["code"], "hash", "{v}");
    assert!(matches!(verify_reply(&code, &trusted), Err(VerifyError::Hash { .. })));

    // One byte of the manifest text.
    let mut text = body.clone();
    let manifest = text["manifest"].as_str().unwrap().replacen("\"signedAt\":\"2", "\"signedAt\":\"1", 1);
    assert_ne!(Value::from(manifest.clone()), body["manifest"]);
    text["manifest"] = manifest.into();
    let v = check(&text, &[&s.public], "reply");
    assert_eq!(v["node"]["error"], "signature check failed", "{v}");
    assert_eq!(v["client"]["code"], "bad-signature", "{v}");
    assert!(matches!(verify_reply(&text, &trusted), Err(VerifyError::BadSignature { .. })));

    // Trusting only another key.
    let other = tempfile::tempdir().unwrap();
    let (_, other_pub, _) = keygen(other.path(), "other");
    let v = check(&body, &[&other_pub], "reply");
    assert!(v["node"]["error"].as_str().unwrap().contains("unknown key id"), "{v}");
    assert_eq!(v["client"]["code"], "unknown-key", "{v}");
    let only_other = TrustedKeys::load(&[other_pub]).unwrap();
    let err = verify_reply(&body, &only_other).unwrap_err();
    assert!(err.to_string().contains(&s.key_id), "{err}");

    // The CLI check, as an operator runs it.
    let request = |key: &Path| {
        Command::new(CLI)
            .args(["request", "--broker", &s.mosquitto.url(), "--platform", "ios", "--version", "3.1.0"])
            .arg("--verify-key")
            .arg(key)
            .output()
            .unwrap()
    };
    let ok = request(&s.public);
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    assert!(String::from_utf8_lossy(&ok.stdout).contains(&format!("signature ok (key {})", s.key_id)));
    let wrong = request(&other.path().join("other.pub"));
    assert!(!wrong.status.success());
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("unknown key id"));
    let not_a_key = request(&s.catalog.snippets().join("fleet/tracking.ts"));
    let stderr = String::from_utf8_lossy(&not_a_key.stderr);
    assert!(!not_a_key.status.success() && stderr.contains("fleet/tracking.ts") && stderr.contains("SPKI"), "{stderr}");
    s.service.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_key_replies_are_unsigned_as_before() {
    let catalog = TempCatalog::examples();
    let mosquitto = Mosquitto::start().await;
    let service = serve_with(config(&catalog, &mosquitto.url(), &[])).await;
    let body = nest_reply(mosquitto.port, "unsigned", json!({"platform": "ios", "version": "3.1.0"})).await;
    assert!(body["connectors"].as_array().is_some_and(|c| !c.is_empty()), "{body}");
    assert!(body.get("manifest").is_none() && body.get("signature").is_none(), "{body}");
    let retained = retained_manifest(mosquitto.port, "connectors/ios/next").await;
    assert!(retained.get("signature").is_none() && retained["revision"] == body["revision"], "{retained}");
    assert_eq!(verify_reply(&body, &TrustedKeys::default()).unwrap_err(), VerifyError::Unsigned);
    service.shutdown().await.unwrap();
}

#[test]
fn key_files_that_cannot_serve_are_refused_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let (private, public, _) = keygen(dir.path(), "k");
    let serve = |key: &Path| {
        Command::new(CLI)
            .args(["serve", "--broker", "mqtt://127.0.0.1:9", "--http-listen", "off", "--signing-key"])
            .arg(key)
            .output()
            .unwrap()
    };
    for (key, needle) in [(public.clone(), "PKCS#8"), (dir.path().join("missing.key"), "cannot read")] {
        let out = serve(&key);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{stderr}");
        assert!(stderr.contains(key.to_str().unwrap()) && stderr.contains(needle), "{stderr}");
    }
    // keygen never overwrites.
    let again = Command::new(CLI).args(["keygen", "--out"]).arg(dir.path().join("k")).output().unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&private).unwrap().permissions().mode() & 0o777, 0o600);
        // Group- or world-readable keys are refused, as ssh refuses them, with the command that fixes it; by
        // `serve` too, before anything starts.
        for (mode, who) in [(0o644, "its group and other users"), (0o640, "its group"), (0o604, "other users")] {
            std::fs::set_permissions(&private, std::fs::Permissions::from_mode(mode)).unwrap();
            let err = connector_scripts::signing::Signer::load(&private).unwrap_err().to_string();
            assert!(err.contains(&format!("readable by {who}")) && err.contains("chmod 600"), "{mode:o}: {err}");
            let out = serve(&private);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success() && stderr.contains("chmod 600"), "{stderr}");
        }
        std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o400)).unwrap();
        assert!(connector_scripts::signing::Signer::load(&private).is_ok(), "owner-only is fine");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_manifests_are_replaced_or_cleared_at_once() {
    let s = signed_service().await;
    let port = s.mosquitto.port;
    let intruder = Client::v4(port, "intruder").await;
    let forged = json!({"revision": "evil", "connectors": [], "publishedAt": "2099-01-01T00:00:00.000Z"});
    let published = Instant::now();
    // The manifests and the revision notices beside them.
    for topic in ["connectors/ios/next", "connectors/ios/ghost", "connectors/ios/next/rev", "connectors/ios/ghost/rev"]
    {
        intruder.publish_retained(topic, forged.to_string()).await;
    }
    let healed = |action: &str| {
        let text = connector_scripts::ops::metrics_text(&s.service.state);
        text.lines()
            .find(|l| l.starts_with(&format!("connector_scripts_manifests_healed_total{{action=\"{action}\"}}")))
            .and_then(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .filter(|n| *n >= 2)
    };
    eventually(TIMEOUT, "the forged manifest replaced", || healed("replaced")).await;
    eventually(TIMEOUT, "the ghost manifest cleared", || healed("cleared")).await;
    // What a phone subscribing now gets: the service's own, verifiable manifest (its republish follows the count by
    // a moment: the forged one may still come first, then ours), and no ghost.
    for (topic, kind) in [("connectors/ios/next", "manifest"), ("connectors/ios/next/rev", "notice")] {
        let mut phone = Client::v4(port, &format!("healed-{kind}")).await;
        phone.subscribe(topic).await;
        let ours = loop {
            let m = phone.recv().await.json();
            if m["revision"] != "evil" {
                break m;
            }
        };
        assert_verified(&ours, &s.public, &s.key_id, kind);
    }
    // The clear follows the count by a moment too: a late phone finds no ghost once it has gone through.
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    for attempt in 0.. {
        let mut phone = Client::v4(port, &format!("late-phone-{attempt}")).await;
        phone.subscribe("probe/late-phone").await;
        phone.subscribe("connectors/ios/ghost").await;
        phone.subscribe("connectors/ios/ghost/rev").await;
        intruder.publish("probe/late-phone", "marker").await;
        let first = phone.recv().await;
        if first.topic == "probe/late-phone" {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "a retained ghost manifest is still there: {first:?}");
    }
    println!("healed within {:?} of the forgery", published.elapsed());
    s.service.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_deploy_converges_on_the_newest_manifest_without_a_fight() {
    let keys = tempfile::tempdir().unwrap();
    let (private, public, key_id) = keygen(keys.path(), "prod");
    let key = ["--signing-key", private.to_str().unwrap(), "--share-group", "deploy"];
    let mosquitto = Mosquitto::start().await;
    let old = TempCatalog::examples();
    let a = serve_with(config(&old, &mosquitto.url(), &key)).await;
    let new = TempCatalog::examples();
    let path = new.snippets().join("smart-home/thermostat.ts");
    new.snippet(
        "smart-home/thermostat.ts",
        format!("{}\nexport const v2 = true;\n", std::fs::read_to_string(path).unwrap()),
    );
    let b = serve_with(config(&new, &mosquitto.url(), &key)).await;
    let revision = |r: &Running| {
        let c = r.state.catalog().unwrap();
        let rev = c.bundles().find(|b| b.platform == "ios" && b.variant == "next").unwrap().revision.clone();
        rev
    };
    let (old_rev, new_rev) = (revision(&a), revision(&b));
    assert_ne!(old_rev, new_rev);
    let mut phone = Client::v4(mosquitto.port, "deploy-phone").await;
    phone.subscribe("connectors/ios/next").await;
    loop {
        let m = phone.recv().await.json();
        if m["revision"] == new_rev.as_str() {
            assert_verified(&m, &public, &key_id, "manifest");
            break;
        }
    }
    // Settled: a round trip through each instance's connection (behind any manifest still in flight) changes no
    // heal counter, and a late subscriber still gets the newest.
    let healed = |r: &Running| {
        connector_scripts::ops::metrics_text(&r.state)
            .lines()
            .filter(|l| l.contains("manifests_healed_total{"))
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    let before = (healed(&a), healed(&b));
    for device in ["deploy-a", "deploy-b"] {
        let body = nest_reply(mosquitto.port, device, json!({"platform": "ios", "version": "3.1.0"})).await;
        assert!(body["revision"] == old_rev.as_str() || body["revision"] == new_rev.as_str(), "{body}");
    }
    assert_eq!((healed(&a), healed(&b)), before, "the instances are still rewriting each other's manifests");
    assert_eq!(retained_manifest(mosquitto.port, "connectors/ios/next").await["revision"], new_rev.as_str());
    assert_eq!(retained_manifest(mosquitto.port, "connectors/ios/next/rev").await["revision"], new_rev.as_str());
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
}
