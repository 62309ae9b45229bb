"""bench/loadtest/CHANGELOG.md: dated baselines, appended, never rewritten.

An entry is made only from a finished run (loadtest.py --changelog NOTE) and
carries that run's own figures, so the changelog holds no invented number.
"""
import os
import time

from . import fmt
from .targets import check

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHANGELOG = os.path.join(HERE, "CHANGELOG.md")


def read():
    try:
        with open(CHANGELOG) as f:
            return f.read()
    except OSError:
        return ""


def entry(run, note):
    m, o = run.machine, run.options
    peak, size = run.peak_concurrency, run.sweep_payload
    lines = [f"### {time.strftime('%Y-%m-%d')} — {note}", "",
             f"- Run: {m.get('date')}, libpolicyexec {m.get('libpolicyexec')}, "
             f"{m.get('build_type')} build; {m.get('cpu_model')} × {m.get('cores')}, "
             f"kernel {m.get('kernel')}.",
             f"- Cells: {len(run.records)} ({sum(r.get('status') == 'ok' for r in run.records)} ran); "
             f"warm-up {o.get('warmup')} s, measured {o.get('duration')} s; "
             f"gateway threads {o.get('gateway_threads')}, Python workers {o.get('py_workers')}, "
             f"{'normal scheduling' if o.get('no_sched_batch') else 'SCHED_BATCH'}, "
             f"wrk threads {o.get('wrk_threads')}."]
    if peak is not None:
        figures = []
        for p in run.profiles:
            r = run.ok(p, size, peak)
            if r:
                figures.append(f"{p} {fmt.tps(r['tps'])} req/s (p99 {fmt.ms(r['latency_ms']['p99'])} ms)")
        if figures:
            lines.append(f"- c={peak}, {size} B: " + "; ".join(figures) + ".")
    verdicts = check(run)
    passed = sum(v == "PASS" for _, _, v in verdicts)
    missed = [t for t, _, v in verdicts if v == "MISS"]
    lines.append(f"- Targets: {passed} of {len(verdicts)} PASS"
                 + (f"; MISS: {'; '.join(missed)}" if missed else "") + ".")
    return "\n".join(lines) + "\n"


def append(run, note):
    text = read()
    if not text:
        text = HEADER
    if not text.endswith("\n"):
        text += "\n"
    text += "\n" + entry(run, note)
    with open(CHANGELOG, "w") as f:
        f.write(text)


HEADER = """# Load test changelog

Dated baselines of `bench/loadtest/run.sh`, newest last. Each entry is
appended by `run.sh --changelog "NOTE"` from the figures of that run.
"""
