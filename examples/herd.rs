//! The update herd, as a fleet sees it (`bench/herd.py` runs it; not part of the service).
//!
//! N devices, each its own MQTT 3.1.1 connection (as phones are), subscribe to their reply topic and to their
//! variant's retained manifest, and hold the revision it names. Then one snippet is edited; every device that sees
//! the new manifest re-fetches at once, with its old revision, QoS 0 as NestJS clients do. A device counts as
//! updated when a reply carrying the new revision and its scripts arrives. Prints one JSON line: times from the save
//! to the first new manifest and to 50 / 99 / 100 % of devices updated, and what went wrong (lost, errors,
//! rate-limited, not-modified).
//!
//! `herd --broker mqtt://127.0.0.1:PORT --devices 5000 --platform ios --version 3.1.0 --manifest connectors/ios/next
//!  --edit SNIPPET.ts [--timeout-secs 30] [--pids BROKER,SERVICE] [--fetch full|delta|delta-gzip]`
//!
//! `--fetch`: how devices re-fetch. `full` (the default): with their old revision, as every app does today.
//! `delta`: naming what they hold (`have`, the connector hashes of the first manifest), so the reply carries only
//! what changed, and following the variant's small revision notice (`<manifest>/rev`) instead of the full
//! manifest once they know their hashes, as `clients/js` does; `delta-gzip`: the same with `accept: ["gzip"]`.
//! Every device counts the bytes the broker sent it from the save on (each PUBLISH: payload, topic and header),
//! the push and the reply apart, so the modes compare broker egress per device.
//!
//! With `--pids`, the CPU time of the broker and the service is read from /proc around the herd alone (from the
//! save to the last reply), apart from the connect storm before it.
//!
//! `herd --poll 60 --devices 5000 --broker …` runs the poll model of the system it replaces instead (against any
//! responder, e.g. the NestJS peer): no push; every device asks every 60 s, spread evenly over the period. After
//! one and a half periods it counts the requests the fleet sent over one period while nothing changed, then marks
//! a "save" and reports how long each device waits for its first answer after it (mean, p99, 100 %).

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{watch, Semaphore};

fn arg(args: &[String], name: &str, default: &str) -> String {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned().unwrap_or_else(|| default.to_string())
}

/// What one device saw after the save, in ms from the save.
#[derive(Debug, Default, Clone)]
struct Seen {
    manifest_ms: Option<f64>,
    updated_ms: Option<f64>,
    error: Option<String>,
    /// Bytes of the PUBLISH packets the broker sent this device after the save.
    bytes: usize,
    /// Of those, the push (manifest or notice).
    push_bytes: usize,
}

/// What a device names as held in a delta re-fetch: the connector hashes of a manifest.
fn held_hashes(payload: &[u8]) -> serde_json::Value {
    let v: serde_json::Value = serde_json::from_slice(payload).unwrap_or_default();
    let list = v["connectors"].as_array().cloned().unwrap_or_default();
    list.iter().filter_map(|c| Some((c["name"].as_str()?.to_string(), c["sha256"].clone()))).collect()
}

struct Shared {
    /// Devices holding the first revision.
    ready: AtomicUsize,
    /// Set once, just before the edit.
    saved_at: Mutex<Option<Instant>>,
    results: Mutex<Vec<Seen>>,
    /// The first revision, as the first device saw it.
    first: Mutex<Option<String>>,
}

fn revision_of(payload: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(payload).ok()?;
    v["revision"].as_str().map(str::to_string)
}

/// Bytes of an MQTT remaining-length field for `n`.
fn varint_len(n: usize) -> usize {
    match n {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    }
}

fn since_save(shared: &Shared) -> Option<f64> {
    shared.saved_at.lock().unwrap().map(|t| t.elapsed().as_secs_f64() * 1e3)
}

