#!/usr/bin/env python3
"""bench/signing.py - what signing costs per request: the service unsigned and signed (`--signing-key`), three
rounds alternating, through one Mosquitto, with bench/run.py's load generator and measurements (loaded 4 x 16,
CPU per request from /proc). Prints each round and the paired ratios.

    python3 bench/signing.py            (DURATION=8 by default here; ROUNDS=3)

Signing happens once per revision when a catalog is swapped in; replies stay pre-serialized, so the ratios should
be 1 within the machine's noise.
"""
import os
import statistics
import subprocess
import sys

os.environ.setdefault("DURATION", "8")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run  # noqa: E402


def start(paths, broker, signed):
    http = run.free_port()
    cmd = [paths["connector-scripts"], "serve", "--broker", broker.url, "--http-listen", f"127.0.0.1:{http}",
           "--rate-limit", "0", "--rate-limit-bare", "0", "--rate-limit-global", "0", "--qos-in", "0",
           "--snippets", os.path.join(run.ROOT, "snippets"),
           "--platforms", os.path.join(run.ROOT, "platforms")]
    if signed:
        cmd += ["--signing-key", run.signing_key(paths)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    run.wait(lambda: run.readyz(http), 30, "connector-scripts ready")
    return proc


def main():
    paths = run.cargo_artifacts()
    broker = run.Mosquitto()
    results = {False: [], True: []}
    try:
        for _ in range(run.ROUNDS):
            for signed in (False, True):
                proc = start(paths, broker, signed)
                m = run.measure_responder(paths, broker, "signed" if signed else "unsigned", proc)
                proc.terminate()
                proc.wait()
                results[signed].append(m)
                print(f"{'signed  ' if signed else 'unsigned'} {m['loaded']['rps']:8.0f} req/s "
                      f"{m['cpu_us']:6.2f} µs/request  p99 {m['loaded']['p99_us']} µs", flush=True)
    finally:
        broker.stop()
    med = statistics.median
    for signed in (False, True):
        r = results[signed]
        print(f"{'signed' if signed else 'unsigned'}: median {med(x['loaded']['rps'] for x in r):.0f} req/s, "
              f"{med(x['cpu_us'] for x in r):.2f} µs/request")
    pairs = list(zip(results[True], results[False]))
    print("paired throughput ratio signed/unsigned:", [round(s["loaded"]["rps"] / u["loaded"]["rps"], 3) for s, u in pairs])
    print("paired CPU ratio signed/unsigned:", [round(s["cpu_us"] / u["cpu_us"], 3) for s, u in pairs])


if __name__ == "__main__":
    main()
