//! Benchmark: save → new revision served (hot reload latency), p50/p95 over many edits.
//!
//! Runs the whole service in-process on the embedded broker (free ports) with the example catalog copied to a
//! temporary directory, edits one snippet N times and measures, for each edit, the time from the write until
//! (a) the new catalog is swapped in and served, and (b) its retained manifest arrives at a subscribed app.
//! The baseline measured in the same run is a full catalog rebuild from disk with a warm compile cache plus one
//! changed file (what a reload costs without the watcher and debounce).
//!
//! `cargo bench --bench reload -- [--edits N] [--debounce-ms MS]`

/// The allocator the service itself uses (src/main.rs), so figures match what ships.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::Parser;
use connector_scripts::app;
use connector_scripts::catalog::{self, CompileCache, Sources};
use connector_scripts::cli::{Cli, Command};
use connector_scripts::config::ServeConfig;
use std::path::Path;
use std::time::{Duration, Instant};

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

fn free_pair() -> (u16, u16) {
    loop {
        let p = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        if p < u16::MAX && std::net::TcpListener::bind(("127.0.0.1", p + 1)).is_ok() {
            return (p, p + 1);
        }
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn edit(file: &Path, i: u64) {
    let text = format!("// edit {i}\nexport const generation: number = {i};\nexport function id(x: number): number {{ return x + {i}; }}\n");
    std::fs::write(file, text).unwrap();
}

fn main() {
    let edits = arg("--edits", 40);
    let debounce = Duration::from_millis(arg("--debounce-ms", 30));
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&repo.join("snippets"), &dir.path().join("snippets"));
    copy_dir(&repo.join("platforms"), &dir.path().join("platforms"));
    let file = dir.path().join("snippets/bench-edit.ts");
    edit(&file, 0);
    let sources = Sources {
        snippets: dir.path().join("snippets"),
        platforms: dir.path().join("platforms"),
        max_file_size: catalog::loader::DEFAULT_MAX_FILE_SIZE,
        max_reply_size: connector_scripts::config::defaults::MAX_REPLY_SIZE,
    };

    // Baseline: rebuild from disk with a warm cache and one changed file.
    let mut cache = CompileCache::default();
    let mut previous = catalog::build(&sources, &mut cache, None);
    let mut baseline = Vec::new();
    for i in 1..=edits {
        edit(&file, 1_000_000 + i);
        let t = Instant::now();
        previous = catalog::build(&sources, &mut cache, Some(&previous));
        baseline.push(t.elapsed());
    }
    edit(&file, 0);

    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let (v4, v5) = free_pair();
        // The production configuration, built as the CLI builds it; only directories, ports and debounce differ.
        let argv = [
            "connector-scripts".to_string(),
            "serve".into(),
            "--snippets".into(),
            sources.snippets.display().to_string(),
            "--platforms".into(),
            sources.platforms.display().to_string(),
            "--embedded-listen".into(),
            format!("127.0.0.1:{v4}"),
            "--embedded-listen-v5".into(),
            format!("127.0.0.1:{v5}"),
            "--embedded-ws-listen".into(),
            "off".into(),
            "--http-listen".into(),
            "off".into(),
            "--debounce".into(),
            debounce.as_secs_f64().to_string(),
        ];
        let Command::Serve(args) = Cli::try_parse_from(argv).unwrap().command else { unreachable!() };
        let running = app::start(ServeConfig::from_args(&args).unwrap()).await.unwrap();
        running.ready().await;
        // An app watching the manifest of the variant ios 3.x gets.
        let mut opts = rumqttc::MqttOptions::new("bench-app", "127.0.0.1", v4);
        opts.set_max_packet_size(1 << 20, 1 << 20);
        let (client, mut el) = rumqttc::AsyncClient::new(opts, 16);
        client.subscribe("connectors/ios/next", rumqttc::QoS::AtMostOnce).await.unwrap();
        let (tx, mut manifests) = tokio::sync::mpsc::unbounded_channel::<(Instant, String)>();
        tokio::spawn(async move {
            while let Ok(ev) = el.poll().await {
                if let rumqttc::Event::Incoming(rumqttc::Packet::Publish(p)) = ev {
                    let v: serde_json::Value = serde_json::from_slice(&p.payload).unwrap_or_default();
                    let _ = tx.send((Instant::now(), v["revision"].as_str().unwrap_or_default().to_string()));
                }
            }
        });
        let revision = |r: &app::Running| {
            r.state.catalog().and_then(|c| c.platforms.get("ios").map(|p| p.bundles[2].revision.clone()))
        };
        // Settle: the initial retained manifest.
        let first = tokio::time::timeout(Duration::from_secs(10), manifests.recv()).await.unwrap().unwrap();
        let mut current = first.1;
        let mut served = Vec::new();
        let mut announced = Vec::new();
        let mut changes = running.state.catalog_changes();
        for i in 1..=edits {
            let t0 = Instant::now();
            edit(&file, i);
            loop {
                tokio::time::timeout(Duration::from_secs(10), changes.changed()).await.unwrap().unwrap();
                if revision(&running).is_some_and(|r| r != current) {
                    break;
                }
            }
            served.push(t0.elapsed());
            let new = revision(&running).unwrap();
            loop {
                let (at, rev) = tokio::time::timeout(Duration::from_secs(10), manifests.recv()).await.unwrap().unwrap();
                if rev == new {
                    announced.push(at.duration_since(t0));
                    break;
                }
            }
            current = new;
        }
        running.shutdown().await.unwrap();
        for v in [&mut baseline, &mut served, &mut announced] {
            v.sort();
        }
        let row = |name: &str, v: &[Duration]| {
            println!(
                "| {name} | {:.1} | {:.1} | {:.1} | {:.1} |",
                ms(percentile(v, 0.5)),
                ms(percentile(v, 0.95)),
                ms(v[0]),
                ms(v[v.len() - 1])
            );
        };
        println!("reload latency over {edits} edits (debounce {} ms), example catalog, ms", debounce.as_millis());
        println!("| measure | p50 | p95 | min | max |\n|---|---|---|---|---|");
        row("baseline: rebuild from disk, warm cache, 1 file changed (no watcher)", &baseline);
        row("save → new revision served (swapped in)", &served);
        row("save → retained manifest received by an app", &announced);
        let p50 = ms(percentile(&served, 0.5));
        println!(
            "served p50 / baseline p50 = {:.1}x; target p50 ≤ 100 ms: {}",
            p50 / ms(percentile(&baseline, 0.5)),
            if p50 <= 100.0 { "met" } else { "MISSED" }
        );
    });
}
