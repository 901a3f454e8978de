//! In-process service harness and small MQTT test clients (v3.1.1 and v5). The service's configuration is built
//! by [`config`] through the same function as the CLI (`ServeConfig::from_args` on parsed flags), overriding only
//! directories, ports and identity.

use super::TempCatalog;
use bytes::Bytes;
use clap::Parser;
use connector_scripts::app::{self, Running};
use connector_scripts::cli::{Cli, Command};
use connector_scripts::config::ServeConfig;
use rumqttc::v5::mqttbytes::QoS;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;
use tokio::sync::mpsc;

pub const TIMEOUT: Duration = Duration::from_secs(10);

/// Where the service's broker is, from a client's point of view.
#[derive(Debug, Clone, Copy)]
pub struct Ports {
    /// MQTT 3.1.1 port.
    pub v4: u16,
    /// MQTT 5 port (same as v4 on Mosquitto).
    pub v5: u16,
    /// The embedded broker's MQTT-over-WebSocket port, when the test asked for one.
    pub ws: Option<u16>,
}

/// `serve` flags as the CLI parses them, then validated by the CLI's own function.
pub fn parse_serve<S: AsRef<str>>(flags: &[S]) -> ServeConfig {
    let argv = ["connector-scripts", "serve"].into_iter().chain(flags.iter().map(AsRef::as_ref));
    match Cli::try_parse_from(argv).unwrap_or_else(|e| panic!("test flags must parse: {e}")).command {
        Command::Serve(args) => ServeConfig::from_args(&args).unwrap_or_else(|e| panic!("test config: {e}")),
        other => panic!("not serve: {other:?}"),
    }
}

/// The flags every in-process test service gets: its own catalog, an ops listener on port 0, a client id of its
/// own (all services in this process share one pid, so the default id would collide), no WebSocket listener.
pub fn test_flags(catalog: &TempCatalog, extra: &[String]) -> Vec<String> {
    static N: AtomicU32 = AtomicU32::new(0);
    let mut flags: Vec<String> = vec![
        "--snippets".into(),
        catalog.snippets().display().to_string(),
        "--platforms".into(),
        catalog.platforms().display().to_string(),
        "--http-listen".into(),
        "127.0.0.1:0".into(),
    ];
    // The embedded broker's WebSocket listener would take the port after the two free ones each test picks: off,
    // unless the test asks for it.
    if !extra.iter().any(|f| f == "--embedded-ws-listen") {
        flags.extend(["--embedded-ws-listen".into(), "off".into()]);
    }
    if !extra.iter().any(|f| f == "--client-id") {
        let id = format!("test-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed));
        flags.extend(["--client-id".into(), id]);
    }
    flags.extend(extra.iter().cloned());
    flags
}

/// The production configuration for `catalog` served through the broker at `url`, plus `extra` flags.
pub fn config(catalog: &TempCatalog, url: &str, extra: &[&str]) -> ServeConfig {
    let mut more = vec!["--broker".to_string(), url.to_string()];
    more.extend(extra.iter().map(|s| s.to_string()));
    parse_serve(&test_flags(catalog, &more))
}

/// Starts the service with its embedded broker on free ports (retrying if a port was taken meanwhile); waits
/// until ready.
pub async fn serve_embedded(catalog: &TempCatalog) -> (Running, Ports) {
    serve_embedded_with(catalog, &[], false).await
}

/// [`serve_embedded`] with `extra` flags, and with a WebSocket listener on a free port of its own when `ws`.
pub async fn serve_embedded_with(catalog: &TempCatalog, extra: &[String], ws: bool) -> (Running, Ports) {
    for _ in 0..5 {
        let (v4, v5) = super::free_port_pair();
        let ws = ws.then(super::free_port);
        let mut flags = vec![
            "--embedded-listen".to_string(),
            format!("127.0.0.1:{v4}"),
            "--embedded-listen-v5".into(),
            format!("127.0.0.1:{v5}"),
        ];
        if let Some(ws) = ws {
            flags.extend(["--embedded-ws-listen".into(), format!("127.0.0.1:{ws}")]);
        }
        flags.extend(extra.iter().cloned());
        match app::start(parse_serve(&test_flags(catalog, &flags))).await {
            Ok(running) => {
                tokio::time::timeout(TIMEOUT, running.ready()).await.expect("service ready in time");
                return (running, Ports { v4, v5, ws });
            }
            Err(e) if e.to_string().contains("already in use") => continue,
            Err(e) => panic!("service starts: {e:#}"),
        }
    }
    panic!("no free ports for the embedded broker");
}

/// Starts the service against an external broker; waits until ready.
pub async fn serve_external(catalog: &TempCatalog, url: &str) -> Running {
    serve_with(config(catalog, url, &[])).await
}

pub async fn serve_with(cfg: ServeConfig) -> Running {
    let running = app::start(cfg).await.expect("service starts");
    tokio::time::timeout(TIMEOUT, running.ready()).await.expect("service ready in time");
    running
}

/// A received message.
#[derive(Debug, Clone)]
pub struct Msg {
    pub topic: String,
    pub payload: Bytes,
    pub correlation: Option<Bytes>,
}

impl Msg {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.payload).unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.payload))
    }
}

