#!/usr/bin/env python3
"""bench/cluster.py - throughput through one rmqtt node vs two, in the same run (docs/scaling.md).

    python3 bench/cluster.py        (ROUNDS=3, DURATION=8, LOADED=4x16; BENCH_PROFILE=dev for a quick look)

A 2-node rmqtt cluster (the broker program of tests/cluster/, built by tests/cluster/build), two connector-scripts
instances in one share group (`--rate-limit 0`: the load generator is a few devices asking very fast), and the Rust
load generator (`loadgen load`, NestJS envelope, per-device topics, QoS 0, C connections x W outstanding):

- **one node**: both instances and all C connections on node 1 (node 2 is in the cluster, idle);
- **two nodes**: one instance and half the connections on each node (two load generators at once);
- **Mosquitto** (context): the same two instances and load on one Mosquitto.

Rounds interleave the three; the figures are medians over the rounds. CPU per request of the broker processes
comes from /proc/<pid>/stat. Prints a Markdown table for docs/scaling.md.
"""
import json
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from run import ROOT, Mosquitto, cargo_artifacts, cpu_seconds, free_port, log, readyz, wait  # noqa: E402

ROUNDS = int(os.environ.get("ROUNDS", "3"))
DURATION = float(os.environ.get("DURATION", "8"))
WARMUP = float(os.environ.get("WARMUP", "2"))
LOADED = os.environ.get("LOADED", "4x16")


def cluster_binary():
    out = subprocess.run([os.path.join(ROOT, "tests/cluster/build")], check=True, stdout=subprocess.PIPE, text=True)
    return out.stdout.strip().splitlines()[-1]


class Cluster:
    def __init__(self, binary, nodes):
        self.proc = subprocess.Popen([binary, "up", "--nodes", str(nodes)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        formed = json.loads(self.proc.stdout.readline())
        self.urls = [f"mqtt://{n['mqtt']}" for n in formed["nodes"]]
        self.pids = [n["pid"] for n in formed["nodes"]]

    def close(self):
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


def start_instance(paths, broker, name):
    http = free_port()
    cmd = [paths["connector-scripts"], "serve", "--broker", broker, "--share-group", "bench", "--instance", name,
           "--client-id", f"bench-{name}", "--http-listen", f"127.0.0.1:{http}", "--rate-limit", "0",
           "--rate-limit-bare", "0", "--rate-limit-global", "0", "--no-watch",
           "--snippets", os.path.join(ROOT, "snippets"), "--platforms", os.path.join(ROOT, "platforms"),
           "--log-format", "json"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait(lambda: readyz(http), 60, f"instance {name} ready")
    return proc


def load(paths, placements):
    """Runs one load generator per (broker, connections) at once; returns summed requests/s and errors."""
    _, window = (int(x) for x in LOADED.split("x"))
    procs = []
    for i, (broker, conns) in enumerate(placements):
        cmd = [paths["loadgen"], "load", "--broker", broker, "--connections", str(conns), "--window", str(window),
               "--duration-secs", str(DURATION), "--warmup-secs", str(WARMUP), "--label", f"gen{i}",
               "--device-prefix", f"gen{i}", "--platform", "ios", "--version", "2.4.1"]
        procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True))
    results = [json.loads(p.communicate()[0].strip().splitlines()[-1]) for p in procs]
    return {"rps": sum(r["rps"] for r in results), "errors": sum(r["errors"] + r["timeouts"] for r in results),
            "p99_us": max(r["p99_us"] for r in results), "total": sum(r["total"] for r in results)}


def measure(paths, label, brokers, broker_pids, placements):
    """Two instances on `brokers`, the load spread by `placements`; CPU per request of the broker processes."""
    instances = [start_instance(paths, b, f"{label.replace(' ', '-')}-{i}") for i, b in enumerate(brokers)]
    try:
        cpu0 = sum(cpu_seconds(p) for p in broker_pids)
        r = load(paths, placements)
        cpu1 = sum(cpu_seconds(p) for p in broker_pids)
        r["broker_us"] = (cpu1 - cpu0) * 1e6 / max(r["total"], 1)
        log(f"   {label}: {r['rps']:.0f} req/s, p99 {r['p99_us'] / 1000:.1f} ms, broker {r['broker_us']:.1f} us/req, "
            f"errors {r['errors']}")
        return r
    finally:
        for p in instances:
            p.terminate()
            p.wait(timeout=30)


def main():
    paths = cargo_artifacts(targets=("--bin", "connector-scripts", "--example", "loadgen"))
    binary = cluster_binary()
    conns, _ = (int(x) for x in LOADED.split("x"))
    half = conns // 2
    cluster = Cluster(binary, 2)
    mosquitto = Mosquitto()
    n1, n2 = cluster.urls
    setups = [
        ("one node", [n1, n1], cluster.pids, [(n1, conns)]),
        ("two nodes", [n1, n2], cluster.pids, [(n1, half), (n2, conns - half)]),
        ("Mosquitto", [mosquitto.url, mosquitto.url], [mosquitto.proc.pid], [(mosquitto.url, conns)]),
    ]
    results = {s[0]: [] for s in setups}
    try:
        for rnd in range(ROUNDS):
            log(f"== round {rnd + 1} of {ROUNDS}")
            for label, brokers, pids, placements in setups:
                results[label].append(measure(paths, label, brokers, pids, placements))
    finally:
        cluster.close()
        mosquitto.proc.terminate()
    med = {label: {k: statistics.median(r[k] for r in rs) for k in ("rps", "p99_us", "broker_us")}
           for label, rs in results.items()}
    errors = {label: sum(r["errors"] for r in rs) for label, rs in results.items()}
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    print(f"`python3 bench/cluster.py` ({stamp}; {ROUNDS} rounds x {DURATION:.0f} s, {conns} connections x "
          f"{LOADED.split('x')[1]} outstanding, 2 instances in\none share group; medians)\n")
    print("| setup | requests/s | vs one node | p99 | broker CPU per request | errors |")
    print("|---|---:|---:|---:|---:|---:|")
    for label, m in med.items():
        ratio = m["rps"] / med["one node"]["rps"]
        print(f"| {label} | {m['rps']:.0f} | {ratio:.2f} x | {m['p99_us'] / 1000:.1f} ms | "
              f"{m['broker_us']:.1f} us | {errors[label]} |")
    print("\nper round (requests/s): " + "; ".join(
        f"{label} " + ", ".join(f"{r['rps']:.0f}" for r in rs) for label, rs in results.items()))


if __name__ == "__main__":
    main()
