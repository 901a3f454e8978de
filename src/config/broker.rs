//! The broker side of the configuration: broker URLs (never with a password), credentials that never print,
//! TLS files, the embedded broker's listeners.

use super::error::ConfigError;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// The transport security of a broker connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// Plain TCP (`mqtt://`).
    Mqtt,
    /// TLS (`mqtts://`).
    Mqtts,
    /// MQTT over WebSocket (`ws://host:port/path`), as React Native and browser apps connect.
    Ws,
    /// MQTT over WebSocket over TLS (`wss://`).
    Wss,
}

impl Scheme {
    /// TLS (`mqtts://`, `wss://`): the `--tls-*` files apply.
    pub fn is_tls(self) -> bool {
        matches!(self, Scheme::Mqtts | Scheme::Wss)
    }

    fn name(self) -> &'static str {
        match self {
            Scheme::Mqtt => "mqtt",
            Scheme::Mqtts => "mqtts",
            Scheme::Ws => "ws",
            Scheme::Wss => "wss",
        }
    }
}

/// Where the broker is: `mqtt://host:port`, `mqtts://host:port`, `host:port` or `host`; `?client_id=ID` optional.
#[derive(Clone, PartialEq, Eq)]
pub struct BrokerUrl {
    /// Plain or TLS.
    pub scheme: Scheme,
    /// Host name or IP address.
    pub host: String,
    /// Port (1883 / 8883 by default).
    pub port: u16,
    /// Username given in the URL (`mqtt://user@host`); the password never is.
    pub username: Option<String>,
    /// Client id given in the URL.
    pub client_id: Option<String>,
    /// The HTTP path of a WebSocket URL (`/mqtt`); empty for TCP.
    pub path: String,
}

impl fmt::Debug for BrokerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for BrokerUrl {
    /// Safe to log: there is no password in a `BrokerUrl`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = self.scheme.name();
        let host = if self.host.contains(':') { format!("[{}]", self.host) } else { self.host.clone() };
        match &self.username {
            Some(u) => write!(f, "{scheme}://{u}@{host}:{}{}", self.port, self.path),
            None => write!(f, "{scheme}://{host}:{}{}", self.port, self.path),
        }
    }
}

impl BrokerUrl {
    /// Parses a broker URL. A password in the URL is refused: it would show up in `ps` and shell history.
    pub fn parse(input: &str) -> Result<BrokerUrl, ConfigError> {
        let fail = |reason: &str| ConfigError::BrokerUrl { url: redact(input), reason: reason.to_string() };
        let (scheme, rest) = match input.split_once("://") {
            Some(("mqtt" | "tcp", rest)) => (Scheme::Mqtt, rest),
            Some(("mqtts" | "ssl" | "tls", rest)) => (Scheme::Mqtts, rest),
            Some(("ws", rest)) => (Scheme::Ws, rest),
            Some(("wss", rest)) => (Scheme::Wss, rest),
            Some((other, _)) => {
                return Err(fail(&format!("unknown scheme {other:?}; use mqtt://, mqtts://, ws:// or wss://")))
            }
            None => (Scheme::Mqtt, input),
        };
        let (rest, query) = match rest.split_once('?') {
            Some((r, q)) => (r, Some(q)),
            None => (rest, None),
        };
        // A WebSocket URL has a path (apps use /mqtt); for TCP anything after the host is a mistake or a slash.
        let (rest, path) = match (scheme, rest.find('/')) {
            (Scheme::Ws | Scheme::Wss, Some(i)) => (&rest[..i], rest[i..].to_string()),
            (Scheme::Ws | Scheme::Wss, None) => (rest, "/".to_string()),
            _ => (rest.trim_end_matches('/'), String::new()),
        };
        let (userinfo, hostport) = match rest.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, rest),
        };
        let username = match userinfo {
            Some(u) if u.contains(':') => {
                return Err(fail(
                    "a password in the URL would leak into process lists and logs; \
                     set CONNECTOR_SCRIPTS_MQTT_PASSWORD or use --mqtt-password-file",
                ))
            }
            Some("") => return Err(fail("empty username")),
            Some(u) => Some(u.to_string()),
            None => None,
        };
        let default_port = match scheme {
            Scheme::Mqtt => 1883,
            Scheme::Mqtts => 8883,
            Scheme::Ws => 80,
            Scheme::Wss => 443,
        };
        let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
            let (h, after) = v6.split_once(']').ok_or_else(|| fail("unclosed '[' in IPv6 address"))?;
            let port = match after.strip_prefix(':') {
                Some(p) => p.parse().map_err(|_| fail("port must be a number 1-65535"))?,
                None if after.is_empty() => default_port,
                None => return Err(fail("unexpected text after IPv6 address")),
            };
            (h.to_string(), port)
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (h.to_string(), p.parse().map_err(|_| fail("port must be a number 1-65535"))?),
                None => (hostport.to_string(), default_port),
            }
        };
        if host.is_empty() {
            return Err(fail("missing host"));
        }
        if port == 0 {
            return Err(fail("port must be a number 1-65535"));
        }
        let mut client_id = None;
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some(("client_id" | "clientId", v)) if !v.is_empty() => client_id = Some(v.to_string()),
                _ => return Err(fail(&format!("unknown query parameter {pair:?}; only client_id=ID is understood"))),
            }
        }
        Ok(BrokerUrl { scheme, host, port, username, client_id, path })
    }

    /// What rumqttc connects to: the host for TCP, the whole URL (path included, no credentials) for WebSocket.
    pub fn address(&self) -> String {
        match self.scheme {
            Scheme::Mqtt | Scheme::Mqtts => self.host.clone(),
            Scheme::Ws | Scheme::Wss => {
                let host = if self.host.contains(':') { format!("[{}]", self.host) } else { self.host.clone() };
                format!("{}://{host}:{}{}", self.scheme.name(), self.port, self.path)
            }
        }
    }
}

