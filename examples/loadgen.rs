//! Benchmark tools used by `bench/run.py` (not part of the service):
//!
//! - `loadgen load`: a load generator acting like C phones, each keeping W requests outstanding, NestJS envelope
//!   on per-device topics (`getConnectors/load-<c>`; `--device-prefix` for another than `load`), QoS 0 as NestJS
//!   clients do. Prints one JSON line: requests/s, latency percentiles, errors.
//! - `loadgen respond`: the "ideal responder": answers every request with pre-serialized bytes and does nothing
//!   else (the id is spliced into a ready reply). It is the broker-bound ceiling a real service can approach.
//!   With `--signing-key` its reply carries the same signed manifest as the service's.
//! - `loadgen respond --coalesce`: the same replies written by a minimal MQTT 3.1.1 client of its own that puts
//!   every reply to the requests of one socket read into one write (rumqttc writes and flushes each publish on its
//!   own). The write-coalescing experiment of docs/PERFORMANCE.md: what the broker spends per reply either way.
//!
//! `cargo run --release --example loadgen -- load --broker mqtt://127.0.0.1:1883 --connections 4 --window 16`

use connector_scripts::catalog::{self, AppVersion, CompileCache, Sources};
use rumqttc::{AsyncClient, Event, MqttOptions, NetworkOptions, Packet, QoS};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[path = "../benches/support/ideal.rs"]
mod ideal;

fn arg(args: &[String], name: &str, default: &str) -> String {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned().unwrap_or_else(|| default.to_string())
}

fn broker(url: &str) -> (String, u16) {
    let rest = url.trim_start_matches("mqtt://");
    let (h, p) = rest.rsplit_once(':').unwrap_or((rest, "1883"));
    (h.to_string(), p.parse().expect("port"))
}

fn options(id: &str, url: &str) -> MqttOptions {
    let (host, port) = broker(url);
    let mut o = MqttOptions::new(id, host, port);
    o.set_max_packet_size(16 << 20, 16 << 20);
    o.set_keep_alive(Duration::from_secs(30));
    o
}

fn nodelay() -> NetworkOptions {
    let mut n = NetworkOptions::new();
    n.set_tcp_nodelay(true);
    n
}

#[derive(Default)]
struct Results {
    latencies_us: Vec<u64>,
    errors: u64,
    timeouts: u64,
    /// Every reply received, warm-up included (for CPU time per request).
    total: u64,
}

