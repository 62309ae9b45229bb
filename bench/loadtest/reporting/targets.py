"""The project's targets, checked on a run (design brief + issue):

at the peak concurrency (10) with the swept payload (50 B):
  no-policies throughput >= 1.0x the nginx reverse proxy's
  native-4 >= 95 %, python-4 >= 80 %, mix-4 >= 85 % of no-policies throughput
  python-4 p99 <= 1.5x no-policies p99
in every cell: 100 % accuracy
in every gateway cell: gateway RSS <= 30 MB, each worker <= 25 MB, and both
flat within +-10 % from the first to the last sample of the measured run.

Each check answers PASS, MISS, or NOT RUN when a cell it needs is missing.
"""
from . import fmt
from .data import is_gateway

GATEWAY_RSS_MB = 30.0
WORKER_RSS_MB = 25.0
FLAT = 0.10

THROUGHPUT = [  # (profile, reference profile, minimum ratio)
    ("no-policies", "nginx-proxy", 1.00),
    ("native-4", "no-policies", 0.95),
    ("python-4", "no-policies", 0.80),
    ("mix-4", "no-policies", 0.85),
]
P99 = ("python-4", "no-policies", 1.5)

# The nginx module, against the plain nginx anchor of the same run: fixed
# ratios for the empty and native chains; the Python chains must keep at
# least the ratio the gateway keeps to its own empty chain (same run).
NGINX_MODULE = [  # (profile, minimum ratio to nginx-proxy, or the gateway pair)
    ("ngx-empty", 0.98),
    ("ngx-native-4", 0.95),
    ("ngx-python-4", ("python-4", "no-policies")),
    ("ngx-mix-4", ("mix-4", "no-policies")),
]
NGINX_WORKER_RSS_GROWTH_MB = 5.0


def _verdict(ok):
    return "PASS" if ok else "MISS"


def check(run):
    """[(target, measured, verdict)]"""
    c, size = run.peak_concurrency, run.sweep_payload
    rows = []
    where = f"c={c}, {size} B"
    for prof, ref, minimum in THROUGHPUT:
        a, b = run.ok(prof, size, c), run.ok(ref, size, c)
        target = f"{prof} throughput ≥ {minimum:.2f}× {ref} ({where})"
        if a and b and b["tps"]:
            r = a["tps"] / b["tps"]
            rows.append((target, f"{fmt.tps(a['tps'])} / {fmt.tps(b['tps'])} req/s = {r:.3f}×",
                         _verdict(r >= minimum)))
        else:
            rows.append((target, "cells missing", "NOT RUN"))

    prof, ref, maximum = P99
    a, b = run.ok(prof, size, c), run.ok(ref, size, c)
    target = f"{prof} p99 ≤ {maximum}× {ref} p99 ({where})"
    if a and b and b["latency_ms"]["p99"]:
        r = a["latency_ms"]["p99"] / b["latency_ms"]["p99"]
        rows.append((target, f"{fmt.ms(a['latency_ms']['p99'])} / "
                             f"{fmt.ms(b['latency_ms']['p99'])} ms = {r:.2f}×",
                     _verdict(r <= maximum)))
    else:
        rows.append((target, "cells missing", "NOT RUN"))

    ran = [r for r in run.records if r.get("status") == "ok"]
    wanted = len(run.records)
    if ran:
        bad = [r for r in ran if r["accuracy_pct"] != 100.0]
        total = sum(r["checked"] for r in ran)
        wrong = sum(r["error_total"] for r in ran)
        measured = (f"{len(ran) - len(bad)} of {len(ran)} cells run at 100 %; "
                    f"{fmt.count(wrong)} failed of {fmt.count(total)} checked")
        if len(ran) < wanted:
            measured += f" ({wanted - len(ran)} cells did not run)"
        rows.append(("100 % accuracy in every cell", measured,
                     _verdict(not bad) if len(ran) == wanted else
                     ("MISS" if bad else "NOT RUN")))
    else:
        rows.append(("100 % accuracy in every cell", "no cell ran", "NOT RUN"))

    rows += _memory(run)
    rows += _nginx_module(run)
    return rows