/// The broker nodes to use, in the order they are tried: one broker, or several nodes of one cluster. On a lost
/// connection the next one is tried (with the usual backoff); never empty.
#[derive(Clone, PartialEq, Eq)]
pub struct BrokerList(Vec<BrokerUrl>);

impl fmt::Debug for BrokerList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for BrokerList {
    /// Comma-separated, as `--broker` takes it; safe to log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, url) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            fmt::Display::fmt(url, f)?;
        }
        Ok(())
    }
}

impl BrokerList {
    /// One broker.
    pub fn one(url: BrokerUrl) -> BrokerList {
        BrokerList(vec![url])
    }

    /// Parses `--broker`: the flag repeated, a comma-separated list, or both. Every entry must parse, name the same
    /// username and client id (one identity across the cluster), and an `mqtts://` entry needs the TLS files that
    /// were named to be readable. Each mistake is one line naming the entry.
    pub fn parse<S: AsRef<str>>(values: &[S], tls: &TlsFiles) -> Result<BrokerList, ConfigError> {
        let entries: Vec<&str> = values.iter().flat_map(|v| v.as_ref().split(',')).map(str::trim).collect();
        let count = entries.len();
        if entries.iter().all(|e| e.is_empty()) {
            return Err(ConfigError::Flag {
                flag: "--broker",
                reason: "empty list: give one or more broker URLs, e.g. mqtt://node1:1883,mqtt://node2:1883".into(),
            });
        }
        // One URL keeps the plain message; in a list, the entry is named.
        let entry_error = |n: usize, entry: &str, reason: String| match count {
            1 => ConfigError::BrokerUrl { url: redact(entry), reason },
            _ => ConfigError::BrokerEntry { n, count, url: redact(entry), reason },
        };
        let mut urls: Vec<BrokerUrl> = Vec::with_capacity(count);
        for (i, entry) in entries.iter().enumerate() {
            let n = i + 1;
            if entry.is_empty() {
                return Err(entry_error(n, entry, "empty entry (two commas in a row, or a trailing comma?)".into()));
            }
            let url = BrokerUrl::parse(entry).map_err(|e| match e {
                ConfigError::BrokerUrl { reason, .. } => entry_error(n, entry, reason),
                other => other,
            })?;
            if url.scheme.is_tls() {
                tls.check_readable().map_err(|reason| entry_error(n, entry, reason))?;
            }
            if let Some(first) = urls.first() {
                if url.username != first.username {
                    return Err(entry_error(
                        n,
                        entry,
                        "names another username than entry 1: one account for all".into(),
                    ));
                }
                if url.client_id != first.client_id {
                    return Err(entry_error(
                        n,
                        entry,
                        "names another client_id than entry 1: one identity for all".into(),
                    ));
                }
            }
            if urls.contains(&url) {
                return Err(entry_error(n, entry, "listed twice".into()));
            }
            urls.push(url);
        }
        Ok(BrokerList(urls))
    }