/// One phone: connects (at most `connecting` at once), learns the revision, waits for a new one, re-fetches.
async fn device(
    i: usize,
    args: Arc<Vec<String>>,
    shared: Arc<Shared>,
    connecting: Arc<Semaphore>,
    go: watch::Receiver<bool>,
) {
    let (client, mut el, topic) = phone(&args, "herd", i);
    let manifest = arg(&args, "--manifest", "connectors/ios/next");
    let permit = connecting.acquire().await.expect("semaphore");
    client.subscribe(format!("{topic}/reply"), QoS::AtMostOnce).await.unwrap();
    client.subscribe(&manifest, QoS::AtMostOnce).await.unwrap();
    let mut permit = Some(permit);
    let mut held: Option<String> = None;
    let mut have = serde_json::Value::Null;
    // What the device follows for new revisions: the manifest, or (delta modes) the notice once it knows its hashes.
    let mut follow = manifest.clone();
    let mut seen = Seen::default();
    let mut data =
        serde_json::json!({"platform": arg(&args, "--platform", "ios"), "version": arg(&args, "--version", "3.1.0")});
    let fetch = arg(&args, "--fetch", "full");
    if fetch == "delta-gzip" {
        data["accept"] = serde_json::json!(["gzip"]);
    }
    loop {
        let ev = match el.poll().await {
            Ok(ev) => ev,
            Err(e) => {
                if go.borrow().to_owned() {
                    seen.error = Some(format!("connection: {e}"));
                    break;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        let Event::Incoming(Packet::Publish(p)) = ev else {
            if matches!(ev, Event::Incoming(Packet::SubAck(_))) {
                permit.take();
            }
            continue;
        };
        if since_save(&shared).is_some() {
            // Fixed header (type byte and remaining length) and the topic's length prefix, then topic and payload.
            let size = 2 + varint_len(p.payload.len() + p.topic.len() + 2) + p.topic.len() + p.payload.len();
            seen.bytes += size;
            if p.topic == follow {
                seen.push_bytes += size;
            }
        }
        if p.topic == manifest && fetch != "full" && held.is_none() && follow == manifest {
            have = held_hashes(&p.payload);
            follow = format!("{manifest}/rev");
            let _ = client.unsubscribe(&manifest).await;
            client.subscribe(&follow, QoS::AtMostOnce).await.unwrap();
        } else if p.topic == follow {
            let Some(rev) = revision_of(&p.payload) else { continue };
            match &held {
                None => {
                    shared.first.lock().unwrap().get_or_insert(rev.clone());
                    held = Some(rev);
                    if fetch == "full" {
                        have = held_hashes(&p.payload);
                    }
                    shared.ready.fetch_add(1, Ordering::SeqCst);
                }
                Some(old) if *old != rev && seen.manifest_ms.is_none() => {
                    seen.manifest_ms = since_save(&shared);
                    let mut data = data.clone();
                    data["revision"] = serde_json::Value::String(old.clone());
                    if fetch != "full" {
                        data["have"] = have.clone();
                    }
                    let env = serde_json::json!({"pattern": "getConnectors", "data": data, "id": format!("{i}")});
                    let _ = client.publish(&topic, QoS::AtMostOnce, false, env.to_string()).await;
                }
                _ => {}
            }
        } else if p.topic.ends_with("/reply") {
            let v: serde_json::Value = serde_json::from_slice(&p.payload).unwrap_or_default();
            let r = &v["response"];
            if r["notModified"] == true {
                seen.error = Some("notModified".into());
            } else if r["connectors"].as_array().is_some_and(|c| !c.is_empty())
                && r["revision"].as_str().is_some_and(|rev| Some(rev) != held.as_deref())
            {
                seen.updated_ms = since_save(&shared);
            } else {
                let code = v["err"]["code"].as_str().or(v["err"].as_str()).unwrap_or("unexpected reply");
                seen.error = Some(code.to_string());
            }
            break;
        }
    }
    shared.results.lock().unwrap().push(seen);
    let _ = client.disconnect().await;
}

/// User + system CPU seconds of a process, from /proc.
fn cpu_seconds(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

fn cpu_of(pids: &[String]) -> Vec<Option<f64>> {
    pids.iter().map(|p| cpu_seconds(p)).collect()
}

/// One polling phone: asks every `period`, at its own phase; after the save, records when its next answer came.
async fn poller(i: usize, n: usize, args: Arc<Vec<String>>, period: Duration, poll: Arc<PollShared>) {
    let (client, mut el, topic) = phone(&args, "poll", i);
    client.subscribe(format!("{topic}/reply"), QoS::AtMostOnce).await.unwrap();
    let data =
        serde_json::json!({"platform": arg(&args, "--platform", "ios"), "version": arg(&args, "--version", "3.1.0")});
    let mut go = poll.go.clone();
    let mut next: Option<tokio::time::Instant> = None;
    let mut seq = 0u64;
    loop {
        let due = async {
            match next {
                Some(t) => tokio::time::sleep_until(t).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = go.changed(), if next.is_none() => {
                if let Some(start) = *go.borrow() {
                    next = Some(start + period.mul_f64(i as f64 / n as f64));
                }
            }
            _ = due => {
                seq += 1;
                let env = serde_json::json!({"pattern": "getConnectors", "data": data, "id": format!("{i}-{seq}")});
                let _ = client.try_publish(&topic, QoS::AtMostOnce, false, env.to_string());
                poll.sent.fetch_add(1, Ordering::Relaxed);
                next = next.map(|t| t + period);
            }
            ev = el.poll() => match ev {
                Ok(Event::Incoming(Packet::SubAck(_))) => { poll.ready.fetch_add(1, Ordering::SeqCst); }
                Ok(Event::Incoming(Packet::Publish(_))) => {
                    let saved = *poll.saved_at.lock().unwrap();
                    if let Some(t) = saved {
                        poll.waits.lock().unwrap().push(t.elapsed().as_secs_f64() * 1e3);
                        break;
                    }
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            },
        }
    }
    let _ = client.disconnect().await;
}

/// What the pollers share.
struct PollShared {
    ready: AtomicUsize,
    sent: std::sync::atomic::AtomicU64,
    go: watch::Receiver<Option<tokio::time::Instant>>,
    saved_at: Mutex<Option<Instant>>,
    waits: Mutex<Vec<f64>>,
}

async fn run_poll(args: Vec<String>, n: usize, period: Duration) {
    let (go_tx, go) = watch::channel(None);
    let poll = Arc::new(PollShared {
        ready: AtomicUsize::new(0),
        sent: Default::default(),
        go,
        saved_at: Mutex::new(None),
        waits: Mutex::new(Vec::new()),
    });
    let args = Arc::new(args);
    let tasks: Vec<_> = (0..n).map(|i| tokio::spawn(poller(i, n, args.clone(), period, poll.clone()))).collect();
    let started = Instant::now();
    while poll.ready.load(Ordering::SeqCst) < n {
        assert!(started.elapsed() < Duration::from_secs(120), "pollers did not all connect");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let start = tokio::time::Instant::now();
    let _ = go_tx.send(Some(start));
    tokio::time::sleep_until(start + period.mul_f64(0.5)).await;
    let sent0 = poll.sent.load(Ordering::Relaxed);
    tokio::time::sleep_until(start + period.mul_f64(1.5)).await;
    let idle_rps = (poll.sent.load(Ordering::Relaxed) - sent0) as f64 / period.as_secs_f64();
    *poll.saved_at.lock().unwrap() = Some(Instant::now());
    let deadline = tokio::time::Instant::now() + period + Duration::from_secs(15);
    for t in tasks {
        if tokio::time::timeout_at(deadline, t).await.is_err() {
            break;
        }
    }
    let mut waits = poll.waits.lock().unwrap().clone();
    waits.sort_by(f64::total_cmp);
    let mean = waits.iter().sum::<f64>() / waits.len().max(1) as f64;
    println!(
        "{}",
        serde_json::json!({"mode": "poll", "devices": n, "period_s": period.as_secs_f64(), "idle_rps": idle_rps,
            "answered_after_save": waits.len(), "mean_ms": mean, "p99_ms": percentile(&waits, 99.0),
            "p100_ms": waits.last()})
    );
    std::process::exit(0);
}

/// One phone's connection (MQTT 3.1.1, as apps connect) and its request topic `getConnectors/<client id>`.
fn phone(args: &[String], kind: &str, i: usize) -> (AsyncClient, rumqttc::EventLoop, String) {
    let (host, port) = broker_addr(args);
    let me = format!("{kind}-{}-{i}", std::process::id());
    let mut o = MqttOptions::new(&me, host, port);
    o.set_keep_alive(Duration::from_secs(120));
    o.set_max_packet_size(4 << 20, 4 << 20);
    let (client, el) = AsyncClient::new(o, 8);
    (client, el, format!("getConnectors/{me}"))
}

fn broker_addr(args: &[String]) -> (String, u16) {
    let url = arg(args, "--broker", "mqtt://127.0.0.1:1883");
    let rest = url.trim_start_matches("mqtt://").to_string();
    let (h, p) = rest.rsplit_once(':').map(|(h, p)| (h.to_string(), p.to_string())).unwrap_or((rest, "1883".into()));
    (h, p.parse::<u16>().expect("port"))
}

fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let i = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    Some(sorted[i.min(sorted.len() - 1)])
}

async fn run(args: Vec<String>) {
    let n: usize = arg(&args, "--devices", "5000").parse().expect("--devices");
    let poll: f64 = arg(&args, "--poll", "0").parse().expect("--poll SECONDS");
    if poll > 0.0 {
        return run_poll(args, n, Duration::from_secs_f64(poll)).await;
    }
    let timeout = Duration::from_secs(arg(&args, "--timeout-secs", "30").parse().expect("--timeout-secs"));
    let edit = arg(&args, "--edit", "");
    let args = Arc::new(args);
    let shared = Arc::new(Shared {
        ready: AtomicUsize::new(0),
        saved_at: Mutex::new(None),
        results: Mutex::new(Vec::new()),
        first: Mutex::new(None),
    });
    let connecting = Arc::new(Semaphore::new(256));
    let (go_tx, go) = watch::channel(false);
    let tasks: Vec<_> =
        (0..n).map(|i| tokio::spawn(device(i, args.clone(), shared.clone(), connecting.clone(), go.clone()))).collect();
    let connect_started = Instant::now();
    while shared.ready.load(Ordering::SeqCst) < n {
        if connect_started.elapsed() > Duration::from_secs(120) {
            eprintln!(
                "herd: only {} of {n} devices connected and holding a revision",
                shared.ready.load(Ordering::SeqCst)
            );
            std::process::exit(2);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let connect_s = connect_started.elapsed().as_secs_f64();
    let pids: Vec<String> = arg(&args, "--pids", "").split(',').filter(|p| !p.is_empty()).map(str::to_string).collect();
    let cpu_before = cpu_of(&pids);
    let _ = go_tx.send(true);
    *shared.saved_at.lock().unwrap() = Some(Instant::now());
    let mut text = std::fs::read_to_string(&edit).expect("--edit FILE");
    text.push_str(&format!("\n// herd edit {}\n", std::process::id()));
    std::fs::write(&edit, text).expect("write the snippet");
    let deadline = tokio::time::Instant::now() + timeout;
    for t in tasks {
        if tokio::time::timeout_at(deadline, t).await.is_err() {
            break;
        }
    }
    let cpu_after = cpu_of(&pids);
    let herd_cpu: Vec<Option<f64>> =
        cpu_before.iter().zip(&cpu_after).map(|(b, a)| Some((((*a)? - (*b)?) * 1000.0).round())).collect();
    let results = shared.results.lock().unwrap().clone();
    let mut manifest: Vec<f64> = results.iter().filter_map(|s| s.manifest_ms).collect();
    let mut updated: Vec<f64> = results.iter().filter_map(|s| s.updated_ms).collect();
    manifest.sort_by(f64::total_cmp);
    updated.sort_by(f64::total_cmp);
    let errors = |code: &str| results.iter().filter(|s| s.error.as_deref() == Some(code)).count();
    let other_errors = results
        .iter()
        .filter(|s| s.error.as_deref().is_some_and(|e| e != "RATE_LIMITED" && e != "notModified"))
        .count();
    let full = (updated.len() == n).then(|| updated.last().copied()).flatten();
    let bytes: Vec<usize> = results.iter().filter(|s| s.updated_ms.is_some()).map(|s| s.bytes).collect();
    let bytes_per_device = (!bytes.is_empty()).then(|| bytes.iter().sum::<usize>() as f64 / bytes.len() as f64);
    let push: Vec<usize> = results.iter().filter(|s| s.updated_ms.is_some()).map(|s| s.push_bytes).collect();
    let push_per_device = (!push.is_empty()).then(|| push.iter().sum::<usize>() as f64 / push.len() as f64);
    println!(
        "{}",
        serde_json::json!({
            "devices": n, "connect_s": connect_s, "updated": updated.len(), "lost": n - updated.len(),
            "saw_manifest": manifest.len(),
            "first_manifest_ms": manifest.first(), "manifest_p50_ms": percentile(&manifest, 50.0),
            "manifest_p100_ms": manifest.last(),
            "updated_p50_ms": percentile(&updated, 50.0), "updated_p99_ms": percentile(&updated, 99.0),
            "updated_p100_ms": full, "rate_limited": errors("RATE_LIMITED"), "not_modified": errors("notModified"),
            "errors": other_errors, "herd_cpu_ms": herd_cpu, "fetch": arg(&args, "--fetch", "full"),
            "bytes_per_device": bytes_per_device, "push_bytes_per_device": push_per_device,
        })
    );
    std::process::exit(0);
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(run(args));
}
