//! `request`: a device-like client for operators. Sends `getConnectors` exactly as an app would (NestJS envelope
//! over MQTT 3.1.1 on a per-device topic, or a bare MQTT 5 request with Response Topic and Correlation Data),
//! prints a summary of the reply and the round-trip time.

use crate::config::{BrokerUrl, Credentials, Scheme};
use crate::transport::{tls_config, TlsFiles};
use anyhow::{anyhow, bail, Context};
use bytes::Bytes;
use std::time::{Duration, Instant};
use tokio::time::timeout_at;

/// What to ask and how.
#[derive(Debug, Clone)]
pub struct RequestOptions {
    /// Broker to send through.
    pub broker: BrokerUrl,
    /// TLS files for `mqtts://`.
    pub tls: TlsFiles,
    /// Credentials.
    pub credentials: Option<Credentials>,
    /// Request topic.
    pub topic: String,
    /// Device id (per-device topic) or `None` for the plain topic.
    pub device: Option<String>,
    /// MQTT 5 request/response instead of a NestJS envelope.
    pub mqtt5: bool,
    /// The request data (`{platform, version, …}`).
    pub data: serde_json::Value,
    /// How long to wait for each reply.
    pub timeout: Duration,
    /// How many requests to send, one after the other.
    pub count: usize,
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

/// Sends the requests and returns the replies, in order.
pub async fn request(o: &RequestOptions) -> anyhow::Result<Vec<Reply>> {
    if o.mqtt5 {
        request_v5(o).await
    } else {
        request_v4(o).await
    }
}

async fn request_v4(o: &RequestOptions) -> anyhow::Result<Vec<Reply>> {
    use rumqttc::{AsyncClient, Event, MqttOptions, NetworkOptions, Packet, QoS, Transport};
    let mut opts = MqttOptions::new(unique("cs-request-"), &o.broker.host, o.broker.port);
    opts.set_max_packet_size(64 << 20, 1 << 20);
    opts.set_keep_alive(Duration::from_secs(30));
    if let Some(c) = &o.credentials {
        opts.set_credentials(&c.username, c.password.expose());
    }
    if o.broker.scheme == Scheme::Mqtts {
        opts.set_transport(Transport::tls_with_config(tls_config(&o.tls)?));
    }
    let (client, mut el) = AsyncClient::new(opts, 16);
    let mut net = NetworkOptions::new();
    net.set_tcp_nodelay(true);
    el.set_network_options(net);
    let request_topic = base_topic(o);
    let reply_topic = format!("{request_topic}/reply");
    let deadline = tokio::time::Instant::now() + o.timeout;
    let poll_err = |e: rumqttc::ConnectionError| anyhow!("MQTT connection to {} failed: {e}", o.broker);
    // Connect and subscribe to the reply topic before sending, as NestJS's ClientMqtt does.
    client.subscribe(&reply_topic, QoS::AtLeastOnce).await?;
    loop {
        let ev = timeout_at(deadline, el.poll()).await.map_err(|_| anyhow!("timed out connecting to {}", o.broker))?;
        if let Event::Incoming(Packet::SubAck(_)) = ev.map_err(poll_err)? {
            break;
        }
    }
    let mut replies = Vec::with_capacity(o.count);
    for _ in 0..o.count {
        let id = unique("");
        let envelope = serde_json::json!({"pattern": o.topic, "data": o.data, "id": id});
        let sent = Instant::now();
        client.publish(&request_topic, QoS::AtMostOnce, false, envelope.to_string()).await?;
        let deadline = tokio::time::Instant::now() + o.timeout;
        loop {
            let ev = timeout_at(deadline, el.poll()).await.map_err(|_| no_reply(o, &reply_topic))?.map_err(poll_err)?;
            let Event::Incoming(Packet::Publish(p)) = ev else {
                continue;
            };
            let rtt = sent.elapsed();
            let v: serde_json::Value = serde_json::from_slice(&p.payload).context("reply is not JSON")?;
            if v["id"] != serde_json::Value::String(id.clone()) {
                continue; // someone else's reply on a shared topic
            }
            let body =
                if v.get("err").is_some() { serde_json::json!({"err": v["err"]}) } else { v["response"].clone() };
            replies.push(Reply { topic: reply_topic.clone(), body, bytes: p.payload.len(), rtt });
            break;
        }
    }
    let _ = client.try_disconnect();
    Ok(replies)
}

async fn request_v5(o: &RequestOptions) -> anyhow::Result<Vec<Reply>> {
    use rumqttc::v5::mqttbytes::v5::{Packet, PublishProperties};
    use rumqttc::v5::mqttbytes::QoS;
    use rumqttc::v5::{AsyncClient, Event, MqttOptions};
    use rumqttc::{NetworkOptions, Transport};
    let mut opts = MqttOptions::new(unique("cs-request-"), &o.broker.host, o.broker.port);
    opts.set_max_packet_size(Some(64 << 20));
    opts.set_keep_alive(Duration::from_secs(30));
    // The default preallocates 65 536 in-flight slots (14 MB); one request at a time needs a handful.
    opts.set_outgoing_inflight_upper_limit(64);
    if let Some(c) = &o.credentials {
        opts.set_credentials(&c.username, c.password.expose());
    }
    let mut net = NetworkOptions::new();
    net.set_tcp_nodelay(true);
    opts.set_network_options(net);
    if o.broker.scheme == Scheme::Mqtts {
        opts.set_transport(Transport::tls_with_config(tls_config(&o.tls)?));
    }
    let (client, mut el) = AsyncClient::new(opts, 16);
    let request_topic = base_topic(o);
    let response_topic = format!("{request_topic}/reply");
    let deadline = tokio::time::Instant::now() + o.timeout;
    let poll_err = |e: rumqttc::v5::ConnectionError| anyhow!("MQTT connection to {} failed: {e}", o.broker);
    client.subscribe(&response_topic, QoS::AtLeastOnce).await?;
    loop {
        let ev = timeout_at(deadline, el.poll()).await.map_err(|_| anyhow!("timed out connecting to {}", o.broker))?;
        if let Event::Incoming(Packet::SubAck(_)) = ev.map_err(poll_err)? {
            break;
        }
    }
    let mut replies = Vec::with_capacity(o.count);
    for _ in 0..o.count {
        let correlation = Bytes::from(unique("cd-"));
        let props = PublishProperties {
            response_topic: Some(response_topic.clone()),
            correlation_data: Some(correlation.clone()),
            ..Default::default()
        };
        let sent = Instant::now();
        client.publish_with_properties(&request_topic, QoS::AtMostOnce, false, o.data.to_string(), props).await?;
        let deadline = tokio::time::Instant::now() + o.timeout;
        loop {
            let ev =
                timeout_at(deadline, el.poll()).await.map_err(|_| no_reply(o, &response_topic))?.map_err(poll_err)?;
            let Event::Incoming(Packet::Publish(p)) = ev else {
                continue;
            };
            let rtt = sent.elapsed();
            if p.properties.as_ref().and_then(|pp| pp.correlation_data.as_ref()) != Some(&correlation) {
                continue;
            }
            let body: serde_json::Value = serde_json::from_slice(&p.payload).context("reply is not JSON")?;
            replies.push(Reply { topic: response_topic.clone(), body, bytes: p.payload.len(), rtt });
            break;
        }
    }
    let _ = client.try_disconnect();
    Ok(replies)
}

fn no_reply(o: &RequestOptions, topic: &str) -> anyhow::Error {
    anyhow!(
        "no reply on {topic} within {:.1} s: is connector-scripts running, connected to {} and subscribed to {}?",
        o.timeout.as_secs_f64(),
        o.broker,
        o.topic
    )
}

/// Prints a human summary of the replies; errors if the (last) reply is an error.
pub fn print_summary(replies: &[Reply], out: &mut dyn std::io::Write) -> anyhow::Result<()> {
    let Some(last) = replies.last() else { bail!("no reply") };
    writeln!(out, "reply on {} ({} bytes) in {:.3} ms", last.topic, last.bytes, ms(last.rtt))?;
    let b = &last.body;
    if let Some(err) = b.get("err") {
        writeln!(out, "error {}: {}", err["code"].as_str().unwrap_or("?"), err["message"].as_str().unwrap_or(""))?;
        if let Some(known) = err.get("known") {
            writeln!(out, "known: {known}")?;
        }
        bail!("the service answered with error {}", err["code"].as_str().unwrap_or("?"));
    }
    if b.get("notModified") == Some(&serde_json::Value::Bool(true)) {
        writeln!(out, "not modified: revision {}", b["revision"].as_str().unwrap_or("?"))?;
    } else {
        writeln!(
            out,
            "platform {}  app {}  variant {}  revision {}",
            b["platform"].as_str().unwrap_or("?"),
            b["version"].as_str().unwrap_or("?"),
            b["variant"].as_str().unwrap_or("?"),
            b["revision"].as_str().unwrap_or("?")
        )?;
        for c in b["connectors"].as_array().into_iter().flatten() {
            let sha = c["sha256"].as_str().unwrap_or("");
            writeln!(
                out,
                "  {:<32} {:>7} bytes  sha256 {}{}",
                c["name"].as_str().unwrap_or("?"),
                c["code"].as_str().map_or(0, str::len),
                &sha[..sha.len().min(16)],
                if c.get("sourceMap").is_some() { "  +map" } else { "" }
            )?;
        }
    }
    if replies.len() > 1 {
        let mut rtts: Vec<Duration> = replies.iter().map(|r| r.rtt).collect();
        rtts.sort();
        writeln!(
            out,
            "round trip over {} requests: min {:.3} ms  p50 {:.3} ms  p99 {:.3} ms  max {:.3} ms",
            rtts.len(),
            ms(rtts[0]),
            ms(rtts[rtts.len() / 2]),
            ms(rtts[(rtts.len() * 99 / 100).min(rtts.len() - 1)]),
            ms(rtts[rtts.len() - 1])
        )?;
    }
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