def _nginx_module(run):
    """The module's targets at each concurrency and payload the run has."""
    rows = []
    cells = sorted({(r["payload_bytes"], r["concurrency"]) for r in run.records
                    if r["profile"].startswith("ngx-")})
    for size, c in cells:
        anchor = run.ok("nginx-proxy", size, c)
        for prof, minimum in NGINX_MODULE:
            a = run.ok(prof, size, c)
            where = f"c={c}, {size} B"
            if isinstance(minimum, tuple):
                g, g0 = run.ok(minimum[0], size, c), run.ok(minimum[1], size, c)
                target = f"{prof} / nginx-proxy ≥ {minimum[0]} / {minimum[1]} ({where})"
                minimum = g["tps"] / g0["tps"] if g and g0 and g0["tps"] else None
            else:
                target = f"{prof} throughput ≥ {minimum:.2f}× nginx-proxy ({where})"
            if a and anchor and anchor["tps"] and minimum is not None:
                r = a["tps"] / anchor["tps"]
                rows.append((target, f"{fmt.tps(a['tps'])} / {fmt.tps(anchor['tps'])} req/s = "
                             f"{r:.3f}× (needs {minimum:.3f}×)", _verdict(r >= minimum)))
            else:
                rows.append((target, "cells missing", "NOT RUN"))
    plain = [r["resources"].get("nginx_worker_rss_mb") for r in run.records
             if r["profile"] == "nginx-proxy" and r.get("status") == "ok"]
    module = [r["resources"].get("nginx_worker_rss_mb") for r in run.records
              if r["profile"].startswith("ngx-") and r.get("status") == "ok"]
    plain = [s["max"] for s in plain if s]
    module = [s["max"] for s in module if s]
    target = f"RSS per nginx worker grows ≤ {NGINX_WORKER_RSS_GROWTH_MB:.0f} MB with the module"
    if plain and module:
        growth = max(module) - max(plain)
        rows.append((target, f"{max(module):.1f} MB (module, max) − {max(plain):.1f} MB "
                             f"(plain, max) = {growth:+.1f} MB",
                     _verdict(growth <= NGINX_WORKER_RSS_GROWTH_MB)))
    elif cells:
        rows.append((target, "cells missing", "NOT RUN"))
    return rows


def _memory(run):
    gw_cells = [r for r in run.records if is_gateway(r["profile"]) and r.get("status") == "ok"]
    if not gw_cells:
        return [(f"gateway RSS ≤ {GATEWAY_RSS_MB:.0f} MB", "no gateway cell ran", "NOT RUN"),
                (f"each worker RSS ≤ {WORKER_RSS_MB:.0f} MB", "no gateway cell ran", "NOT RUN"),
                ("RSS flat ±10 % first → last", "no gateway cell ran", "NOT RUN")]
    gw_max = max((r["resources"]["gateway"]["rss_mb"] or {}).get("max", 0) for r in gw_cells)
    workers = [w for r in gw_cells for w in r["resources"]["worker_list"] if w["rss_mb"]]
    wk_max = max((w["rss_mb"]["max"] for w in workers), default=None)

    drifts = []  # (drift, what)
    for r in gw_cells:
        series = [("gateway", r["resources"]["gateway"]["rss_mb"])]
        series += [(f"worker {w['pid']}", w["rss_mb"]) for w in r["resources"]["worker_list"]]
        for what, s in series:
            if s and s["first"]:
                drifts.append((abs(s["last"] - s["first"]) / s["first"],
                               f"{r['cell']} {what}: {s['first']:.1f} → {s['last']:.1f} MB"))
    worst = max(drifts, default=None)
    rows = [(f"gateway RSS ≤ {GATEWAY_RSS_MB:.0f} MB (max over gateway cells)",
             f"{gw_max:.1f} MB", _verdict(gw_max <= GATEWAY_RSS_MB))]
    if wk_max is None:
        rows.append((f"each worker RSS ≤ {WORKER_RSS_MB:.0f} MB", "no worker sampled", "NOT RUN"))
    else:
        rows.append((f"each worker RSS ≤ {WORKER_RSS_MB:.0f} MB (max over gateway cells)",
                     f"{wk_max:.1f} MB", _verdict(wk_max <= WORKER_RSS_MB)))
    if worst is None:
        rows.append(("RSS flat ±10 % first → last", "too few samples", "NOT RUN"))
    else:
        rows.append(("RSS flat ±10 % first → last (gateway and each worker, every cell)",
                     f"largest drift {100 * worst[0]:.1f} % ({worst[1]})",
                     _verdict(worst[0] <= FLAT)))
    return rows
