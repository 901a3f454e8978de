//! Monitoring, proven against the real thing: the shipped alert rules pass their promtool unit tests, fire and
//! resolve in a real Prometheus scraping the real binary (SIGKILL → down; a broken save → compile errors while
//! the last good scripts are served; fixed → resolved), and every query of the Grafana dashboard runs there.

use crate::common::mqtt::{nest, Client};
use crate::common::process::{serve_examples, status, HEAVY};
use crate::common::prometheus::{alert_rules, fast_rules, Prometheus};
use crate::common::{eventually, repo};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::process::Command;
use std::time::{Duration, Instant};

/// How long Prometheus may take to see a change: a few 1 s scrapes and evaluations, on a shared 2-core machine.
const DEADLINE: Duration = Duration::from_secs(40);

#[test]
fn promtool_checks_and_unit_tests_every_rule() {
    let dir = repo().join("deploy/prometheus");
    let run = |args: &[&str]| {
        let out = Command::new("promtool")
            .args(args)
            .current_dir(&dir)
            .output()
            .expect("promtool must be installed (scripts/test installs Debian's prometheus)");
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "promtool {args:?}:\n{text}");
        text
    };
    run(&["check", "rules", "alerts.yml"]);
    run(&["test", "rules", "alerts.test.yml"]);
    // Every rule has a firing case and a summary and runbook line.
    let rules = std::fs::read_to_string(alert_rules()).unwrap();
    let tests = std::fs::read_to_string(dir.join("alerts.test.yml")).unwrap();
    let names: Vec<&str> = rules.lines().filter_map(|l| l.trim().strip_prefix("- alert: ")).collect();
    assert!(names.len() >= 10, "{names:?}");
    for name in &names {
        assert!(tests.contains(&format!("alertname: {name}\n        exp_alerts:\n          - exp_labels")), "{name}");
        assert!(tests.contains(&format!("alertname: {name}\n        exp_alerts: []")), "{name} never tested silent");
    }
    assert_eq!(rules.matches("summary: ").count(), names.len());
    assert_eq!(rules.matches("runbook: ").count(), names.len());
}

