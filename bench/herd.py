#!/usr/bin/env python3
"""bench/herd.py - the update herd: N phones re-fetch at once after one snippet is saved.

    python3 bench/herd.py                      2 000, 5 000 and 10 000 devices, writes docs/BENCH-herd.md
    DEVICES=500 OUT= python3 bench/herd.py     one size, prints only

For each size: a fresh Mosquitto (set_tcp_nodelay, no connection limit) on a free port, a copy of the example
catalog, the release service with its default flags (rate limiting on), and `examples/herd.rs` with N devices (each
its own MQTT 3.1.1 connection, subscribed to its reply topic and to the retained manifest of ios/next). herd edits
smart-home/thermostat.ts and reports save -> first new manifest, -> 50 / 99 / 100 % of devices holding the new
revision, and what was lost. Around the herd: CPU seconds of the service and of the broker (from /proc), the
service's peak RSS (VmHWM) and its overloaded_total. The file limit is raised to the hard limit for every process
(10 000 devices need 20 000 descriptors between herd and the broker).

The poll model of the system it replaces (no push: every phone asks every P seconds, spread evenly) is run live
against the NestJS peer (bench/peers/nestjs: the old system's design) with POLL_DEVICES phones (default 5 000) and
P = POLL seconds (default 60): the requests per second the fleet costs while nothing changes, and how long each phone
waits after a save for its next answer (mean, p99, 100 %). It takes 2.5 P.

Bytes per update: with FETCH_DEVICES phones (default 2 000) on a catalog of 10 connectors for ios/next (the
examples and a copy of each under extra/), one save that changes 1 of the 10, three times in one run: devices
re-fetch the full bundle (as apps do today), a delta (`have`: the hashes of what they hold), and a delta with
`accept: ["gzip"]`, the delta modes following the signed revision notice instead of the full retained manifest. herd
counts the bytes the broker sent each device from the save on (the push and the reply, apart): broker egress per
device.
"""
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from run import ROOT, Mosquitto, cargo_artifacts, cpu_seconds, free_port, log, nest_peer_cmd, readyz, signing_key, start_printing_ready, wait  # noqa: E402

SIZES = [int(n) for n in os.environ.get("DEVICES", "2000,5000,10000").split(",") if n]
POLL_DEVICES = int(os.environ.get("POLL_DEVICES", "5000"))
OUT = os.environ.get("OUT", "docs/BENCH-herd.md")
POLL_S = float(os.environ.get("POLL", "60"))
FETCH_DEVICES = int(os.environ.get("FETCH_DEVICES", "2000"))
FETCH_MODES = ["full", "delta", "delta-gzip"]


def raise_file_limit():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else 1 << 20
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    return want


def peak_rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def metric(port, name):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                yield line


def example_catalog(copies=False):
    """A copy of the example catalog; with `copies`, every ios/next connector twice (10 in all, under extra/)."""
    catalog = tempfile.mkdtemp()
    shutil.copytree(os.path.join(ROOT, "snippets"), os.path.join(catalog, "snippets"))
    shutil.copytree(os.path.join(ROOT, "platforms"), os.path.join(catalog, "platforms"))
    if copies:
        extra = os.path.join(catalog, "snippets", "extra")
        os.makedirs(extra)
        for rel in ["experimental/geofence", "fleet/tracking", "health/step-counter", "payments/card-reader",
                    "smart-home/thermostat"]:
            shutil.copy(os.path.join(ROOT, "snippets", rel + ".ts"), os.path.join(extra, rel.replace("/", "-") + ".ts"))
    return catalog