    /// The first node (where a connection starts).
    pub fn first(&self) -> &BrokerUrl {
        &self.0[0]
    }

    /// Node `i` (wrapping around the list).
    pub fn get(&self, i: usize) -> &BrokerUrl {
        &self.0[i % self.0.len()]
    }

    /// How many nodes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Never true (a list has at least one node); for clippy's `len_without_is_empty`.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The nodes in order.
    pub fn iter(&self) -> impl Iterator<Item = &BrokerUrl> {
        self.0.iter()
    }
}

/// Removes anything between `://` and `@` so a mistyped URL with a password is never echoed.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://***@{}", &url[..s], &url[at + 1..]),
        (None, Some(at)) => format!("***@{}", &url[at + 1..]),
        _ => url.to_string(),
    }
}

/// A secret that never prints.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }

    /// The secret itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Username and password for the broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// Username.
    pub username: String,
    /// Password.
    pub password: Secret,
}

/// Reads credentials: username from the URL, the flag or `CONNECTOR_SCRIPTS_MQTT_USERNAME`; password from
/// `--mqtt-password-file` or `CONNECTOR_SCRIPTS_MQTT_PASSWORD` (systemd: `EnvironmentFile=` or `LoadCredential=`).
pub fn credentials(
    url_username: Option<&str>,
    username: Option<&str>,
    password_file: Option<&Path>,
    password_env: Option<String>,
) -> Result<Option<Credentials>, ConfigError> {
    let username = url_username.or(username).map(str::to_string);
    let password = match password_file {
        Some(path) => Some(read_secret_file(path, "the MQTT password")?),
        None => password_env.map(Secret::new),
    };
    match (username, password) {
        (Some(username), password) => {
            Ok(Some(Credentials { username, password: password.unwrap_or_else(|| Secret::new("")) }))
        }
        (None, Some(_)) => Err(ConfigError::Invalid(
            "an MQTT password is set but no username: set --mqtt-username or CONNECTOR_SCRIPTS_MQTT_USERNAME".into(),
        )),
        (None, None) => Ok(None),
    }
}

/// Reads a secret file, trimming one trailing newline.
pub fn read_secret_file(path: &Path, what: &'static str) -> Result<Secret, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::CredentialFile {
        what,
        path: path.to_path_buf(),
        source,
    })?;
    Ok(Secret::new(text.strip_suffix('\n').unwrap_or(&text).trim_end_matches('\r')))
}

/// The embedded broker's listeners and who may connect. rumqttd listeners speak one protocol version each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmbeddedBroker {
    /// MQTT 3.1.1 listener (apps, NestJS clients).
    pub listen: SocketAddr,
    /// MQTT 5 listener (request/response with Response Topic; the service itself connects here).
    pub listen_v5: SocketAddr,
    /// MQTT 3.1.1 over WebSocket (React Native and browser apps), if on.
    pub listen_ws: Option<SocketAddr>,
    /// Password file (Mosquitto format) of the accounts that may connect; `None`: anyone may.
    pub users: Option<PathBuf>,
    /// Largest packet a client may publish: below what the service's own connection accepts, so no single
    /// message can cost the service its connection.
    pub max_packet: usize,
}

/// Bytes kept between the embedded broker's packet limit and the service's: a publish grows by a few bytes on
/// its way from an MQTT 3.1.1 client to the service's MQTT 5 connection (properties).
pub const EMBEDDED_PACKET_MARGIN: usize = 4096;

/// Which broker `serve` uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BrokerChoice {
    /// Start the embedded broker and serve through it.
    Embedded(EmbeddedBroker),
    /// Connect to an existing broker.
    External(BrokerList),
}

/// TLS settings for `mqtts://`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM file of the CA(s) to trust; the system roots when absent.
    pub ca: Option<PathBuf>,
    /// PEM client certificate chain and private key, for brokers that require client certificates.
    pub client: Option<(PathBuf, PathBuf)>,
}

impl TlsFiles {
    /// Every named file can be opened, or a one-line reason naming the flag and the file.
    fn check_readable(&self) -> Result<(), String> {
        let named = self
            .ca
            .iter()
            .map(|p| ("--tls-ca", p))
            .chain(self.client.iter().flat_map(|(cert, key)| [("--tls-cert", cert), ("--tls-key", key)]));
        for (flag, path) in named {
            if let Err(e) = std::fs::File::open(path) {
                return Err(format!("{flag} {}: {e}", path.display()));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
