"""Reads the sampler's CSV (sample_resources.py) into per-cell figures.

Groups: "gateway" is the proxy under test without its Python workers (the
gateway process, or nginx master + workers for the anchor); "workers" are the
policyexec-pyworker children, each kept apart (RSS per worker); "backend" is
the echo nginx; "machine" is the whole machine's CPU. Only rounds inside the measured wrk window count, so start-up
and warm-up growth do not show as drift.
"""
import csv

WORKER_NAME = "policyexec-pyworker"


def load(path):
    rows = []
    with open(path) as f:
        for r in csv.DictReader(f):
            r["tick"] = int(r["tick"])
            r["time_s"] = float(r["time_s"])
            r["pid"] = int(r["pid"])
            r["cpu_pct"] = float(r["cpu_pct"]) if r["cpu_pct"] else None
            r["rss_kb"] = int(r["rss_kb"])
            r["group"] = group_of(r)
            rows.append(r)
    return rows


def group_of(row):
    if row["role"] in ("backend", "machine"):
        return row["role"]
    if row["name"].startswith(WORKER_NAME):
        return "workers"
    return "gateway"


def rounds(rows, t0=None, t1=None):
    """{tick: [rows]} of the rounds whose time lies in [t0, t1]."""
    out = {}
    for r in rows:
        if (t0 is None or r["time_s"] >= t0) and (t1 is None or r["time_s"] <= t1):
            out.setdefault(r["tick"], []).append(r)
    return dict(sorted(out.items()))


def _stats(values):
    values = [v for v in values if v is not None]
    if not values:
        return None
    return {"first": values[0], "last": values[-1], "max": max(values),
            "mean": round(sum(values) / len(values), 1)}


def summarize(rows, t0, t1):
    """CPU % (mean, max of the per-round sums) and RSS in MB (first, last,
    max) per group, and per worker process."""
    per_round = rounds(rows, t0, t1)
    out = {"samples": len(per_round)}
    for group in ("gateway", "workers", "backend", "machine"):
        cpu, rss = [], []
        for rs in per_round.values():
            members = [r for r in rs if r["group"] == group]
            if not members:
                continue
            cpus = [r["cpu_pct"] for r in members if r["cpu_pct"] is not None]
            cpu.append(round(sum(cpus), 1) if cpus else None)
            rss.append(round(sum(r["rss_kb"] for r in members) / 1024, 1))
        c = _stats(cpu)
        out[group] = {"cpu_pct_mean": c["mean"] if c else None,
                      "cpu_pct_max": c["max"] if c else None,
                      "rss_mb": _stats(rss)}
    workers = {}
    for rs in per_round.values():
        for r in rs:
            if r["group"] == "workers":
                workers.setdefault(r["pid"], {"cpu": [], "rss": []})
                workers[r["pid"]]["cpu"].append(r["cpu_pct"])
                workers[r["pid"]]["rss"].append(round(r["rss_kb"] / 1024, 1))
    # RSS of one nginx worker process (mean over the workers of a round): what
    # the policyexec module adds per worker, beside the plain nginx anchor.
    ngx = [round(sum(m) / len(m) / 1024, 1) for m in
           ([r["rss_kb"] for r in rs if r["group"] == "gateway" and
             r["name"].startswith("nginx: worker")] for rs in per_round.values()) if m]
    out["nginx_worker_rss_mb"] = _stats(ngx)
    out["worker_list"] = [
        {"pid": pid, "cpu_pct_mean": (_stats(w["cpu"]) or {}).get("mean"),
         "rss_mb": _stats(w["rss"])}
        for pid, w in sorted(workers.items())]
    return out


def timeline(rows):
    """[(seconds since first round, gateway cpu %, gateway RSS MB,
    workers cpu % (sum), workers RSS MB (sum), backend cpu %, machine cpu %)]
    per round."""
    per_round = rounds(rows)
    if not per_round:
        return []
    t_first = min(r["time_s"] for r in next(iter(per_round.values())))
    out = []
    for rs in per_round.values():
        def total(group, key):
            vals = [r[key] for r in rs if r["group"] == group and r[key] is not None]
            return sum(vals) if vals else None
        g_rss, w_rss = total("gateway", "rss_kb"), total("workers", "rss_kb")
        out.append((round(min(r["time_s"] for r in rs) - t_first, 2),
                    total("gateway", "cpu_pct"),
                    round(g_rss / 1024, 2) if g_rss is not None else None,
                    total("workers", "cpu_pct"),
                    round(w_rss / 1024, 2) if w_rss is not None else None,
                    total("backend", "cpu_pct"),
                    total("machine", "cpu_pct")))
    return out
