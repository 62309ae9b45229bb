#!/usr/bin/python3
"""Measures the gateway's RSS after bursts of large POSTs (not a test).

  burst_rss.py --gateway BIN --plugin SO --test-plugin SO [--rounds 3]
               [--clients 20] [--mib 8] [--profile native-4]

Starts the echo backend and a gateway as test_gateway.py does, sends
--rounds bursts of --clients concurrent POSTs of --mib MiB each (to the
profile's API, whose chain buffers both bodies), and prints the gateway's
VmRSS before, after each burst, and 2 s after the last.
"""

import argparse
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_gateway as tg  # noqa: E402


def rss_mib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return -1.0


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gateway", required=True)
    parser.add_argument("--plugin", required=True)
    parser.add_argument("--test-plugin", required=True)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--mib", type=int, default=8)
    parser.add_argument("--profile", default="native-4")
    args = parser.parse_args()
    args.python_paths = os.path.join(os.path.dirname(os.path.abspath(__file__)), "python")
    args.gateway = os.path.abspath(args.gateway)
    args.plugin = os.path.abspath(args.plugin)
    args.test_plugin = os.path.abspath(args.test_plugin)
    payload = b"p" * (args.mib << 20)
    limits = {"body_bytes": (args.mib + 1) << 20}
    with tg.Setup(args, tg.profile_apis(False), limits=limits) as gw:
        pid = gw.gateway.pid
        print("start: %.1f MiB" % rss_mib(pid))
        for r in range(args.rounds):
            failures = []

            def post():
                try:
                    status, _, _ = gw.request("POST", "/%s/big" % args.profile, body=payload)
                    if status != 200:
                        failures.append(status)
                except OSError as e:
                    failures.append(e)

            threads = [threading.Thread(target=post) for _ in range(args.clients)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            print("after burst %d (%d x %d MiB, %d failed): %.1f MiB" %
                  (r + 1, args.clients, args.mib, len(failures), rss_mib(pid)))
        time.sleep(2)
        print("2 s later: %.1f MiB" % rss_mib(pid))


if __name__ == "__main__":
    main()
