//! The ONE place where flags and environment become a validated [`ServeConfig`], and where every default lives
//! ([`defaults`]; the CLI refers to them). Tests build their configuration through [`ServeConfig::from_args`] too,
//! overriding only ports, directories and identity. No panics: every mistake is a [`ConfigError`] naming the
//! flag to fix.

pub mod broker;
pub mod defaults;
mod error;

pub use broker::{BrokerChoice, BrokerList, BrokerUrl, Credentials, EmbeddedBroker, Scheme, Secret, TlsFiles};
pub use defaults::Seconds;
pub use error::ConfigError;

use crate::catalog::Sources;
use crate::cli::{BrokerArgs, CatalogArgs, HttpListen, ServeArgs};
use crate::ratelimit::{RateLimit, RateLimits};
use crate::wire::topics::{self, Topics};
use crate::wire::Limits;
use rumqttc::v5::mqttbytes::QoS;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

fn flag_error(flag: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Flag { flag, reason: reason.into() }
}

/// Everything `serve` needs, validated, in sections.
#[derive(Debug, Clone, PartialEq)]
pub struct ServeConfig {
    /// Where the catalog is read from.
    pub catalog: Sources,
    /// The broker connection.
    pub mqtt: MqttConfig,
    /// Hot reload.
    pub reload: ReloadConfig,
    /// Health, readiness, metrics, identity.
    pub ops: OpsConfig,
    /// Request limits.
    pub limits: LimitsConfig,
    /// The key that signs manifests (`--signing-key`, or the systemd credential `signing-key`).
    pub signing_key: Option<PathBuf>,
    /// `--trusted-key`: other instances' signing public keys, trusted next to our own (key rotation).
    pub trusted_keys: Vec<PathBuf>,
    /// Managed releases (`--release-mode manual`).
    pub releases: Option<crate::release::ReleaseConfig>,
}

/// The broker connection.
#[derive(Debug, Clone, PartialEq)]
pub struct MqttConfig {
    /// Embedded or external broker.
    pub broker: BrokerChoice,
    /// TLS files for `mqtts://`.
    pub tls: TlsFiles,
    /// Client id (from `?client_id=` in the URL, the flag, or the default).
    pub client_id: String,
    /// Broker credentials.
    pub credentials: Option<Credentials>,
    /// Every topic the service uses.
    pub topics: Topics,
    /// Shared-subscription group.
    pub share_group: Option<String>,
    /// Request subscription QoS.
    pub qos_in: QoS,
    /// Reply QoS (`None`: as the request).
    pub qos_out: Option<QoS>,
    /// Largest MQTT packet accepted.
    pub max_packet_size: u32,
    /// Keep-alive.
    pub keep_alive: Duration,
    /// Reconnect backoff: first and longest delay.
    pub backoff: (Duration, Duration),
    /// Shutdown drain deadline.
    pub drain_timeout: Duration,
    /// Persistent session expiry (`None`: clean session). With it, requests are acknowledged only after their
    /// reply is published, and requests sent while the service is away are answered when it is back.
    pub session_expiry: Option<Duration>,
}

/// Hot reload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReloadConfig {
    /// Watch the catalog directories and reload on change.
    pub watch: bool,
    /// Quiet time before a burst of file changes is acted on.
    pub debounce: Duration,
}

/// Health, readiness, metrics, identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpsConfig {
    /// Ops HTTP listener (`None`: off).
    pub http_listen: Option<SocketAddr>,
    /// Instance name, on the status topic and in health output.
    pub instance: String,
}

/// Request limits.
#[derive(Debug, Clone, PartialEq)]
pub struct LimitsConfig {
    /// What one request may contain.
    pub request: Limits,
    /// Per-device, bare-topic and global rate limits.
    pub rate_limits: RateLimits,
}

impl CatalogArgs {
    /// The catalog sources these flags name.
    pub fn sources(&self) -> Sources {
        Sources {
            snippets: self.snippets.clone(),
            platforms: self.platforms.clone(),
            max_file_size: self.max_file_size,
            max_reply_size: self.max_reply_size,
        }
    }
}

impl BrokerArgs {
    /// TLS files named by the flags.
    pub fn tls(&self) -> TlsFiles {
        TlsFiles { ca: self.tls_ca.clone(), client: self.tls_cert.clone().zip(self.tls_key.clone()) }
    }

    /// Credentials from the URL, flags and environment.
    pub fn credentials(&self, url: &BrokerUrl) -> Result<Option<Credentials>, ConfigError> {
        broker::credentials(
            url.username.as_deref(),
            self.mqtt_username.as_deref(),
            self.mqtt_password_file.as_deref(),
            std::env::var(defaults::PASSWORD_ENV).ok(),
        )
    }

