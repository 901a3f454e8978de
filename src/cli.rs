//! Command-line flags (clap derive only). Defaults come from [`crate::config::defaults`]; validation into typed
//! configuration happens in [`crate::config`].

use crate::config::defaults as d;
use crate::config::defaults::Seconds;
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::net::SocketAddr;
use std::path::PathBuf;
mod catalog;
pub use catalog::{CatalogArgs, CheckArgs, CheckFormat, ShowArgs, ShowFormat};
mod listen;
pub use listen::HttpListen;

/// Delivers transpiled TypeScript connector scripts to mobile apps over MQTT.
#[derive(Debug, Parser)]
#[command(name = "connector-scripts", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Compile every snippet for every variant and print all diagnostics; exit 1 on errors.
    Check(CheckArgs),
    /// Print the variant and exactly the JavaScript an app of this platform and version receives.
    Show(ShowArgs),
    /// Print platforms, variants, version ranges and connectors as a table.
    List(CatalogArgs),
    /// Serve getConnectors over MQTT (starts an embedded broker unless --broker is given).
    Serve(Box<ServeArgs>),
    /// Send one getConnectors request as an app would and print the reply summary and round-trip time.
    Request(Box<RequestArgs>),
    /// Ask a running service what state it is in; exit 1 when it is not ready, 2 when unreachable.
    Status(StatusArgs),
    /// Write a new Ed25519 key pair for `serve --signing-key`: OUT.key (PKCS#8 PEM, mode 0600) and OUT.pub.
    Keygen(KeygenArgs),
    /// Every variant's rollout state (`--release-mode manual`): stable, candidate, percentage, disabled connectors,
    /// the revisions on the broker.
    Releases(ReleasesArgs),
    /// Give the candidate to N % of devices (0 – 100; raising it only adds devices).
    Rollout(RolloutArgs),
    /// The candidate becomes stable for every device.
    Promote(VariantArgs),
    /// Drop the candidate, or (--to REVISION) make a stored revision stable again; effective at once.
    Rollback(RollbackArgs),
    /// Kill switch: the connector leaves every reply (new revision, new manifest) until enabled again.
    Disable(SwitchArgs),
    /// Undo `disable`.
    Enable(SwitchArgs),
}

/// What every release command needs: the broker, the topics, how long to wait for the instances.
#[derive(Debug, Clone, Args)]
pub struct OperatorArgs {
    /// Broker access (an account the ACL lets write the release topics).
    #[command(flatten)]
    pub access: BrokerArgs,
    /// Broker the service instances use (several nodes: a comma-separated list or the flag repeated; the first
    /// that answers is used).
    #[arg(long, env = "CONNECTOR_SCRIPTS_BROKER", default_value = d::REQUEST_BROKER)]
    pub broker: Vec<String>,
    /// Prefix of the retained rollout states (as the service's --release-topic).
    #[arg(long, default_value = d::RELEASE_TOPIC)]
    pub release_topic: String,
    /// Prefix of the instances' liveness messages (as the service's --status-topic).
    #[arg(long, default_value = d::STATUS_TOPIC)]
    pub status_topic: String,
    /// Seconds to wait for every live instance to apply a change.
    #[arg(long, default_value_t = d::OPERATOR_TIMEOUT)]
    pub timeout: Seconds,
    /// The operator's Ed25519 private key (PKCS#8 PEM from `keygen`; its .pub is among the instances'
    /// --operator-key): every change is signed with it. Required by the commands that change a release.
    #[arg(long, env = "CONNECTOR_SCRIPTS_OPERATOR_KEY")]
    pub key: Option<PathBuf>,
    /// Public keys whose signed states a change may build on (repeatable): the instances' signing .pub (they sign
    /// the first stable, new candidates and auto-halts) and other operators'. The --key's own is always trusted;
    /// a retained state no trusted key signed is ignored (and overwritten by the change).
    #[arg(long = "verify-key")]
    pub verify_key: Vec<PathBuf>,
}

