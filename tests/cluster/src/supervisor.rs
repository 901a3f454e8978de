//! `up` mode: lay out an N-node cluster, start the nodes, wait until the cluster has formed, print one JSON line,
//! then serve stdin commands until stdin reaches EOF or SIGTERM/SIGINT arrives; the nodes are SIGKILLed at the end.
//!
//! stdout carries only JSON lines, one per event: the ready line, then one answer per command
//! (`{"killed":2}`, `{"restarted":2,"pid":…}`, `{"nodes":[…]}`, or `{"error":"…","command":"…"}`).
//! Progress and failures go to stderr.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};
use serde::Serialize;
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::{mpsc, watch};

use crate::cli::UpArgs;
use crate::layout::{allocate, Layout};
use crate::probe::{self, Retained, Target};
use crate::processes::Processes;
use crate::settle;

/// The most nodes `up` starts (ports, processes and probes grow with the square of this).
const MAX_NODES: u64 = 9;
/// Lines of each node log printed to stderr when something fails.
const LOG_TAIL_LINES: usize = 25;

/// `up`, validated.
#[derive(Debug)]
struct Plan {
    nodes: u64,
    dir: Option<PathBuf>,
    timeout: Duration,
    log_level: String,
}

impl Plan {
    fn from_args(args: &UpArgs) -> anyhow::Result<Plan> {
        if !(1..=MAX_NODES).contains(&args.nodes) {
            bail!("--nodes must be 1 to {MAX_NODES}, not {}", args.nodes);
        }
        if args.timeout == 0 {
            bail!("--timeout must be at least 1 second");
        }
        let level = args.log_level.to_ascii_lowercase();
        if !["error", "warn", "info", "debug", "trace"].contains(&level.as_str()) {
            bail!("--log-level must be error, warn, info, debug or trace, not {:?}", args.log_level);
        }
        Ok(Plan {
            nodes: args.nodes,
            dir: args.dir.clone(),
            timeout: Duration::from_secs(args.timeout),
            log_level: level,
        })
    }
}

/// A stdin command.
#[derive(Debug, PartialEq, Eq)]
enum Command {
    Kill(u64),
    Restart(u64),
    Nodes,
}

/// Parses one stdin line; `Ok(None)` for a blank line.
fn parse_command(line: &str) -> Result<Option<Command>, String> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let id = |w: &str| w.parse::<u64>().map_err(|_| format!("not a node id: {w:?}"));
    match words.as_slice() {
        [] => Ok(None),
        ["kill", n] => Ok(Some(Command::Kill(id(n)?))),
        ["restart", n] => Ok(Some(Command::Restart(id(n)?))),
        ["nodes"] => Ok(Some(Command::Nodes)),
        _ => Err("unknown command; expected `kill <id>`, `restart <id>` or `nodes`".into()),
    }
}

/// One node in the JSON lines.
#[derive(Debug, Serialize)]
struct NodeInfo {
    id: u64,
    /// Null while the node is not running.
    pid: Option<u32>,
    mqtt: String,
    rpc: String,
    log: String,
}

#[derive(Serialize)]
struct Ready<'a> {
    dir: String,
    formed_ms: u128,
    nodes: &'a [NodeInfo],
}

/// Runs `up` to the end: Ok when stopped by stdin EOF or a signal, Err when the cluster did not form.
pub fn run(args: &UpArgs) -> anyhow::Result<()> {
    let plan = Plan::from_args(args)?;
    let (dir, temporary) = match &plan.dir {
        Some(d) => {
            std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
            (d.canonicalize()?, false)
        }
        None => {
            let d = std::env::temp_dir().join(format!("cluster-broker-{}", probe::nonce()));
            std::fs::create_dir(&d).with_context(|| format!("creating {}", d.display()))?;
            (d, true)
        }
    };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let result = runtime.block_on(up(&plan, &dir));
    // Not a plain drop: that would wait for the blocking read of a stdin that is still open (after a signal).
    runtime.shutdown_background();
    if temporary {
        let _ = std::fs::remove_dir_all(&dir);
    }
    result
}

async fn up(plan: &Plan, dir: &Path) -> anyhow::Result<()> {
    let layout = Layout { dir: dir.to_owned(), nodes: allocate(plan.nodes)?, log_level: plan.log_level.clone() };
    layout.write().with_context(|| format!("writing the node configs into {}", dir.display()))?;
    let exe = std::env::current_exe().context("locating this program")?;
    let mut stop = Stop::install()?;
    let mut cluster = Cluster { procs: Processes::new(exe, layout), marker: probe::nonce(), timeout: plan.timeout };

    let started = Instant::now();
    let formed = tokio::select! {
        r = cluster.start_all(plan.nodes) => r,
        why = stop.signals.wait() => Err(anyhow!("stopped by {why} before the cluster formed")),
    };
    if let Err(e) = formed {
        cluster.print_log_tails();
        cluster.procs.kill_all().await;
        return Err(e.context(format!("the {}-node cluster did not form", plan.nodes)));
    }
    let nodes = cluster.node_infos();
    emit(&Ready { dir: dir.display().to_string(), formed_ms: started.elapsed().as_millis(), nodes: &nodes });
    eprintln!("cluster-broker: formed in {} ms", started.elapsed().as_millis());

    let why = cluster.serve(&mut stop).await;
    eprintln!("cluster-broker: {why}; stopping the nodes");
    cluster.procs.kill_all().await;
    Ok(())
}