    /// The request topic, checked.
    pub fn request_topic(&self) -> Result<String, ConfigError> {
        let topic = self.topic.trim_matches('/').to_string();
        if !topics::valid_plain_topic(&topic) {
            return Err(flag_error("--topic", "must be a plain topic without wildcards, e.g. getConnectors"));
        }
        Ok(topic)
    }
}

/// QoS from its number (clap has checked the range).
pub fn qos(n: u8) -> QoS {
    match n {
        0 => QoS::AtMostOnce,
        1 => QoS::AtLeastOnce,
        _ => QoS::ExactlyOnce,
    }
}

impl ServeConfig {
    /// Validates `serve`'s flags into the configuration. The only constructor: the CLI and the tests use it.
    pub fn from_args(args: &ServeArgs) -> Result<ServeConfig, ConfigError> {
        let mut mqtt = mqtt_config(args)?;
        let instance = args.instance.clone().unwrap_or_else(|| mqtt.client_id.clone());
        if !topics::valid_level(&instance) {
            return Err(flag_error("--instance", "must be a plain name without '/', '+' or '#'"));
        }
        let signing_key = args.signing_key.clone().or_else(systemd_signing_key);
        let releases = release_config(args, &instance, signing_key.is_some())?;
        mqtt.topics.releases = releases.as_ref().map(|r| topics::ReleaseTopics {
            prefix: r.topic_prefix.clone(),
            probe: format!("{}/{instance}/sync", mqtt.topics.status_prefix),
            reports: args.report_topic.clone(),
        });
        Ok(ServeConfig {
            catalog: args.catalog.sources(),
            mqtt,
            reload: ReloadConfig { watch: !args.no_watch, debounce: args.debounce.0 },
            ops: OpsConfig { http_listen: args.http_listen.0, instance },
            limits: LimitsConfig {
                request: Limits {
                    max_request_bytes: args.max_request_size,
                    max_reply_bytes: usize::try_from(args.catalog.max_reply_size).unwrap_or(usize::MAX),
                    ..Limits::default()
                },
                rate_limits: RateLimits {
                    device: (args.rate_limit > 0.0)
                        .then_some(RateLimit { per_second: args.rate_limit, burst: args.rate_burst.max(1.0) }),
                    // The bare topic's burst is three seconds' worth, as the per-device default is.
                    bare: (args.rate_limit_bare > 0.0)
                        .then_some(RateLimit { per_second: args.rate_limit_bare, burst: 3.0 * args.rate_limit_bare }),
                    // Two seconds' worth at once: an update herd arrives in a burst.
                    global: (args.rate_limit_global > 0.0).then_some(RateLimit {
                        per_second: args.rate_limit_global,
                        burst: 2.0 * args.rate_limit_global,
                    }),
                },
            },
            signing_key,
            trusted_keys: args.trusted_key.clone(),
            releases,
        })
    }
}

/// Manual mode: the state directory (the flag, else systemd's `$STATE_DIRECTORY`) and the topics.
fn release_config(
    args: &ServeArgs,
    instance: &str,
    signs: bool,
) -> Result<Option<crate::release::ReleaseConfig>, ConfigError> {
    if args.release_mode == crate::release::ReleaseMode::Auto {
        return Ok(None);
    }
    // Without them anyone who can publish to the broker could change what phones get.
    if !signs || args.operator_key.is_empty() {
        return Err(flag_error(
            if signs { "--operator-key" } else { "--signing-key" },
            "manual release mode applies only signed release states: give --signing-key and at least one \
             --operator-key (public keys from `connector-scripts keygen`)",
        ));
    }
    let state_dir =
        args.state_dir.clone().or_else(|| std::env::var_os("STATE_DIRECTORY").map(PathBuf::from)).ok_or_else(|| {
            flag_error("--state-dir", "manual release mode keeps every released revision: give a directory")
        })?;
    if !topics::valid_plain_topic(&args.release_topic) {
        return Err(flag_error("--release-topic", "must be a plain topic without wildcards or a trailing '/'"));
    }
    Ok(Some(crate::release::ReleaseConfig {
        state_dir,
        topic_prefix: args.release_topic.clone(),
        instance: instance.to_string(),
        auto_halt: args.auto_halt.then_some(crate::release::HaltPolicy::default()),
        operator_keys: args.operator_key.clone(),
    }))
}

