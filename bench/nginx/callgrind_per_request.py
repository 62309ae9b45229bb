#!/usr/bin/python3
"""Instructions per request in an nginx worker, counted by callgrind.

The load test measures CPU time per request, which on a shared machine moves
by a few microseconds from run to run: more than the module's whole cost.
This counts instructions instead (deterministic: the same build and the same
requests give the same count within a fraction of a percent). nginx runs in
one process (master_process off) under valgrind --tool=callgrind, in front
of the gateway tests' echo upstream (not instrumented); a client sends N
POSTs of 50 B on one keep-alive connection and checks every answer. Two
runs, N1 and N2 requests, give (Ir(N2) - Ir(N1)) / (N2 - N1): the cost of
one request with start-up and shutdown cancelled out.

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
N = "sample-native-"
P = "sample-python-"
CHAINS = {
    "ngx-empty": [],
    "ngx-native-4": [N + "response-header", N + "request-body", N + "response-header",
                     N + "response-body"],
    # The Python workers run outside valgrind: these count the nginx
    # worker's own instructions around each round trip.
    "ngx-python-4": [P + "response-header", P + "request-body", P + "response-header",
                     P + "response-body"],
    "ngx-mix-4": [N + "response-header", P + "request-body", N + "response-body",
                  P + "response-header"],
}
PREFIX_BODY = b"[sample-response-body][sample-request-body]"


def conf(build, run, port, echo_port, profile):
    module = ""
    loc = "proxy_pass http://echo;"
    if profile != "nginx-proxy":
        module = f"load_module {build}/nginx/modules/ngx_http_policyexec_module.so;"
        steps = [{"name": n, "version": "1.0.0"} for n in CHAINS[profile]]
        loc = (f"policyexec_chain '{json.dumps(steps, separators=(',', ':'))}'; " + loc)
        plugin = f"policyexec_plugin {build}/examples/policies/sample_native_policies.so;"
        if any(n.startswith(P) for n in CHAINS[profile]):
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


def client(port, n, profile):
    payload = b"x" * 50
    want = PREFIX_BODY + payload if CHAINS.get(profile) else payload
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    for i in range(n):
        conn.request("POST", "/p/x", body=payload)
        resp = conn.getresponse()
        body = resp.read()
        if resp.status != 200 or body != want:
            raise SystemExit(f"{profile}: request {i}: {resp.status} {body[:80]!r}")
    conn.close()


def run_once(build, profile, n, echo_port, keep_dir=None):
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
    with open(out) as f:
        m = re.search(r"^(?:summary|totals):\s+(\d+)", f.read(), re.M)
    if keep_dir:
        os.makedirs(keep_dir, exist_ok=True)
        shutil.copy(out, os.path.join(keep_dir, f"callgrind.{profile}.{os.path.basename(build)}"))
    shutil.rmtree(run, ignore_errors=True)
    return int(m.group(1))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build-dir", action="append", required=True)
    ap.add_argument("--profiles", default="nginx-proxy,ngx-empty,ngx-native-4")
    ap.add_argument("--n1", type=int, default=300)
    ap.add_argument("--n2", type=int, default=1300)
    ap.add_argument("--annotate", help="keep the N2 callgrind files in this directory")
    args = ap.parse_args()
    echo_port = free_port()
    echo = subprocess.Popen([sys.executable, ECHO, "--port", str(echo_port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(echo_port)
        print("| build | profile | Ir per request | Ir − nginx-proxy |")
        print("|---|---|---|---|")
        for build in args.build_dir:
            build = os.path.abspath(build)
            base = None
            for profile in args.profiles.split(","):
                a = run_once(build, profile, args.n1, echo_port)
                b = run_once(build, profile, args.n2, echo_port, args.annotate)
                per = (b - a) / (args.n2 - args.n1)
                if profile == "nginx-proxy":
                    base = per
                diff = f"{per - base:+,.0f}" if base is not None else "—"
                print(f"| {build} | {profile} | {per:,.0f} | {diff} |", flush=True)
    finally:
        echo.terminate()
        echo.wait()


if __name__ == "__main__":
    main()