/// A test MQTT client: subscribe, publish, receive with timeouts. v3.1.1 unless `v5`.
pub struct Client {
    v4: Option<rumqttc::AsyncClient>,
    v5: Option<rumqttc::v5::AsyncClient>,
    rx: mpsc::UnboundedReceiver<Msg>,
    subacks: mpsc::UnboundedReceiver<()>,
}

impl Client {
    pub async fn v4(port: u16, id: &str) -> Client {
        Client::v4_with(port, id, |_| {}).await
    }

    /// A v3.1.1 client with a persistent session (survives broker restarts with `persistence true`).
    pub async fn v4_persistent(port: u16, id: &str) -> Client {
        Client::v4_with(port, id, |o| {
            o.set_clean_session(false);
        })
        .await
    }

    /// A v3.1.1 client with credentials.
    pub async fn v4_login(port: u16, id: &str, user: &str, password: &str) -> Client {
        let (user, password) = (user.to_string(), password.to_string());
        Client::v4_with(port, id, move |o| {
            o.set_credentials(user, password);
        })
        .await
    }

    pub async fn v4_with(port: u16, id: &str, tune: impl FnOnce(&mut rumqttc::MqttOptions)) -> Client {
        let mut opts = rumqttc::MqttOptions::new(id, "127.0.0.1", port);
        opts.set_max_packet_size(16 << 20, 16 << 20);
        opts.set_keep_alive(Duration::from_secs(5));
        tune(&mut opts);
        let (client, mut el) = rumqttc::AsyncClient::new(opts, 64);
        let (tx, rx) = mpsc::unbounded_channel();
        let (stx, subacks) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            loop {
                match el.poll().await {
                    Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(p))) => {
                        let _ = tx.send(Msg { topic: p.topic, payload: p.payload, correlation: None });
                    }
                    Ok(rumqttc::Event::Incoming(rumqttc::Packet::SubAck(_))) => {
                        let _ = stx.send(());
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                }
                if tx.is_closed() {
                    break;
                }
            }
        });
        Client { v4: Some(client), v5: None, rx, subacks }
    }

    pub async fn v5(port: u16, id: &str) -> Client {
        let mut opts = rumqttc::v5::MqttOptions::new(id, "127.0.0.1", port);
        opts.set_max_packet_size(Some(16 << 20));
        let (client, mut el) = rumqttc::v5::AsyncClient::new(opts, 64);
        let (tx, rx) = mpsc::unbounded_channel();
        let (stx, subacks) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            use rumqttc::v5::mqttbytes::v5::Packet;
            loop {
                match el.poll().await {
                    Ok(rumqttc::v5::Event::Incoming(Packet::Publish(p))) => {
                        let topic = String::from_utf8_lossy(&p.topic).into_owned();
                        let correlation = p.properties.and_then(|pp| pp.correlation_data);
                        let _ = tx.send(Msg { topic, payload: p.payload, correlation });
                    }
                    Ok(rumqttc::v5::Event::Incoming(Packet::SubAck(_))) => {
                        let _ = stx.send(());
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                }
                if tx.is_closed() {
                    break;
                }
            }
        });
        Client { v4: None, v5: Some(client), rx, subacks }
    }

    /// Subscribes and waits for the SUBACK.
    pub async fn subscribe(&mut self, topic: &str) {
        if let Some(c) = &self.v4 {
            c.subscribe(topic, rumqttc::QoS::AtLeastOnce).await.unwrap();
        }
        if let Some(c) = &self.v5 {
            c.subscribe(topic, QoS::AtLeastOnce).await.unwrap();
        }
        tokio::time::timeout(TIMEOUT, self.subacks.recv()).await.expect("suback in time");
    }

    /// A QoS 1 publish.
    pub async fn publish(&self, topic: &str, payload: impl Into<Vec<u8>>) {
        self.publish_at(topic, payload.into(), QoS::AtLeastOnce).await;
    }

    /// A retained QoS 1 publish (v3.1.1 clients).
    pub async fn publish_retained(&self, topic: &str, payload: impl Into<Vec<u8>>) {
        let c = self.v4.as_ref().expect("publish_retained needs a v4 client");
        c.publish(topic, rumqttc::QoS::AtLeastOnce, true, payload.into()).await.unwrap();
    }

    /// A QoS 0 publish, as phones and NestJS clients send requests.
    pub async fn publish_qos0(&self, topic: &str, payload: impl Into<Vec<u8>>) {
        self.publish_at(topic, payload.into(), QoS::AtMostOnce).await;
    }

    async fn publish_at(&self, topic: &str, payload: Vec<u8>, qos: QoS) {
        if let Some(c) = &self.v4 {
            let qos = if qos == QoS::AtMostOnce { rumqttc::QoS::AtMostOnce } else { rumqttc::QoS::AtLeastOnce };
            c.publish(topic, qos, false, payload).await.unwrap();
        } else if let Some(c) = &self.v5 {
            c.publish(topic, qos, false, payload).await.unwrap();
        }
    }

    /// MQTT 5 publish with Response Topic and Correlation Data.
    pub async fn publish_rr(&self, topic: &str, payload: impl Into<Vec<u8>>, response_topic: &str, correlation: &[u8]) {
        let props = rumqttc::v5::mqttbytes::v5::PublishProperties {
            response_topic: Some(response_topic.into()),
            correlation_data: Some(Bytes::copy_from_slice(correlation)),
            ..Default::default()
        };
        let c = self.v5.as_ref().expect("publish_rr needs a v5 client");
        c.publish_with_properties(topic, QoS::AtLeastOnce, false, payload.into(), props).await.unwrap();
    }

    /// The next message, or a panic after the timeout.
    pub async fn recv(&mut self) -> Msg {
        tokio::time::timeout(TIMEOUT, self.rx.recv()).await.expect("a message in time").expect("client alive")
    }

    /// The next message within `d`, if any.
    pub async fn try_recv_within(&mut self, d: Duration) -> Option<Msg> {
        tokio::time::timeout(d, self.rx.recv()).await.ok().flatten()
    }
}