async fn connection(
    c: usize,
    args: Arc<Vec<String>>,
    measuring: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    out: Arc<Mutex<Results>>,
) {
    let url = arg(&args, "--broker", "mqtt://127.0.0.1:1883");
    let window: usize = arg(&args, "--window", "1").parse().unwrap();
    // Several load generators at once (one per cluster node) keep apart with --device-prefix.
    let topic = format!("{}/{}-{c}", arg(&args, "--topic", "getConnectors"), arg(&args, "--device-prefix", "load"));
    let data =
        serde_json::json!({"platform": arg(&args, "--platform", "ios"), "version": arg(&args, "--version", "3.1.0")});
    let (client, mut el) =
        AsyncClient::new(options(&format!("loadgen-{}-{c}", std::process::id()), &url), 4 * window + 16);
    el.set_network_options(nodelay());
    client.subscribe(format!("{topic}/reply"), QoS::AtMostOnce).await.unwrap();
    let mut pending: HashMap<String, Instant> = HashMap::new();
    let mut seq = 0u64;
    let mut local = Results::default();
    let send = |seq: &mut u64, pending: &mut HashMap<String, Instant>| {
        *seq += 1;
        let id = format!("{c}-{seq}");
        let env = serde_json::json!({"pattern": "getConnectors", "data": data, "id": id}).to_string();
        pending.insert(id, Instant::now());
        let _ = client.try_publish(&topic, QoS::AtMostOnce, false, env);
    };
    let mut last_sweep = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let ev = match tokio::time::timeout(Duration::from_millis(200), el.poll()).await {
            Ok(Ok(ev)) => ev,
            Ok(Err(e)) => {
                eprintln!("loadgen connection {c}: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            Err(_) => Event::Outgoing(rumqttc::Outgoing::PingReq),
        };
        match ev {
            Event::Incoming(Packet::SubAck(_)) => {
                for _ in 0..window {
                    send(&mut seq, &mut pending);
                }
            }
            Event::Incoming(Packet::Publish(p)) => {
                // The id is the last field of a NestJS reply: `…,"id":"<id>"}`.
                let tail = &p.payload[p.payload.len().saturating_sub(64)..];
                let text = String::from_utf8_lossy(tail);
                let id = text
                    .rsplit_once("\"id\":\"")
                    .and_then(|(_, r)| r.split('"').next())
                    .unwrap_or_default()
                    .to_string();
                if let Some(sent) = pending.remove(&id) {
                    local.total += 1;
                    if measuring.load(Ordering::Relaxed) {
                        let ok = p.payload.starts_with(b"{\"response\"");
                        if ok {
                            local.latencies_us.push(sent.elapsed().as_micros() as u64);
                        } else {
                            local.errors += 1;
                        }
                    }
                    send(&mut seq, &mut pending);
                }
            }
            _ => {}
        }
        if last_sweep.elapsed() > Duration::from_millis(500) {
            last_sweep = Instant::now();
            let expired: Vec<String> =
                pending.iter().filter(|(_, t)| t.elapsed() > Duration::from_secs(5)).map(|(k, _)| k.clone()).collect();
            for id in expired {
                pending.remove(&id);
                local.timeouts += 1;
                send(&mut seq, &mut pending);
            }
        }
    }
    let mut r = out.lock().unwrap();
    r.latencies_us.extend(local.latencies_us);
    r.errors += local.errors;
    r.timeouts += local.timeouts;
    r.total += local.total;
}

async fn load(args: Vec<String>) {
    let connections: usize = arg(&args, "--connections", "1").parse().unwrap();
    let warmup = Duration::from_secs_f64(arg(&args, "--warmup-secs", "1").parse().unwrap());
    let duration = Duration::from_secs_f64(arg(&args, "--duration-secs", "5").parse().unwrap());
    let args = Arc::new(args);
    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let out = Arc::new(Mutex::new(Results::default()));
    let tasks: Vec<_> = (0..connections)
        .map(|c| tokio::spawn(connection(c, args.clone(), measuring.clone(), stop.clone(), out.clone())))
        .collect();
    tokio::time::sleep(warmup).await;
    measuring.store(true, Ordering::Relaxed);
    let started = Instant::now();
    tokio::time::sleep(duration).await;
    measuring.store(false, Ordering::Relaxed);
    let elapsed = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    let mut r = std::mem::take(&mut *out.lock().unwrap());
    r.latencies_us.sort_unstable();
    let pct =
        |p: f64| r.latencies_us.get(((r.latencies_us.len() as f64 - 1.0) * p).round() as usize).copied().unwrap_or(0);
    let line = serde_json::json!({
        "label": arg(&args, "--label", "target"),
        "connections": connections,
        "window": arg(&args, "--window", "1").parse::<u64>().unwrap(),
        "requests": r.latencies_us.len(),
        "seconds": elapsed.as_secs_f64(),
        "rps": r.latencies_us.len() as f64 / elapsed.as_secs_f64(),
        "p50_us": pct(0.5),
        "p99_us": pct(0.99),
        "max_us": r.latencies_us.last().copied().unwrap_or(0),
        "errors": r.errors,
        "timeouts": r.timeouts,
        "total": r.total,
    });
    println!("{line}");
}

/// A reply body ready to be framed per request (the ideal responder's only state).
fn ideal_body(args: &[String]) -> (Vec<u8>, String) {
    let sources = Sources {
        snippets: PathBuf::from(arg(args, "--snippets", "snippets")),
        platforms: PathBuf::from(arg(args, "--platforms", "platforms")),
        max_file_size: catalog::loader::DEFAULT_MAX_FILE_SIZE,
        max_reply_size: connector_scripts::config::defaults::MAX_REPLY_SIZE,
    };
    let version = AppVersion::parse(&arg(args, "--version", "3.1.0")).unwrap();
    let catalog = catalog::build(&sources, &mut CompileCache::default(), None);
    let mut bundle = catalog.resolve(&arg(args, "--platform", "ios"), &version).expect("the variant to serve").clone();
    // Signed like the service's (`--signing-key`): byte-identical replies.
    let key = arg(args, "--signing-key", "");
    if !key.is_empty() {
        let signer = connector_scripts::signing::Signer::load(std::path::Path::new(&key)).expect("--signing-key");
        bundle = std::sync::Arc::new(bundle.with_signature(signer.sign_bundle(&bundle, bundle.issued_at)));
    }
    let mut body = Vec::new();
    bundle.write_reply(&version.to_string(), None, &mut body);
    (body, arg(args, "--topic", "getConnectors"))
}

/// MQTT 3.1.1 remaining length.
fn put_len(out: &mut Vec<u8>, mut n: usize) {
    loop {
        let mut b = (n % 128) as u8;
        n /= 128;
        if n > 0 {
            b |= 128;
        }
        out.push(b);
        if n == 0 {
            return;
        }
    }
}

fn put_str(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(&(s.len() as u16).to_be_bytes());
    out.extend_from_slice(s);
}

/// One whole packet at the start of `buf`: (first byte, body range end, header length).
fn packet(buf: &[u8]) -> Option<(u8, usize, usize)> {
    let (mut len, mut mult, mut i) = (0usize, 1usize, 1usize);
    loop {
        let b = *buf.get(i)?;
        len += (b & 127) as usize * mult;
        mult *= 128;
        i += 1;
        if b & 128 == 0 {
            break;
        }
    }
    (buf.len() >= i + len).then_some((buf[0], i + len, i))
}

/// The coalescing ideal responder: a raw MQTT 3.1.1 connection; all replies to the requests of one read go out in
/// one write.
async fn respond_coalesced(args: Vec<String>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (body, topic) = ideal_body(&args);
    let (host, port) = broker(&arg(&args, "--broker", "mqtt://127.0.0.1:1883"));
    let mut sock = tokio::net::TcpStream::connect((host.as_str(), port)).await.expect("broker");
    sock.set_nodelay(true).unwrap();
    let mut connect = Vec::new();
    put_str(&mut connect, b"MQTT");
    connect.extend_from_slice(&[4, 2, 0, 60]); // level 4, clean session, keep-alive 60 s
    put_str(&mut connect, format!("ideal-coalesced-{}", std::process::id()).as_bytes());
    let mut subscribe = vec![0, 1];
    put_str(&mut subscribe, format!("{topic}/+").as_bytes());
    subscribe.push(0);
    let mut out = vec![0x10];
    put_len(&mut out, connect.len());
    out.extend_from_slice(&connect);
    out.push(0x82);
    put_len(&mut out, subscribe.len());
    out.extend_from_slice(&subscribe);
    sock.write_all(&out).await.unwrap();
    let mut buf = Vec::with_capacity(1 << 20);
    let mut chunk = vec![0u8; 1 << 20];
    loop {
        let n = sock.read(&mut chunk).await.expect("read");
        if n == 0 {
            return;
        }
        buf.extend_from_slice(&chunk[..n]);
        out.clear();
        let mut at = 0;
        while let Some((first, end, header)) = packet(&buf[at..]) {
            let p = &buf[at + header..at + end];
            match first >> 4 {
                9 => println!("ready"), // SUBACK
                3 if p.len() >= 2 => {
                    let tlen = u16::from_be_bytes([p[0], p[1]]) as usize;
                    let (t, payload) = (&p[2..2 + tlen], &p[2 + tlen..]);
                    if !t.ends_with(b"/reply") {
                        if let Some(framed) = ideal::reply(&body, payload) {
                            let mut reply_topic = t.to_vec();
                            reply_topic.extend_from_slice(b"/reply");
                            out.push(0x30);
                            put_len(&mut out, 2 + reply_topic.len() + framed.len());
                            put_str(&mut out, &reply_topic);
                            out.extend_from_slice(&framed);
                        }
                    }
                }
                _ => {}
            }
            at += end;
        }
        buf.drain(..at);
        if !out.is_empty() {
            sock.write_all(&out).await.expect("write");
        }
    }
}

async fn respond(args: Vec<String>) {
    let url = arg(&args, "--broker", "mqtt://127.0.0.1:1883");
    let (body, topic) = ideal_body(&args);
    let (client, mut el) = AsyncClient::new(options(&format!("ideal-responder-{}", std::process::id()), &url), 65_536);
    el.set_network_options(nodelay());
    client.subscribe(format!("{topic}/+"), QoS::AtMostOnce).await.unwrap();
    client.subscribe(topic.clone(), QoS::AtMostOnce).await.unwrap();
    let mut ready = 0;
    loop {
        match el.poll().await {
            Ok(Event::Incoming(Packet::SubAck(_))) => {
                ready += 1;
                if ready == 2 {
                    println!("ready");
                }
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                if p.topic.ends_with("/reply") {
                    continue;
                }
                let Some(out) = ideal::reply(&body, &p.payload) else { continue };
                let _ = client.try_publish(format!("{}/reply", p.topic), QoS::AtMostOnce, false, out);
            }
            Ok(_) => {}
            Err(e) => {
                eprintln!("ideal responder: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("load") => {
            let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
            rt.block_on(load(args))
        }
        // One task on one thread: no cross-thread wake-up per reply (measured: ~1 futex call per reply on the
        // multi-threaded runtime), so the ceiling is as cheap as a responder can be.
        Some("respond") => {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            if args.iter().any(|a| a == "--coalesce") {
                rt.block_on(respond_coalesced(args))
            } else {
                rt.block_on(respond(args))
            }
        }
        _ => eprintln!("usage: loadgen load|respond [options]; see the module docs"),
    }
}