def one_size(paths, n, fetch="full", copies=False):
    broker = Mosquitto()
    catalog = example_catalog(copies)
    http = free_port()
    # Bytes per update run signed, as production does: every reply carries the signed manifest.
    signing = ["--signing-key", signing_key(paths)] if copies else []
    service = subprocess.Popen([paths["connector-scripts"], "serve", "--broker", broker.url, "--http-listen",
                                f"127.0.0.1:{http}", "--snippets", os.path.join(catalog, "snippets"),
                                "--platforms", os.path.join(catalog, "platforms"), *signing],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait(lambda: readyz(http), 30, "connector-scripts ready")
        herd = subprocess.Popen([paths["herd"], "--broker", broker.url, "--devices", str(n), "--platform", "ios",
                                 "--version", "3.1.0", "--manifest", "connectors/ios/next",
                                 "--edit", os.path.join(catalog, "snippets/smart-home/thermostat.ts"),
                                 "--pids", f"{broker.proc.pid},{service.pid}", "--fetch", fetch],
                                stdout=subprocess.PIPE, text=True)
        # CPU is counted from the moment every device holds the revision: herd edits right after connecting, so
        # the connect storm is included; it is reported apart below as connect_s.
        svc0, brk0 = cpu_seconds(service.pid), cpu_seconds(broker.proc.pid)
        out, _ = herd.communicate(timeout=300)
        svc1, brk1 = cpu_seconds(service.pid), cpu_seconds(broker.proc.pid)
        r = json.loads(out.strip().splitlines()[-1])
        r["service_cpu_s"] = round(svc1 - svc0, 3)
        r["broker_cpu_s"] = round(brk1 - brk0, 3)
        # The herd alone (save → last reply), measured by herd itself around it: [broker, service] ms.
        r["broker_herd_ms"], r["service_herd_ms"] = r.pop("herd_cpu_ms")
        r["service_peak_rss_mib"] = round(peak_rss_mib(service.pid), 1)
        r["overloaded"] = list(metric(http, "connector_scripts_overloaded_total"))
        return r
    finally:
        service.terminate()
        service.wait()
        broker.stop()
        shutil.rmtree(catalog, ignore_errors=True)


def poll_model(paths, n):
    """The poll model, live: n phones asking the NestJS peer every POLL_S seconds."""
    broker = Mosquitto()
    peer = start_printing_ready(nest_peer_cmd(broker.url))
    try:
        out = subprocess.run([paths["herd"], "--poll", str(POLL_S), "--devices", str(n), "--broker", broker.url],
                             stdout=subprocess.PIPE, text=True, check=True, timeout=POLL_S * 4 + 180).stdout
        return json.loads(out.strip().splitlines()[-1])
    finally:
        peer.terminate()
        peer.wait()
        broker.stop()


def render(rows, limit, poll=None, fetched=()):
    def ms(v):
        return "never" if v is None else f"{v:.0f} ms"
    lines = [
        "# Update herd: N phones re-fetch at once after one save",
        "",
        f"- Command: `python3 bench/herd.py` (from the repository root); date {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        f"- Machine: 2 cores, shared (load average {os.getloadavg()[0]:.2f} at the end); file limit raised to {limit}",
        "- Rig: one Mosquitto (set_tcp_nodelay), the release service with default flags (rate limiting on), "
        "`examples/herd.rs`: each device its own MQTT 3.1.1 connection subscribed to `connectors/ios/next` "
        "(retained) and its reply topic; one save of `smart-home/thermostat.ts`; replies are the ios/next bundle.",
        "",
        "| devices | updated | lost | rate-limited | errors | save → first manifest | → 50 % | → 99 % | → 100 % "
        "| broker CPU, herd | service CPU, herd | broker CPU, connects + herd | service peak RSS | overloaded_total |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['devices']} | {r['updated']} | {r['lost']} | {r['rate_limited']} | {r['errors']} "
            f"| {ms(r['first_manifest_ms'])} | {ms(r['updated_p50_ms'])} | {ms(r['updated_p99_ms'])} "
            f"| {ms(r['updated_p100_ms'])} | {r['broker_herd_ms']:.0f} ms | {r['service_herd_ms']:.0f} ms "
            f"| {r['broker_cpu_s']} s | {r['service_peak_rss_mib']} MiB | {', '.join(r['overloaded']) or 'n/a'} |")
    if poll:
        push = next((r for r in rows if r["devices"] == poll["devices"]), None)
        lines += [
            "",
            f"Side by side with the poll model of the replaced system, run live: {poll['devices']} phones asking the "
            f"NestJS peer every {poll['period_s']:.0f} s, spread evenly; after one and a half periods a save is "
            "marked and each phone's next answer timed.",
            "",
            "| model | devices | mean time to the new code | p99 | 100 % | requests/s while nothing changes |",
            "|---|---:|---:|---:|---:|---:|",
            f"| poll every {poll['period_s']:.0f} s (NestJS peer) | {poll['devices']} | {poll['mean_ms'] / 1000:.1f} s "
            f"| {poll['p99_ms'] / 1000:.1f} s | {poll['p100_ms'] / 1000:.1f} s | {poll['idle_rps']:.1f} |",
        ]
        if push:
            lines.append(f"| push (connector-scripts) | {push['devices']} | {push['updated_p50_ms'] / 1000:.2f} s (p50) "
                         f"| {push['updated_p99_ms'] / 1000:.2f} s | {push['updated_p100_ms'] / 1000:.2f} s | 0 |")
    if len(rows) > 1:
        a, b = rows[0], rows[-1]
        lines += ["", f"Growth from {a['devices']} to {b['devices']} devices ({b['devices'] / a['devices']:.1f}x): "
                  f"broker CPU in the herd {b['broker_herd_ms'] / max(a['broker_herd_ms'], 1e-9):.2f}x, service CPU "
                  f"{b['service_herd_ms'] / max(a['service_herd_ms'], 1e-9):.2f}x, time to 99 % "
                  f"{(b['updated_p99_ms'] or 0) / max(a['updated_p99_ms'] or 1, 1e-9):.2f}x; broker CPU per device "
                  f"in the herd {a['broker_herd_ms'] * 1000 / a['devices']:.0f} µs and "
                  f"{b['broker_herd_ms'] * 1000 / b['devices']:.0f} µs."]
    if fetched:
        full = fetched[0]["bytes_per_device"] or 1
        lines += [
            "",
            f"## Bytes per update: {fetched[0]['devices']} phones, 1 connector of 10 changed",
            "",
            "Broker egress per device from the save on (the push and the reply, PUBLISH packets as sent), on "
            "ios/next with 10 connectors (source maps on), one save of `smart-home/thermostat.ts`; the service "
            "signs (every reply carries the signed manifest, as in production). `full` devices follow the retained "
            "manifest as today's apps do; the delta modes follow the signed revision notice, as `clients/js` does.",
            "",
            "| re-fetch | updated | lost | bytes per device | of which push | vs full | → 100 % | broker CPU, herd "
            "| service CPU, herd |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in fetched:
            b = r["bytes_per_device"] or 0
            lines.append(f"| {r['fetch']} | {r['updated']} | {r['lost']} | {b:,.0f} | "
                         f"{r.get('push_bytes_per_device') or 0:,.0f} | {full / max(b, 1):.1f}x fewer "
                         f"| {ms(r['updated_p100_ms'])} | {r['broker_herd_ms']:.0f} ms | {r['service_herd_ms']:.0f} ms |")
    lines += ["", "Raw lines:", "", "```"] + [json.dumps(r) for r in rows + fetched] + ["```", ""]
    return "\n".join(lines)


def main():
    limit = raise_file_limit()
    paths = cargo_artifacts(("--bin", "connector-scripts", "--example", "herd"), profile="release")
    rows = []
    for n in SIZES:
        log(f"== herd with {n} devices")
        r = one_size(paths, n)
        log(json.dumps(r))
        rows.append(r)
    poll = None
    if POLL_DEVICES:
        log(f"== poll model: {POLL_DEVICES} devices every {POLL_S} s against the NestJS peer ({2.5 * POLL_S:.0f} s)")
        poll = poll_model(paths, POLL_DEVICES)
        log(json.dumps(poll))
    fetched = []
    if FETCH_DEVICES:
        for mode in FETCH_MODES:
            log(f"== bytes per update: {FETCH_DEVICES} devices, re-fetch {mode}")
            r = one_size(paths, FETCH_DEVICES, fetch=mode, copies=True)
            log(json.dumps(r))
            fetched.append(r)
    text = render(rows, limit, poll, fetched)
    print(text)
    if OUT:
        with open(os.path.join(ROOT, OUT), "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
