//! `request`: a device-like client for operators. Sends `getConnectors` exactly as an app would (NestJS envelope
//! over MQTT 3.1.1 on a per-device topic, or a bare MQTT 5 request with Response Topic and Correlation Data),
//! prints a summary of the reply and the round-trip time.

use crate::config::{BrokerList, BrokerUrl, Credentials, TlsFiles};
use crate::ratelimit::RateLimit;
use anyhow::{anyhow, Context};
use bytes::Bytes;
use std::time::{Duration, Instant};
use tokio::time::timeout_at;

/// What to ask and how.
#[derive(Debug, Clone)]
pub struct RequestOptions {
    /// The request data (`{platform, version, …}`).
    pub data: serde_json::Value,
    /// Request topic.
    pub topic: String,
    /// Device id (per-device topic) or `None` for the plain topic.
    pub device: Option<String>,
    /// MQTT 5 request/response instead of a NestJS envelope.
    pub mqtt5: bool,
    /// Broker nodes to send through: the first that accepts the connection is used.
    pub brokers: BrokerList,
    /// TLS files for `mqtts://`.
    pub tls: TlsFiles,
    /// Credentials.
    pub credentials: Option<Credentials>,
    /// How long to wait for each reply.
    pub timeout: Duration,
    /// How many requests to send, one after the other.
    pub count: usize,
    /// Keep to this rate (the service's per-device limit), when set.
    pub pace: Option<RateLimit>,
}

/// One reply and how long it took.
#[derive(Debug, Clone)]
pub struct Reply {
    /// The reply topic.
    pub topic: String,
    /// Decoded reply: the NestJS `response`/`err`, or the bare body.
    pub body: serde_json::Value,
    /// Payload size.
    pub bytes: usize,
    /// Publish → reply received.
    pub rtt: Duration,
}

/// A reasonably unique id without a random-number dependency.
fn unique(tag: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    format!("{tag}{:x}{:x}{:x}", std::process::id(), nanos & 0xffff_ffff_ffff, N.fetch_add(1, Ordering::Relaxed))
}

fn base_topic(o: &RequestOptions) -> String {
    match &o.device {
        Some(d) => format!("{}/{d}", o.topic),
        None => o.topic.clone(),
    }
}

/// One connection, MQTT 3.1.1 (NestJS envelopes) or MQTT 5 (Response Topic + Correlation Data).
// One short-lived connection per command: the size difference between the variants does not matter.
#[allow(clippy::large_enum_variant)]
enum Connection {
    V4(rumqttc::AsyncClient, rumqttc::EventLoop),
    V5(rumqttc::v5::AsyncClient, rumqttc::v5::EventLoop),
}

/// What the connection delivered.
enum Got {
    SubAck,
    Publish { payload: Bytes, correlation: Option<Bytes> },
    Other,
}

impl Connection {
    fn open(o: &RequestOptions, broker: &BrokerUrl) -> anyhow::Result<Connection> {
        use rumqttc::NetworkOptions;
        // An ACL like deploy/mosquitto/acl lets a device ask only on its own topic: `?client_id=` in the URL.
        let id = broker.client_id.clone().unwrap_or_else(|| unique("cs-request-"));
        let (address, transport) = super::tls::endpoint(broker, &o.tls)?;
        let mut net = NetworkOptions::new();
        net.set_tcp_nodelay(true);
        if !o.mqtt5 {
            let mut opts = rumqttc::MqttOptions::new(id, address, broker.port);
            opts.set_max_packet_size(MAX_REPLY, 1 << 20).set_keep_alive(KEEP_ALIVE);
            if let Some(c) = &o.credentials {
                opts.set_credentials(&c.username, c.password.expose());
            }
            if let Some(t) = transport {
                opts.set_transport(t);
            }
            let (client, mut el) = rumqttc::AsyncClient::new(opts, 16);
            el.set_network_options(net);
            return Ok(Connection::V4(client, el));
        }
        let mut opts = rumqttc::v5::MqttOptions::new(id, address, broker.port);
        opts.set_max_packet_size(Some(MAX_REPLY as u32)).set_keep_alive(KEEP_ALIVE);
        // The default preallocates 65 536 in-flight slots (14 MB); one request at a time needs a handful.
        opts.set_outgoing_inflight_upper_limit(64);
        if let Some(c) = &o.credentials {
            opts.set_credentials(&c.username, c.password.expose());
        }
        opts.set_network_options(net);
        if let Some(t) = transport {
            opts.set_transport(t);
        }
        let (client, el) = rumqttc::v5::AsyncClient::new(opts, 16);
        Ok(Connection::V5(client, el))
    }