/// Asks for the ios `next` variant as an app would; returns the revision and the sha256 of fleet/tracking.
async fn fetch(app: &mut Client, device: &str, id: &str) -> (String, String) {
    app.publish(&format!("getConnectors/{device}"), nest(json!({"platform": "ios", "version": "3.1"}), id)).await;
    let reply = app.recv().await.json();
    let response = &reply["response"];
    let tracking = (response["connectors"].as_array().unwrap().iter())
        .find(|c| c["name"] == "fleet/tracking")
        .unwrap_or_else(|| panic!("fleet/tracking is served: {reply}"));
    (response["revision"].as_str().unwrap().to_string(), tracking["sha256"].as_str().unwrap().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_fires_the_shipped_alerts_on_a_broken_save_and_on_sigkill() {
    let _one_at_a_time = HEAVY.lock().await;
    let started = Instant::now();
    let (catalog, mosquitto, mut service) = serve_examples(&[]).await;
    let ops = service.ops.clone();
    let rules_dir = tempfile::tempdir().unwrap();
    let prometheus = Prometheus::start(std::slice::from_ref(&ops), Some(&fast_rules(rules_dir.path()))).await;
    let why = || prometheus.log_tail();

    // The metrics appear, and every shipped rule evaluates without an error against them.
    eventually(DEADLINE, "Prometheus to scrape connector_scripts_ready 1", || {
        let ready = prometheus.query(r#"connector_scripts_ready{job="connector-scripts",instance=~"127.0.0.1:.*"}"#);
        ready.ok().filter(|r| r.len() == 1 && r[0]["value"][1] == "1")
    })
    .await;
    let groups = eventually(DEADLINE, "every rule evaluated", || {
        let groups = prometheus.api("/api/v1/rules").ok()?["groups"].clone();
        let rules = groups[0]["rules"].as_array()?.clone();
        rules.iter().all(|r| r["lastEvaluation"].as_str().is_some_and(|t| !t.starts_with("0001"))).then_some(rules)
    })
    .await;
    for rule in &groups {
        assert_eq!(rule["health"], "ok", "{rule}\n{}", why());
    }
    assert!(prometheus.alert("ConnectorScriptsCompileErrors", "firing").is_none());

    // A broken save: the compile-errors alert fires while phones still get the last good script.
    let mut app = Client::v4(mosquitto.port, "alerts-app").await;
    app.subscribe("getConnectors/alerts-app/reply").await;
    let good = fetch(&mut app, "alerts-app", "1").await;
    let source = std::fs::read_to_string(catalog.snippets().join("fleet/tracking.ts")).unwrap();
    let saved = Instant::now();
    catalog.snippet("fleet/tracking.ts", format!("{source}\nexport function broken(x: number {{\n"));
    let firing = eventually(DEADLINE, "ConnectorScriptsCompileErrors firing", || {
        prometheus.alert("ConnectorScriptsCompileErrors", "firing")
    })
    .await;
    let fired_after = saved.elapsed();
    assert_eq!(firing["labels"]["instance"], ops.as_str(), "{firing}");
    assert!(firing["annotations"]["summary"].as_str().unwrap().contains("last good scripts are still served"));
    assert!(firing["annotations"]["runbook"].as_str().unwrap().contains("connector-scripts check"));
    assert_eq!(fetch(&mut app, "alerts-app", "2").await, good, "the last good script is still served");
    let diagnostics = status(&ops)["catalog"]["diagnostics"].to_string();
    assert!(diagnostics.contains("fleet/tracking.ts:"), "{diagnostics}");

    // Fixed: the alert resolves and the new script is served.
    catalog.snippet("fleet/tracking.ts", format!("{source}\nexport const fixed = true;\n"));
    eventually(DEADLINE, "ConnectorScriptsCompileErrors to resolve", || {
        let alerts = prometheus.alerts();
        alerts.iter().all(|a| a["labels"]["alertname"] != "ConnectorScriptsCompileErrors").then_some(())
    })
    .await;
    let fixed = fetch(&mut app, "alerts-app", "3").await;
    assert_ne!(fixed.1, good.1, "the fixed script is served");

    // SIGKILL: the instance is down, and no instance is left serving.
    service.kill();
    let killed = Instant::now();
    let down =
        eventually(DEADLINE, "ConnectorScriptsDown firing", || prometheus.alert("ConnectorScriptsDown", "firing"))
            .await;
    let down_after = killed.elapsed();
    assert_eq!(down["labels"]["instance"], ops.as_str(), "{down}");
    assert!(down["annotations"]["runbook"].as_str().unwrap().contains(&format!("status --http http://{ops}")));
    eventually(DEADLINE, "ConnectorScriptsNoInstanceServing firing", || {
        prometheus.alert("ConnectorScriptsNoInstanceServing", "firing")
    })
    .await;
    eprintln!(
        "compile-errors alert firing {fired_after:?} after the broken save; down alert firing {down_after:?} after \
         SIGKILL; whole test {:?}",
        started.elapsed()
    );
}

/// Every PromQL expression of the dashboard, with Grafana's variables replaced as Grafana would for "All".
fn dashboard_queries() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(repo().join("deploy/grafana/connector-scripts.json")).unwrap();
    let dashboard: Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    let mut queries = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().unwrap();
            let expr = expr.replace("$__rate_interval", "1m").replace("$instance", ".*");
            assert!(!expr.contains('$'), "a variable the test does not know: {expr}");
            queries.push((panel["title"].as_str().unwrap().to_string(), expr));
        }
    }
    queries
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_query_runs_on_prometheus_and_the_panels_have_data() {
    let _one_at_a_time = HEAVY.lock().await;
    // A small per-device limit, so a short burst from one device is rate-limited.
    let (_catalog, mosquitto, service) = serve_examples(&["--rate-limit", "1", "--rate-burst", "5"]).await;
    let ops = service.ops.clone();
    let prometheus = Prometheus::start(std::slice::from_ref(&ops), None).await;

    // Traffic of every kind a panel shows: ok, a duplicate, not modified, an error, rate-limited. Twice: a
    // counter's first sample is its baseline, so rates show only what comes after Prometheus first saw it.
    let mut flood = Client::v4(mosquitto.port, "dash-flood").await;
    flood.subscribe("getConnectors/dash-flood/reply").await;
    for round in ["a", "b"] {
        // A device of its own per round, under its limit; one device over it.
        let device = format!("dash-app-{round}");
        let mut app = Client::v4(mosquitto.port, &device).await;
        app.subscribe(&format!("getConnectors/{device}/reply")).await;
        let id = |n: u32| format!("{round}{n}");
        let (revision, _) = fetch(&mut app, &device, &id(1)).await;
        fetch(&mut app, &device, &id(1)).await;
        let topic = format!("getConnectors/{device}");
        app.publish(&topic, nest(json!({"platform": "ios", "version": "3.1", "revision": revision}), &id(2))).await;
        app.publish(&topic, nest(json!({"platform": "bada", "version": "1"}), &id(3))).await;
        app.recv().await;
        app.recv().await;
        for n in 0..9 {
            flood
                .publish("getConnectors/dash-flood", nest(json!({"platform": "android", "version": "4"}), &id(n)))
                .await;
        }
        for _ in 0..9 {
            flood.recv().await;
        }
        eventually(DEADLINE, "Prometheus to scrape the traffic", || {
            let q = r#"connector_scripts_requests_total{result="RATE_LIMITED"}"#;
            prometheus.query(q).ok().filter(|r| !r.is_empty())
        })
        .await;
    }
    eventually(DEADLINE, "a rate of rate-limited requests", || {
        let q = r#"rate(connector_scripts_requests_total{result="RATE_LIMITED"}[1m]) > 0"#;
        prometheus.query(q).ok().filter(|r| !r.is_empty())
    })
    .await;

    let queries = dashboard_queries();
    assert!(queries.len() >= 20, "{}", queries.len());
    let mut empty = Vec::new();
    for (title, expr) in &queries {
        let result = prometheus.query(expr).unwrap_or_else(|e| panic!("panel {title:?}: {expr}\nrejected: {e}"));
        if result.is_empty() {
            empty.push(format!("{title}: {expr}"));
        }
    }
    assert!(empty.is_empty(), "panels without data:\n{}", empty.join("\n"));

    // The key panels show what happened.
    let by_title = |title: &str| {
        let (_, expr) = queries.iter().find(|(t, _)| t == title).unwrap();
        prometheus.query(expr).unwrap()
    };
    let results: BTreeSet<String> = (by_title("Requests by platform, variant and result").iter())
        .map(|s| s["metric"]["result"].as_str().unwrap().to_string())
        .collect();
    for expected in ["ok", "not_modified", "UNKNOWN_PLATFORM", "RATE_LIMITED"] {
        assert!(results.contains(expected), "{expected} missing from {results:?}");
    }
    let shown: BTreeSet<(String, String, String)> = (by_title("Revision per variant").iter())
        .map(|s| {
            let m = &s["metric"];
            let text = |k: &str| m[k].as_str().unwrap().to_string();
            (text("platform"), text("variant"), text("revision"))
        })
        .collect();
    let served: BTreeSet<(String, String, String)> = (status(&ops)["catalog"]["variants"].as_array().unwrap().iter())
        .map(|v| {
            let text = |k: &str| v[k].as_str().unwrap().to_string();
            (text("platform"), text("variant"), text("revision"))
        })
        .collect();
    assert_eq!(shown, served, "revision per variant");
    let duplicates = by_title("Duplicate requests");
    assert!(duplicates.iter().any(|s| s["value"][1] != "0"), "{duplicates:?}");
}
