#!/usr/bin/python3
"""Writes OUT/report.md (and OUT/charts/*.png) from a load-test output dir.

Usage: report.py OUT_DIR      (loadtest.py calls it at the end of a run)

Every figure comes from OUT/results.jsonl, OUT/machine.json and the cells'
samples; sections follow the published gateway load-test report.
"""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from harness import payloads, profiles  # noqa: E402
from reporting import changelog, charts, findings, tables, targets  # noqa: E402
from reporting.data import Run, title  # noqa: E402
from reporting.fmt import table  # noqa: E402


def append_changelog(out_dir, note):
    changelog.append(Run(out_dir), note)


def _environment(run):
    m, o = run.machine, run.options
    rows = [["CPU", f"{m.get('cpu_model')}, {m.get('cores')} cores"],
            ["Memory", f"{m.get('memory_gib')} GiB"],
            ["OS / kernel", f"{m.get('os')} / {m.get('kernel')}"],
            ["Compiler", m.get("compiler")],
            ["libpolicyexec", f"{m.get('libpolicyexec')}, build type "
                              f"{m.get('build_type') or 'unknown (no CMake cache)'}"],
            ["Python (embedded by the workers)", m.get("python")],
            ["nginx (echo backend, reverse-proxy anchor)", m.get("nginx")],
            ["wrk", m.get("wrk")],
            ["gnuplot", m.get("gnuplot")]]
    setup = [["Run started", m.get("date")],
             ["Warm-up (discarded) / measured", f"{o.get('warmup')} s / {o.get('duration')} s per cell"
              + (f", measured run capped at {o.get('max_requests')} responses"
                 if o.get("max_requests") else "")],
             ["Gateway threads (= nginx proxy workers)", o.get("gateway_threads")],
             ["Python workers", o.get("py_workers")],
             ["Gateway scheduling policy", "normal (--no-sched-batch)" if o.get("no_sched_batch")
              else "SCHED_BATCH (sample config)"],
             ["wrk threads", f"{o.get('wrk_threads')} (at most one per connection)"],
             ["Echo backend", f"nginx + echo module, {o.get('backend_workers')} worker process(es)"],
             ["Resource sampling", f"every {o.get('sample_interval')} s from /proc"],
             ["Idle CPUs", o.get("cpu_idle", "not recorded")],
             ["Everything on", "one machine, 127.0.0.1; client, proxy and backend share the cores"]]
    return (table(["Property", "Value"], rows, numeric=False) + "\n\n"
            + table(["Setting", "Value"], setup, numeric=False))


def _profiles(run):
    rows = []
    for p in profiles.ORDER + profiles.EXTRA:
        spec = profiles.PROFILES[p]
        chain = " → ".join(s["name"] for s in spec["policies"]) if spec["policies"] else "—"
        rows.append([f"`{p}`", spec["title"], spec["what"], chain])
    return table(["Profile", "Name", "Path", "Chain (versions 1.0.0)"], rows, numeric=False)


def _charts(made):
    if not made:
        return "_No chart rendered (gnuplot missing, or no cell ran)._"
    return "\n\n".join(f"**{cap}**\n\n![{cap}]({path})" for cap, path in made)


def _command(run):
    argv = run.options.get("argv")
    if not argv:
        return "bench/loadtest/run.sh"
    return "bench/loadtest/run.sh " + " ".join(argv)