    async fn subscribe(&self, topic: &str) -> anyhow::Result<()> {
        match self {
            Connection::V4(c, _) => c.subscribe(topic, rumqttc::QoS::AtLeastOnce).await?,
            Connection::V5(c, _) => c.subscribe(topic, rumqttc::v5::mqttbytes::QoS::AtLeastOnce).await?,
        }
        Ok(())
    }

    /// Publishes one request at QoS 0, as apps do; MQTT 5 carries the reply address in properties.
    async fn send(&self, topic: &str, payload: String, rr: Option<(&str, Bytes)>) -> anyhow::Result<()> {
        match self {
            Connection::V4(c, _) => c.publish(topic, rumqttc::QoS::AtMostOnce, false, payload).await?,
            Connection::V5(c, _) => {
                let props = rumqttc::v5::mqttbytes::v5::PublishProperties {
                    response_topic: rr.as_ref().map(|(t, _)| t.to_string()),
                    correlation_data: rr.map(|(_, c)| c),
                    ..Default::default()
                };
                let qos = rumqttc::v5::mqttbytes::QoS::AtMostOnce;
                c.publish_with_properties(topic, qos, false, payload, props).await?
            }
        }
        Ok(())
    }

    async fn poll(&mut self) -> Result<Got, String> {
        use rumqttc::v5::mqttbytes::v5::Packet as P5;
        use rumqttc::{Event, Packet};
        Ok(match self {
            Connection::V4(_, el) => match el.poll().await.map_err(|e| e.to_string())? {
                Event::Incoming(Packet::SubAck(_)) => Got::SubAck,
                Event::Incoming(Packet::Publish(p)) => Got::Publish { payload: p.payload, correlation: None },
                _ => Got::Other,
            },
            Connection::V5(_, el) => match el.poll().await.map_err(|e| e.to_string())? {
                rumqttc::v5::Event::Incoming(P5::SubAck(_)) => Got::SubAck,
                rumqttc::v5::Event::Incoming(P5::Publish(p)) => {
                    Got::Publish { payload: p.payload, correlation: p.properties.and_then(|pp| pp.correlation_data) }
                }
                _ => Got::Other,
            },
        })
    }

    fn disconnect(&self) {
        let _ = match self {
            Connection::V4(c, _) => c.try_disconnect().is_ok(),
            Connection::V5(c, _) => c.try_disconnect().is_ok(),
        };
    }
}

/// Largest reply accepted (whole scripts travel in replies).
const MAX_REPLY: usize = 64 << 20;
/// Keep-alive of the request connection.
const KEEP_ALIVE: Duration = Duration::from_secs(30);

