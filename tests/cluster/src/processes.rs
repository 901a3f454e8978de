//! The node processes of `up`: each node is this program in `node` mode, with stdout and stderr appended to its
//! log file and its stdin a pipe held here (a node exits when that pipe closes, so nodes never outlive the
//! supervisor, even one that was SIGKILLed). One task per process waits for it and reports its exit on a channel.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};

use anyhow::Context as _;
use tokio::process::{ChildStdin, Command};
use tokio::sync::{mpsc, oneshot};

use crate::layout::Layout;

/// A node process that ended (killed here or on its own).
#[derive(Debug)]
pub struct Exit {
    pub id: u64,
    pub pid: u32,
    pub status: String,
}

struct Running {
    pid: u32,
    /// Sending (or dropping) this makes the waiting task SIGKILL the process.
    kill: oneshot::Sender<()>,
    /// The node's stdin; dropping it (our exit) makes the node exit.
    _stdin: Option<ChildStdin>,
}

/// The running node processes of one cluster.
pub struct Processes {
    exe: PathBuf,
    layout: Layout,
    running: BTreeMap<u64, Running>,
    exits_tx: mpsc::UnboundedSender<Exit>,
    exits_rx: mpsc::UnboundedReceiver<Exit>,
}

impl Processes {
    /// No process yet; `exe` is this program.
    pub fn new(exe: PathBuf, layout: Layout) -> Self {
        let (exits_tx, exits_rx) = mpsc::unbounded_channel();
        Processes { exe, layout, running: BTreeMap::new(), exits_tx, exits_rx }
    }

    /// The layout the nodes were started from.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The pid of node `id`, if it is running.
    pub fn pid(&self, id: u64) -> Option<u32> {
        self.running.get(&id).map(|r| r.pid)
    }

    /// The ids of the running nodes.
    pub fn running_ids(&self) -> Vec<u64> {
        self.running.keys().copied().collect()
    }

    /// Starts node `id` (its config is already written) and returns its pid. The node waits for the gRPC ports of
    /// the `peers` (node ids) before it starts its cluster plugin.
    pub fn spawn(&mut self, id: u64, peers: &[u64]) -> anyhow::Result<u32> {
        let wait_for = self
            .layout
            .nodes
            .iter()
            .filter(|n| peers.contains(&n.id))
            .flat_map(|n| ["--wait-for".to_owned(), n.rpc.to_string()]);
        let log_path = self.layout.log_path(id);
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("opening {}", log_path.display()))?;
        writeln!(log, "=== cluster-broker: starting node {id}")?;
        let mut child = Command::new(&self.exe)
            .arg("node")
            .arg("-f")
            .arg(self.layout.config_path(id))
            .arg("--exit-on-stdin-eof")
            .args(wait_for)
            .current_dir(self.layout.node_dir(id))
            .stdin(Stdio::piped())
            .stdout(log.try_clone()?)
            .stderr(log)
            // Its own process group: a Ctrl-C in the terminal reaches the supervisor only, which then kills the nodes.
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting node {id} ({})", self.exe.display()))?;
        let pid = child.id().unwrap_or_default();
        let stdin = child.stdin.take();
        let (kill, kill_rx) = oneshot::channel::<()>();
        let exits = self.exits_tx.clone();
        tokio::spawn(async move {
            let status = tokio::select! {
                status = child.wait() => status,
                _ = kill_rx => {
                    let _ = child.start_kill();
                    child.wait().await
                }
            };
            let _ = exits.send(Exit { id, pid, status: describe(status) });
        });
        self.running.insert(id, Running { pid, kill, _stdin: stdin });
        Ok(pid)
    }

    /// SIGKILLs node `id` and waits until it has been reaped. False if it was not running.
    pub async fn kill(&mut self, id: u64) -> bool {
        let Some(running) = self.running.remove(&id) else {
            return false;
        };
        let _ = running.kill.send(());
        self.wait_for(running.pid).await;
        true
    }

    /// SIGKILLs every node and waits until all have been reaped.
    pub async fn kill_all(&mut self) {
        let mut pids: Vec<u32> = std::mem::take(&mut self.running)
            .into_values()
            .map(|r| {
                let _ = r.kill.send(());
                r.pid
            })
            .collect();
        // In whatever order they end.
        while !pids.is_empty() {
            let Some(exit) = self.exits_rx.recv().await else { return };
            pids.retain(|&pid| pid != exit.pid);
        }
    }

    /// The next exit of a node that was running (not killed here): it is no longer counted as running.
    pub async fn unexpected_exit(&mut self) -> Exit {
        loop {
            let Some(exit) = self.exits_rx.recv().await else {
                // Never: `self` holds a sender.
                return std::future::pending().await;
            };
            if self.running.get(&exit.id).is_some_and(|r| r.pid == exit.pid) {
                self.running.remove(&exit.id);
                return exit;
            }
        }
    }

    async fn wait_for(&mut self, pid: u32) {
        while let Some(exit) = self.exits_rx.recv().await {
            if exit.pid == pid {
                return;
            }
            if self.running.get(&exit.id).is_some_and(|r| r.pid == exit.pid) {
                self.running.remove(&exit.id);
                eprintln!("cluster-broker: node {} exited unexpectedly: {}", exit.id, exit.status);
            }
        }
    }
}

fn describe(status: std::io::Result<ExitStatus>) -> String {
    match status {
        Ok(s) => s.to_string(),
        Err(e) => format!("cannot wait for it: {e}"),
    }
}
