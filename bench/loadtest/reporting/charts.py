"""Writes the charts' data files and renders them with gnuplot (PNG).

Returns [(caption, relative png path)] for the report. Without gnuplot the
data files are still written and the report says the charts are missing.
"""
import os
import shutil
import subprocess

from harness import resources
from .data import is_gateway

CHARTS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "charts")


def _value(v):
    return "?" if v is None else f"{v}"


def _gnuplot(script, out_dir, **variables):
    """Run charts/<script> with string/number variables set by -e."""
    if not shutil.which("gnuplot"):
        return False
    defs = "; ".join(f"{k}='{v}'" if isinstance(v, str) else f"{k}={v}"
                     for k, v in variables.items())
    r = subprocess.run(["gnuplot", "-e", defs, os.path.join(CHARTS, script)],
                       cwd=out_dir, capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        # A chart that cannot be drawn must not cost the report: say why.
        print(f"report: gnuplot {script} failed: {r.stderr.strip()[-300:]}")
        return False
    return True


def _write(path, header, rows):
    with open(path, "w") as f:
        f.write(" ".join(header) + "\n")
        for row in rows:
            f.write(" ".join(_value(v) for v in row) + "\n")


def render(run):
    out = os.path.join(run.out, "charts")
    os.makedirs(out, exist_ok=True)
    made = []
    size = run.sweep_payload

    def sweep(key, fname, chart_title, ylabel, logy):
        def value(r):
            return r["tps"] if key == "tps" else r["latency_ms"].get(key)
        rows = [[c] + [value(r) if (r := run.ok(p, size, c)) else None for p in run.profiles]
                for c in run.concurrency]
        if all(v is None for row in rows for v in row[1:]):
            return  # no cell of the sweep ran: nothing to draw
        dat = os.path.join(out, fname + ".dat")
        _write(dat, ["concurrency"] + run.profiles, rows)
        if _gnuplot("by_concurrency.gp", out, datafile=dat, outfile=os.path.join(out, fname + ".png"),
                    chart_title=chart_title, ylabel=ylabel, logy=int(logy)):
            made.append((chart_title, f"charts/{fname}.png"))

    if run.concurrency:
        sweep("mean", "latency_mean", f"Mean latency vs concurrency ({size} B)",
              "mean latency (ms, log scale)", True)
        sweep("little_mean", "latency_little", f"Correction-free mean latency, c / TPS ({size} B)",
              "c / TPS (ms, log scale)", True)
        sweep("p99", "latency_p99", f"P99 latency vs concurrency ({size} B)",
              "p99 latency (ms, log scale)", True)
        sweep("tps", "throughput", f"Throughput vs concurrency ({size} B)",
              "requests per second", False)

    peak = run.peak_concurrency
    if peak is not None:
        dists = {p: dict((pt, v) for pt, v in r["latency_distribution_ms"])
                 for p in run.profiles if (r := run.ok(p, size, peak))}
        if dists:
            pcts = sorted({pt for d in dists.values() for pt in d if pt < 100})
            rows = [[pt] + [dists.get(p, {}).get(pt) for p in run.profiles] for pt in pcts]
            dat = os.path.join(out, "latency_distribution.dat")
            _write(dat, ["percentile"] + run.profiles, rows)
            fname = os.path.join(out, "latency_distribution.png")
            caption = f"Latency distribution at c={peak} ({size} B)"
            if _gnuplot("latency_distribution.gp", out, datafile=dat, outfile=fname,
                        chart_title=caption):
                made.append((caption, "charts/latency_distribution.png"))

        for p in run.profiles:
            r = run.ok(p, size, peak)
            if not r or p == "no-gateway":
                continue
            made += _resources_chart(run, r, out)
    return made


def _resources_chart(run, rec, out):
    samples = os.path.join(run.out, "cells", rec["cell"], "samples.csv")
    if not os.path.exists(samples):
        return []
    rows = resources.load(samples)
    line = resources.timeline(rows)
    if not line:
        return []
    name = f"resources_{rec['cell']}"
    dat = os.path.join(out, name + ".dat")
    _write(dat, ["seconds", "gateway_cpu", "gateway_rss_mb", "workers_cpu", "workers_rss_mb",
                 "backend_cpu", "machine_cpu"], line)
    what = "nginx proxy" if not is_gateway(rec["profile"]) else "gateway"
    caption = (f"Resources over time — {rec['profile']} {rec['payload']}, c={rec['concurrency']} "
               f"({what}; shaded: warm-up)")
    # The sampler starts before the warm-up: shade up to the measured start.
    t_first = min(r["time_s"] for r in rows)
    t_warm = max(0.0, min(rec.get("started_epoch", t_first) - t_first, line[-1][0]))
    if _gnuplot("resources_over_time.gp", out, datafile=dat,
                outfile=os.path.join(out, name + ".png"), chart_title=caption, t_warm=t_warm):
        return [(caption, f"charts/{name}.png")]
    return []
