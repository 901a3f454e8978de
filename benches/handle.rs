//! Benchmark: the service's own CPU per request, in-process and without a broker, against the ideal responder's.
//!
//! The end-to-end serving figures (`bench/run.py`) carry the broker and the load generator on the same two cores,
//! so a fraction of a microsecond per request disappears in their noise. This measures only what the service adds:
//! the request handler (topic rules, envelope decode, version match, limits, the reply spliced from pre-serialized
//! parts) and the metrics it records, on the example catalog and on a generated one of about `--kb` KB per reply.
//! The baseline, measured in the same run, is what the ideal responder of `loadgen respond` does per request: find
//! the envelope's `id`, frame pre-serialized bytes, build the reply topic. Requests rotate over `--devices` device
//! topics with a fresh id each (no duplicates), NestJS envelope, as `loadgen load` sends them.
//!
//! `cargo bench --bench handle -- [--requests N] [--rounds R] [--devices D] [--kb K]`

/// The allocator the service itself uses (src/main.rs), so figures match what ships.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use connector_scripts::catalog::{self, AppVersion, Catalog, CompileCache, Sources};
use connector_scripts::config::defaults;
use connector_scripts::handler::{Handler, Incoming};
use connector_scripts::metrics::Metrics;
use connector_scripts::ratelimit::{RateLimit, RateLimits};
use connector_scripts::wire::topics::{self, Topics};
use connector_scripts::wire::Limits;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::Instant;

#[path = "support/ideal.rs"]
mod ideal;

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// The example catalog, or one whose ios 2.4.1 reply is about `kb` KB (generated connectors, as `bench/run.py`'s
/// sweep makes them).
fn catalog_of(root: &Path, kb: u64) -> Catalog {
    let snippets = if kb == 0 {
        root.join("snippets")
    } else {
        let dir = std::env::temp_dir().join(format!("cs-bench-handle-{}-{kb}", std::process::id()));
        let folder = dir.join("sweep");
        std::fs::create_dir_all(&folder).unwrap();
        let (mut written, mut i) = (0, 0);
        let total = (kb.saturating_sub(1) * 1024 * 10 / 16).max(1024) as usize;
        while written < total {
            let mut text =
                format!("// Connector {i} (benches/handle.rs).\nexport interface R {{ at: number; v: number }}\n");
            let mut j = 0;
            while text.len() < 4096.min(total - written) {
                text.push_str(&format!(
                    "export function s{j}(r: R): number {{ return r.v * {j} + {i} - r.at % 7; }}\n"
                ));
                j += 1;
            }
            std::fs::write(folder.join(format!("c{i:03}.ts")), &text).unwrap();
            written += text.len();
            i += 1;
        }
        dir
    };
    let sources = Sources {
        snippets,
        platforms: root.join("platforms"),
        max_file_size: catalog::loader::DEFAULT_MAX_FILE_SIZE,
        max_reply_size: defaults::MAX_REPLY_SIZE,
    };
    catalog::build(&sources, &mut CompileCache::default(), None)
}

fn topics() -> Topics {
    Topics {
        request: defaults::TOPIC.into(),
        manifest_prefix: defaults::MANIFEST_TOPIC.into(),
        changed: defaults::CHANGED_TOPIC.into(),
        status_prefix: defaults::STATUS_TOPIC.into(),
        releases: None,
    }
}

/// Nanoseconds per request of `f` over `requests`, median of `rounds`.
fn time(rounds: u64, requests: &[(String, Vec<u8>)], mut f: impl FnMut(&str, &[u8]) -> usize) -> f64 {
    let mut per = Vec::new();
    for _ in 0..rounds {
        let t0 = Instant::now();
        let mut bytes = 0;
        for (topic, payload) in requests {
            bytes += f(topic, payload);
        }
        black_box(bytes);
        per.push(t0.elapsed().as_nanos() as f64 / requests.len() as f64);
    }
    per.sort_by(f64::total_cmp);
    per[per.len() / 2]
}

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let (n, rounds, devices) = (arg("--requests", 200_000), arg("--rounds", 7), arg("--devices", 64).max(1));
    let version = AppVersion::parse("2.4.1").unwrap();
    println!(
        "| catalog | reply | ideal responder | handler | handler + metrics | + rate limits (on, never met) | ratio |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for kb in [0, arg("--kb", 4)] {
        let catalog = catalog_of(&root, kb);
        let bundle = catalog.resolve("ios", &version).expect("ios 2.4.1 has a variant");
        let mut body = Vec::new();
        bundle.write_reply(&version.to_string(), None, &mut body);
        let requests: Vec<(String, Vec<u8>)> = (0..n)
            .map(|i| {
                let payload = format!(
                    r#"{{"pattern":"getConnectors","data":{{"platform":"ios","version":"2.4.1"}},"id":"{i:016x}"}}"#
                );
                (format!("getConnectors/device-{}", i % devices), payload.into_bytes())
            })
            .collect();
        let ideal = time(rounds, &requests, |topic, payload| {
            let Some(out) = ideal::reply(&body, payload) else { return 0 };
            black_box(topics::reply_topic(topic)).len() + out.len()
        });
        let run = |limits: RateLimits, record: bool| {
            let handler = Handler::new(topics(), Limits::default(), limits);
            let metrics = Metrics::default();
            time(rounds, &requests, |topic, payload| {
                let msg = Incoming { topic, payload, response_topic: None, correlation_data: None };
                let handled = handler.handle(Some(&catalog), msg, Instant::now(), None).expect("a request");
                if record {
                    metrics.record(&handled.counted);
                }
                handled.reply.map_or(0, |r| r.payload.len() + r.topic.len())
            })
        };
        let off = RateLimits::default();
        let handler = run(off, false);
        let recorded = run(off, true);
        let per_device = RateLimit { per_second: 1e9, burst: 1e9 };
        let limited =
            run(RateLimits { device: Some(per_device), bare: Some(per_device), global: Some(per_device) }, true);
        let name = if kb == 0 { "example".to_string() } else { format!("generated ~{kb} KB") };
        println!(
            "| {name} | {} B | {:.0} ns | {:.0} ns | {:.0} ns | {:.0} ns | {:.2} × |",
            body.len(),
            ideal,
            handler,
            recorded,
            limited,
            limited / ideal
        );
    }
}
