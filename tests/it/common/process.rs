//! The service binary as an operator runs it: spawned with its ops listener on a free port, waited on until
//! `/readyz` says ready, its status document and ops pages read over HTTP; child processes killed on drop.

use super::mqtt::TIMEOUT;
use super::{eventually, free_port, spawn_service, Mosquitto, TempCatalog};
use connector_scripts::commands::status::get;
use serde_json::Value;
use std::process::Child;

/// Held by the tests that run a Prometheus server or a browser, so that only one of them runs at a time: the
/// machine's cores are shared with every other test, whose deadlines they would otherwise eat into.
pub static HEAVY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A child process, killed (SIGKILL) and reaped on drop.
pub struct Process(pub Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A running `serve` process and where its ops listener is.
pub struct Service {
    /// The ops listener, `host:port`.
    pub ops: String,
    process: Process,
}

impl Service {
    /// SIGKILL, and waits until the process is gone: no chance to say goodbye.
    pub fn kill(&mut self) {
        self.process.0.kill().unwrap();
        self.process.0.wait().unwrap();
    }
}

/// Spawns `serve` against `broker` (plus `extra` flags and `envs`) with its ops listener on a free port; waits
/// until `/readyz` says ready.
pub async fn spawn_ready(catalog: &TempCatalog, broker: &str, extra: &[&str], envs: &[(&str, String)]) -> Service {
    spawn_ready_as("svc-monitored", catalog, broker, extra, envs).await
}

/// [`spawn_ready`] with its own `--instance` name.
pub async fn spawn_ready_as(
    instance: &str,
    catalog: &TempCatalog,
    broker: &str,
    extra: &[&str],
    envs: &[(&str, String)],
) -> Service {
    let ops = format!("127.0.0.1:{}", free_port());
    let mut args = vec!["--broker", broker, "--http-listen", &ops, "--instance", instance];
    args.extend(extra);
    let process = Process(spawn_service(catalog, &args, envs));
    let readyz = format!("http://{ops}/readyz");
    eventually(TIMEOUT, "the service to be ready", || block_on(get(&readyz, TIMEOUT)).ok().filter(|r| r.0 == 200))
        .await;
    Service { ops, process }
}

/// The example catalog served by the binary (with `extra` flags) through a Mosquitto of its own.
pub async fn serve_examples(extra: &[&str]) -> (TempCatalog, Mosquitto, Service) {
    let catalog = TempCatalog::examples();
    let mosquitto = Mosquitto::start().await;
    let service = spawn_ready(&catalog, &mosquitto.url(), extra, &[]).await;
    (catalog, mosquitto, service)
}

/// The body of `path` on the ops listener `ops`, as text.
pub fn ops_get(ops: &str, path: &str) -> String {
    let (_, body) = block_on(get(&format!("http://{ops}{path}"), TIMEOUT)).expect("the ops listener answers");
    String::from_utf8_lossy(&body).into_owned()
}

/// The current status document of the service at `ops`.
pub fn status(ops: &str) -> Value {
    serde_json::from_str(&ops_get(ops, "/readyz")).expect("a status document")
}

/// Runs an async call from a sync predicate of [`eventually`] (multi-thread runtime).
pub fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(f))
}

/// The last `n` lines of a log file, for failure messages.
pub fn log_tail(path: &std::path::Path, n: usize) -> String {
    let log = std::fs::read_to_string(path).unwrap_or_default();
    let tail: Vec<&str> = log.lines().rev().take(n).collect();
    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
}
