#!/usr/bin/python3
"""Load test of libpolicyexec's reference gateway: the published report's
matrix (profiles x concurrency at 50 B, plus 1 KiB at concurrency 1), each
cell on fresh processes, every response validated, resources sampled.

Writes into --out: results.jsonl (one JSON object per cell, appended as each
cell ends), machine.json, run.json (the options), cells/<cell>/ (configs,
logs, wrk output, samples.csv), then report.md + charts/ (report.py).

Exit status: 0 when every cell ran (cells whose gateway binary is missing are
reported as skipped unless --require-all), 1 when a cell failed or, with
--require-accuracy, a cell was not 100 % accurate; 2 for bad usage.
"""
import argparse
import atexit
import json
import os
import signal
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from harness import (cell, cpu_awake, gateway, machine, nginx, payloads, procs,  # noqa: E402
                     profiles, wrk_run)
import report  # noqa: E402

SOURCE_DIR = os.path.dirname(os.path.dirname(HERE))


def csv_ints(text):
    return [int(x) for x in text.split(",") if x.strip()]


def parse_args(argv):
    ap = argparse.ArgumentParser(prog="bench/loadtest/run.sh", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--out", help="output directory (default build/loadtest/<date-time>)")
    ap.add_argument("--build-dir", default=os.environ.get("BUILD", os.path.join(SOURCE_DIR, "build")),
                    help="CMake build dir with bin/policyexec-gateway (env BUILD)")
    ap.add_argument("--profiles", default=",".join(profiles.ORDER),
                    help="comma list of " + ", ".join(profiles.ORDER + profiles.EXTRA))
    ap.add_argument("--concurrency", default="1,2,5,10", help="levels swept at --payload")
    ap.add_argument("--payload", type=int, default=50, help="bytes of the swept payload")
    ap.add_argument("--extra-payloads", default="1024",
                    help="other payload sizes (bytes), run at --extra-concurrency only")
    ap.add_argument("--extra-concurrency", default="1")
    # wrk takes whole seconds.
    ap.add_argument("--warmup", type=int, default=15, help="seconds, discarded (0 = none)")
    ap.add_argument("--duration", type=int, default=60, help="measured seconds per cell")
    ap.add_argument("--smoke", action="store_true", help="short cells: --warmup 1 --duration 3")
    ap.add_argument("--max-requests", type=int, default=0,
                    help="end each measured run after this many responses (0 = by duration)")
    ap.add_argument("--wrk-threads", type=int, default=2)
    ap.add_argument("--gateway-threads", type=int, default=2,
                    help="gateway threads = nginx proxy worker processes")
    ap.add_argument("--backend-workers", type=int, default=1, help="echo nginx worker processes")
    ap.add_argument("--py-workers", type=int, default=2, help="policyexec-pyworker processes")
    ap.add_argument("--py-timeout-ms", type=int, default=1000)
    ap.add_argument("--no-sched-batch", action="store_true",
                    help="run the gateway and its workers under the normal scheduling policy "
                         "instead of SCHED_BATCH (the sample config's choice)")
    ap.add_argument("--allow-cpu-idle", action="store_true",
                    help="do not hold /dev/cpu_dma_latency at 0 (idle vCPUs then halt, and "
                         "their wake-up time shows in low-concurrency figures)")
    ap.add_argument("--sample-interval", type=float, default=1.0, help="seconds between samples")
    ap.add_argument("--require-all", action="store_true",
                    help="a cell that cannot run (gateway not built) is a failure")
    ap.add_argument("--require-accuracy", action="store_true",
                    help="exit 1 unless every cell is 100 %% accurate")
    ap.add_argument("--changelog", metavar="NOTE",
                    help="append a dated entry with this note and the run's c=10 figures "
                         "to bench/loadtest/CHANGELOG.md")
    ap.add_argument("--no-report", action="store_true")
    args = ap.parse_args(argv)
    if args.smoke:
        args.warmup, args.duration = 1, 3
    args.profiles = [p.strip() for p in args.profiles.split(",") if p.strip()]
    unknown = [p for p in args.profiles if p not in profiles.PROFILES]
    if unknown:
        ap.error(f"unknown profiles {unknown}")
    args.concurrency = csv_ints(args.concurrency)
    args.extra_payloads = csv_ints(args.extra_payloads)
    args.extra_concurrency = csv_ints(args.extra_concurrency)
    if args.duration <= 0 or args.warmup < 0 or args.duration > 3600 or args.warmup > 3600:
        ap.error("durations must be bounded: 0 < --duration <= 3600, 0 <= --warmup <= 3600")
    args.build_dir = os.path.abspath(args.build_dir)
    args.source_dir = SOURCE_DIR
    if not args.out:
        args.out = os.path.join(SOURCE_DIR, "build", "loadtest", time.strftime("%Y-%m-%d-%H%M%S"))
    args.out = os.path.abspath(args.out)
    return args


def matrix(args):
    """(profile, payload, concurrency) in run order: by load level, then
    profile, so slow drift of the machine spreads over all profiles."""
    levels = [(args.payload, c) for c in args.concurrency]
    levels += [(size, c) for size in args.extra_payloads for c in args.extra_concurrency]
    return [(p, size, c) for size, c in levels for p in args.profiles]


def tools_missing():
    missing = []
    if not wrk_run.wrk_binary():
        missing.append("wrk")
    if not nginx.nginx_binary():
        missing.append("nginx")
    if not nginx.echo_module():
        missing.append("libnginx-mod-http-echo")
    return missing


def main(argv):
    args = parse_args(argv)
    missing = tools_missing()
    if missing:
        print(f"loadtest: missing {', '.join(missing)}; run bench/loadtest/setup.sh", file=sys.stderr)
        return 77
    os.makedirs(os.path.join(args.out, "cells"), exist_ok=True)

    # Whatever happens (error, Ctrl-C, SIGTERM), stop every process we started.
    atexit.register(procs.stop_all)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    awake_fd, args.cpu_idle = (None, "idle allowed (--allow-cpu-idle)") if args.allow_cpu_idle \
        else cpu_awake.keep_awake()
    atexit.register(cpu_awake.release, awake_fd)
    print(f"loadtest: CPUs {args.cpu_idle}", flush=True)

    for size in {args.payload, *args.extra_payloads}:
        payloads.write(args.out, size)
    with open(os.path.join(args.out, "machine.json"), "w") as f:
        json.dump(machine.describe(args.build_dir, args.source_dir), f, indent=2)
    with open(os.path.join(args.out, "run.json"), "w") as f:
        json.dump(dict(vars(args), argv=argv), f, indent=2)

    gateway_missing = gateway.missing(args.build_dir, args.source_dir)
    module_missing = gateway_missing + [
        f for f in [nginx.module_paths(args.build_dir)["module"]] if not os.path.exists(f)]
    cells = matrix(args)
    # ~3 s per cell to start and stop processes, on top of the two wrk runs.
    eta_min = len(cells) * (args.warmup + args.duration + 3) / 60
    print(f"loadtest: {len(cells)} cells, warm-up {args.warmup} s + measured {args.duration} s each, "
          f"about {eta_min:.0f} min; output {args.out}", flush=True)
    results_path = os.path.join(args.out, "results.jsonl")
    open(results_path, "w").close()  # a rerun into the same dir starts afresh
    failed = 0
    all_records = []
    for i, (profile, size, conc) in enumerate(cells, 1):
        name = f"{profile}_{size}B_c{conc}"
        label = f"[{i}/{len(cells)}] {profile:12} {payloads.label(size):>6} c={conc:<3}"
        kind = profiles.PROFILES[profile]["kind"]
        lacking = {"gateway": gateway_missing, "nginx-module": module_missing}.get(kind)
        if lacking:
            rec = {"profile": profile, "payload_bytes": size, "payload": payloads.label(size),
                   "concurrency": conc, "status": "skipped",
                   "error": "not built: " + ", ".join(lacking)}
            print(f"{label} skipped ({rec['error']})", flush=True)
            failed += args.require_all
        else:
            print(f"{label} ...", end=" ", flush=True)
            rec = cell.run(args, profile, size, conc, os.path.join(args.out, "cells", name))
            if rec["status"] == "ok":
                print(f"{rec['tps']:>10.1f} req/s  p50 {rec['latency_ms']['p50']:.3f} ms  "
                      f"p99 {rec['latency_ms']['p99']:.3f} ms  {rec['requests']} requests  "
                      f"accuracy {rec['accuracy_pct']} %", flush=True)
                if args.require_accuracy and rec["accuracy_pct"] != 100.0:
                    print(f"    first failure: {rec['first_failure']}", flush=True)
                    failed += 1
            else:
                print(f"FAILED: {rec['error']}", flush=True)
                failed += 1
        rec["cell"] = name
        all_records.append(rec)
        with open(results_path, "a") as f:
            f.write(json.dumps(rec) + "\n")

    counts = {s: sum(1 for r in all_records if r["status"] == s) for s in ("ok", "skipped", "error")}
    print(f"loadtest: {len(cells)} cells: {counts['ok']} ran, {counts['skipped']} skipped, "
          f"{counts['error']} failed; {failed} counted as failures; results in {args.out}")
    if args.changelog:
        report.append_changelog(args.out, args.changelog)
    if not args.no_report:
        path = report.write(args.out)
        print(f"report: {path}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
