"""The published report's tables, from one run's records.

Each function returns Markdown. Latencies are wrk's (per request, client
side), in milliseconds; TPS is completed requests per measured second.
"""
from . import fmt
from .data import is_gateway, title


def _lat(run, profile, size, c, key):
    r = run.ok(profile, size, c)
    return r["latency_ms"].get(key) if r else None


def _tps(run, profile, size, c):
    r = run.ok(profile, size, c)
    return r["tps"] if r else None


def baseline(run, concurrency=1):
    size = run.sweep_payload
    rows = []
    for p in run.profiles:
        r = run.ok(p, size, concurrency)
        lat = r["latency_ms"] if r else {}
        rows.append([title(p)] + [fmt.ms(lat.get(k)) for k in ("mean", "p50", "p95", "p99", "max")]
                    + [fmt.tps(r["tps"] if r else None), fmt.ms(lat.get("little_mean"))])
    return fmt.table(["Profile", "Mean (ms)", "Median (ms)", "P95 (ms)", "P99 (ms)",
                      "Max (ms)", "TPS", "c / TPS (ms)"], rows)


def by_concurrency(run, value, unit):
    """Rows = concurrency levels, columns = profiles."""
    size = run.sweep_payload
    rows = [[c] + [value(p, c) for p in run.profiles] for c in run.concurrency]
    return fmt.table(["Concurrency"] + [f"{title(p)} ({unit})" for p in run.profiles], rows)


def mean_latency(run):
    return by_concurrency(run, lambda p, c: fmt.ms(_lat(run, p, run.sweep_payload, c, "mean")), "ms")


def little_latency(run):
    return by_concurrency(
        run, lambda p, c: fmt.ms(_lat(run, p, run.sweep_payload, c, "little_mean")), "c/TPS ms")


def tail_latency(run):
    return by_concurrency(run, lambda p, c: fmt.ms(_lat(run, p, run.sweep_payload, c, "p99")),
                          "P99 ms")


def throughput(run):
    return by_concurrency(run, lambda p, c: fmt.tps(_tps(run, p, run.sweep_payload, c)), "TPS")


def overhead(run, base="no-policies"):
    """Mean-latency multiplier (c / TPS, correction-free) and P99 multiplier
    (wrk) of each profile relative to the no-policies gateway."""
    size = run.sweep_payload
    others = [p for p in run.profiles if p not in ("no-gateway", base)]
    header = ["Concurrency"]
    for p in others:
        header += [f"{title(p)} mean ×", f"{title(p)} P99 ×"]
    rows = []
    for c in run.concurrency:
        b_mean, b_p99 = _lat(run, base, size, c, "little_mean"), _lat(run, base, size, c, "p99")
        row = [c]
        for p in others:
            mean, p99 = _lat(run, p, size, c, "little_mean"), _lat(run, p, size, c, "p99")
            row.append(fmt.ratio(mean / b_mean) if mean and b_mean else fmt.DASH)
            row.append(fmt.ratio(p99 / b_p99) if p99 and b_p99 else fmt.DASH)
        rows.append(row)
    return fmt.table(header, rows)


def payload_impact(run, concurrency=1):
    if not run.extra_payloads:
        return "_No other payload size was run._"
    small = run.sweep_payload
    blocks = []
    for big in run.extra_payloads:
        rows = []
        for p in run.profiles:
            a = _lat(run, p, small, concurrency, "little_mean")
            b = _lat(run, p, big, concurrency, "little_mean")
            diff = (b - a) if a is not None and b is not None else None
            rows.append([title(p), fmt.ms(a), fmt.ms(b), fmt.signed_ms(diff),
                         fmt.signed_pct(100 * diff / a) if diff is not None and a else fmt.DASH,
                         fmt.tps(_tps(run, p, small, concurrency)),
                         fmt.tps(_tps(run, p, big, concurrency))])
        blocks.append(fmt.table(
            ["Profile", f"{small} B c/TPS (ms)", f"{_label(big)} c/TPS (ms)", "Increase (ms)",
             "Increase (%)", f"{small} B TPS", f"{_label(big)} TPS"], rows))
    return "\n\n".join(blocks)


def _label(size):
    return f"{size // 1024} KiB" if size % 1024 == 0 else f"{size} B"


def resource_usage(run):
    """Mean CPU % and peak RSS of the proxy under test and of the Python
    workers (summed over workers), per concurrency level."""
    size = run.sweep_payload
    profs = [p for p in run.profiles if p != "no-gateway"]
    header = ["Concurrency"] + [f"{title(p)} CPU %" for p in profs] \
        + [f"{title(p)} RSS MB" for p in profs]
    rows = []
    for c in run.concurrency:
        cpu, rss = [], []
        for p in profs:
            r = run.ok(p, size, c)
            g = r["resources"]["gateway"] if r else None
            w = r["resources"]["workers"] if r else None
            cpu.append(_cpu_cell(g, w))
            rss.append(_rss_cell(g, w))
        rows.append([c] + cpu + rss)
    return fmt.table(header, rows)


def _cpu_cell(g, w):
    if not g or g["cpu_pct_mean"] is None:
        return fmt.DASH
    text = f"{g['cpu_pct_mean']:.0f}"
    if w and w["cpu_pct_mean"] is not None:
        text += f" + {w['cpu_pct_mean']:.0f}"
    return text