def build(run):
    made = charts.render(run)
    peak = run.peak_concurrency
    size = run.sweep_payload
    m = run.machine
    parts = [
        f"# libpolicyexec gateway load test — {m.get('date', '')[:10]}",
        "",
        "Reproduces the matrix of the published gateway executor load test "
        "(`shared/reference/gateway-executor-load-test-report.txt`) on the reference gateway "
        "(`examples/gateway`): every profile × concurrency "
        f"{', '.join(map(str, run.concurrency))} at {size} B"
        + (f", plus {', '.join(payloads.label(s) for s in run.extra_payloads)} at concurrency "
           f"{', '.join(map(str, run.extra_concurrency))}"
           if run.extra_payloads else "")
        + ". Each cell starts fresh processes, creates the API through the admin API, "
        "discards a warm-up, then measures with wrk while a sampler reads CPU and RSS from "
        "/proc. Every response is validated by `validate.lua`.",
        "",
        "## Contents", "",
        "1. Targets check  2. Test environment  3. Profiles  4. Results (baseline latency, "
        "concurrency scaling, tail latency, throughput, overhead ratio, payload impact, "
        "resource usage, request volume, latency distribution)  5. Accuracy  6. Charts  "
        "7. Cells not run  8. Scripts  9. Changelog",
        "",
        "## 1. Targets check", "",
        tables.targets(targets.check(run)),
        "",
        tables.disturbed(run),
        "",
        "### Key findings", "",
        findings.markdown(run),
        "",
        "## 2. Test environment", "",
        _environment(run),
        "",
        "## 3. Profiles", "",
        _profiles(run),
        "",
        "Policy profiles expect `x-sample-policy-phase: response-header` and the body "
        "`[sample-response-body][sample-request-body]` + payload; the others expect no such "
        "header and the payload unchanged.",
        "",
        "## 4. Results", "",
        "Latency is wrk's per-request latency from its own distribution (ms); TPS is "
        "completed requests per measured second.",
        "",
        "**Reading the latencies.** wrk corrects its histogram for coordinated omission "
        "before reporting it: for every request slower than twice the mean request "
        "interval it adds synthetic samples. With sub-millisecond requests on a 2-core "
        "machine shared by client, proxy, workers and backend, each scheduler stall of a few "
        "ms adds hundreds of samples, which raises wrk's mean and upper percentiles well above "
        "what any single request took. The column **c / TPS** is the correction-free mean "
        "(Little's law: each of the c connections always has one request in flight, so it "
        "is the mean time per request including the client's own turnaround); compare "
        "profiles on it for the average cost, and on wrk's percentiles for the tail.",
        "",
        f"### 4.1 Baseline latency — concurrency 1, {size} B", "",
        tables.baseline(run),
        "",
        f"### 4.2 Concurrency scaling — mean latency ({size} B)", "",
        tables.mean_latency(run),
        "",
        f"Correction-free mean latency, c / TPS ({size} B):",
        "",
        tables.little_latency(run),
        "",
        f"### 4.3 Tail latency — P99 ({size} B)", "",
        tables.tail_latency(run),
        "",
        f"### 4.4 Throughput ({size} B)", "",
        tables.throughput(run),
        "",
        f"### 4.5 Overhead ratio vs no-policies ({size} B)", "",
        "Each profile's mean latency (c / TPS, so also the inverse throughput ratio) and wrk's "
        "P99 as multiples of the no-policies gateway's; the nginx columns compare the plain "
        "reverse proxy the same way.",
        "",
        tables.overhead(run),
        "",
        f"### 4.6 Payload size impact — concurrency {run.extra_concurrency[0]}", "",
        tables.payload_impact(run, run.extra_concurrency[0]),
        "",
        f"### 4.7 Resource usage ({size} B)", "",
        "Mean CPU % of one core over the measured run, and peak RSS in MB: the proxy "
        "under test (gateway process, or nginx master + workers) + the Python workers "
        "(summed; `+ n` appears only where workers exist).",
        "",
        tables.resource_usage(run),
        "",
        "RSS of every gateway cell, gateway and each worker (first / last / max over the "
        "measured run):",
        "",
        tables.memory_detail(run),
        "",
        "Where the CPU went in each measured run (mean % of one core; the machine has "
        f"{m.get('cores')} cores, so {100 * (m.get('cores') or 1)} is all of it). **Other** is "
        "what none of the run's processes used: other work on the machine competing with "
        "the run; a cell with a large share there is disturbed.",
        "",
        tables.cpu_budget(run),
        "",
        f"### 4.8 Total request volume ({size} B, measured runs)", "",
        tables.request_volume(run),
        "",
        f"### 4.9 Latency distribution at peak load (c={peak})", "",
        "See the chart in section 6.",
        "",
        "## 5. Accuracy", "",
        tables.accuracy(run),
        "",
        "## 6. Charts", "",
        _charts(made),
        "",
        "## 7. Cells not run", "",
        tables.not_run(run),
        "",
        "## 8. Scripts", "",
        "```sh",
        "bench/loadtest/setup.sh                 # wrk, nginx + echo module, gnuplot (once)",
        _command(run) + "   # this run",
        "bench/loadtest/run.sh --smoke           # a few seconds per cell",
        "bench/loadtest/report.py OUT_DIR        # rebuild this report from a run's results",
        "```",
        "",
        "Per-cell logs, configs, wrk output and resource samples: `cells/<profile>_<bytes>B_c<n>/`; "
        "machine-readable results: `results.jsonl`.",
        "",
        "## 9. Changelog", "",
        _demote(changelog.read()) or "_No entry yet._",
        "",
    ]
    return "\n".join(parts)


def _demote(markdown):
    """Include CHANGELOG.md under this report's heading: drop its title."""
    lines = markdown.splitlines()
    if lines and lines[0].startswith("# "):
        lines = lines[1:]
    return "\n".join(lines).strip()


def write(out_dir):
    run = Run(out_dir)
    path = os.path.join(out_dir, "report.md")
    with open(path, "w") as f:
        f.write(build(run))
    return path


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    print(write(sys.argv[1]))
