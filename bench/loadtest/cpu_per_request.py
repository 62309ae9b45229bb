#!/usr/bin/python3
"""Per-cell throughput and CPU cost per request from one or more load test
runs (results.jsonl), with the median over the runs.

On a machine shared with other work, throughput follows what the others
leave free; the CPU time the proxy under test spends per request moves much
less, so this prints both, per profile, payload and concurrency:

  tps            median over the runs (and each run's value)
  proxy_us       CPU µs per request of the proxy (gateway process, or nginx
                 master + workers), median over the runs
  pyworkers_us   CPU µs per request of its Python workers
  vs             the profile's median TPS and proxy_us relative to a
                 reference profile (--ref, default nginx-proxy)
  same run       TPS relative to the reference in each run (the targets
                 compare cells of one run), and the median of those

Usage: cpu_per_request.py [--ref PROFILE] RESULTS.jsonl [RESULTS.jsonl ...]
"""
import argparse
import json
import statistics


def load(paths):
    """{(payload, c, profile): [(tps, proxy µs, Python µs, run index)]}."""
    cells = {}
    for run, path in enumerate(paths):
        with open(path) as f:
            for line in f:
                r = json.loads(line)
                if r.get("status") != "ok" or not r.get("requests"):
                    continue
                res = r["resources"]
                cpu = [(res[g]["cpu_pct_mean"] or 0.0) / 100.0 * r["measured_s"] / r["requests"] * 1e6
                       for g in ("gateway", "workers")]
                key = (r["payload_bytes"], r["concurrency"], r["profile"])
                cells.setdefault(key, []).append((r["tps"], cpu[0], cpu[1], run))
    return cells


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ref", default="nginx-proxy")
    ap.add_argument("results", nargs="+")
    args = ap.parse_args()
    cells = load(args.results)
    med = {k: tuple(statistics.median(x[i] for x in v) for i in range(3)) for k, v in cells.items()}
    print(f"| payload | c | profile | runs | TPS (median; each run) | proxy CPU µs/req | "
          f"Python workers CPU µs/req | TPS / {args.ref} (medians) | proxy CPU − {args.ref} µs | "
          f"TPS / {args.ref}, same run: median (each run) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for key in sorted(cells, key=lambda k: (k[0], k[1])):
        size, c, prof = key
        tps, proxy, pyw = med[key]
        ref = med.get((size, c, args.ref))
        ratio = f"{tps / ref[0]:.3f}×" if ref and ref[0] else "—"
        extra = f"{proxy - ref[1]:+.1f}" if ref else "—"
        each = ", ".join(f"{x[0]:.0f}" for x in cells[key])
        ref_by_run = {x[3]: x[0] for x in cells.get((size, c, args.ref), []) if x[0]}
        same = [x[0] / ref_by_run[x[3]] for x in cells[key] if x[3] in ref_by_run]
        same_run = (f"{statistics.median(same):.3f}× ({', '.join(f'{v:.3f}' for v in same)})"
                    if same else "—")
        print(f"| {size} B | {c} | {prof} | {len(cells[key])} | {tps:,.0f}; {each} | {proxy:.1f} | "
              f"{pyw:.1f} | {ratio} | {extra} | {same_run} |")


if __name__ == "__main__":
    main()
