//! Benchmark: in-process TypeScript → JavaScript compile of a whole directory (e.g. rxjs `src/`), cold and warm.
//!
//! The Rust side of `bench/compile.sh`; `bench/node/compile.js` is the Node.js side and this prints the same JSON
//! line shape, so the two are compared field by field. All `*.ts` files (not `*.d.ts`, not hidden) under `--dir`
//! are read into memory first, then it measures, each time calling `transpile` for every file (no cache):
//!
//! - `firstMs`: the first compile of all files in this process, in parallel on the compile pool, including the
//!   pool's creation and every lazy initialisation (the in-process cold figure);
//! - `warmMs`: median of `--iterations` further parallel passes (`warmMinMs`: the fastest);
//! - `warmMsSerial`: median of as many sequential passes (a plain loop over `transpile`, one worker at a time):
//!   the figure to set against compile.js, which compiles one file after the other on one thread.
//!
//! A file that fails counts in `errors` (first pass; the first few go to stderr). Compile options are those of a
//! `target`/esm variant without minify or source maps (what compile.js asks of swc, tsc and esbuild).
//!
//! `cargo bench --bench compile -- --dir DIR [--target es2015] [--iterations 10] [--threads N]`
//!
//! `--threads N` sizes the compile pool (through `RAYON_NUM_THREADS`, read when the pool is built); by default it
//! has one worker per core.

/// The allocator the service itself uses (src/main.rs), so figures match what ships.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use connector_scripts::catalog::transpile::{self, Job};
use connector_scripts::catalog::{CompileOptions, ModuleFormat, Target};
use rayon::prelude::*;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

/// Files that failed, at most this many reported on stderr.
const SHOWN_ERRORS: usize = 3;

struct Args {
    dir: PathBuf,
    target: Target,
    target_name: String,
    iterations: usize,
    threads: Option<usize>,
}

fn usage() -> String {
    "usage: compile --dir DIR [--target es2015] [--iterations N] [--threads N]".to_string()
}

fn parse_args() -> Result<Args, String> {
    let mut dir = None;
    let mut target_name = "es2015".to_string();
    let mut iterations = 10;
    let mut threads = None;
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value\n{}", usage()));
        match flag.as_str() {
            "--dir" => dir = Some(PathBuf::from(value()?)),
            "--target" => target_name = value()?.to_ascii_lowercase(),
            "--iterations" => iterations = value()?.parse().map_err(|e| format!("--iterations: {e}"))?,
            "--threads" => {
                let n: usize = value()?.parse().map_err(|e| format!("--threads: {e}"))?;
                threads = (n > 0).then_some(n);
            }
            // `cargo bench` appends `--bench` to the arguments of harness-less benches.
            "--bench" => {}
            other => return Err(format!("unknown argument {other:?}\n{}", usage())),
        }
    }
    let dir = dir.ok_or_else(usage)?;
    let target = target_name.parse::<Target>()?;
    Ok(Args { dir, target, target_name, iterations, threads })
}

/// Every `*.ts` (not `*.d.ts`) file under `dir`, recursively, hidden entries skipped, sorted by path.
fn list_ts(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') {
            continue;
        }
        let kind = entry.file_type()?;
        if kind.is_dir() {
            list_ts(&path, out)?;
        } else if kind.is_file() && name.ends_with(".ts") && !name.ends_with(".d.ts") {
            out.push(path);
        }
    }
    Ok(())
}

struct Source {
    path: PathBuf,
    connector: String,
    text: String,
}

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1e3
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    match v.len() {
        0 => None,
        n if n % 2 == 1 => Some(v[mid]),
        _ => Some((v[mid - 1] + v[mid]) / 2.0),
    }
}