/// A NestJS-style envelope.
pub fn nest(data: serde_json::Value, id: &str) -> String {
    serde_json::json!({"pattern": "getConnectors", "data": data, "id": id}).to_string()
}

/// Requests the service answered with a bundle (`connector_scripts_requests_total{result="ok"}`, summed).
pub fn answered(state: &connector_scripts::state::State) -> u64 {
    connector_scripts::ops::metrics_text(state)
        .lines()
        .filter(|l| l.starts_with("connector_scripts_requests_total{") && l.contains("result=\"ok\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// Checks a NestJS reply carries the ios 3.1.0 bundle (variant `next`) with every script matching its hash;
/// returns the request id it answers.
pub fn checked_ios_next(v: &serde_json::Value) -> String {
    let r = &v["response"];
    assert_eq!((r["platform"].as_str(), r["variant"].as_str()), (Some("ios"), Some("next")), "{v}");
    let scripts = r["connectors"].as_array().unwrap_or_else(|| panic!("not a bundle: {v}"));
    assert!(!scripts.is_empty(), "{v}");
    for c in scripts {
        let code = c["code"].as_str().expect("code");
        let sha = connector_scripts::catalog::bundle::sha256_hex(code.as_bytes());
        assert_eq!(c["sha256"].as_str(), Some(sha.as_str()), "{v}");
    }
    v["id"].as_str().expect("an id").to_string()
}
