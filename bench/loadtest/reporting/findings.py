"""Key findings, as sentences computed from the run (the published report's
"Key Finding" boxes). Every number here is read from the results; a finding
whose cells did not run is left out.

Averages use c / TPS (Little's law), not wrk's mean: wrk's histogram carries
coordinated-omission samples that stalls of the shared machine inflate.
"""
from . import fmt, targets

HOOKS = 4  # every policy profile has four policies


def _little(run, profile, size, c):
    r = run.ok(profile, size, c)
    return r["latency_ms"].get("little_mean") if r else None


def _tps(run, profile, size, c):
    r = run.ok(profile, size, c)
    return r["tps"] if r else None


def _us(ms):
    return f"{1000 * ms:.1f} µs"


def _sus(ms):
    """Signed microseconds: a difference within the noise may come out negative."""
    return f"{1000 * ms:+.1f} µs"


def findings(run):
    size = run.sweep_payload
    lo = min(run.concurrency) if run.concurrency else None
    hi = run.peak_concurrency
    out = []
    if lo is None:
        return out

    direct, proxy = _little(run, "no-gateway", size, lo), _little(run, "nginx-proxy", size, lo)
    base = _little(run, "no-policies", size, lo)
    if base is not None and direct is not None:
        text = (f"At c={lo} the gateway without policies adds {_us(base - direct)} per request "
                f"to the echo backend's {_us(direct)}")
        if proxy is not None:
            text += f" (the nginx reverse proxy adds {_us(proxy - direct)})"
        out.append(text + ".")

    for prof, kind in (("native-4", "native"), ("python-4", "Python")):
        lat = _little(run, prof, size, lo)
        if lat is not None and base is not None:
            out.append(f"The {kind} 4-policy chain changes the mean per request at c={lo} by "
                       f"{_sus(lat - base)} against no policies, {_sus((lat - base) / HOOKS)} "
                       f"per policy (the published report's per-hook figures: its section 5.1).")
    mix = _little(run, "mix-4", size, lo)
    if mix is not None and base is not None:
        out.append(f"The mixed chain (2 native + 2 Python) changes it by {_sus(mix - base)}.")

    b_tps = _tps(run, "no-policies", size, hi)
    for prof in ("native-4", "python-4", "mix-4"):
        t = _tps(run, prof, size, hi)
        if t and b_tps:
            out.append(f"At c={hi}, {prof} serves {fmt.tps(t)} req/s, "
                       f"{100 * t / b_tps:.0f} % of the no-policies gateway's {fmt.tps(b_tps)}.")
    p_tps = _tps(run, "nginx-proxy", size, hi)
    if b_tps and p_tps:
        out.append(f"At c={hi} the gateway without policies reaches {100 * b_tps / p_tps:.0f} % "
                   f"of the nginx reverse proxy's throughput ({fmt.tps(p_tps)} req/s).")

    out += _cpu_budget(run, size, hi)

    for big in run.extra_payloads:
        c = run.extra_concurrency[0]
        a, b = _little(run, "python-4", size, c), _little(run, "python-4", big, c)
        if a is not None and b is not None:
            out.append(f"For python-4 at c={c}, a {big}-byte body instead of {size} bytes "
                       f"changes the mean by {_sus(b - a)}.")
    return out


def _cpu_per_request_us(run, profile, size, c):
    """Machine CPU (all processes, µs) per response: mean machine CPU % / TPS."""
    r = run.ok(profile, size, c)
    cpu = (((r or {}).get("resources") or {}).get("machine") or {}).get("cpu_pct_mean")
    return 1e4 * cpu / r["tps"] if r and cpu and r["tps"] else None


def _cpu_budget(run, size, c):
    """A missed throughput target read as a CPU budget: when the machine is
    saturated, ratio x TPS of no-policies leaves so much CPU per request for
    the policies; compare with what they cost here."""
    base = _cpu_per_request_us(run, "no-policies", size, c)
    r = run.ok("no-policies", size, c)
    cpu = (((r or {}).get("resources") or {}).get("machine") or {}).get("cpu_pct_mean")
    out = []
    if base is None or not cpu:
        return out
    for prof, ref, minimum in targets.THROUGHPUT:
        t, cost = _tps(run, prof, size, c), _cpu_per_request_us(run, prof, size, c)
        if ref != "no-policies" or t is None or cost is None or t >= minimum * r["tps"]:
            continue
        allowed = 1e4 * cpu / (minimum * r["tps"])  # same machine CPU, target TPS
        out.append(f"At c={c}, {prof} costs {cost:.1f} µs of machine CPU per request "
                   f"(no-policies {base:.1f} µs), so its policies add {cost - base:.1f} µs; "
                   f"{100 * minimum:.0f} % of no-policies' throughput on the same "
                   f"{cpu:.0f} % of CPU would leave them {allowed - base:.1f} µs. "
                   f"Analysis of the misses: doc/BENCHMARKS.md, section Load test.")
    return out


def markdown(run):
    items = findings(run)
    if not items:
        return "_Not enough cells ran for findings._"
    return "\n".join(f"- {s}" for s in items)
