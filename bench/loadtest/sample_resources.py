#!/usr/bin/python3
"""Background resource sampler of the load test.

Every INTERVAL seconds it reads /proc for each watched root process and all
its descendants (the gateway and its policyexec-pyworker children; nginx
master and workers) and appends one CSV row per process:

    tick,time_s,role,pid,ppid,name,cpu_pct,rss_kb

tick numbers the sampling rounds (rows of one round share it); time_s is
the wall clock (epoch seconds), to match the wrk run's window.

cpu_pct is the process's CPU time (user + system, all threads) over the
wall time since the previous sample, in % of one core (so a process busy on
two cores shows 200). The first sample of a process has no previous one and
is written with an empty cpu_pct. Stops on SIGTERM/SIGINT, when every root has
exited, or after --max-seconds (a bound, so a forgotten sampler never runs on).

Each round also writes one row of role "machine" (pid 0): the CPU busy time
of the whole machine in the same unit (up to 100 x cores), so a report can
tell when something else was using the cores during a run.

Usage: sample_resources.py --out FILE --root ROLE=PID [--root ROLE=PID ...]
"""
import argparse
import os
import signal
import sys
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024


def read_stat(pid):
    """(ppid, cpu_ticks, rss_kb, name) of pid, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv0 = f.read().split(b"\0", 1)[0].decode(errors="replace")
    except OSError:
        return None
    # comm may hold spaces or parentheses: split after the last ')'.
    rest = stat[stat.rindex(")") + 2:].split()
    ppid = int(rest[1])
    ticks = int(rest[11]) + int(rest[12])  # utime + stime
    rss_kb = int(rest[21]) * PAGE_KB
    # argv[0] names the program better than comm (15 chars: "policyexec-pywo")
    # and shows nginx's "nginx: worker process" titles.
    if argv0.startswith("nginx:"):
        name = argv0.split(" /", 1)[0]  # "nginx: master process", without its args
    else:
        name = os.path.basename(argv0)
    name = name or stat[stat.index("(") + 1:stat.rindex(")")]
    return ppid, ticks, rss_kb, name.replace(",", " ")


def machine_ticks():
    """(busy, total) jiffies over all CPUs, from /proc/stat."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    total = sum(fields[:8])  # guest time is already inside user
    return total - idle, total


def children_map():
    kids = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    stat = f.read()
            except OSError:
                continue
            ppid = int(stat[stat.rindex(")") + 2:].split()[1])
            kids.setdefault(ppid, []).append(int(entry))
    return kids


def tree(root, kids):
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(kids.get(pid, []))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--root", action="append", required=True, help="ROLE=PID")
    ap.add_argument("--interval", type=float, default=1.0)
    ap.add_argument("--max-seconds", type=float, default=3600)
    args = ap.parse_args()
    roots = [(r.split("=", 1)[0], int(r.split("=", 1)[1])) for r in args.root]

    stop = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.append(1))

    prev = {}  # pid -> (time, ticks)
    ncpu = os.cpu_count() or 1
    prev_machine = machine_ticks()
    start = time.monotonic()
    with open(args.out, "w", buffering=1) as out:
        out.write("tick,time_s,role,pid,ppid,name,cpu_pct,rss_kb\n")
        tick = 0
        while not stop and time.monotonic() - start < args.max_seconds:
            now = time.monotonic()
            kids = children_map()
            alive = 0
            for role, root in roots:
                for pid in tree(root, kids):
                    st = read_stat(pid)
                    if st is None:
                        continue
                    alive += pid == root
                    ppid, ticks, rss_kb, name = st
                    cpu = ""
                    if pid in prev:
                        t0, k0 = prev[pid]
                        if now > t0:
                            cpu = f"{100.0 * (ticks - k0) / CLK_TCK / (now - t0):.1f}"
                    prev[pid] = (now, ticks)
                    out.write(f"{tick},{time.time():.3f},{role},{pid},{ppid},{name},{cpu},{rss_kb}\n")
            busy, total = machine_ticks()
            d_total = total - prev_machine[1]
            cpu = f"{100.0 * ncpu * (busy - prev_machine[0]) / d_total:.1f}" if d_total > 0 else ""
            prev_machine = (busy, total)
            out.write(f"{tick},{time.time():.3f},machine,0,0,all,{cpu},0\n")
            if alive == 0:
                break
            tick += 1
            # Sleep to the next tick, waking early on a stop signal.
            time.sleep(max(0.0, args.interval - (time.monotonic() - now)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