/// `$CREDENTIALS_DIRECTORY/signing-key` when systemd passed that credential (`LoadCredential=signing-key:…`).
fn systemd_signing_key() -> Option<PathBuf> {
    let path = PathBuf::from(std::env::var_os("CREDENTIALS_DIRECTORY")?).join("signing-key");
    path.exists().then_some(path)
}

fn broker_choice(args: &ServeArgs) -> Result<(BrokerChoice, Option<Credentials>), ConfigError> {
    if !args.broker.is_empty() {
        let brokers = BrokerList::parse(&args.broker, &args.access.tls())?;
        let creds = args.access.credentials(brokers.first())?;
        return Ok((BrokerChoice::External(brokers), creds));
    }
    let listen_v5 = args
        .embedded_listen_v5
        .unwrap_or_else(|| SocketAddr::new(args.embedded_listen.ip(), args.embedded_listen.port().wrapping_add(1)));
    if listen_v5 == args.embedded_listen {
        return Err(flag_error("--embedded-listen-v5", "must differ from --embedded-listen"));
    }
    let listen_ws = match args.embedded_ws_listen {
        Some(HttpListen(addr)) => addr,
        None => Some(SocketAddr::new(listen_v5.ip(), listen_v5.port().wrapping_add(1))),
    };
    if listen_ws.is_some_and(|ws| ws == args.embedded_listen || ws == listen_v5) {
        return Err(flag_error("--embedded-ws-listen", "must differ from the TCP listeners (or be `off`)"));
    }
    let open = [(args.embedded_listen, "--embedded-listen"), (listen_v5, "--embedded-listen-v5")]
        .into_iter()
        .chain(listen_ws.map(|ws| (ws, "--embedded-ws-listen")))
        .find(|(addr, _)| !addr.ip().is_loopback());
    if let (Some((addr, flag)), None, false) = (open, &args.embedded_users, args.embedded_allow_anonymous) {
        return Err(flag_error(
            flag,
            format!(
                "{addr} is reachable from the network, and the embedded broker would let anyone connect: give \
                 --embedded-users FILE (made with mosquitto_passwd), or --embedded-allow-anonymous to accept that"
            ),
        ));
    }
    let max_packet = (args.max_packet_size as usize).saturating_sub(broker::EMBEDDED_PACKET_MARGIN);
    let users = args.embedded_users.clone();
    let listen = args.embedded_listen;
    Ok((BrokerChoice::Embedded(EmbeddedBroker { listen, listen_v5, listen_ws, users, max_packet }), None))
}

fn mqtt_config(args: &ServeArgs) -> Result<MqttConfig, ConfigError> {
    let (broker, credentials) = broker_choice(args)?;
    for (flag, t) in [
        ("--manifest-topic", &args.manifest_topic),
        ("--changed-topic", &args.changed_topic),
        ("--status-topic", &args.status_topic),
    ] {
        if !topics::valid_plain_topic(t) {
            return Err(flag_error(flag, "must be a plain topic without wildcards or a trailing '/'"));
        }
    }
    if let Some(g) = &args.share_group {
        if !topics::valid_level(g) {
            return Err(flag_error("--share-group", "must be a plain name without '/', '+' or '#'"));
        }
    }
    if args.persistent_session && args.qos_in == 0 {
        return Err(flag_error(
            "--persistent-session",
            "needs --qos-in 1 or 2: QoS 0 requests are never kept for the service",
        ));
    }
    // A persistent session needs the same client id after a restart: no pid in the default then.
    let url_client_id = match &broker {
        BrokerChoice::External(brokers) => brokers.first().client_id.clone(),
        BrokerChoice::Embedded(_) => None,
    };
    let client_id = url_client_id
        .or_else(|| args.client_id.clone())
        .unwrap_or_else(|| defaults::client_id(!args.persistent_session));
    Ok(MqttConfig {
        broker,
        tls: args.access.tls(),
        client_id,
        credentials,
        topics: Topics {
            request: args.access.request_topic()?,
            manifest_prefix: args.manifest_topic.clone(),
            changed: args.changed_topic.clone(),
            status_prefix: args.status_topic.clone(),
            releases: None,
        },
        share_group: args.share_group.clone(),
        qos_in: qos(args.qos_in),
        qos_out: args.qos_out.map(qos),
        max_packet_size: args.max_packet_size,
        keep_alive: args.keep_alive.0,
        backoff: (args.reconnect_min.0, args.reconnect_max.0),
        drain_timeout: args.drain_timeout.0,
        session_expiry: args.persistent_session.then_some(args.session_expiry.0),
    })
}

#[cfg(test)]
mod tests;
