//! Command-line flags of both modes (clap derive only; `up` validates them into a [`crate::layout::Layout`]).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// A clustered rmqtt MQTT broker on loopback, for tests.
#[derive(Debug, Parser)]
#[command(name = "cluster-broker", version)]
pub struct Cli {
    /// The mode.
    #[command(subcommand)]
    pub command: Command,
}

/// The two modes.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run one rmqtt node from an rmqtt.toml (what `up` spawns for each node).
    Node(NodeArgs),
    /// Start an N-node cluster on free loopback ports, wait until it has formed, print one JSON line, then supervise
    /// it until stdin reaches EOF (so `</dev/null` stops it at once) or SIGTERM/SIGINT. Stdin commands: `kill <id>`,
    /// `restart <id>`, `nodes`; each is answered by one JSON line.
    Up(UpArgs),
}

/// Flags of `node`.
#[derive(Debug, Args)]
pub struct NodeArgs {
    /// rmqtt configuration file (rmqtt.toml; its `plugins.dir` holds the per-plugin TOML files).
    #[arg(short = 'f', long = "config")]
    pub config: PathBuf,
    /// Exit when stdin reaches EOF: `up` holds the other end, so a node never outlives its supervisor.
    #[arg(long)]
    pub exit_on_stdin_eof: bool,
    /// Before starting the cluster plugin, wait (at most --wait-timeout seconds) until this peer's gRPC address
    /// accepts connections; repeatable. rmqtt's gRPC client retries a peer that was not listening only after ~3 s.
    #[arg(long, value_name = "ADDR")]
    pub wait_for: Vec<std::net::SocketAddr>,
    /// Upper bound on the --wait-for wait, in seconds; the node starts anyway when it passes.
    #[arg(long, default_value_t = 10)]
    pub wait_timeout: u64,
}

/// Flags of `up`.
#[derive(Debug, Args)]
pub struct UpArgs {
    /// Number of nodes (1 to 9).
    #[arg(long, default_value_t = 3)]
    pub nodes: u64,
    /// Directory for the configs and logs (node-<id>.log); kept at exit. Default: a temporary directory removed at exit.
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Seconds to wait for the cluster to form (and for a restarted node to rejoin).
    #[arg(long, default_value_t = 60)]
    pub timeout: u64,
    /// rmqtt's log level in the node logs: error, warn, info, debug or trace.
    #[arg(long, default_value = "info")]
    pub log_level: String,
}