struct Cluster {
    procs: Processes,
    /// The value of the retained marker currently in the cluster (see [`probe::RETAINED_TOPIC`]).
    marker: String,
    timeout: Duration,
}

impl Cluster {
    /// Starts nodes 1 to `count` at once (the broadcast plugin has no leader; each node waits for its peers' gRPC
    /// ports before it starts the plugin) and waits until they have formed a cluster.
    async fn start_all(&mut self, count: u64) -> anyhow::Result<()> {
        let ids: Vec<u64> = (1..=count).collect();
        for &id in &ids {
            let peers: Vec<u64> = ids.iter().copied().filter(|&p| p != id).collect();
            self.procs.spawn(id, &peers)?;
        }
        eprintln!("cluster-broker: {count} nodes started; waiting for the cluster to form");
        self.wait_formed(Retained::Publish(self.marker.clone())).await
    }

    /// Serves stdin commands until stdin reaches EOF or a signal arrives; returns the reason.
    async fn serve(&mut self, stop: &mut Stop) -> &'static str {
        loop {
            tokio::select! {
                line = stop.lines.recv() => {
                    let Some(line) = line else { return "stdin closed" };
                    tokio::select! {
                        () = self.command(&line) => {}
                        why = stop.signals.wait() => return why,
                    }
                }
                exit = self.procs.unexpected_exit() => {
                    eprintln!("cluster-broker: node {} exited unexpectedly: {}", exit.id, exit.status);
                }
                why = stop.signals.wait() => return why,
            }
        }
    }

    /// Runs one command and prints its JSON answer.
    async fn command(&mut self, line: &str) {
        let answer = match parse_command(line) {
            Ok(None) => return,
            Ok(Some(Command::Kill(id))) => self.kill(id).await,
            Ok(Some(Command::Restart(id))) => self.restart(id).await,
            Ok(Some(Command::Nodes)) => Ok(serde_json::json!({ "nodes": self.node_infos() })),
            Err(e) => Err(e),
        };
        match answer {
            Ok(value) => emit(&value),
            Err(error) => {
                eprintln!("cluster-broker: {}: {error}", line.trim());
                emit(&serde_json::json!({ "error": error, "command": line.trim() }));
            }
        }
    }

    async fn kill(&mut self, id: u64) -> Result<serde_json::Value, String> {
        self.known(id)?;
        if self.procs.pid(id).is_none() {
            return Err(format!("node {id} is not running"));
        }
        let started = Instant::now();
        let survivors: Vec<Target> = self.targets().into_iter().filter(|t| t.id != id).collect();
        let (killed, settled) = settle::kill_and_settle(&survivors, self.procs.kill(id), self.timeout).await;
        if !killed {
            return Err(format!("node {id} is not running"));
        }
        if let Err(e) = settled {
            eprintln!("cluster-broker: node {id} killed, but the survivors did not settle: {e}");
        }
        eprintln!("cluster-broker: node {id} killed; survivors settled in {} ms", started.elapsed().as_millis());
        Ok(serde_json::json!({ "killed": id, "settled_ms": started.elapsed().as_millis() }))
    }

    async fn restart(&mut self, id: u64) -> Result<serde_json::Value, String> {
        self.known(id)?;
        if self.procs.pid(id).is_some() {
            return Err(format!("node {id} is running (kill it first)"));
        }
        // The restarted node must fetch the marker from a peer; with no peer running there is none to fetch.
        let retained = if self.procs.running_ids().is_empty() {
            self.marker = probe::nonce();
            Retained::Publish(self.marker.clone())
        } else {
            Retained::Expect(self.marker.clone())
        };
        let started = Instant::now();
        let peers = self.procs.running_ids();
        let rejoined = match self.procs.spawn(id, &peers) {
            Ok(pid) => self.wait_formed(retained).await.map(|()| pid),
            Err(e) => Err(e),
        };
        let pid = match rejoined {
            Ok(pid) => pid,
            Err(e) => {
                self.print_log_tails();
                return Err(format!("node {id} did not rejoin: {e:#}"));
            }
        };
        eprintln!("cluster-broker: node {id} rejoined in {} ms", started.elapsed().as_millis());
        Ok(serde_json::json!({ "restarted": id, "pid": pid, "rejoined_ms": started.elapsed().as_millis() }))
    }

    fn known(&self, id: u64) -> Result<(), String> {
        match self.procs.layout().nodes.iter().any(|n| n.id == id) {
            true => Ok(()),
            false => Err(format!("no node {id}")),
        }
    }

    /// Waits until the running nodes form one cluster, failing early if one of them exits.
    async fn wait_formed(&mut self, retained: Retained) -> anyhow::Result<()> {
        let targets = self.targets();
        let timeout = self.timeout;
        tokio::select! {
            r = probe::wait_formed(&targets, &retained, timeout) => r.map_err(anyhow::Error::from),
            exit = self.procs.unexpected_exit() => Err(anyhow!("node {} exited: {}", exit.id, exit.status)),
        }
    }

    /// The running nodes.
    fn targets(&self) -> Vec<Target> {
        let running = |id| self.procs.pid(id).is_some();
        self.procs.layout().nodes.iter().filter(|n| running(n.id)).map(|n| Target { id: n.id, mqtt: n.mqtt }).collect()
    }

    fn node_infos(&self) -> Vec<NodeInfo> {
        let layout = self.procs.layout();
        layout
            .nodes
            .iter()
            .map(|n| NodeInfo {
                id: n.id,
                pid: self.procs.pid(n.id),
                mqtt: n.mqtt.to_string(),
                rpc: n.rpc.to_string(),
                log: layout.log_path(n.id).display().to_string(),
            })
            .collect()
    }

    fn print_log_tails(&self) {
        let layout = self.procs.layout();
        for n in &layout.nodes {
            let path = layout.log_path(n.id);
            let text = std::fs::read_to_string(&path).unwrap_or_else(|e| format!("(cannot read: {e})\n"));
            eprintln!("--- last lines of {}", path.display());
            for line in tail(&text, LOG_TAIL_LINES) {
                eprintln!("{line}");
            }
        }
    }
}