def _rss_cell(g, w):
    if not g or not g["rss_mb"]:
        return fmt.DASH
    text = fmt.mb(g["rss_mb"]["max"])
    if w and w["rss_mb"]:
        text += f" + {fmt.mb(w['rss_mb']['max'])}"
    return text


def memory_detail(run):
    """RSS first / last / max of the gateway and of each worker, every
    gateway cell (the flatness check reads these)."""
    rows = []
    for r in run.records:
        if r.get("status") != "ok" or not is_gateway(r["profile"]):
            continue
        res = r["resources"]
        g = res["gateway"]["rss_mb"]
        workers = "; ".join(
            f"{w['rss_mb']['first']:.1f} / {w['rss_mb']['last']:.1f} / {w['rss_mb']['max']:.1f}"
            for w in res["worker_list"] if w["rss_mb"]) or fmt.DASH
        rows.append([r["profile"], r["payload"], r["concurrency"], res["samples"],
                     f"{g['first']:.1f} / {g['last']:.1f} / {g['max']:.1f}" if g else fmt.DASH,
                     workers])
    if not rows:
        return "_No gateway cell ran._"
    return fmt.table(["Profile", "Payload", "Concurrency", "Samples",
                      "Gateway RSS MB first / last / max",
                      "Each worker RSS MB first / last / max"], rows)


def cpu_budget(run):
    """Where the machine's CPU went during each measured run (% of one core,
    means): wrk, the proxy under test, the workers, the backend, and what
    remains: other work on the machine, which competed with the run."""
    rows = []
    for r in run.records:
        if r.get("status") != "ok":
            continue
        res = r["resources"]
        if "machine" not in res:
            continue
        rows.append([r["profile"], r["payload"], r["concurrency"],
                     _pct0(res["machine"]["cpu_pct_mean"]), _pct0(res.get("wrk_cpu_pct")),
                     _pct0(res["gateway"]["cpu_pct_mean"]), _pct0(res["workers"]["cpu_pct_mean"]),
                     _pct0(res["backend"]["cpu_pct_mean"]), _pct0(res.get("other_cpu_pct"))])
    if not rows:
        return "_No machine-wide samples in this run._"
    return fmt.table(["Profile", "Payload", "Concurrency", "Machine", "wrk", "Proxy",
                      "Workers", "Backend", "Other"], rows)


DISTURBED_PCT = 25.0  # other work above a quarter of a core: not a clean run


def disturbed(run):
    """One sentence: which cells ran while other work used the machine."""
    ran = [r for r in run.records if r.get("status") == "ok"]
    cells = [r for r in ran if (r["resources"].get("other_cpu_pct") or 0) > DISTURBED_PCT]
    if not ran:
        return ""
    if not cells:
        return (f"No cell saw other work above {DISTURBED_PCT:.0f} % of one core on the "
                "machine during its measured run (section 4.7).")
    worst = max(cells, key=lambda r: r["resources"]["other_cpu_pct"])
    return (f"**Caution:** {len(cells)} of {len(run.records)} cells ran while other work used "
            f"more than {DISTURBED_PCT:.0f} % of one core (worst: {worst['cell']}, "
            f"{worst['resources']['other_cpu_pct']:.0f} %); their figures are lower than the "
            "machine allows. See \"Where the CPU went\" in section 4.7.")


def _pct0(v):
    return fmt.DASH if v is None else f"{v:.0f}"


def request_volume(run):
    size = run.sweep_payload

    def value(p, c):
        r = run.ok(p, size, c)
        return fmt.count(r["requests"] if r else None)
    return by_concurrency(run, value, "requests")


def accuracy(run):
    rows = []
    grand_checked = grand_ok = 0
    sizes = [run.sweep_payload] + run.extra_payloads
    for p in run.profiles:
        for size in sizes:
            recs = [r for r in run.records if r["profile"] == p and r["payload_bytes"] == size]
            ran = [r for r in recs if r.get("status") == "ok"]
            if not recs:
                continue
            checked = sum(r["checked"] + r["errors"]["connect"] + r["errors"]["read"]
                          + r["errors"]["write"] + r["errors"]["timeout"] for r in ran)
            ok = sum(r["ok"] for r in ran)
            grand_checked += checked
            grand_ok += ok
            levels = ", ".join(str(r["concurrency"]) for r in ran) or fmt.DASH
            rows.append([p, _label(size), levels, fmt.count(checked), fmt.count(checked - ok),
                         fmt.pct(100.0 * ok / checked, 3) if checked else "not run"])
    rows.append(["**Total**", "", "", fmt.count(grand_checked),
                 fmt.count(grand_checked - grand_ok),
                 fmt.pct(100.0 * grand_ok / grand_checked, 3) if grand_checked else fmt.DASH])
    return fmt.table(["Profile", "Payload", "Concurrency", "Responses checked", "Failed",
                      "Accuracy"], rows)


def not_run(run):
    rows = [[r["profile"], r["payload"], r["concurrency"], r["status"], r.get("error", "")]
            for r in run.not_ok()]
    if not rows:
        return "Every cell of the matrix ran."
    return fmt.table(["Profile", "Payload", "Concurrency", "Status", "Why"], rows, numeric=False)


def targets(rows):
    return fmt.table(["Target", "Measured", "Verdict"],
                     [[t, m, f"**{v}**"] for t, m, v in rows], numeric=False)