/// Rounded to 0.01 ms, as compile.js prints it.
fn r2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// Wall time in ms of each of `n` runs of `pass`.
fn passes<R>(n: usize, mut pass: impl FnMut() -> R) -> Vec<f64> {
    (0..n)
        .map(|_| {
            let t = Instant::now();
            std::hint::black_box(pass());
            ms(t)
        })
        .collect()
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(1);
        }
    };
    if let Some(n) = args.threads {
        // Before anything touches the pool; nothing else runs yet.
        std::env::set_var("RAYON_NUM_THREADS", n.to_string());
    }

    let mut paths = Vec::new();
    if let Err(e) = list_ts(&args.dir, &mut paths) {
        eprintln!("cannot read {}: {e}", args.dir.display());
        return ExitCode::from(1);
    }
    paths.sort();
    let mut sources = Vec::with_capacity(paths.len());
    for path in paths {
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("cannot read {}: {e}", path.display());
                return ExitCode::from(1);
            }
        };
        let rel = path.strip_prefix(&args.dir).unwrap_or(&path).to_string_lossy().replace('\\', "/");
        let connector = rel.trim_end_matches(".ts").to_string();
        sources.push(Source { path, connector, text });
    }
    let bytes: usize = sources.iter().map(|s| s.text.len()).sum();
    let options = CompileOptions { target: args.target, module: ModuleFormat::Esm, minify: false, source_maps: false };
    let job = |s: &'_ Source| -> bool {
        let job = Job { path: &s.path, map_source: "snippet.ts", source: &s.text, connector: &s.connector, options };
        std::hint::black_box(transpile::transpile(&job)).is_ok()
    };

    // Cold: pool creation + first parallel pass. Per-file results are kept for the error report.
    let t = Instant::now();
    let first: Vec<Result<usize, String>> = transpile::pool().install(|| {
        sources
            .par_iter()
            .map(|s| {
                let job =
                    Job { path: &s.path, map_source: "snippet.ts", source: &s.text, connector: &s.connector, options };
                match transpile::transpile(&job) {
                    Ok(out) => Ok(out.code.len()),
                    Err(diags) => Err(diags.first().map_or_else(|| "failed".to_string(), |d| d.message.clone())),
                }
            })
            .collect()
    });
    let first_ms = ms(t);
    let threads = transpile::pool().current_num_threads();

    let mut errors = 0;
    let mut out_bytes = 0;
    for (s, r) in sources.iter().zip(&first) {
        match r {
            Ok(n) => out_bytes += n,
            Err(msg) => {
                errors += 1;
                if errors <= SHOWN_ERRORS {
                    eprintln!("{}: {}", s.path.display(), msg.lines().next().unwrap_or(""));
                }
            }
        }
    }

    let parallel =
        passes(args.iterations, || transpile::pool().install(|| sources.par_iter().map(job).filter(|ok| !ok).count()));
    // Sequential, one worker: a plain loop run on the pool (transpile() then runs in place, no hand-off).
    let serial =
        passes(args.iterations, || transpile::pool().install(|| sources.iter().map(job).filter(|ok| !ok).count()));
    // Sequential from a thread outside the pool: each transpile() hands its file to a worker and waits.
    let serial_hop = passes(args.iterations, || sources.iter().map(job).filter(|ok| !ok).count());

    let warm_min = parallel.iter().copied().min_by(f64::total_cmp);
    let num = |x: Option<f64>| x.map_or_else(|| "null".to_string(), |x| r2(x).to_string());
    let text = |s: &str| serde_json::Value::from(s).to_string();
    // Same keys, in the same order, as compile.js; the extra figures after them.
    println!(
        "{{\"tool\":\"connector-scripts\",\"version\":{},\"target\":{},\"files\":{},\"bytes\":{bytes},\"loadMs\":0,\
         \"firstMs\":{},\"warmMs\":{},\"iterations\":{},\"errors\":{errors},\"warmMinMs\":{},\"warmMsSerial\":{},\
         \"warmMsSerialHop\":{},\"threads\":{threads},\"outBytes\":{out_bytes}}}",
        text(&format!("{} (swc_core {})", env!("CARGO_PKG_VERSION"), swc_core::SWC_CORE_VERSION)),
        text(&args.target_name),
        sources.len(),
        num(Some(first_ms)),
        num(median(parallel)),
        args.iterations,
        num(warm_min),
        num(median(serial)),
        num(median(serial_hop)),
    );
    ExitCode::SUCCESS
}
