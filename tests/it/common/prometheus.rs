//! A real Prometheus server (Debian's `prometheus`, installed by scripts/test) started by a test on a free port
//! with a generated configuration: it scrapes the given ops listeners as job `connector-scripts` every second and
//! evaluates the given rule file every second. Read back through its HTTP API (query, alerts, rules).

use super::process::{block_on, log_tail, Process};
use super::{eventually, free_port};
use connector_scripts::commands::status::get;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// How long one API call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// The shipped alert rules.
pub fn alert_rules() -> PathBuf {
    super::repo().join("deploy/prometheus/alerts.yml")
}

/// The shipped rules with every `for:` shortened to 1 s, written to `dir`: the expressions are the ones shipped,
/// only the waiting an operator wants before a page is cut.
pub fn fast_rules(dir: &Path) -> PathBuf {
    let shipped = std::fs::read_to_string(alert_rules()).unwrap();
    let fast: Vec<String> = (shipped.lines())
        .map(|l| match l.trim_start().strip_prefix("for: ") {
            Some(_) => format!("{}for: 1s", &l[..l.len() - l.trim_start().len()]),
            None => l.to_string(),
        })
        .collect();
    assert!(fast.iter().filter(|l| l.trim() == "for: 1s").count() >= 10, "the rules lost their `for:` lines");
    let path = dir.join("alerts.fast.yml");
    std::fs::write(&path, fast.join("\n")).unwrap();
    path
}

/// A Prometheus server; killed on drop.
pub struct Prometheus {
    pub port: u16,
    /// Killed on drop.
    _process: Process,
    dir: tempfile::TempDir,
}

impl Prometheus {
    /// Starts Prometheus scraping `targets` (`host:port` of ops listeners) with the rules of `rules`, and waits
    /// until it is ready. Retries on another port if the chosen one was taken meanwhile.
    pub async fn start(targets: &[String], rules: Option<&Path>) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("prometheus.yml");
        let rule_files = rules.map(|r| format!("rule_files: [{:?}]\n", r.display().to_string())).unwrap_or_default();
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n{rule_files}\
                 scrape_configs:\n  - job_name: connector-scripts\n    static_configs:\n      - targets: {targets:?}\n"
            ),
        )
        .unwrap();
        for _ in 0..5 {
            let port = free_port();
            let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
            let mut child = Command::new("prometheus")
                .arg(format!("--config.file={}", config.display()))
                .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .arg("--log.level=warn")
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("prometheus must be installed (scripts/test installs Debian's prometheus)");
            let ready_url = format!("http://127.0.0.1:{port}/-/ready");
            let up = eventually(Duration::from_secs(30), "prometheus to be ready or exit", || {
                if let Some(exited) = child.try_wait().ok().flatten() {
                    return Some(Err(exited));
                }
                block_on(get(&ready_url, CALL_TIMEOUT)).ok().filter(|(code, _)| *code == 200).map(|_| Ok(()))
            })
            .await;
            match up {
                Ok(()) => return Prometheus { port, _process: Process(child), dir },
                Err(exited) => eprintln!("prometheus exited ({exited}), retrying on another port"),
            }
        }
        panic!("prometheus did not start:\n{}", std::fs::read_to_string(dir.path().join("prometheus.log")).unwrap());
    }

    /// GETs an API path and returns its `data`, or the error Prometheus gave.
    pub fn api(&self, path_and_query: &str) -> Result<Value, String> {
        let url = format!("http://127.0.0.1:{}{path_and_query}", self.port);
        let (_, body) = block_on(get(&url, CALL_TIMEOUT)).map_err(|e| format!("{e:#}"))?;
        let doc: Value =
            serde_json::from_slice(&body).map_err(|e| format!("{e}: {}", String::from_utf8_lossy(&body)))?;
        match doc["status"].as_str() {
            Some("success") => Ok(doc["data"].clone()),
            _ => Err(format!("{}: {}", doc["errorType"], doc["error"])),
        }
    }

    /// An instant query: the result vector, or the error Prometheus gave (a PromQL syntax error, for one).
    pub fn query(&self, promql: &str) -> Result<Vec<Value>, String> {
        let data = self.api(&format!("/api/v1/query?query={}", url_encode(promql)))?;
        Ok(data["result"].as_array().cloned().unwrap_or_default())
    }

    /// The alerts Prometheus holds now (pending or firing), as `/api/v1/alerts` lists them.
    pub fn alerts(&self) -> Vec<Value> {
        let data = self.api("/api/v1/alerts").unwrap_or_else(|e| panic!("/api/v1/alerts: {e}"));
        data["alerts"].as_array().cloned().unwrap_or_default()
    }

    /// The alert named `name` in `state` (`pending`, `firing`), if there is one.
    pub fn alert(&self, name: &str, state: &str) -> Option<Value> {
        self.alerts().into_iter().find(|a| a["labels"]["alertname"] == name && a["state"] == state)
    }

    /// The last lines of Prometheus' log, for failure messages.
    pub fn log_tail(&self) -> String {
        log_tail(&self.dir.path().join("prometheus.log"), 30)
    }
}

/// Percent-encodes a query parameter value (RFC 3986 unreserved characters pass).
pub fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
