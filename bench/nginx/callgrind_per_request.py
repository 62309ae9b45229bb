#!/usr/bin/python3
"""Instructions per request in an nginx worker, counted by callgrind.

The load test measures CPU time per request, which on a shared machine moves
by a few microseconds from run to run: more than the module's whole cost.
This counts instructions instead (deterministic: the same build and the same
requests give the same count within a fraction of a percent). nginx runs in
one process (master_process off) under valgrind --tool=callgrind, in front
of the gateway tests' echo upstream (not instrumented); a client sends N
POSTs (50 B unless --payload) on one keep-alive connection and checks every answer. Two
runs, N1 and N2 requests, give (Ir(N2) - Ir(N1)) / (N2 - N1): the cost of
one request with start-up and shutdown cancelled out.

The gw-* profiles count the reference gateway the same way (all its
threads, one Python worker outside valgrind), for comparing the module's
cost with the gateway's: gw-no-policies, gw-native-4, gw-python-4,
gw-mix-4.

  bench/nginx/callgrind_per_request.py --build-dir build [--build-dir other]
      [--profiles nginx-proxy,ngx-empty,ngx-native-4] [--n1 300 --n2 1300]
      [--annotate DIR]

--annotate keeps the N2 callgrind files there (callgrind_annotate them).
"""

import argparse
import http.client
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile

from ngx_bench import ECHO, SRC, free_port, wait_port

sys.path.insert(0, os.path.join(SRC, "bench", "loadtest"))
from harness import gateway, payloads, profiles  # noqa: E402


def chain(profile):
    """The steps @p profile runs: the load test's profile of that name (gw-X:
    the gateway's X). The Python workers run outside valgrind: Python chains
    count the proxy's own instructions around each round trip."""
    name = profile[3:] if profile.startswith("gw-") else profile
    return profiles.PROFILES[name]["policies"] or []


PAYLOAD = 50  # bytes per request body (--payload)


def conf(build, run, port, echo_port, profile):
    module = ""
    loc = "proxy_pass http://echo;"
    if profile != "nginx-proxy":
        module = f"load_module {build}/nginx/modules/ngx_http_policyexec_module.so;"
        steps = chain(profile)
        loc = (f"policyexec_chain '{json.dumps(steps, separators=(',', ':'))}'; " + loc)
        plugin = f"policyexec_plugin {build}/examples/policies/sample_native_policies.so;"
        if any(s["name"].startswith("sample-python-") for s in steps):
            plugin += (f" policyexec_python_path {SRC}/examples/policies/python;"
                       f" policyexec_python_worker {build}/bin/policyexec-pyworker;"
                       " policyexec_python_workers 1; policyexec_python_timeout 10000ms;")
    else:
        plugin = ""
    return f"""
{module}
master_process off;
daemon off;
worker_processes 1;
error_log {run}/error.log warn;
pid {run}/nginx.pid;
events {{ worker_connections 256; }}
http {{
  access_log off;
  client_body_temp_path {run}/body;
  proxy_temp_path {run}/proxy;
  fastcgi_temp_path {run}/fastcgi;
  uwsgi_temp_path {run}/uwsgi;
  scgi_temp_path {run}/scgi;
  {plugin}
  upstream echo {{ server 127.0.0.1:{echo_port}; keepalive 4; }}
  proxy_http_version 1.1;
  proxy_set_header Connection "";
  server {{
    listen 127.0.0.1:{port};
    location /p/ {{ {loc} }}
  }}
}}
"""


def client(port, n, profile, path="/p/x"):
    payload = b"x" * PAYLOAD
    want = payloads.expected(payload, bool(chain(profile)))
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    for i in range(n):
        conn.request("POST", path, body=payload)
        resp = conn.getresponse()
        body = resp.read()
        if resp.status != 200 or body != want:
            raise SystemExit(f"{profile}: request {i}: {resp.status} {body[:80]!r}")
    conn.close()