/// `releases` flags.
#[derive(Debug, Clone, Args)]
pub struct ReleasesArgs {
    /// Broker and topics.
    #[command(flatten)]
    pub op: OperatorArgs,
    /// Only this platform.
    #[arg(long)]
    pub platform: Option<String>,
}

/// A platform and optionally one variant (default: every variant of the platform).
#[derive(Debug, Clone, Args)]
pub struct VariantArgs {
    /// Broker and topics.
    #[command(flatten)]
    pub op: OperatorArgs,
    /// Platform.
    #[arg(long)]
    pub platform: String,
    /// Variant (default: every variant of the platform).
    #[arg(long)]
    pub variant: Option<String>,
}

/// `rollout` flags.
#[derive(Debug, Clone, Args)]
pub struct RolloutArgs {
    /// Which variants.
    #[command(flatten)]
    pub target: VariantArgs,
    /// Share of devices on the candidate, 0 – 100.
    #[arg(long)]
    pub percent: f64,
}

/// `rollback` flags.
#[derive(Debug, Clone, Args)]
pub struct RollbackArgs {
    /// Which variants.
    #[command(flatten)]
    pub target: VariantArgs,
    /// Make this stored revision stable (default: only drop the candidate).
    #[arg(long)]
    pub to: Option<String>,
}

/// `disable` / `enable` flags.
#[derive(Debug, Clone, Args)]
pub struct SwitchArgs {
    /// Broker and topics.
    #[command(flatten)]
    pub op: OperatorArgs,
    /// The connector (`fleet/tracking`).
    #[arg(long)]
    pub connector: String,
    /// Only this platform (default: every platform).
    #[arg(long)]
    pub platform: Option<String>,
}

