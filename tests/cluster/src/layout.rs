//! The cluster's layout: which loopback ports each node listens on and the rmqtt configuration files that say so.
//! Rendering is pure (unit-tested below); [`allocate`] and [`Layout::write`] are the only I/O.

use std::fmt::Write as _;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};

use crate::node::{CLUSTER_PLUGIN, RETAINER_PLUGIN, SHARED_SUBSCRIPTION_PLUGIN};

/// One node: its id (1-based, rmqtt's `node.id`) and its two listeners.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSpec {
    /// rmqtt's `node.id`, from 1.
    pub id: u64,
    /// MQTT over TCP, for clients.
    pub mqtt: SocketAddr,
    /// rmqtt's gRPC server, for the other nodes.
    pub rpc: SocketAddr,
}

/// Every node of the cluster and the directory their files live in.
#[derive(Debug, Clone)]
pub struct Layout {
    /// Where the node directories and logs go.
    pub dir: PathBuf,
    /// Every node, by id.
    pub nodes: Vec<NodeSpec>,
    /// rmqtt's `log.level` for every node.
    pub log_level: String,
}

impl Layout {
    /// The directory of node `id`: its rmqtt.toml and plugins/; the node runs with it as working directory.
    pub fn node_dir(&self, id: u64) -> PathBuf {
        self.dir.join(format!("node-{id}"))
    }

    /// The rmqtt.toml of node `id`.
    pub fn config_path(&self, id: u64) -> PathBuf {
        self.node_dir(id).join("rmqtt.toml")
    }

    /// Where node `id`'s stdout and stderr go (appended to across restarts).
    pub fn log_path(&self, id: u64) -> PathBuf {
        self.dir.join(format!("node-{id}.log"))
    }

    /// Writes every node's rmqtt.toml and plugin files.
    pub fn write(&self) -> io::Result<()> {
        let cluster = render_cluster_plugin(&self.nodes);
        for node in &self.nodes {
            let plugins = self.node_dir(node.id).join("plugins");
            std::fs::create_dir_all(&plugins)?;
            std::fs::write(self.config_path(node.id), render_node(node, self.nodes.len(), &plugins, &self.log_level))?;
            std::fs::write(plugins.join(format!("{CLUSTER_PLUGIN}.toml")), &cluster)?;
            std::fs::write(plugins.join(format!("{SHARED_SUBSCRIPTION_PLUGIN}.toml")), SHARED_SUBSCRIPTION_CONFIG)?;
            std::fs::write(plugins.join(format!("{RETAINER_PLUGIN}.toml")), RETAINER_CONFIG)?;
        }
        Ok(())
    }
}

/// Picks `2 * n` distinct free loopback ports (bind port 0, read it back), two per node. All sockets stay bound until
/// every port is known, so no port is handed out twice; they are closed before the nodes bind them.
pub fn allocate(n: u64) -> io::Result<Vec<NodeSpec>> {
    let mut held = Vec::new();
    let mut next = || -> io::Result<SocketAddr> {
        let socket = TcpListener::bind("127.0.0.1:0")?;
        let addr = socket.local_addr()?;
        held.push(socket);
        Ok(addr)
    };
    let mut nodes = Vec::new();
    for id in 1..=n {
        nodes.push(NodeSpec { id, mqtt: next()?, rpc: next()? });
    }
    Ok(nodes)
}

/// rmqtt.toml of one node.
pub fn render_node(node: &NodeSpec, count: usize, plugins_dir: &Path, log_level: &str) -> String {
    format!(
        r#"# Written by `cluster-broker up`: node {id} of a {count}-node rmqtt cluster on loopback.
node.id = {id}
# A busy CI machine must not make the node refuse connections (rmqtt's check: CPU load > 90 %).
node.busy.check_enable = false
rpc.server_addr = "{rpc}"
# A restarted node binds the same ports again.
rpc.reuseaddr = true
# To stderr, which `up` sends to node-<id>.log.
log.to = "console"
log.level = {level}
{CIRCUIT_BREAKER}plugins.dir = {plugins}
plugins.default_startups = ["{CLUSTER_PLUGIN}", "{SHARED_SUBSCRIPTION_PLUGIN}", "{RETAINER_PLUGIN}"]
# Retained messages and `$share/` subscriptions are available because their plugins run (rmqtt-conf 0.5 reads no
# listener keys for them; `retain_available` in upstream's example config is ignored).
listener.tcp.external.addr = "{mqtt}"
listener.tcp.external.allow_anonymous = true
# Replies carry whole scripts (several MB); rmqtt's default is 1 MiB.
listener.tcp.external.max_packet_size = "16m"
listener.tcp.external.reuseaddr = true
"#,
        id = node.id,
        rpc = node.rpc,
        mqtt = node.mqtt,
        level = toml_string(log_level),
        plugins = toml_string(&plugins_dir.to_string_lossy()),
    )
}