def collect(run, profile, build, keep_dir):
    """The run's total instruction count; its directory removed, its
    callgrind file kept in keep_dir when given."""
    out = os.path.join(run, "callgrind.out")
    with open(out) as f:
        m = re.search(r"^(?:summary|totals):\s+(\d+)", f.read(), re.M)
    if keep_dir:
        os.makedirs(keep_dir, exist_ok=True)
        shutil.copy(out, os.path.join(keep_dir, f"callgrind.{profile}.{os.path.basename(build)}"))
    shutil.rmtree(run, ignore_errors=True)
    return int(m.group(1))


class Valgrinded:
    """What gateway.wait_healthy() asks of a process."""

    def __init__(self, popen, log_path):
        self.popen, self.log_path = popen, log_path

    def alive(self):
        return self.popen.poll() is None


def run_once_gateway(build, profile, n, echo_port, keep_dir=None):
    """The gateway as the load test configures it, one thread and one Python
    worker, unpinned; the API created through its admin API."""
    run = tempfile.mkdtemp(prefix="pe-cg-")
    port, admin = free_port(), free_port()
    cfg = gateway.config(build, SRC, port, admin, 1, 1, 10000)
    cfg["cpu_affinity"] = False
    path = os.path.join(run, "gateway.json")
    with open(path, "w") as f:
        json.dump(cfg, f)
    out = os.path.join(run, "callgrind.out")
    p = subprocess.Popen(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
                          gateway.paths(build, SRC)["binary"], "--config", path], cwd=run,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        gateway.wait_healthy(Valgrinded(p, run), admin, timeout=120)
        gateway.create_api(admin, echo_port, chain(profile))
        client(port, n, profile, gateway.API_CONTEXT + "/x")
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=300)
    return collect(run, profile, build, keep_dir)


def run_once(build, profile, n, echo_port, keep_dir=None):
    if profile.startswith("gw-"):
        return run_once_gateway(build, profile, n, echo_port, keep_dir)
    run = tempfile.mkdtemp(prefix="pe-cg-")
    port = free_port()
    path = os.path.join(run, "nginx.conf")
    with open(path, "w") as f:
        f.write(conf(build, run, port, echo_port, profile))
    out = os.path.join(run, "callgrind.out")
    env = dict(os.environ, LD_LIBRARY_PATH=os.path.join(build, "lib"))
    p = subprocess.Popen(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
                          "/usr/sbin/nginx", "-p", run, "-c", path, "-e", f"{run}/error.log"],
                         env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port, timeout=120)
        client(port, n, profile)
    finally:
        p.send_signal(signal.SIGQUIT)
        p.wait(timeout=300)
    return collect(run, profile, build, keep_dir)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build-dir", action="append", required=True)
    ap.add_argument("--profiles", default="nginx-proxy,ngx-empty,ngx-native-4")
    ap.add_argument("--n1", type=int, default=300)
    ap.add_argument("--n2", type=int, default=1300)
    ap.add_argument("--annotate", help="keep the N2 callgrind files in this directory")
    ap.add_argument("--payload", type=int, default=50, help="request body bytes")
    args = ap.parse_args()
    global PAYLOAD
    PAYLOAD = args.payload
    echo_port = free_port()
    echo = subprocess.Popen([sys.executable, ECHO, "--port", str(echo_port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(echo_port)
        print("| build | profile | Ir per request | Ir − the anchor (nginx-proxy, gw-no-policies) |")
        print("|---|---|---|---|")
        for build in args.build_dir:
            build = os.path.abspath(build)
            base = {}
            for profile in args.profiles.split(","):
                family = "gw" if profile.startswith("gw-") else "ngx"
                a = run_once(build, profile, args.n1, echo_port)
                b = run_once(build, profile, args.n2, echo_port, args.annotate)
                per = (b - a) / (args.n2 - args.n1)
                if profile in ("nginx-proxy", "gw-no-policies"):
                    base[family] = per
                diff = f"{per - base[family]:+,.0f}" if family in base else "—"
                print(f"| {build} | {profile} | {per:,.0f} | {diff} |", flush=True)
    finally:
        echo.terminate()
        echo.wait()


if __name__ == "__main__":
    main()