/// `keygen` flags.
#[derive(Debug, Clone, Args)]
pub struct KeygenArgs {
    /// DIR/NAME: writes DIR/NAME.key and DIR/NAME.pub (never overwrites).
    #[arg(long)]
    pub out: PathBuf,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines (no colours or timestamps under journald).
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

/// How to reach the broker (shared by `serve` and `request`).
#[derive(Debug, Clone, Args)]
pub struct BrokerArgs {
    /// MQTT username (or CONNECTOR_SCRIPTS_MQTT_USERNAME). The password comes from
    /// CONNECTOR_SCRIPTS_MQTT_PASSWORD or --mqtt-password-file, never from the command line.
    #[arg(long, env = "CONNECTOR_SCRIPTS_MQTT_USERNAME")]
    pub mqtt_username: Option<String>,
    /// File holding the MQTT password (e.g. $CREDENTIALS_DIRECTORY/mqtt-password under systemd).
    #[arg(long, env = "CONNECTOR_SCRIPTS_MQTT_PASSWORD_FILE")]
    pub mqtt_password_file: Option<PathBuf>,
    /// CA certificate(s) (PEM) to trust for mqtts://; the system roots otherwise.
    #[arg(long, env = "CONNECTOR_SCRIPTS_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
    /// Client certificate chain (PEM) for brokers that require one.
    #[arg(long, env = "CONNECTOR_SCRIPTS_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// Client private key (PEM).
    #[arg(long, env = "CONNECTOR_SCRIPTS_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Request topic; requests arrive on TOPIC and TOPIC/DEVICE.
    #[arg(long, env = "CONNECTOR_SCRIPTS_TOPIC", default_value = d::TOPIC)]
    pub topic: String,
}

/// `serve` flags.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Catalog location.
    #[command(flatten)]
    pub catalog: CatalogArgs,
    /// Broker access.
    #[command(flatten)]
    pub access: BrokerArgs,
    /// Broker to serve through: `mqtt://host:port`, `mqtts://host:port`, `host[:port]`, optionally `?client_id=ID`.
    /// Several nodes of a cluster: a comma-separated list or the flag repeated; on a lost connection the next one
    /// is tried. Without it, an embedded broker is started.
    #[arg(long, env = "CONNECTOR_SCRIPTS_BROKER")]
    pub broker: Vec<String>,
    /// Address of the embedded broker's MQTT 3.1.1 listener (apps, NestJS clients).
    #[arg(long, default_value = d::EMBEDDED_LISTEN)]
    pub embedded_listen: SocketAddr,
    /// Address of the embedded broker's MQTT 5 listener (default: the next port after --embedded-listen).
    #[arg(long)]
    pub embedded_listen_v5: Option<SocketAddr>,
    /// Address of the embedded broker's MQTT-over-WebSocket listener (MQTT 3.1.1; apps connect to
    /// ws://ADDRESS/mqtt), or `off` (default: the next port after the MQTT 5 listener).
    #[arg(long)]
    pub embedded_ws_listen: Option<HttpListen>,
    /// Accounts that may connect to the embedded broker: a password file made with `mosquitto_passwd`
    /// (NAME:HASH lines). Each account may only use its own name as client id. Reloaded on SIGHUP. Required for a
    /// listener that is not on loopback.
    #[arg(long, env = "CONNECTOR_SCRIPTS_EMBEDDED_USERS")]
    pub embedded_users: Option<PathBuf>,
    /// Let anyone connect to an embedded broker listening beyond loopback (no --embedded-users).
    #[arg(long)]
    pub embedded_allow_anonymous: bool,
    /// MQTT client id (default: connector-scripts-HOST-PID).
    #[arg(long, env = "CONNECTOR_SCRIPTS_CLIENT_ID")]
    pub client_id: Option<String>,
    /// Subscribe through $share/NAME/… so several instances split the requests.
    #[arg(long, env = "CONNECTOR_SCRIPTS_SHARE_GROUP")]
    pub share_group: Option<String>,
    /// QoS of the request subscription (0, 1 or 2).
    #[arg(long, default_value_t = d::QOS_IN, value_parser = clap::value_parser!(u8).range(0..=2))]
    pub qos_in: u8,
    /// QoS of replies (default: the request's QoS).
    #[arg(long, value_parser = clap::value_parser!(u8).range(0..=2))]
    pub qos_out: Option<u8>,
    /// Largest MQTT packet accepted, in bytes.
    #[arg(long, default_value_t = d::MAX_PACKET_SIZE)]
    pub max_packet_size: u32,
    /// Largest request payload decoded, in bytes; larger ones get BAD_REQUEST.
    #[arg(long, default_value_t = d::MAX_REQUEST_SIZE)]
    pub max_request_size: usize,
    /// MQTT keep-alive, in seconds (the broker declares the service offline after 1.5x this).
    #[arg(long, default_value_t = d::KEEP_ALIVE)]
    pub keep_alive: Seconds,
    /// First reconnect delay, in seconds.
    #[arg(long, default_value_t = d::RECONNECT_MIN)]
    pub reconnect_min: Seconds,
    /// Longest reconnect delay, in seconds.
    #[arg(long, default_value_t = d::RECONNECT_MAX)]
    pub reconnect_max: Seconds,
    /// How long shutdown may take to flush replies in flight, in seconds.
    #[arg(long, default_value_t = d::DRAIN_TIMEOUT)]
    pub drain_timeout: Seconds,
    /// Threads that run the MQTT side (compiling has its own pool). One keeps each reply on the thread that built
    /// it: larger replies cost less CPU (docs/PERFORMANCE.md); scale out with instances.
    #[arg(long, env = "CONNECTOR_SCRIPTS_WORKER_THREADS", default_value_t = 1)]
    pub worker_threads: usize,
    /// Do not watch the catalog directories (SIGHUP still reloads).
    #[arg(long)]
    pub no_watch: bool,
    /// Quiet time before a burst of file changes is acted on, in seconds.
    #[arg(long, default_value_t = d::DEBOUNCE)]
    pub debounce: Seconds,
    /// Prefix of the retained per-variant manifests: PREFIX/PLATFORM/VARIANT.
    #[arg(long, default_value = d::MANIFEST_TOPIC)]
    pub manifest_topic: String,
    /// Topic of the NestJS-style `connectorsChanged` events.
    #[arg(long, default_value = d::CHANGED_TOPIC)]
    pub changed_topic: String,
    /// Ops HTTP listener for /healthz, /readyz and /metrics (`off` to disable).
    #[arg(long, default_value = d::HTTP_LISTEN, env = "CONNECTOR_SCRIPTS_HTTP_LISTEN")]
    pub http_listen: HttpListen,
    /// Instance name on the liveness topic and in health output (default: the client id).
    #[arg(long, env = "CONNECTOR_SCRIPTS_INSTANCE")]
    pub instance: Option<String>,
    /// Prefix of the retained liveness topic PREFIX/INSTANCE ({"state":"online"|"offline",…}).
    #[arg(long, default_value = d::STATUS_TOPIC)]
    pub status_topic: String,
    /// Sustained requests per second allowed per device (TOPIC/DEVICE); excess gets RATE_LIMITED. 0 turns it off.
    #[arg(long, default_value_t = d::RATE_LIMIT)]
    pub rate_limit: f64,
    /// Requests a quiet device may send at once.
    #[arg(long, default_value_t = d::RATE_BURST)]
    pub rate_burst: f64,
    /// Sustained requests per second on the bare request topic, all callers together (it names no device, so no
    /// per-device limit applies there); three seconds' worth may come at once. 0 turns it off.
    #[arg(long, default_value_t = d::RATE_LIMIT_BARE)]
    pub rate_limit_bare: f64,
    /// Ceiling on requests per second over all devices together, which a client inventing device ids cannot
    /// escape; two seconds' worth may come at once. Excess gets RATE_LIMITED. Keep it below what one instance
    /// serves (bench/run.py). 0 turns it off.
    #[arg(long, default_value_t = d::RATE_LIMIT_GLOBAL)]
    pub rate_limit_global: f64,
    /// Ed25519 private key (PKCS#8 PEM, from `connector-scripts keygen`) that signs every manifest: a file, never
    /// the key itself. Under systemd, $CREDENTIALS_DIRECTORY/signing-key is used when this is not given.
    #[arg(long, env = "CONNECTOR_SCRIPTS_SIGNING_KEY")]
    pub signing_key: Option<PathBuf>,
    /// `auto`: every good build goes to every device at once (development, staging). `manual`: the first build is
    /// stable, later ones are candidates at 0 % until an operator rolls them out (production).
    #[arg(long, value_enum, default_value_t = crate::release::ReleaseMode::Auto, env = "CONNECTOR_SCRIPTS_RELEASE_MODE")]
    pub release_mode: crate::release::ReleaseMode,
    /// Where manual mode keeps rollout states and every released revision (default: $STATE_DIRECTORY, as systemd's
    /// StateDirectory= sets it).
    #[arg(long, env = "CONNECTOR_SCRIPTS_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    /// Prefix of the retained rollout states: PREFIX/PLATFORM/VARIANT (and their bundles under …/bundles/).
    #[arg(long, default_value = d::RELEASE_TOPIC)]
    pub release_topic: String,
    /// Where apps report outcomes: NestJS events {platform, version, revision, connector, ok, error?}.
    #[arg(long, default_value = d::REPORT_TOPIC)]
    pub report_topic: String,
    /// Manual mode: an operator's Ed25519 public key (SPKI PEM, the .pub from `keygen`) whose signed release states
    /// this instance applies (repeatable; required in manual mode). States signed by no trusted key are refused.
    #[arg(long = "operator-key")]
    pub operator_key: Vec<PathBuf>,
    /// Another instance's signing public key to trust next to this instance's own (repeatable): key rotation,
    /// where instances with the old and the new key run side by side.
    #[arg(long = "trusted-key")]
    pub trusted_key: Vec<PathBuf>,
    /// Manual mode: roll a candidate back by itself when its failure rate in the reports is significantly worse
    /// than stable's (at least 50 reports each, 5 percentage points worse, z ≥ 3).
    #[arg(long)]
    pub auto_halt: bool,
    /// Keep an MQTT session across restarts and disconnections (fixed client id, QoS 1, each request
    /// acknowledged only after its reply is published): requests sent meanwhile are answered when it is back.
    #[arg(long, env = "CONNECTOR_SCRIPTS_PERSISTENT_SESSION")]
    pub persistent_session: bool,
    /// How long the broker keeps the persistent session while the service is away, in seconds.
    #[arg(long, default_value_t = d::SESSION_EXPIRY)]
    pub session_expiry: Seconds,
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, env = "CONNECTOR_SCRIPTS_LOG_FORMAT")]
    pub log_format: LogFormat,
}

