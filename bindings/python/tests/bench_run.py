#!/usr/bin/env python3
"""Python-side cost of one RunPhase: times policyexec._worker.run() for the
two messages of the load test's python-4 profile, with the argument types the
C worker passes (see worker/pw_run.c and worker/pw_convert.c).

Run by hand (not a CTest test), pinned to one CPU:

    taskset -c 1 python3 bindings/python/tests/bench_run.py [--repeats 15]
        [--calls 20000] [--pkg DIR] [--profile]

``--pkg DIR`` imports ``policyexec`` from DIR instead of bindings/python (to
compare a copy of an older version in the same session). Prints the median
(and min/max) over the repeats of the mean ns per call, for each message.
"""

import argparse
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", "..", ".."))


def messages():
    """(name, args) of run() for messages A and B of the load test."""
    # pw_convert.c: headers are a flat list [name, value, ...] of str, or None;
    # bodies bytes or None; ids, fail_open and step_phases tuples.
    rq_headers = ["host", "127.0.0.1:8080",
                  "user-agent", "wrk/4.2.0",
                  "accept", "*/*",
                  "content-type", "application/json",
                  "content-length", "50",
                  "x-request-id", "5f0c6a8e-3c2b-4a7d-9b1e-2f8a6c4d1e90"]
    rs_headers = ["content-type", "application/json",
                  "content-length", "70",
                  "date", "Mon, 01 Jan 2024 00:00:00 GMT",
                  "server", "echo",
                  "x-echo-id", "42"]
    rq_body = b'{"id": 12345, "name": "load-test", "value": "x.x"}'[:50].ljust(50, b" ")
    rs_body = (b'{"echo": {"id": 12345, "name": "load-test", "value": "x.x"}, '
               b'"ok": true}').ljust(70, b" ")
    # message A: phase REQUEST_BODY, step sample-python-request-body (id 1)
    a = (1, (1,), (False,), "POST", "/echo?x=1", "127.0.0.1:8080", 0,
         list(rq_headers), None, rq_body, None, None, None)
    # message B: step_phases (2, 2, 3): response-header twice, response-body
    b = (2, (2, 3, 4), (False, False, False), "POST", "/echo?x=1", "127.0.0.1:8080", 200,
         list(rq_headers), list(rs_headers), None, rs_body, None, (2, 2, 3))
    return [("A", a), ("B", b)]


def setup(pkg):
    sys.path.insert(0, pkg)
    from policyexec import _worker
    _worker.load_modules([os.path.join(ROOT, "examples", "policies", "python")])
    for iid, name in ((1, "sample-python-request-body"),
                      (2, "sample-python-response-header"),
                      (3, "sample-python-response-header"),
                      (4, "sample-python-response-body")):
        err = _worker.create(iid, name, "1.0.0", b"")
        if err is not None:
            raise SystemExit(err)
    return _worker


def bench(run, args, calls):
    # The C side builds fresh lists per message; the package must not rely on
    # that, but copy them anyway so a bug that mutates them cannot skew timings.
    rq, rs = args[7], args[8]
    head, tail = args[:7], args[9:]
    rqs = [list(rq) for _ in range(calls)] if rq is not None else [None] * calls
    rss = [list(rs) for _ in range(calls)] if rs is not None else [None] * calls
    argv = [head + (rqs[i], rss[i]) + tail for i in range(calls)]
    t0 = time.perf_counter_ns()
    for a in argv:
        run(*a)
    return (time.perf_counter_ns() - t0) / calls


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--calls", type=int, default=20000)
    parser.add_argument("--pkg", default=os.path.join(ROOT, "bindings", "python"))
    parser.add_argument("--profile", action="store_true", help="cProfile each message once")
    opts = parser.parse_args()
    worker = setup(os.path.abspath(opts.pkg))
    run = worker.run
    msgs = messages()
    for name, args in msgs:
        print(f"{name}: {run(*args)!r}")
    if opts.profile:
        import cProfile
        import pstats
        for name, args in msgs:
            prof = cProfile.Profile()
            prof.enable()
            for _ in range(opts.calls):
                run(*args)
            prof.disable()
            print(f"---- profile of message {name} ({opts.calls} calls)")
            pstats.Stats(prof).sort_stats("tottime").print_stats(12)
        return
    for name, args in msgs:
        bench(run, args, opts.calls // 10)  # warm-up
        times = [bench(run, args, opts.calls) for _ in range(opts.repeats)]
        print(f"{name}: median {statistics.median(times):7.0f} ns/call "
              f"(min {min(times):.0f}, max {max(times):.0f}; {opts.repeats} x {opts.calls} calls) "
              f"[{opts.pkg}]")


if __name__ == "__main__":
    main()
