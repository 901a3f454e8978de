//! Hot reload against a running service: edits, creates, deletes, renames, atomic saves, new folders, broken
//! saves, broken platform files, a storm of 1 000 files; retained manifests and change events; SIGHUP.

use crate::common::mqtt::{nest, serve_embedded, serve_external, Client, TIMEOUT};
use crate::common::{eventually, Mosquitto, TempCatalog};
use connector_scripts::app::Running;
use connector_scripts::catalog::{AppVersion, Catalog};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

fn catalog_of(r: &Running) -> Arc<Catalog> {
    r.state.catalog().expect("catalog loaded")
}

/// The script `name` as served to ios 1.0 (single variant in these tests).
fn code_of(r: &Running, name: &str) -> Option<String> {
    let c = catalog_of(r);
    let b = c.resolve("ios", &AppVersion::parse("1.0").unwrap()).ok()?;
    b.script(name).map(|s| s.code.to_string())
}

/// Waits until `f` holds for the served catalog.
async fn until(r: &Running, what: &str, f: impl Fn(&Running) -> bool) {
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    let mut changes = r.state.catalog_changes();
    while !f(r) {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        let _ = tokio::time::timeout_at(deadline, changes.changed()).await;
    }
}

fn single_variant_catalog() -> TempCatalog {
    let t = TempCatalog::new();
    t.platform("ios.toml", "[[variant]]\nname='all'\nversions='*'\ntarget='es2017'\n");
    t.snippet("a.ts", "export const a: string = 'one';\n");
    t
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edit_create_delete_rename_atomic_save_and_new_folder() {
    let t = single_variant_catalog();
    let (r, _) = serve_embedded(&t).await;
    assert!(code_of(&r, "a").unwrap().contains("'one'"));

    // Edit in place.
    t.snippet("a.ts", "export const a: string = 'two';\n");
    until(&r, "edit", |r| code_of(r, "a").is_some_and(|c| c.contains("'two'"))).await;

    // Create.
    t.snippet("b.ts", "export const b = 1;\n");
    until(&r, "create", |r| code_of(r, "b").is_some()).await;

    // Atomic save: write a temp file, rename over the original (what editors do).
    let tmp = t.snippets().join(".a.ts.swp");
    std::fs::write(&tmp, "export const a: string = 'three';\n").unwrap();
    std::fs::rename(&tmp, t.snippets().join("a.ts")).unwrap();
    until(&r, "atomic save", |r| code_of(r, "a").is_some_and(|c| c.contains("'three'"))).await;

    // Rename: b disappears, c appears.
    std::fs::rename(t.snippets().join("b.ts"), t.snippets().join("c.ts")).unwrap();
    until(&r, "rename", |r| code_of(r, "b").is_none() && code_of(r, "c").is_some()).await;

    // A file created inside a new subfolder.
    std::fs::create_dir_all(t.snippets().join("new/deeper")).unwrap();
    t.snippet("new/deeper/d.ts", "export const d = 4;\n");
    until(&r, "file in a new folder", |r| code_of(r, "new/deeper/d").is_some()).await;

    // Delete: really gone from the variant.
    std::fs::remove_file(t.snippets().join("c.ts")).unwrap();
    until(&r, "delete", |r| code_of(r, "c").is_none()).await;
    assert!(!catalog_of(&r).connectors.contains("c"));
    r.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_save_keeps_the_last_good_script_until_fixed() {
    let t = single_variant_catalog();
    let (r, ports) = serve_embedded(&t).await;
    let good_revision = catalog_of(&r).bundles().next().unwrap().revision.clone();
    t.snippet("a.ts", "export const a: string = ;\n");
    until(&r, "the broken save to be noticed", |r| catalog_of(r).error_count() > 0).await;
    let c = catalog_of(&r);
    let parse = c.diagnostics.iter().find(|d| d.code == "parse").expect("parse error reported");
    assert_eq!(parse.position.map(|p| p.line), Some(1));
    assert!(c.diagnostics.iter().any(|d| d.code == "last-good"), "{:?}", c.diagnostics);
    // Still served, unchanged, to apps.
    assert!(code_of(&r, "a").unwrap().contains("'one'"));
    assert_eq!(c.bundles().next().unwrap().revision, good_revision);
    let mut app = Client::v4(ports.v4, "app-lg").await;
    app.subscribe("getConnectors/app-lg/reply").await;
    app.publish("getConnectors/app-lg", nest(json!({"platform": "ios", "version": "1"}), "1")).await;
    let reply = app.recv().await.json();
    assert!(reply["response"]["connectors"][0]["code"].as_str().unwrap().contains("'one'"));
    // Fixing the file recovers by itself.
    t.snippet("a.ts", "export const a: string = 'fixed';\n");
    until(&r, "recovery", |r| code_of(r, "a").is_some_and(|c| c.contains("'fixed'"))).await;
    assert_eq!(catalog_of(&r).error_count(), 0);
    assert!(catalog_of(&r).diagnostics.is_empty(), "{:?}", catalog_of(&r).diagnostics);
    r.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_platform_file_keeps_the_previous_configuration() {
    let t = single_variant_catalog();
    let (r, _) = serve_embedded(&t).await;
    t.platform("ios.toml", "[[variant]]\nname='all'\nversions='>=9, <2'\ntarget='es2017'\n");
    until(&r, "the broken manifest", |r| catalog_of(r).diagnostics.iter().any(|d| d.code == "empty-range")).await;
    let c = catalog_of(&r);
    assert!(c.diagnostics.iter().any(|d| d.code == "last-good-platform"));
    assert!(c.resolve("ios", &AppVersion::parse("1.0").unwrap()).is_ok(), "previous ranges still apply");
    // A snippet edit is still compiled with the kept configuration.
    t.snippet("a.ts", "export const a: string = 'edited';\n");
    until(&r, "edit under kept config", |r| code_of(r, "a").is_some_and(|c| c.contains("'edited'"))).await;
    // Fixed manifest: new configuration applies.
    t.platform("ios.toml", "[[variant]]\nname='v2'\nversions='>=2'\ntarget='es2020'\n");
    until(&r, "the fixed manifest", |r| catalog_of(r).bundles().any(|b| b.variant == "v2")).await;
    assert!(catalog_of(&r).resolve("ios", &AppVersion::parse("1.0").unwrap()).is_err());
    r.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_of_1000_files_ends_on_the_right_revision_while_serving() {
    let t = single_variant_catalog();
    let mosquitto = Mosquitto::start().await;
    let r = serve_external(&t, &mosquitto.url()).await;
    let mut app = Client::v4(mosquitto.port, "app-storm").await;
    app.subscribe("getConnectors/app-storm/reply").await;
    let writer = {
        let dir = t.snippets();
        tokio::task::spawn_blocking(move || {
            for i in 0..1000 {
                crate::common::write(
                    &dir.join(format!("storm/s{:04}.ts", i)),
                    format!("export const v{i}: number = {i};\n").as_bytes(),
                );
            }
        })
    };
    // Keep asking while the storm lands: every request is answered.
    let mut asked = 0;
    while !writer.is_finished() || asked < 20 {
        asked += 1;
        app.publish("getConnectors/app-storm", nest(json!({"platform": "ios", "version": "1"}), &asked.to_string()))
            .await;
        let reply = app.recv().await.json();
        assert_eq!(reply["id"], asked.to_string());
        assert!(reply["response"]["revision"].is_string(), "{reply}");
    }
    writer.await.unwrap();
    // The final state equals a fresh build of the same files.
    let expected = t.build();
    let want = expected.bundles().next().unwrap().revision.clone();
    until(&r, "the storm's final revision", |r| catalog_of(r).bundles().next().unwrap().revision == want).await;
    assert_eq!(catalog_of(&r).connectors.len(), 1001);
    let reloads = r.state.metrics.reloads.get();
    assert!(reloads < 200, "the storm was not coalesced: {reloads} rebuilds");
    r.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retained_manifest_then_live_updates_then_fetch() {
    let t = single_variant_catalog();
    let mosquitto = Mosquitto::start().await;
    let r = serve_external(&t, &mosquitto.url()).await;
    let rev0 = catalog_of(&r).bundles().next().unwrap().revision.clone();
    // An app subscribing late still learns the current revision: the manifest is retained.
    let mut app = Client::v4(mosquitto.port, "app-manifest").await;
    app.subscribe("connectors/ios/all").await;
    let m = app.recv().await;
    assert_eq!(m.topic, "connectors/ios/all");
    let v = m.json();
    assert_eq!(v["revision"], rev0.as_str());
    assert_eq!(v["connectors"][0]["name"], "a");
    assert!(v["publishedAt"].as_str().unwrap().ends_with('Z'));
    let mut events = Client::v4(mosquitto.port, "nest-listener").await;
    events.subscribe("connectorsChanged").await;

    t.snippet("a.ts", "export const a: string = 'live';\n");
    let m = app.recv().await.json();
    let rev1 = m["revision"].as_str().unwrap().to_string();
    assert_ne!(rev1, rev0);
    let e = events.recv().await.json();
    assert_eq!(
        e,
        json!({"pattern": "connectorsChanged", "data": {"platform": "ios", "variant": "all", "revision": rev1}})
    );

    // Fetch with the old revision: the new code; with the new one: notModified.
    app.subscribe("getConnectors/app-manifest/reply").await;
    app.publish("getConnectors/app-manifest", nest(json!({"platform": "ios", "version": "1", "revision": rev0}), "f1"))
        .await;
    let fetched = app.recv().await.json();
    assert!(fetched["response"]["connectors"][0]["code"].as_str().unwrap().contains("'live'"));
    app.publish("getConnectors/app-manifest", nest(json!({"platform": "ios", "version": "1", "revision": rev1}), "f2"))
        .await;
    assert_eq!(app.recv().await.json()["response"]["notModified"], true);
    r.shutdown().await.unwrap();

    // A variant that disappears gets its retained manifest cleared at the next start.
    t.platform("ios.toml", "[[variant]]\nname='renamed'\nversions='*'\ntarget='es2017'\n");
    let r = serve_external(&t, &mosquitto.url()).await;
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        let retained = retained_manifests(mosquitto.port).await;
        if retained == ["connectors/ios/renamed"] {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "stale manifest not cleared: {retained:?}");
        let _ = tokio::time::timeout(Duration::from_millis(50), r.state.catalog_changes().changed()).await;
    }
    r.shutdown().await.unwrap();
}

/// The retained messages under `connectors/ios/+`, read deterministically: after the SUBACK the broker sends the
/// retained ones first; a sentinel we publish afterwards marks the end.
async fn retained_manifests(port: u16) -> Vec<String> {
    let mut c = Client::v4(port, &format!("probe-{}", crate::common::free_port())).await;
    c.subscribe("connectors/ios/+").await;
    c.publish("connectors/ios/~sentinel", "end").await;
    let mut topics = Vec::new();
    loop {
        let m = c.recv().await;
        if m.topic == "connectors/ios/~sentinel" {
            return topics;
        }
        if !m.payload.is_empty() {
            topics.push(m.topic);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_forces_a_reload() {
    let t = single_variant_catalog();
    let (v4, v5) = crate::common::free_port_pair();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_connector-scripts"))
        .args(["serve", "--no-watch", "--http-listen", "127.0.0.1:0", "--embedded-listen", &format!("127.0.0.1:{v4}")])
        .arg("--embedded-listen-v5")
        .arg(format!("127.0.0.1:{v5}"))
        .args(["--embedded-ws-listen", "off"])
        .arg("--snippets")
        .arg(t.snippets())
        .arg("--platforms")
        .arg(t.platforms())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let request = || {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_connector-scripts"))
            .args([
                "request",
                "--json",
                "--broker",
                &format!("mqtt://127.0.0.1:{v4}"),
                "--platform",
                "ios",
                "--version",
                "1",
            ])
            .args(["--timeout", "1"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    crate::common::eventually(TIMEOUT, "the service to answer", || request().contains("'one'").then_some(())).await;
    t.snippet("a.ts", "export const a: string = 'after-hup';\n");
    // Not watching: nothing changes until SIGHUP.
    assert!(request().contains("'one'"));
    let pid = child.id().to_string();
    assert!(std::process::Command::new("kill").args(["-HUP", &pid]).status().unwrap().success());
    crate::common::eventually(TIMEOUT, "the reload after SIGHUP", || request().contains("after-hup").then_some(()))
        .await;
    let _ = std::process::Command::new("kill").args(["-TERM", &pid]).status();
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_moved_or_emptied_snippets_directory_keeps_the_last_good_catalog() {
    let t = TempCatalog::examples();
    let (r, ports) = serve_embedded(&t).await;
    let served = catalog_of(&r).connectors.len();
    assert!(served >= 2);
    let ask = |app: Client, id: &'static str| async move {
        let mut app = app;
        app.publish("getConnectors/app-mv", nest(json!({"platform": "ios", "version": "3.1"}), id)).await;
        let v = app.recv().await.json();
        (app, v)
    };
    let mut app = Client::v4(ports.v4, "app-mv").await;
    app.subscribe("getConnectors/app-mv/reply").await;
    // A deploy that swaps directories: for a moment there is no snippets directory.
    std::fs::rename(t.snippets(), t.dir.path().join("snippets.old")).unwrap();
    r.reload();
    let held = eventually(TIMEOUT, "the reload to be held", || r.state.held()).await;
    assert!(held.contains("cannot be read"), "{held}");
    assert_eq!(catalog_of(&r).connectors.len(), served);
    let (app, v) = ask(app, "during-move").await;
    assert!(v["response"]["connectors"].as_array().unwrap().len() >= 2, "phones lost their scripts: {v}");
    // It comes back empty: most connectors would go at once, so the reload is held until confirmed.
    std::fs::create_dir(t.snippets()).unwrap();
    r.reload();
    let held =
        eventually(TIMEOUT, "the mass removal to be held", || r.state.held().filter(|h| h.contains("remove"))).await;
    assert!(held.contains(&format!("of {served} connectors")), "{held}");
    let doc = connector_scripts::ops::status::StatusDoc::of(&r.state);
    assert!(doc.ready && doc.warnings.iter().any(|w| w.contains("reload held")), "{doc:?}");
    let (_app, v) = ask(app, "while-held").await;
    assert!(v["response"]["connectors"].as_array().unwrap().len() >= 2, "{v}");
    // The operator confirms.
    let confirm = t.snippets().join(connector_scripts::reload::CONFIRM_FILE);
    std::fs::write(&confirm, "").unwrap();
    r.reload();
    until(&r, "the confirmed empty catalog", |r| catalog_of(r).connectors.is_empty()).await;
    assert_eq!(r.state.held(), None);
    assert!(!confirm.exists(), "the confirmation is used once");
    r.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connector_broken_at_start_is_reported_while_the_rest_is_served() {
    let t = single_variant_catalog();
    t.snippet("b.ts", "export const b = ;\n");
    let (r, _) = serve_embedded(&t).await;
    let doc = connector_scripts::ops::status::StatusDoc::of(&r.state);
    assert!(doc.ready, "the other connectors are served: {doc:?}");
    assert!(doc.warnings.iter().any(|w| w.contains("\"b\" is missing from ios/all")), "{:?}", doc.warnings);
    let text = connector_scripts::ops::metrics_text(&r.state);
    assert!(text.contains("connector_scripts_missing_connectors 1"), "{text}");
    // Fixed: the warning goes.
    t.snippet("b.ts", "export const b = 2;\n");
    until(&r, "the fixed connector", |r| code_of(r, "b").is_some()).await;
    assert!(connector_scripts::ops::status::StatusDoc::of(&r.state).warnings.is_empty());
    r.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_snippets_directory_is_served_and_watched_without_sighup() {
    let t = single_variant_catalog();
    let (r, _) = serve_embedded(&t).await;
    assert!(code_of(&r, "a").unwrap().contains("'one'"));
    // A deploy swaps directories: the new one is complete before it takes the old one's place.
    let next = t.dir.path().join("snippets.next");
    crate::common::write(&next.join("a.ts"), b"export const a: string = 'two';\n");
    std::fs::rename(t.snippets(), t.dir.path().join("snippets.old")).unwrap();
    std::fs::rename(&next, t.snippets()).unwrap();
    until(&r, "the new directory's content", |r| code_of(r, "a").is_some_and(|c| c.contains("'two'"))).await;
    // Edits in the new directory reload as before: it is the one being watched now.
    t.snippet("a.ts", "export const a: string = 'three';\n");
    until(&r, "an edit in the new directory", |r| code_of(r, "a").is_some_and(|c| c.contains("'three'"))).await;
    r.shutdown().await.unwrap();
}
