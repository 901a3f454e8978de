#!/usr/bin/env python3
"""bench/run.py - every benchmark of connector-scripts in one command, side by side in the same run.

    python3 bench/run.py            full run, writes docs/BENCHMARKS.md
    SMOKE=1 python3 bench/run.py    seconds, debug build, prints only (CI runs this so the harness cannot rot)

Request serving: one Mosquitto (set_tcp_nodelay true) on a free loopback port; three responders in turn:
connector-scripts (`serve`), the NestJS reference peer (bench/peers/nestjs: the old system's design) and the ideal
responder (`loadgen respond`: pre-serialized bytes, nothing else: the broker-bound ceiling). For each, the Rust load
generator (`loadgen load`, NestJS envelope, per-device topics, QoS 0) runs serial (1 x 1) and loaded (C x W);
CPU time per request comes from /proc/<pid>/stat of the responder and of the broker, and from rusage for the load
generator. ROUNDS (3; 1 with SMOKE) rounds interleave the responders; the figures are medians over the rounds.
Then: startup to ready and RSS of connector-scripts, hot-reload latency (benches/reload.rs) and compile speed
(bench/compile.sh). docs/PERFORMANCE.md explains the figures and the profiling behind them.
"""
import json
import os
import resource
import statistics
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMOKE = os.environ.get("SMOKE") == "1"
DURATION = float(os.environ.get("DURATION", "2" if SMOKE else "10"))
WARMUP = float(os.environ.get("WARMUP", "0.5" if SMOKE else "2"))
LOADED = os.environ.get("LOADED", "2x4" if SMOKE else "4x16")
# Rounds interleave the responders (A B C, A B C, ...) so slow spells of a shared machine hit all of them; every
# serving figure is the median over the rounds.
ROUNDS = int(os.environ.get("ROUNDS", "1" if SMOKE else "3"))
# Another build of the service (a path), measured in the same rounds (serving, and each size of the sweep):
# "unchanged within noise", or what a change did, as a paired ratio.
BASELINE = os.environ.get("BASELINE", "")
# Reply-size sweep: generated catalogs whose ios 2.4.1 replies are about these many KB.
SWEEP = [int(k) for k in os.environ.get("SWEEP", "16" if SMOKE else "4,16,32,64,128").split(",") if k]
PROFILE = os.environ.get("BENCH_PROFILE", "dev" if SMOKE else "release")
OUT = os.environ.get("OUT", "" if SMOKE else "docs/BENCHMARKS.md")
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
HZ = os.sysconf("SC_CLK_TCK")


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait(cond, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(0.002)
    raise SystemExit(f"timed out waiting for {what}")


def cargo_artifacts(targets=("--bin", "connector-scripts", "--example", "loadgen", "--bench", "reload"),
                    profile=None):
    """Builds the given cargo targets once (default: the service, the load generator and the reload bench) in
    `profile` (default PROFILE); returns {target name: executable path}."""
    cmd = ["cargo", "build", *targets, "--message-format=json-render-diagnostics"]
    if (profile or PROFILE) == "release":
        cmd.insert(2, "--release")
    log("==", " ".join(cmd))
    out = subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.PIPE, text=True).stdout
    paths = {}
    for line in out.splitlines():
        m = json.loads(line)
        if m.get("reason") == "compiler-artifact" and m.get("executable"):
            paths[m["target"]["name"]] = m["executable"]
    return paths


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / HZ


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def readyz(port):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=0.5) as r:
            return r.status == 200
    except Exception:
        return False


