//! A clustered MQTT broker for the cluster tests: the project's own rmqtt-based broker program
//! (`tests/cluster/`), whose `up` mode starts N nodes on free loopback ports, waits until they form one cluster,
//! prints where they are, and takes `kill <id>` / `restart <id>` on stdin; its nodes die with it (stdin EOF).

use super::mqtt::TIMEOUT;
use super::repo;
use serde::Deserialize;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::OnceLock;

/// Environment variable naming a built broker program (what `tests/cluster/build` prints); without it the tests
/// build it themselves (minutes the first time on a machine, seconds afterwards: the build is cached).
pub const BINARY_ENV: &str = "CONNECTOR_SCRIPTS_CLUSTER_BROKER";

/// Held by the cluster tests so that one cluster runs at a time: each runs several broker processes and services
/// on two shared cores.
pub static ONE_CLUSTER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// One node as `up` reports it.
#[derive(Debug, Clone, Deserialize)]
pub struct Node {
    /// Node id (from 1).
    pub id: u32,
    /// Its MQTT listener, `127.0.0.1:PORT`.
    pub mqtt: String,
    /// Its log file.
    pub log: PathBuf,
}

impl Node {
    /// `mqtt://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("mqtt://{}", self.mqtt)
    }

    /// The listener's port.
    pub fn port(&self) -> u16 {
        self.mqtt.rsplit(':').next().and_then(|p| p.parse().ok()).expect("host:port")
    }
}

#[derive(Deserialize)]
struct Formed {
    nodes: Vec<Node>,
}

/// A running cluster; every node is killed on drop.
pub struct Cluster {
    /// The nodes, by id order.
    pub nodes: Vec<Node>,
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
}

/// The broker program: from [`BINARY_ENV`], else built once per test process by `tests/cluster/build`.
pub fn binary() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(path) = std::env::var_os(BINARY_ENV) {
            return PathBuf::from(path);
        }
        let out = Command::new(repo().join("tests/cluster/build"))
            .stderr(Stdio::inherit())
            .output()
            .expect("tests/cluster/build runs");
        assert!(out.status.success(), "tests/cluster/build failed");
        let stdout = String::from_utf8_lossy(&out.stdout);
        PathBuf::from(stdout.lines().last().expect("the binary's path").trim())
    })
    .clone()
}

impl Cluster {
    /// Starts `n` nodes and waits until they have formed one cluster (the program's own condition: every node
    /// delivers a probe published on every other node).
    pub fn start(n: usize) -> Cluster {
        let mut child = Command::new(binary())
            .args(["up", "--nodes", &n.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the cluster broker starts");
        let stdin = child.stdin.take();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let line = read_line(&mut stdout);
        let formed: Formed =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("the cluster did not form ({e}): {line:?}"));
        Cluster { nodes: formed.nodes, child, stdin, stdout }
    }

    /// Node `id` (from 1).
    pub fn node(&self, id: u32) -> &Node {
        self.nodes.iter().find(|n| n.id == id).expect("a node of this cluster")
    }

    /// Sends `kill <id>` and returns at once: the node dies right away, the answer comes when the survivors have
    /// settled (read it with [`Cluster::kill_done`]), so the test can watch what happens meanwhile.
    pub fn send_kill(&mut self, id: u32) {
        self.send(&format!("kill {id}"));
    }

    /// Waits for the answer to [`Cluster::send_kill`].
    pub fn kill_done(&mut self) {
        let reply = read_line(&mut self.stdout);
        assert!(reply.contains("killed"), "{reply}");
    }

    /// Starts node `id` again on its own ports; returns once it has rejoined the cluster.
    pub fn restart(&mut self, id: u32) {
        let reply = self.command(&format!("restart {id}"));
        assert!(reply.contains("restarted"), "{reply}");
    }

    fn command(&mut self, cmd: &str) -> String {
        self.send(cmd);
        read_line(&mut self.stdout)
    }

    fn send(&mut self, cmd: &str) {
        let stdin = self.stdin.as_mut().expect("the cluster is running");
        writeln!(stdin, "{cmd}").and_then(|()| stdin.flush()).expect("the cluster takes commands");
    }

    /// The last lines of node `id`'s log, for failure messages.
    pub fn log_tail(&self, id: u32) -> String {
        super::process::log_tail(&self.node(id).log, 30)
    }
}

/// One line of the program's stdout; panics if it ends first (it printed why on stderr). `up` and its commands
/// wait with their own timeouts, so this never hangs longer than those.
fn read_line(stdout: &mut BufReader<ChildStdout>) -> String {
    let mut line = String::new();
    let n = stdout.read_line(&mut line).expect("reading the cluster program's output");
    assert!(n > 0, "the cluster program exited (its stderr above says why; waited up to {TIMEOUT:?} per step)");
    line
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // EOF on stdin: the program kills its nodes and exits.
        drop(self.stdin.take());
        let deadline = std::time::Instant::now() + TIMEOUT;
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