/// The gRPC circuit breaker (one per peer node). Every publish waits for its forwards to all peers, and a forward to
/// a killed node waits `node_grpc_client_timeout` (2 s); rmqtt's defaults (at least 10 failed calls within 45 s,
/// then 30 s open) left every publish on a survivor waiting that long. Here the breaker looks at the last second
/// only (a count-based window keeps every success since the start and would not open), opens at the first failure,
/// and lets calls through again after 10 s: while the peer stays down, the calls of the next 2 s wait again (about
/// 2 s in every 12 s), and a restarted node is reached again within about 10 s.
const CIRCUIT_BREAKER: &str = r#"# Per peer: open at the first failed forward, try the peer again after 10 s (see src/layout.rs).
circuit_breaker.sliding_window_type = "TimeBased"
circuit_breaker.sliding_window_duration = "1s"
circuit_breaker.minimum_number_of_calls = 1
circuit_breaker.failure_rate_threshold = 0.5
circuit_breaker.wait_duration_in_open = "10s"
"#;

/// rmqtt-cluster-broadcast.toml: the same on every node, listing every node's gRPC address.
pub fn render_cluster_plugin(nodes: &[NodeSpec]) -> String {
    let addrs: Vec<String> = nodes.iter().map(|n| format!("\"{}@{}\"", n.id, n.rpc)).collect();
    format!(
        r#"# Written by `cluster-broker up`: every node's gRPC address.
node_grpc_addrs = [{}]
# How long a publish waits for its forward to a peer that is down (default 60 s); see circuit_breaker in rmqtt.toml.
node_grpc_client_timeout = "2s"
"#,
        addrs.join(", ")
    )
}

/// rmqtt-shared-subscription.toml.
pub const SHARED_SUBSCRIPTION_CONFIG: &str = "\
# One subscriber of a `$share/<group>/` group gets each message, in turn.
strategy = \"round_robin\"
";

/// rmqtt-retainer.toml.
pub const RETAINER_CONFIG: &str = "\
# In memory; the cluster plugin copies each retained message to every node and a (re)started node fetches them.
storage.type = \"ram\"
max_retained_messages = 0
# Retained replies can carry whole scripts; the default is 1 MiB.
max_payload_size = \"8m\"
retained_message_ttl = \"0m\"
";

/// A TOML basic string.
fn toml_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: u64, mqtt: u16, rpc: u16) -> NodeSpec {
        NodeSpec { id, mqtt: ([127, 0, 0, 1], mqtt).into(), rpc: ([127, 0, 0, 1], rpc).into() }
    }

    #[test]
    fn node_config_names_its_ports_plugins_and_limits() {
        let s = render_node(&node(2, 41000, 41001), 3, Path::new("/tmp/c/node-2/plugins"), "info");
        for line in [
            "node.id = 2",
            "rpc.server_addr = \"127.0.0.1:41001\"",
            "listener.tcp.external.addr = \"127.0.0.1:41000\"",
            "listener.tcp.external.allow_anonymous = true",
            "listener.tcp.external.max_packet_size = \"16m\"",
            "plugins.dir = \"/tmp/c/node-2/plugins\"",
            "plugins.default_startups = [\"rmqtt-cluster-broadcast\", \"rmqtt-shared-subscription\", \"rmqtt-retainer\"]",
            "node.busy.check_enable = false",
        ] {
            assert!(s.lines().any(|l| l == line), "missing {line:?} in\n{s}");
        }
    }

    #[test]
    fn cluster_plugin_lists_every_node() {
        let s = render_cluster_plugin(&[node(1, 1, 2), node(2, 3, 4)]);
        assert!(s.contains("node_grpc_addrs = [\"1@127.0.0.1:2\", \"2@127.0.0.1:4\"]"), "{s}");
    }

    #[test]
    fn strings_are_escaped() {
        assert_eq!(toml_string(r#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(toml_string("x\ny"), r#""x\u000Ay""#);
    }

    #[test]
    fn allocated_ports_are_distinct() {
        let nodes = allocate(3).unwrap();
        let mut ports: Vec<u16> = nodes.iter().flat_map(|n| [n.mqtt.port(), n.rpc.port()]).collect();
        ports.sort_unstable();
        ports.dedup();
        assert_eq!(ports.len(), 6);
    }
}
