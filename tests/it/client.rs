//! The app-side client of clients/js (issue #25) against the real service, over MQTT TCP and over WebSocket:
//! tests/interop/client_flow.mjs walks one app through first start, a save, a tampered reply, an on-device
//! rollback and an offline restart; this file starts the service with its own key and checks what the app saw.

use crate::common::mqtt::{config, nest, serve_with, Client, TIMEOUT};
use crate::common::process::block_on;
use crate::common::{dead_broker, eventually, node_dir, node_json, Mosquitto, TempCatalog};
use connector_scripts::catalog::bundle::{code_of, sha256_hex};
use flate2::{write::GzEncoder, Compression};
use serde_json::{json, Map, Value};
use std::io::Write;

/// The service with its embedded broker (TCP and WebSocket listeners on free ports) signing with its own key;
/// returns it, the TCP and WebSocket URLs and the public key's PEM.
async fn signed_embedded(
    catalog: &TempCatalog,
    keys: &std::path::Path,
) -> (connector_scripts::app::Running, String, String, String) {
    signed_embedded_with(catalog, keys, &[]).await
}

/// [`signed_embedded`] with `extra` flags.
async fn signed_embedded_with(
    catalog: &TempCatalog,
    keys: &std::path::Path,
    extra: &[String],
) -> (connector_scripts::app::Running, String, String, String) {
    let (private, public, _) = crate::signing::keygen(keys, "prod");
    let flags = [vec!["--signing-key".to_string(), private.display().to_string()], extra.to_vec()].concat();
    let (running, ports) = crate::common::mqtt::serve_embedded_with(catalog, &flags, true).await;
    let pem = std::fs::read_to_string(&public).unwrap();
    let ws = ports.ws.expect("a WebSocket port");
    (running, format!("mqtt://127.0.0.1:{}", ports.v4), format!("ws://127.0.0.1:{ws}/mqtt"), pem)
}