class Mosquitto:
    def __init__(self):
        self.dir = tempfile.mkdtemp()
        os.chmod(self.dir, 0o777)
        self.port = free_port()
        conf = os.path.join(self.dir, "mosquitto.conf")
        with open(conf, "w") as f:
            f.write(f"listener {self.port} 127.0.0.1\nallow_anonymous true\nset_tcp_nodelay true\n"
                    "max_queued_messages 100000\npersistence false\nlog_dest none\n")
        self.proc = subprocess.Popen(["mosquitto", "-c", conf], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait(self._listening, 10, "mosquitto")
        self.url = f"mqtt://127.0.0.1:{self.port}"

    def _listening(self):
        try:
            socket.create_connection(("127.0.0.1", self.port), 0.2).close()
            return True
        except OSError:
            return False

    def stop(self):
        self.proc.terminate()
        self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


_KEY = []


def signing_key(paths):
    """One key from `keygen` for the whole run: the service signs as production does, and the ideal responder
    signs the same manifests, so both send byte-identical replies."""
    if not _KEY:
        keys = tempfile.mkdtemp()
        subprocess.run([paths["connector-scripts"], "keygen", "--out", os.path.join(keys, "bench")], check=True,
                       stdout=subprocess.DEVNULL)
        _KEY.append(os.path.join(keys, "bench.key"))
    return _KEY[0]


def start_connector_scripts(paths, broker, catalog=ROOT, binary=None):
    """The service as production runs it: signing every manifest. `binary`: another build (BASELINE), given only
    the flags every build has."""
    http = free_port()
    limits = ["--rate-limit", "0", "--rate-limit-bare", "0", "--rate-limit-global", "0"]
    if binary:
        # An older build may predate the bare and global limits: switch off those it has.
        flags = subprocess.run([binary, "serve", "--help"], stdout=subprocess.PIPE, text=True).stdout
        limits = ["--rate-limit", "0"] + [x for f in ("--rate-limit-bare", "--rate-limit-global") if f in flags
                                          for x in (f, "0")]
    proc = subprocess.Popen([binary or paths["connector-scripts"], "serve", "--broker", broker, "--http-listen",
                             f"127.0.0.1:{http}", *limits, "--qos-in", "0",
                             "--signing-key", signing_key(paths),
                             "--snippets", os.path.join(catalog, "snippets"),
                             "--platforms", os.path.join(catalog, "platforms")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait(lambda: readyz(http), 30, "connector-scripts ready")
    return proc


def start_printing_ready(cmd, cwd=ROOT):
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            raise SystemExit(f"{cmd[0]} exited before ready")
        if line.strip() == "ready":
            return proc
    raise SystemExit(f"{cmd[0]} not ready in time")


def nest_peer_cmd(broker):
    peer = os.path.join(ROOT, "bench/peers/nestjs")
    if not os.path.isdir(os.path.join(peer, "node_modules")):
        log("== npm ci --prefix bench/peers/nestjs")
        subprocess.run(["npm", "ci", "--prefix", peer, "--no-audit", "--no-fund", "--loglevel=error"], check=True)
    return ["node", os.path.join(peer, "main.js"), "--url", broker, "--snippets", os.path.join(ROOT, "snippets"),
            "--platforms", os.path.join(ROOT, "platforms")]


def children_cpu_seconds():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run_load(paths, broker, label, conns, window):
    """Runs the load generator; returns its JSON line plus its own CPU seconds (from rusage)."""
    cmd = [paths["loadgen"], "load", "--broker", broker, "--connections", str(conns), "--window", str(window),
           "--duration-secs", str(DURATION), "--warmup-secs", str(WARMUP), "--label", label,
           "--platform", "ios", "--version", "2.4.1"]
    cpu0 = children_cpu_seconds()
    out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True).stdout
    result = json.loads(out.strip().splitlines()[-1])
    result["cpu_s"] = children_cpu_seconds() - cpu0
    return result


def measure_responder(paths, broker, label, proc):
    """Serial then loaded; CPU per reply of the responder, the broker and the load generator in the loaded run."""
    c, w = (int(x) for x in LOADED.split("x"))
    serial = run_load(paths, broker.url, label, 1, 1)
    cpu0, broker0 = cpu_seconds(proc.pid), cpu_seconds(broker.proc.pid)
    loaded = run_load(paths, broker.url, label, c, w)
    cpu1, broker1 = cpu_seconds(proc.pid), cpu_seconds(broker.proc.pid)
    per_reply = 1e6 / max(loaded["total"], 1)
    return {"label": label, "serial": serial, "loaded": loaded, "cpu_us": (cpu1 - cpu0) * per_reply,
            "broker_us": (broker1 - broker0) * per_reply, "loadgen_us": loaded["cpu_s"] * per_reply,
            "rss_mib": rss_mib(proc.pid)}


def median_of_rounds(rounds):
    """One result per responder: the median of every figure over the rounds (errors summed, RSS the largest)."""
    med = statistics.median
    out = {"label": rounds[0]["label"], "rounds": len(rounds)}
    for run in ("serial", "loaded"):
        out[run] = {k: med([r[run][k] for r in rounds]) for k in ("rps", "p50_us", "p99_us", "max_us")}
        out[run]["errors"] = sum(r[run]["errors"] + r[run]["timeouts"] for r in rounds)
    for k in ("cpu_us", "broker_us", "loadgen_us"):
        out[k] = med([r[k] for r in rounds])
    out["rss_mib"] = max(r["rss_mib"] for r in rounds)
    out["per_round"] = rounds
    return out


def paired(a, b, key):
    """Ratio a/b of one figure, round by round (a round's runs are minutes apart, so they share the machine's
    state), and the median of those ratios: steadier than the ratio of two medians on a noisy machine."""
    run, field = key
    ratios = [ra[run][field] / rb[run][field] if rb[run][field] else float("nan")
              for ra, rb in zip(a["per_round"], b["per_round"])]
    return statistics.median(ratios), ratios


def startup_to_ready(paths, broker, repeats):
    times = []
    for _ in range(repeats):
        http = free_port()
        t0 = time.monotonic()
        proc = subprocess.Popen([paths["connector-scripts"], "serve", "--broker", broker, "--http-listen",
                                 f"127.0.0.1:{http}", "--snippets", os.path.join(ROOT, "snippets"),
                                 "--platforms", os.path.join(ROOT, "platforms")],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait(lambda: readyz(http), 30, "ready")
        times.append((time.monotonic() - t0) * 1000)
        proc.terminate()
        proc.wait()
    times.sort()
    return times[len(times) // 2]


def ideal_cmd(paths, broker, catalog=ROOT):
    return [paths["loadgen"], "respond", "--broker", broker, "--version", "2.4.1",
            "--snippets", os.path.join(catalog, "snippets"), "--platforms", os.path.join(catalog, "platforms"),
            "--signing-key", signing_key(paths)]


def sweep_catalog(reply_kb):
    """The example platforms with generated connectors of ~4 KB of TypeScript each, so that a reply to ios 2.4.1 is
    about `reply_kb` KB (compiled code, hashes, the signed manifest and JSON escaping make a reply ~1.6 x the
    TypeScript, plus ~1 KB)."""
    kb = max(1.0, (reply_kb - 1) / 1.6)
    root = tempfile.mkdtemp()
    shutil.copytree(os.path.join(ROOT, "platforms"), os.path.join(root, "platforms"))
    folder = os.path.join(root, "snippets", "sweep")
    os.makedirs(folder)
    per, written, i = 4096, 0, 0
    while written < kb * 1024:
        lines = [f"// Connector {i} of the reply-size sweep (bench/run.py).", "export interface Reading { at: number; value: number }"]
        j = 0
        while sum(len(l) + 1 for l in lines) < min(per, int(kb * 1024) - written):
            lines.append(f"export function scale{j}(r: Reading): number {{ return r.value * {j + 1} + {i} - r.at % {j + 7}; }}")
            j += 1
        text = "\n".join(lines) + "\n"
        with open(os.path.join(folder, f"c{i:03}.ts"), "w") as f:
            f.write(text)
        written += len(text)
        i += 1
    return root


def reply_bytes(paths, broker):
    """Bytes of one reply to ios 2.4.1, as the `request` command receives it."""
    out = subprocess.run([paths["connector-scripts"], "request", "--broker", broker, "--platform", "ios",
                          "--version", "2.4.1", "--device", "sweep-probe", "--json"],
                         check=True, stdout=subprocess.PIPE, text=True).stdout
    return len(out.strip().splitlines()[0].encode())


def reply_size_sweep(paths, broker):
    """At each size of SWEEP (KB): the service and the ideal responder, interleaved over ROUNDS, same bytes."""
    rows = []
    for kb in SWEEP:
        catalog = sweep_catalog(kb)
        targets = [("connector-scripts", lambda: start_connector_scripts(paths, broker.url, catalog)),
                   ("ideal responder", lambda: start_printing_ready(ideal_cmd(paths, broker.url, catalog)))]
        if BASELINE:
            # Another build in the same rounds: what a change did at this size, paired as the ideal is.
            targets.append(("baseline build",
                            lambda: start_connector_scripts(paths, broker.url, catalog, binary=BASELINE)))
        rounds, size = {}, None
        try:
            for n in range(ROUNDS):
                for label, start in targets:
                    log(f"== reply-size sweep {kb} KB, round {n + 1}/{ROUNDS}: {label}")
                    proc = start()
                    try:
                        if size is None:
                            size = reply_bytes(paths, broker.url)
                        c, w = (int(x) for x in LOADED.split("x"))
                        cpu0, brk0 = cpu_seconds(proc.pid), cpu_seconds(broker.proc.pid)
                        r = run_load(paths, broker.url, label, c, w)
                        per_reply = 1e6 / max(r["total"], 1)
                        r["cpu_us"] = (cpu_seconds(proc.pid) - cpu0) * per_reply
                        r["broker_us"] = (cpu_seconds(broker.proc.pid) - brk0) * per_reply
                        rounds.setdefault(label, []).append(r)
                    finally:
                        proc.terminate()
                        proc.wait()
        finally:
            shutil.rmtree(catalog, ignore_errors=True)
        cs, ideal = rounds["connector-scripts"], rounds["ideal responder"]
        pair = lambda k: statistics.median(a[k] / b[k] if b[k] else float("nan") for a, b in zip(cs, ideal))
        rows.append({"kb": kb, "reply_bytes": size, "p99_ratio": pair("p99_us"), "rps_ratio": pair("rps"),
                     "cs_p99_us": statistics.median(r["p99_us"] for r in cs),
                     "ideal_p99_us": statistics.median(r["p99_us"] for r in ideal),
                     "cs_rps": statistics.median(r["rps"] for r in cs),
                     "ideal_rps": statistics.median(r["rps"] for r in ideal),
                     # CPU per reply of each responder and of the broker serving it; every round's ratios.
                     "cs_cpu_us": statistics.median(r["cpu_us"] for r in cs),
                     "ideal_cpu_us": statistics.median(r["cpu_us"] for r in ideal),
                     "broker_us": [statistics.median(r["broker_us"] for r in x) for x in (cs, ideal)],
                     "round_ratios": [(round(a["p99_us"] / max(b["p99_us"], 1), 2), round(a["rps"] / max(b["rps"], 1), 2))
                                      for a, b in zip(cs, ideal)],
                     "errors": sum(r["errors"] + r["timeouts"] for r in cs + ideal)})
        if BASELINE:
            base = rounds["baseline build"]
            rows[-1]["baseline"] = {
                "rps_ratio": statistics.median(a["rps"] / b["rps"] for a, b in zip(cs, base)),
                "cpu_ratio": statistics.median(a["cpu_us"] / b["cpu_us"] for a, b in zip(cs, base)),
                "cpu_us": statistics.median(r["cpu_us"] for r in base),
                "rps_to_ideal": statistics.median(a["rps"] / b["rps"] for a, b in zip(base, ideal)),
                "errors": sum(r["errors"] + r["timeouts"] for r in base)}
        log(json.dumps(rows[-1]))
    return rows


def main():
    paths = cargo_artifacts()
    broker = Mosquitto()
    rounds = {}
    try:
        targets = [
            ("connector-scripts", lambda: start_connector_scripts(paths, broker.url)),
            ("NestJS peer", lambda: start_printing_ready(nest_peer_cmd(broker.url))),
            ("ideal responder", lambda: start_printing_ready(ideal_cmd(paths, broker.url))),
            *([("baseline build", lambda: start_connector_scripts(paths, broker.url, binary=BASELINE))]
              if BASELINE else []),
            # The write-coalescing experiment: the same bytes, every reply of one socket read in one write.
            ("ideal, coalesced writes", lambda: start_printing_ready([paths["loadgen"], "respond", "--coalesce",
                                                                      "--broker", broker.url, "--version", "2.4.1",
                                                                      "--snippets", "snippets", "--platforms", "platforms",
                                                                      "--signing-key", signing_key(paths)])),
        ]
        for n in range(ROUNDS):
            for label, start in targets:
                log(f"== serving benchmark, round {n + 1}/{ROUNDS}: {label}")
                proc = start()
                try:
                    rounds.setdefault(label, []).append(measure_responder(paths, broker, label, proc))
                finally:
                    proc.terminate()
                    proc.wait()
                log(json.dumps(rounds[label][-1]))
        results = [median_of_rounds(rounds[label]) for label, _ in targets]
        sweep = reply_size_sweep(paths, broker)
        ready_ms = startup_to_ready(paths, broker.url, 3 if SMOKE else 7)
    finally:
        broker.stop()
    reload_args = [paths["reload"], "--edits", "10" if SMOKE else "60"]
    log("==", " ".join(reload_args))
    reload_out = subprocess.run(reload_args, check=True, stdout=subprocess.PIPE, text=True, cwd=ROOT).stdout
    compile_env = dict(os.environ, OUT="" if SMOKE else "docs/BENCH-compile.md")
    log("== bench/compile.sh")
    compile_out = subprocess.run(["bash", "bench/compile.sh"], cwd=ROOT, env=compile_env, check=True,
                                 stdout=subprocess.PIPE, text=True).stdout
    report = render(results, ready_ms, reload_out, compile_out, sweep)
    print(report)
    if OUT:
        with open(os.path.join(ROOT, OUT), "w") as f:
            f.write(report)
        log(f"wrote {OUT}")


def render_sweep(sweep):
    """The reply-size sweep section of docs/BENCHMARKS.md."""
    lines = [f"## Reply-size sweep (ios 2.4.1 on generated catalogs; loaded {LOADED}, QoS 0, {ROUNDS} round(s))",
             "", "connector-scripts against the ideal responder sending the same bytes, paired round by round "
             "(median of the ratios). Target at every size: loaded p99 ≤ 1.2 × and throughput ≥ 0.95 ×. CPU: "
             "each responder's CPU time per reply (/proc). `SWEEP_ONLY=1 python3 bench/run.py` runs this part alone.",
             "", "| target | reply bytes | p99 µs (service / ideal) | p99 ratio | req/s (service / ideal) "
             "| throughput ratio | CPU µs/reply (service / ideal) | errors | within target |",
             "|---|---:|---|---:|---|---:|---|---:|---|"]
    for r in sweep:
        ok = r["p99_ratio"] <= 1.2 and r["rps_ratio"] >= 0.95 and r["errors"] == 0
        lines.append(f"| ~{r['kb']} KB | {r['reply_bytes']:,} | {r['cs_p99_us']:.0f} / {r['ideal_p99_us']:.0f} "
                     f"| {r['p99_ratio']:.2f} × | {r['cs_rps']:.0f} / {r['ideal_rps']:.0f} | {r['rps_ratio']:.2f} × "
                     f"| {r['cs_cpu_us']:.1f} / {r['ideal_cpu_us']:.1f} | {r['errors']} | {'yes' if ok else '**no**'} |")
    lines += ["", "Round by round (p99 ratio, throughput ratio): " + "; ".join(
        f"~{r['kb']} KB " + ", ".join(f"{p:.2f}/{t:.2f}" for p, t in r["round_ratios"]) for r in sweep)]
    if any("baseline" in r for r in sweep):
        lines += ["", f"Against the baseline build (`BASELINE={BASELINE}`), same rounds, paired: " + "; ".join(
            f"~{r['kb']} KB throughput {r['baseline']['rps_ratio']:.2f} ×, CPU per reply {r['cs_cpu_us']:.1f} against "
            f"{r['baseline']['cpu_us']:.1f} µs ({r['baseline']['cpu_ratio']:.2f} ×), the baseline's throughput to the "
            f"ideal's {r['baseline']['rps_to_ideal']:.2f} ×, {r['baseline']['errors']} errors"
            for r in sweep if "baseline" in r) + "."]
    return lines


def sweep_only():
    """SWEEP_ONLY=1: the reply-size sweep alone; its section of OUT (docs/BENCHMARKS.md) is replaced in place."""
    paths = cargo_artifacts()
    broker = Mosquitto()
    try:
        section = render_sweep(reply_size_sweep(paths, broker))
    finally:
        broker.stop()
    print("\n".join(section))
    if OUT and os.path.exists(OUT):
        text = open(OUT).read()
        start = text.index("## Reply-size sweep")
        end = text.find("\n## ", start + 1)
        end = len(text) if end < 0 else end + 1
        date = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        open(OUT, "w").write(text[:start] + "\n".join(section + ["", f"(This section alone: {date}.)", "", ""])
                             + text[end:])


def render(results, ready_ms, reload_out, compile_out, sweep=()):
    by = {r["label"]: r for r in results}
    ideal, peer, cs = by["ideal responder"], by["NestJS peer"], by["connector-scripts"]
    cpu_model = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    mosq = subprocess.run(["mosquitto", "-h"], stdout=subprocess.PIPE, text=True).stdout.splitlines()[0]
    lines = [
        "# Benchmarks",
        "",
        f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {os.cpu_count()} cores ({cpu_model}), "
        f"loopback, {mosq} with `set_tcp_nodelay true`, profile `{PROFILE}`. Reproduce: "
        f"`{'SMOKE=1 ' if SMOKE else ''}python3 bench/run.py` (it also runs `bench/compile.sh`). The machine is shared and"
        " noisy: compare the ratios measured in the same run, not absolute figures across runs.",
        "",
        f"## Request serving (NestJS envelope, per-device topics, QoS 0; {DURATION:g} s per run after {WARMUP:g} s warm-up)",
        "",
        "Every request asks for ios 2.4.1: variant `current`, 4 connectors, es2017/commonjs, no source maps (the"
        " NestJS peer ships none), the same reply shape from all three responders.",
        f"{ROUNDS} round(s), the responders interleaved; every figure is the median over the rounds (errors summed,"
        " RSS the largest). CPU columns are CPU time (user + system, /proc) per reply during the loaded run, for the"
        " responder, the broker and the load generator: the three share the machine's cores.",
        "",
        f"| responder | serial req/s | serial p50 µs | serial p99 µs | loaded ({LOADED}) req/s | loaded p50 µs "
        "| loaded p99 µs | loaded max µs | errors+timeouts | CPU µs/request | broker CPU µs/request "
        "| load generator CPU µs/request | RSS MiB |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        s, l = r["serial"], r["loaded"]
        lines.append(f"| {r['label']} | {s['rps']:.0f} | {s['p50_us']:.0f} | {s['p99_us']:.0f} | {l['rps']:.0f} "
                     f"| {l['p50_us']:.0f} | {l['p99_us']:.0f} | {l['max_us']:.0f} | {s['errors'] + l['errors']} "
                     f"| {r['cpu_us']:.1f} | {r['broker_us']:.1f} | {r['loadgen_us']:.1f} | {r['rss_mib']:.1f} |")
    lines += ["", "Loaded req/s of each round: " + "; ".join(
        f"{r['label']} {', '.join(str(round(x['loaded']['rps'])) for x in r['per_round'])}" for r in results) + "."]
    ratio = lambda a, b: a / b if b else float("nan")
    to_ideal, to_ideal_rounds = paired(cs, ideal, ("loaded", "rps"))
    to_peer, to_peer_rounds = paired(cs, peer, ("loaded", "rps"))
    p50_to_ideal, p50_rounds = paired(cs, ideal, ("serial", "p50_us"))
    p99_to_ideal, p99_rounds = paired(cs, ideal, ("loaded", "p99_us"))
    checks = [
        ("loaded throughput ≥ 0.95 × ideal", to_ideal, 0.95, True),
        ("loaded throughput ≥ 2.5 × NestJS peer", to_peer, 2.5, True),
        ("serial p50 ≤ 1.2 × ideal", p50_to_ideal, 1.2, False),
        ("loaded p99 ≤ 1.2 × ideal", p99_to_ideal, 1.2, False),
        ("CPU ≤ 15 µs per request", cs["cpu_us"], 15.0, False),
        ("startup to ready ≤ 200 ms", ready_ms, 200.0, False),
        ("RSS ≤ 30 MB while serving", cs["rss_mib"] * 1.048576, 30.0, False),
    ]
    lines += ["", "## Targets", "", "The three ratios are paired: connector-scripts against the other responder in the same"
              " round, then the median over the rounds.", "", "| target | measured | met |", "|---|---|---|"]
    for name, value, bound, at_least in checks:
        met = value >= bound if at_least else value <= bound
        lines.append(f"| {name} | {value:.2f} | {'yes' if met else '**no**'} |")
    fmt = lambda xs: ", ".join(f"{x:.2f}" for x in xs)
    lines += ["", f"Ratios round by round: loaded throughput to the ideal {fmt(to_ideal_rounds)}; to the NestJS peer"
              f" {fmt(to_peer_rounds)}; serial p50 to the ideal {fmt(p50_rounds)}; loaded p99 to the ideal"
              f" {fmt(p99_rounds)}."]
    base = by.get("baseline build")
    if base:
        rps, rps_rounds = paired(cs, base, ("loaded", "rps"))
        p99, p99_b_rounds = paired(cs, base, ("loaded", "p99_us"))
        lines += ["", f"Against the baseline build (`BASELINE={BASELINE}`), same rounds: loaded throughput {rps:.2f} ×"
                  f" (rounds {fmt(rps_rounds)}), loaded p99 {p99:.2f} × (rounds {fmt(p99_b_rounds)}), CPU per request"
                  f" {cs['cpu_us']:.1f} against {base['cpu_us']:.1f} µs ({ratio(cs['cpu_us'], base['cpu_us']):.2f} ×)."]
    co = by.get("ideal, coalesced writes")
    if co:
        lines += ["", "Write coalescing (docs/PERFORMANCE.md): broker CPU per reply, same reply bytes —"
                  f" ideal responder (rumqttc: one write and flush per publish) {ideal['broker_us']:.1f} µs, the same"
                  f" replies coalesced (every reply of one socket read in one write) {co['broker_us']:.1f} µs"
                  f" ({ratio(co['broker_us'], ideal['broker_us']):.2f} ×), NestJS peer {peer['broker_us']:.1f} µs,"
                  f" connector-scripts {cs['broker_us']:.1f} µs; loaded req/s {ideal['loaded']['rps']:.0f} vs"
                  f" {co['loaded']['rps']:.0f} coalesced ({ratio(co['loaded']['rps'], ideal['loaded']['rps']):.2f} ×)."]
    # Mosquitto serves on one thread: one core's worth of its CPU per reply bounds everyone's throughput.
    ceiling = 1e6 / cs["broker_us"] if cs["broker_us"] else float("nan")
    lines += ["", f"Broker bound: Mosquitto is single-threaded and spent {cs['broker_us']:.1f} µs per reply while"
              f" serving connector-scripts, so no responder can exceed ~{ceiling:.0f} req/s through it on this"
              f" machine, even with a core to itself; 2.5 × the NestJS peer would be"
              f" {2.5 * peer['loaded']['rps']:.0f} req/s. What each responder could serve per core of its own CPU"
              f" (1 s ÷ its CPU per request): connector-scripts {1e6 / cs['cpu_us']:.0f} req/s, NestJS peer"
              f" {1e6 / peer['cpu_us']:.0f} req/s ({ratio(peer['cpu_us'], cs['cpu_us']):.2f} ×), ideal responder"
              f" {1e6 / ideal['cpu_us']:.0f} req/s. Analysis and profiles: docs/PERFORMANCE.md."]
    if sweep:
        lines += [""] + render_sweep(sweep)
    herd = os.path.join(ROOT, "docs/BENCH-herd.md")
    if os.path.exists(herd):
        # The herd runs on its own (`python3 bench/herd.py`, minutes of 10 000 connections); its last table here,
        # beside the serving figures, with the date it was measured.
        text = open(herd).read().splitlines()
        measured = [l for l in text if l.startswith("- Command")]
        tables = []
        for line in text:
            if line.startswith("|"):
                tables.append(line)
            elif line.startswith("Side by side"):
                tables += ["", line, ""]
        growth = [l for l in text if l.startswith("Growth")]
        lines += ["", "## Update herd (docs/BENCH-herd.md, `python3 bench/herd.py`)", ""] + measured + [""] + tables
        lines += [""] + growth
    lines += ["", f"Startup to ready (process start → `/readyz` 200, median): {ready_ms:.0f} ms.", "",
              "## Hot reload (benches/reload.rs)", "", "```", reload_out.strip(), "```", "",
              "## Compiling (bench/compile.sh)", "", compile_out.strip(), ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sweep_only() if os.environ.get("SWEEP_ONLY") == "1" else main()
