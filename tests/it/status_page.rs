//! The status page at `/` of the ops listener: in headless Chromium it shows the current revision, then a compile
//! error at its file:line after a broken save, then clears it after the fix (screenshots in target/artifacts/);
//! it loads nothing from elsewhere and is readable on a phone's viewport; neither it nor its JSON shows a secret.

use crate::common::mqtt::{nest, parse_serve, Client};
use crate::common::process::{ops_get, serve_examples, spawn_ready, status, HEAVY};
use crate::common::{node_json, repo, Mosquitto, TempCatalog};
use serde_json::json;
use std::collections::BTreeSet;
use std::time::Instant;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_in_chromium_shows_a_broken_save_and_its_fix() {
    let _one_at_a_time = HEAVY.lock().await;
    let started = Instant::now();
    let (catalog, mosquitto, service) = serve_examples(&[]).await;
    let ops = service.ops.clone();
    // Some traffic from two platforms, for the chart.
    let mut app = Client::v4(mosquitto.port, "page-app").await;
    app.subscribe("getConnectors/page-app/reply").await;
    for (id, platform) in ["ios", "android", "ios"].iter().enumerate() {
        let request = nest(json!({"platform": platform, "version": "3.1"}), &id.to_string());
        app.publish("getConnectors/page-app", request).await;
        app.recv().await;
    }
    let doc = status(&ops);
    let revision = doc["catalog"]["variants"][0]["revision"].as_str().unwrap().to_string();
    let snippet = catalog.snippets().join("fleet/tracking.ts");
    let source = std::fs::read_to_string(&snippet).unwrap();
    let broken_line = source.lines().count() + 2;
    let artifacts = repo().join("target/artifacts");
    let input = json!({
        "url": format!("http://{ops}/"),
        "revision": revision,
        "snippet": snippet,
        "broken": format!("{source}\nexport function broken(x: number {{\n"),
        "location": format!("fleet/tracking.ts:{broken_line}:"),
        "fixed": format!("{source}\nexport const fixed = true;\n"),
        "artifacts": artifacts,
    });
    let verdict = tokio::task::spawn_blocking(move || node_json("status_page.mjs", &input)).await.unwrap();
    let text = |k: &str| verdict[k].as_str().unwrap_or_default().to_string();
    assert!(verdict["failure"].is_null(), "{}\n{verdict:#}", text("failure"));

    // Loaded: instance, ready, broker, the revision.
    let loaded = text("loaded");
    for expected in ["svc-monitored", "READY", &mosquitto.url(), "connected, subscribed", &revision] {
        assert!(loaded.contains(expected), "{expected:?} not on the page:\n{loaded}");
    }
    // Broken: the error at file:line with its code frame; fixed: gone, and the table shows what is served now.
    let broken = text("broken");
    assert!(broken.contains("error[parse]") && broken.contains("export function broken(x: number {"), "{broken}");
    assert!(broken.contains(&format!("{broken_line} | export function broken")), "code frame: {broken}");
    assert!(!text("fixed").contains("fleet/tracking.ts:"), "{}", text("fixed"));
    let shown: BTreeSet<(String, String)> = (verdict["variants"].as_array().unwrap().iter())
        .map(|row| (format!("{}/{}", row[0].as_str().unwrap(), row[1].as_str().unwrap()), row[2].to_string()))
        .collect();
    let served: BTreeSet<(String, String)> = (status(&ops)["catalog"]["variants"].as_array().unwrap().iter())
        .map(|v| {
            (
                format!("{}/{}", v["platform"].as_str().unwrap(), v["variant"].as_str().unwrap()),
                v["revision"].to_string(),
            )
        })
        .collect();
    assert_eq!(shown, served);
    assert!(text("reloads").contains("→"), "recent reloads: {}", text("reloads"));
    assert!(verdict["chartLines"].as_u64() >= Some(2), "one line per platform: {verdict}");
    // Self-contained (nothing loaded from elsewhere, no script error or CSP violation), readable on a phone.
    for url in verdict["requests"].as_array().unwrap() {
        assert!(url.as_str().unwrap().starts_with(&format!("http://{ops}/")), "{url}");
    }
    assert_eq!(verdict["errors"], json!([]), "errors in the page");
    assert!(verdict["phoneOverflow"].as_i64() <= Some(0), "wider than a phone: {verdict}");
    for shot in ["status-page.png", "status-page-phone.png"] {
        assert!(std::fs::metadata(artifacts.join(shot)).unwrap().len() > 10_000, "{shot}");
    }
    drop(service);
    eprintln!("browser: {}; whole test {:?}", verdict["ms"], started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_and_its_json_expose_no_secret() {
    // The ops listener is local unless told otherwise.
    let default = parse_serve::<&str>(&[]).ops.http_listen.expect("on by default");
    assert!(default.ip().is_loopback(), "{default}");

    let (user, password) = ("svc-user-3f9a1c", "pw-5ecr3t-9d1c77");
    let mosquitto = Mosquitto::start_conf(|port, dir| {
        let passwd = crate::reliability::password_file(std::path::Path::new(dir), &[(user, password)]);
        format!("listener {port} 127.0.0.1\nallow_anonymous false\npassword_file {passwd}\nlog_dest file {dir}/mosquitto.log\n")
    })
    .await;
    let keys = tempfile::tempdir().unwrap();
    let key = keys.path().join("ops");
    let made = std::process::Command::new(env!("CARGO_BIN_EXE_connector-scripts"))
        .args(["keygen", "--out"])
        .arg(&key)
        .output()
        .unwrap();
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let key_file = key.with_extension("key").display().to_string();
    let key_pem = std::fs::read_to_string(&key_file).unwrap();
    let catalog = TempCatalog::examples();
    let envs = [
        ("CONNECTOR_SCRIPTS_MQTT_USERNAME", user.to_string()),
        ("CONNECTOR_SCRIPTS_MQTT_PASSWORD", password.to_string()),
    ];
    // Ready means the broker accepted these credentials.
    let service = spawn_ready(&catalog, &mosquitto.url(), &["--signing-key", &key_file], &envs).await;
    let ops = &service.ops;
    let key_lines: Vec<&str> = key_pem.lines().filter(|l| !l.starts_with("-----")).collect();
    assert!(!key_lines.is_empty());
    for path in ["/", "/readyz", "/healthz", "/metrics"] {
        let body = ops_get(ops, path);
        assert!(body.len() > 100, "{path}: {body}");
        for secret in [user, password].into_iter().chain(key_lines.iter().copied()) {
            assert!(!body.contains(secret), "{path} shows {secret:?}:\n{body}");
        }
    }
}