/// Runs the client flow against the service over `transport` (`tcp` or `ws`) and checks every step.
async fn client_flow(transport: &str) {
    let catalog = TempCatalog::examples();
    let keys = tempfile::tempdir().unwrap();
    let (service, tcp, ws, pem) = signed_embedded(&catalog, keys.path()).await;
    let dead = dead_broker();
    let (url, dead_url) = match transport {
        "tcp" => (tcp, dead.url.clone()),
        _ => (ws, dead.url.replace("mqtt://", "ws://") + "/mqtt"),
    };
    let device = format!("phone-{transport}");
    let snippet = catalog.snippets().join("smart-home/thermostat.ts");
    let job = json!({"url": url, "deadUrl": dead_url, "keys": [pem], "device": device, "platform": "ios",
                     "version": "2.5.0", "upgradeVersion": "3.1.0", "snippet": snippet});
    let out: Value = tokio::task::spawn_blocking(move || node_json("client_flow.mjs", &job)).await.unwrap();
    let thermostat = json!(["smart-home/thermostat"]);

    // First start, empty storage: verified and stored.
    let first = &out["first"];
    assert_eq!(first["variant"], "current", "{out:#}");
    assert!(first["names"].as_array().unwrap().len() > 1 && first["stored"] == 1, "{out:#}");
    // A save reaches the client as a new verified revision, fetched as a delta with only the changed connector.
    let saved = &out["saved"];
    assert_ne!(saved["revision"], first["revision"], "{out:#}");
    assert_eq!(saved["delta"], true, "{out:#}");
    assert_eq!(saved["changed"], thermostat, "{out:#}");
    assert_eq!(saved["clientRevision"], saved["revision"], "{out:#}");
    // A tampered reply is refused, the old scripts stay; the client asks again and gets the genuine revision.
    let tampered = &out["tampered"];
    assert_eq!(tampered["code"], "hash", "{out:#}");
    assert_eq!(tampered["unchanged"], true, "{out:#}");
    assert!(tampered["tampered"].as_u64().unwrap() >= 1, "{out:#}");
    assert!(tampered["recovered"] != saved["revision"] && tampered["delta"] == true, "{out:#}");
    // A connector that throws on the new revision is rolled back on the device and reported.
    let rollback = &out["rollback"];
    assert_eq!(rollback["failing"], thermostat, "{out:#}");
    assert_eq!(rollback["connector"], "smart-home/thermostat", "{out:#}");
    assert_eq!(rollback["restoredIsPrevious"], true, "{out:#}");
    assert_eq!(rollback["runsNow"], true, "{out:#}");
    let report = &rollback["report"];
    assert_eq!(report["pattern"], "connectorsReport", "{out:#}");
    assert_eq!(report["data"]["connector"], "smart-home/thermostat", "{out:#}");
    assert_eq!(report["data"]["revision"], rollback["revision"], "{out:#}");
    assert_eq!(report["data"]["platform"], "ios", "{out:#}");
    // Restarted with the broker unreachable: the stored (rolled-back) bundle runs; trouble arrives as events.
    let offline = &out["offline"];
    assert_eq!(offline["revision"], rollback["revision"], "{out:#}");
    assert_eq!(offline["rolledBackKept"], true, "{out:#}");
    assert!(offline["errors"].as_array().unwrap().contains(&json!("connect")), "{out:#}");
    // The app updated to a version of another variant: that variant is fetched at once, verified and stored.
    assert_eq!(out["upgraded"]["variant"], "next", "{out:#}");
    assert_eq!(out["upgraded"]["stored"], "3.1.0", "{out:#}");
    // Storage altered on the device is checked again at load and refused: nothing runs from it.
    let altered = &out["alteredStorage"];
    assert_eq!(altered["loaded"], json!([]), "{out:#}");
    assert_eq!(altered["revision"], Value::Null, "{out:#}");
    assert!(altered["message"].as_str().unwrap().contains("does not match its signed manifest"), "{out:#}");
    service.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_app_client_over_tcp_updates_verifies_refuses_rolls_back_and_starts_offline() {
    client_flow("tcp").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_app_client_over_websocket_updates_verifies_refuses_rolls_back_and_starts_offline() {
    client_flow("ws").await;
}

#[test]
fn the_clients_gzip_round_trips_and_matches_the_services_decoder() {
    let texts = ["", "plain ascii", "unicode: é ✓ 𝄞", &"a long repeated line\n".repeat(500)];
    let mut gz = GzEncoder::new(Vec::new(), Compression::default());
    gz.write_all("made by flate2 ✓".as_bytes()).unwrap();
    use base64::Engine as _;
    let from_rust = base64::engine::general_purpose::STANDARD.encode(gz.finish().unwrap());
    let out = node_json("gzip_roundtrip.mjs", &json!({"texts": texts, "fromService": [from_rust]}));
    assert_eq!(out["roundTrip"], json!([true, true, true, true]), "{out}");
    assert_eq!(out["decoded"], json!(["made by flate2 ✓"]), "{out}");
    for (text, encoded) in texts.iter().zip(out["encoded"].as_array().unwrap()) {
        assert_eq!(
            code_of(&json!({"codeGz": encoded})).as_deref(),
            Some(*text),
            "the service decodes the client's gzip"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_browser_bundle_in_chromium_verifies_runs_and_takes_a_live_update_over_websocket() {
    let catalog = TempCatalog::examples();
    let keys = tempfile::tempdir().unwrap();
    let (service, _, ws, pem) = signed_embedded(&catalog, keys.path()).await;
    let snippet = catalog.snippets().join("smart-home/thermostat.ts");
    let job = json!({"url": ws, "keys": [pem], "device": "browser", "snippet": snippet});
    let out: Value = tokio::task::spawn_blocking(move || node_json("client_browser.mjs", &job)).await.unwrap();
    assert!(out.get("failure").is_none() && out["errors"] == json!([]), "{out:#}");
    assert_eq!(out["first"]["variant"], "current", "{out:#}");
    let exports = out["first"]["exports"].as_array().unwrap();
    assert!(exports.contains(&json!("Schedule")) && !exports.contains(&json!("live")), "{out:#}");
    assert_ne!(out["live"]["revision"], out["first"]["revision"], "{out:#}");
    assert_eq!(out["live"]["delta"], true, "{out:#}");
    assert!(out["live"]["exports"].as_array().unwrap().contains(&json!("live")), "{out:#}");
    assert_eq!(out["rejected"], 0, "{out:#}");
    service.shutdown().await.unwrap();
}

/// The reply body to `data` on `device`'s reply topic.
async fn ask(app: &mut Client, device: &str, data: Value, id: &str) -> Value {
    app.publish(&format!("getConnectors/{device}"), nest(data, id)).await;
    loop {
        let v = app.recv().await.json();
        if v["id"] == id {
            return v["response"].clone();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_bundle_rebuilds_a_gzipped_delta_from_what_is_held_and_refuses_any_gap_or_alteration() {
    let catalog = TempCatalog::examples();
    let keys = tempfile::tempdir().unwrap();
    let (service, tcp, _, pem) = signed_embedded(&catalog, keys.path()).await;
    let port: u16 = tcp.rsplit(':').next().unwrap().parse().unwrap();
    let mut app = Client::v4(port, "phone-vb").await;
    app.subscribe("getConnectors/phone-vb/reply").await;
    let ios = json!({"platform": "ios", "version": "2.5.0", "accept": ["gzip"]});
    let full = ask(&mut app, "phone-vb", ios.clone(), "v1").await;
    let held: Map<String, Value> = full["connectors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["name"].as_str().unwrap().to_string(), json!(code_of(s).unwrap())))
        .collect();
    let have: Map<String, Value> =
        held.iter().map(|(n, c)| (n.clone(), json!(sha256_hex(c.as_str().unwrap().as_bytes())))).collect();
    let path = catalog.snippets().join("smart-home/thermostat.ts");
    let text = std::fs::read_to_string(&path).unwrap();
    catalog.snippet("smart-home/thermostat.ts", format!("{text}\nexport const saved = 2;\n"));
    let mut with_have = ios.clone();
    with_have["have"] = json!(have);
    let mut n = 0;
    let delta = eventually(TIMEOUT, "the delta of the new revision", || {
        n += 1;
        let body = block_on(ask(&mut app, "phone-vb", with_have.clone(), &format!("d{n}")));
        (body["revision"] != full["revision"]).then_some(body)
    })
    .await;
    assert_eq!(delta["delta"], true, "{delta}");
    assert_eq!(delta["connectors"].as_array().unwrap().len(), 1, "only the changed connector travels: {delta}");

    let mut wrong_held = held.clone();
    let other = held.keys().find(|k| *k != "smart-home/thermostat").unwrap().clone();
    wrong_held.insert(other.clone(), json!(format!("{} ", wrong_held[&other].as_str().unwrap())));
    let mut missing_held = held.clone();
    missing_held.remove(&other);
    let mut bad_gz = delta.clone();
    bad_gz["connectors"][0]["codeGz"] = json!("H4sIAAAAAAAA/w==");
    bad_gz["connectors"][0].as_object_mut().unwrap().remove("code");
    let mut not_delta = delta.clone();
    not_delta.as_object_mut().unwrap().remove("delta");
    let cases = json!([
        {"reply": full, "held": {}},
        {"reply": delta, "held": held},
        {"reply": delta, "held": wrong_held},
        {"reply": delta, "held": missing_held},
        {"reply": bad_gz, "held": held},
        {"reply": not_delta, "held": held},
    ]);
    let out = node_json("verify_bundle.mjs", &json!({"keys": [pem], "cases": cases}));
    let r = &out["results"];
    assert_eq!(r[0]["ok"], true, "a full reply verifies alone: {out:#}");
    assert_eq!(r[0]["scripts"].as_object().unwrap().len(), held.len(), "{out:#}");
    assert_eq!(r[1]["ok"], true, "{out:#}");
    assert_eq!(r[1]["revision"], delta["revision"], "{out:#}");
    let rebuilt = r[1]["scripts"].as_object().unwrap();
    assert_eq!(rebuilt.len(), held.len(), "the complete set: {out:#}");
    assert_eq!(rebuilt[&other], held[&other], "an unchanged connector comes from what is held: {out:#}");
    assert!(rebuilt["smart-home/thermostat"].as_str().unwrap().contains("saved"), "{out:#}");
    for (i, why) in [(2, "altered held code"), (3, "a gap"), (4, "bad gzip"), (5, "a subset that does not say delta")] {
        assert_eq!(r[i]["ok"], false, "{why} is refused: {out:#}");
        assert_eq!(r[i]["code"], "hash", "{why}: {out:#}");
    }
    service.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_app_client_reconnects_after_a_broker_outage_and_still_takes_the_next_save() {
    use std::io::{BufRead, BufReader};
    let catalog = TempCatalog::examples();
    let keys = tempfile::tempdir().unwrap();
    let (private, public, _) = crate::signing::keygen(keys.path(), "prod");
    let mut mosquitto = Mosquitto::start().await;
    let service = serve_with(config(&catalog, &mosquitto.url(), &["--signing-key", private.to_str().unwrap()])).await;
    let job = json!({"url": mosquitto.url(), "keys": [std::fs::read_to_string(&public).unwrap()], "device": "outage",
                     "snippet": catalog.snippets().join("smart-home/thermostat.ts")});
    let mut node = std::process::Command::new("node")
        .arg(node_dir().join("client_reconnect.mjs"))
        .current_dir(node_dir())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("node");
    let mut stdin = node.stdin.take().unwrap();
    writeln!(stdin, "{job}").unwrap();
    let mut stdout = BufReader::new(node.stdout.take().unwrap());
    let mut next_line = move || {
        tokio::task::block_in_place(|| {
            let mut line = String::new();
            stdout.read_line(&mut line).unwrap();
            serde_json::from_str::<Value>(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"))
        })
    };
    let first = next_line();
    assert_eq!(first["step"], "first", "{first}");
    mosquitto.kill();
    let down = next_line();
    assert_eq!(down["step"], "down", "{down}");
    mosquitto.start_again().await;
    writeln!(stdin, "go").unwrap();
    let done = next_line();
    assert_eq!(done["step"], "done", "{done}");
    assert_ne!(done["revision"], first["revision"], "{done}");
    assert_eq!(done["delta"], true, "{done}");
    assert!(done["reconnects"].as_u64().unwrap() >= 2, "{done}");
    assert!(done["events"].as_array().unwrap().contains(&json!("disconnected")), "{done}");
    node.wait().unwrap();
    service.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_broker_accounts_the_client_connects_as_its_device_with_credentials_and_not_without() {
    let catalog = TempCatalog::examples();
    let keys = tempfile::tempdir().unwrap();
    let users = keys.path().join("users");
    crate::common::password_file_at(&users, &[("phone-auth", "pw")]);
    let flags = ["--embedded-users".to_string(), users.display().to_string()];
    let (service, _, ws, pem) = signed_embedded_with(&catalog, keys.path(), &flags).await;
    let once = |options: Value, wait_ms: u64| {
        let job = json!({"url": ws, "keys": [pem], "device": "phone-auth", "mqttOptions": options, "waitMs": wait_ms});
        tokio::task::spawn_blocking(move || node_json("client_once.mjs", &job))
    };
    let with = once(json!({"username": "phone-auth", "password": "pw"}), 20_000).await.unwrap();
    assert_eq!(with["variant"], "current", "the device id is the client id its account allows: {with}");
    // Without credentials the broker refuses; the client reports it as events and never gets scripts.
    let without = once(Value::Null, 1_500).await.unwrap();
    assert_eq!(without["revision"], Value::Null, "{without}");
    assert!(without["errors"].as_array().unwrap().contains(&json!("connect")), "{without}");
    service.shutdown().await.unwrap();
}