/// `status` flags.
#[derive(Debug, Clone, Args)]
pub struct StatusArgs {
    /// The service's ops listener.
    #[arg(long, default_value = d::STATUS_URL, env = "CONNECTOR_SCRIPTS_HTTP")]
    pub http: String,
    /// Seconds between the two samples used for request rates.
    #[arg(long, default_value_t = d::STATUS_INTERVAL)]
    pub interval: Seconds,
    /// Print the raw status document (JSON).
    #[arg(long)]
    pub json: bool,
}

/// `request` flags.
#[derive(Debug, Clone, Args)]
pub struct RequestArgs {
    /// Broker access.
    #[command(flatten)]
    pub access: BrokerArgs,
    /// Broker to send through (several nodes: a comma-separated list or the flag repeated; the first that answers
    /// is used).
    #[arg(long, env = "CONNECTOR_SCRIPTS_BROKER", default_value = d::REQUEST_BROKER)]
    pub broker: Vec<String>,
    /// App platform.
    #[arg(long)]
    pub platform: String,
    /// App version.
    #[arg(long)]
    pub version: String,
    /// Device id: the request goes to TOPIC/DEVICE and the reply comes back on TOPIC/DEVICE/reply.
    #[arg(long)]
    pub device: Option<String>,
    /// Use MQTT 5 request/response (Response Topic + Correlation Data, bare JSON) instead of a NestJS envelope.
    /// With the embedded broker, point --broker at its MQTT 5 listener.
    #[arg(long)]
    pub mqtt5: bool,
    /// The revision the app already has (a matching one gets `notModified`).
    #[arg(long)]
    pub revision: Option<String>,
    /// Only these connectors (repeatable).
    #[arg(long)]
    pub connector: Vec<String>,
    /// Seconds to wait for each reply.
    #[arg(long, default_value_t = d::REQUEST_TIMEOUT)]
    pub timeout: Seconds,
    /// Send this many requests one after the other and print round-trip statistics.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub count: u32,
    /// With --count and --device: requests per second after a first burst of --pace-burst, so that a
    /// service with the default per-device rate limit answers them all (0: back to back; without --device the
    /// requests share the bare topic's limit, which is not paced for).
    #[arg(long, default_value_t = d::RATE_LIMIT)]
    pub pace: f64,
    /// With --pace: requests sent at once before pacing starts.
    #[arg(long, default_value_t = d::RATE_BURST)]
    pub pace_burst: f64,
    /// Print the whole reply JSON instead of a summary.
    #[arg(long)]
    pub json: bool,
    /// Verify the reply against this public key (SPKI PEM, the .pub from `keygen`; repeatable): the signature
    /// over the manifest, then every script's sha256 and size. Exit 1 on any failure.
    #[arg(long = "verify-key")]
    pub verify_key: Vec<PathBuf>,
}