/// The last `n` lines of `text`.
fn tail(text: &str, n: usize) -> Vec<&str> {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].to_vec()
}

/// Prints one JSON line on stdout (ignoring a closed stdout: whoever reads it is gone, stdin EOF follows).
fn emit<T: Serialize>(value: &T) {
    use std::io::Write as _;
    if let Ok(line) = serde_json::to_string(value) {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    }
}

/// The stdin lines, read by their own task so that EOF is seen even while a command runs, and what ends `up`.
struct Stop {
    lines: mpsc::UnboundedReceiver<String>,
    signals: Signals,
}

/// SIGTERM, SIGINT or stdin EOF.
struct Signals {
    term: Signal,
    int: Signal,
    eof: watch::Receiver<bool>,
}

impl Stop {
    fn install() -> anyhow::Result<Stop> {
        let term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
        let int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
        let (lines_tx, lines) = mpsc::unbounded_channel();
        let (eof_tx, eof) = watch::channel(false);
        tokio::spawn(async move {
            let mut stdin = BufReader::new(tokio::io::stdin()).lines();
            while let Ok(Some(line)) = stdin.next_line().await {
                if lines_tx.send(line).is_err() {
                    return;
                }
            }
            let _ = eof_tx.send(true);
        });
        Ok(Stop { lines, signals: Signals { term, int, eof } })
    }
}

impl Signals {
    /// Resolves with the reason when `up` must stop.
    async fn wait(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
            _ = self.eof.wait_for(|eof| *eof) => "stdin closed",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_parse() {
        assert_eq!(parse_command("kill 2"), Ok(Some(Command::Kill(2))));
        assert_eq!(parse_command("  restart   3 \n"), Ok(Some(Command::Restart(3))));
        assert_eq!(parse_command("nodes"), Ok(Some(Command::Nodes)));
        assert_eq!(parse_command(""), Ok(None));
        assert!(parse_command("kill two").unwrap_err().contains("not a node id"));
        assert!(parse_command("stop").unwrap_err().contains("unknown command"));
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        assert_eq!(tail("a\nb\nc\n", 2), ["b", "c"]);
        assert_eq!(tail("a", 5), ["a"]);
    }

    #[test]
    fn plan_rejects_bad_flags() {
        let args = |nodes, timeout, level: &str| UpArgs { nodes, dir: None, timeout, log_level: level.into() };
        assert!(Plan::from_args(&args(3, 60, "info")).is_ok());
        assert!(Plan::from_args(&args(0, 60, "info")).is_err());
        assert!(Plan::from_args(&args(10, 60, "info")).is_err());
        assert!(Plan::from_args(&args(3, 0, "info")).is_err());
        assert!(Plan::from_args(&args(3, 60, "loud")).is_err());
    }
}