/// Sends the requests and returns the replies, in order.
pub async fn request(o: &RequestOptions) -> anyhow::Result<Vec<Reply>> {
    let request_topic = base_topic(o);
    let reply_topic = format!("{request_topic}/reply");
    let (mut conn, broker) = connect_any(o, &reply_topic).await?;
    let broken = |e: String| anyhow!("MQTT connection to {broker} failed: {e}");
    let mut replies = Vec::with_capacity(o.count);
    let started = tokio::time::Instant::now();
    for i in 0..o.count {
        if let Some(RateLimit { per_second, burst }) = o.pace {
            // Request i may leave once the service's bucket has refilled for it: the burst at once, then
            // per_second, one token to spare (the service's clock starts when our first request arrives).
            let due = (i as f64 - burst + 2.0).max(0.0) / per_second;
            tokio::time::sleep_until(started + Duration::from_secs_f64(due)).await;
        }
        let id = unique("");
        let sent = Instant::now();
        if o.mqtt5 {
            let rr = Some((reply_topic.as_str(), Bytes::from(id.clone())));
            conn.send(&request_topic, o.data.to_string(), rr).await?;
        } else {
            let envelope = serde_json::json!({"pattern": o.topic, "data": o.data, "id": id});
            conn.send(&request_topic, envelope.to_string(), None).await?;
        }
        let deadline = tokio::time::Instant::now() + o.timeout;
        loop {
            let got = timeout_at(deadline, conn.poll())
                .await
                .map_err(|_| no_reply(o, broker, &reply_topic))?
                .map_err(broken)?;
            let Got::Publish { payload, correlation } = got else { continue };
            let rtt = sent.elapsed();
            // Someone else's reply on a shared topic is skipped.
            let Some(body) = reply_body(o.mqtt5, &id, &payload, correlation.as_deref())? else { continue };
            replies.push(Reply { topic: reply_topic.clone(), body, bytes: payload.len(), rtt });
            break;
        }
    }
    conn.disconnect();
    Ok(replies)
}

/// Connects to the first node that accepts the connection and confirms the reply subscription (each node gets the
/// reply timeout).
async fn connect_any<'a>(o: &'a RequestOptions, reply_topic: &str) -> anyhow::Result<(Connection, &'a BrokerUrl)> {
    super::first_node(&o.brokers, |broker| async move {
        let mut conn = Connection::open(o, broker)?;
        // Connect and subscribe to the reply topic before sending, as NestJS's ClientMqtt does.
        conn.subscribe(reply_topic).await?;
        let deadline = tokio::time::Instant::now() + o.timeout;
        loop {
            let got = timeout_at(deadline, conn.poll()).await.map_err(|_| anyhow!("timed out connecting"))?;
            if let Got::SubAck = got.map_err(|e| anyhow!("MQTT connection failed: {e}"))? {
                return Ok(conn);
            }
        }
    })
    .await
}

/// The reply body if this message answers request `id`: the NestJS `response` (or `{"err":…}`), or the bare
/// MQTT 5 body whose correlation data is `id`.
fn reply_body(
    mqtt5: bool,
    id: &str,
    payload: &[u8],
    correlation: Option<&[u8]>,
) -> anyhow::Result<Option<serde_json::Value>> {
    if mqtt5 {
        if correlation != Some(id.as_bytes()) {
            return Ok(None);
        }
        return Ok(Some(serde_json::from_slice(payload).context("reply is not JSON")?));
    }
    let v: serde_json::Value = serde_json::from_slice(payload).context("reply is not JSON")?;
    if v["id"] != serde_json::Value::String(id.to_string()) {
        return Ok(None);
    }
    Ok(Some(if v.get("err").is_some() { serde_json::json!({"err": v["err"]}) } else { v["response"].clone() }))
}

fn no_reply(o: &RequestOptions, broker: &BrokerUrl, topic: &str) -> anyhow::Error {
    let acl = match (&o.credentials, &o.device, &broker.client_id) {
        (Some(_), Some(device), id) if id.as_deref() != Some(device.as_str()) => format!(
            "; with credentials the broker may apply an ACL that lets a client ask only on its own topic \
             (deploy/mosquitto/acl): connect as the device with {broker}?client_id={device}"
        ),
        _ => String::new(),
    };
    anyhow!(
        "no reply on {topic} within {:.1} s: is connector-scripts running, connected to {} and subscribed to {}?{acl}",
        o.timeout.as_secs_f64(),
        broker,
        o.topic
    )
}
