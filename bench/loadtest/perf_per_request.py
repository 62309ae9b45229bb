#!/usr/bin/python3
"""Where the proxy's CPU goes per request, by library: perf samples of the
proxy's processes during a load-test cell, divided by the requests served.

cpu_per_request.py says how much CPU a proxy spends per request; callgrind
(bench/nginx/callgrind_per_request.py) counts the instructions of one
request on an idle machine. Neither shows time lost to caches that another
process (a Python worker on the same CPU) left cold. This runs one cell per
profile (bench/loadtest/run.sh, c = 10, 50 B unless told), attaches
`perf record` to the proxy (the module profiles' nginx workers, the plain
anchor's, or the gateway) once the measured wrk run has started, and prints
microseconds per request for each DSO (the kernel as one line).

  bench/loadtest/perf_per_request.py --build-dir build \\
      --profiles nginx-proxy,ngx-native-4,ngx-python-4,native-4,python-4 [--seconds 8]

Sampling costs the proxy a few per cent of throughput; the requests counted
are the cell's own TPS times the sampled seconds.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from harness import profiles as profile_table  # noqa: E402

FREQ = 2000  # samples per second and CPU


def pids_of_proxy(kind):
    """The processes that serve the proxy's requests (not its Python workers)."""
    out = subprocess.run(["ps", "-eo", "pid=,ppid=,args="], capture_output=True, text=True).stdout
    rows = [line.split(None, 2) for line in out.splitlines() if line.strip()]
    if kind == "gateway":
        return [int(p) for p, _, args in rows if args.split()[0].endswith("policyexec-gateway")]
    masters = {p for p, _, args in rows if "nginx" in args and "/proxy/nginx.conf" in args}
    return [int(p) for p, pp, args in rows if pp in masters and "nginx: worker" in args]


def wait_measured_wrk(cell, duration, timeout=120):
    """Waits for the cell's measured wrk run: the one with -d<duration>s (the
    warm-up runs with its own, shorter, duration)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cell.poll() is not None:
            raise SystemExit(f"the load test ended early (rc {cell.returncode})")
        if subprocess.run(["pgrep", "-f", f"^\\S*wrk .*-d{duration}s"],
                          capture_output=True).returncode == 0:
            return
        time.sleep(0.05)
    raise SystemExit("no measured wrk run seen")


def by_dso(data):
    out = subprocess.run(["perf", "report", "-i", data, "--no-children", "--sort", "dso",
                          "-F", "sample,dso", "--stdio", "-g", "none"],
                         capture_output=True, text=True).stdout
    rows = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 2 and not line.startswith("#") and parts[0].isdigit():
            rows[parts[1]] = rows.get(parts[1], 0) + int(parts[0])
    return rows


def one(args, profile, work):
    kind = profile_table.PROFILES[profile]["kind"]
    kind = "gateway" if kind == "gateway" else "nginx"
    out = os.path.join(work, profile)
    duration = args.seconds + 4
    cell = subprocess.Popen(
        [os.path.join(HERE, "run.sh"), "--build-dir", args.build_dir, "--out", out, "--profiles",
         profile, "--concurrency", str(args.concurrency), "--payload", str(args.payload),
         "--extra-payloads", "", "--warmup", "2", "--duration", str(duration),
         "--require-accuracy", "--no-report"] + (["--no-sched-batch"] if args.no_sched_batch
                                                  else []),
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        wait_measured_wrk(cell, duration)
        time.sleep(1.0)
        pids = pids_of_proxy(kind)
        if not pids:
            raise SystemExit(f"{profile}: no proxy process found")
        data = os.path.join(work, f"{profile}.perf.data")
        subprocess.run(["perf", "record", "-q", "-F", str(FREQ), "-o", data, "-p",
                        ",".join(map(str, pids)), "--", "sleep", str(args.seconds)],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    finally:
        if cell.wait(timeout=300) != 0:
            raise SystemExit(f"{profile}: the load test failed; see {out}")
    with open(os.path.join(out, "results.jsonl")) as f:
        tps = json.loads(f.readline())["tps"]
    per_sample_us = 1e6 / FREQ
    requests = tps * args.seconds
    return tps, {dso: n * per_sample_us / requests for dso, n in by_dso(data).items()}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build-dir", required=True)
    ap.add_argument("--profiles", default="nginx-proxy,ngx-native-4,ngx-python-4,native-4,python-4")
    ap.add_argument("--seconds", type=int, default=8, help="sampled seconds per cell")
    ap.add_argument("--concurrency", type=int, default=10)
    ap.add_argument("--payload", type=int, default=50)
    ap.add_argument("--no-sched-batch", action="store_true")
    ap.add_argument("--keep", help="keep the cells and perf data in this directory")
    args = ap.parse_args()
    args.build_dir = os.path.abspath(args.build_dir)
    work = args.keep or tempfile.mkdtemp(prefix="pe-perf-")
    os.makedirs(work, exist_ok=True)
    print("| profile | TPS | proxy µs/req: all | kernel | user | user, by DSO (µs/req) |")
    print("|---|---|---|---|---|---|")
    for profile in args.profiles.split(","):
        tps, dsos = one(args, profile, work)
        kernel = sum(v for k, v in dsos.items() if k.startswith("[kernel"))
        user = {k: v for k, v in dsos.items() if not k.startswith("[kernel")}
        top = ", ".join(f"{k} {v:.2f}" for k, v in sorted(user.items(), key=lambda kv: -kv[1])
                        if v >= 0.05)
        print(f"| {profile} | {tps:,.0f} | {kernel + sum(user.values()):.1f} | {kernel:.1f} | "
              f"{sum(user.values()):.1f} | {top} |", flush=True)


if __name__ == "__main__":
    main()
