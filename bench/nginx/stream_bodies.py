#!/usr/bin/python3
"""Large bodies through nginx with the module: plain proxy_pass, a
pass-through chain and a streamed chain (sample-native-redact), all without
nginx's buffering, so the module's own cost and memory show.

For each location: SIZE bytes downloaded (the echo upstream's /gen) and
uploaded (its /sink, from /dev/zero, chunked), by curl, one at a time; the
throughput curl reports and the nginx worker's peak RSS (VmHWM) afterwards.
One nginx worker; the upstream is the gateway tests' Python echo server, the
same for every location, so the ratios are what the module costs.

  bench/nginx/stream_bodies.py --build-dir build [--size 1g] [--rounds 3]
"""

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

from ngx_bench import ECHO, free_port, wait_port
LOCATIONS = {
    "plain": None,
    "pass": [{"name": "sample-native-request-header", "version": "1.0.0"}],
    "stream": [{"name": "sample-native-redact", "version": "1.0.0"}],
}


def size_arg(text):
    m = re.fullmatch(r"(\d+)([kmg]?)", text.lower())
    return int(m.group(1)) << {"": 0, "k": 10, "m": 20, "g": 30}[m.group(2)]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build-dir", required=True)
    ap.add_argument("--size", type=size_arg, default=size_arg("1g"))
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    build = os.path.abspath(args.build_dir)
    run = tempfile.mkdtemp(prefix="pe-bodies-")
    port, echo_port = free_port(), free_port()
    locs = []
    for name, steps in LOCATIONS.items():
        chain = (f"policyexec_chain '{json.dumps(steps, separators=(',', ':'))}';"
                 if steps else "")
        locs.append(f"location /{name}/ {{ {chain} proxy_pass http://echo; "
                    "proxy_request_buffering off; proxy_buffering off; "
                    "client_max_body_size 0; }")
    conf = f"""
load_module {build}/nginx/modules/ngx_http_policyexec_module.so;
worker_processes 1;
error_log {run}/error.log warn;
pid {run}/nginx.pid;
events {{ worker_connections 64; }}
http {{
  access_log off;
  client_body_temp_path {run}/body;
  proxy_temp_path {run}/proxy;
  policyexec_plugin {build}/examples/policies/sample_native_policies.so;
  upstream echo {{ server 127.0.0.1:{echo_port}; keepalive 4; }}
  proxy_http_version 1.1;
  proxy_set_header Connection "";
  server {{ listen 127.0.0.1:{port}; {" ".join(locs)} }}
}}
"""
    with open(f"{run}/nginx.conf", "w") as f:
        f.write(conf)
    env = dict(os.environ, LD_LIBRARY_PATH=os.path.join(build, "lib"))
    echo = subprocess.Popen([sys.executable, ECHO, "--port", str(echo_port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    subprocess.run(["/usr/sbin/nginx", "-p", run, "-c", f"{run}/nginx.conf", "-e",
                    f"{run}/error.log"], env=env, check=True)
    try:
        wait_port(echo_port)
        wait_port(port)
        with open(f"{run}/nginx.pid") as f:
            master = int(f.read())
        worker = int(subprocess.run(["pgrep", "-P", str(master)], capture_output=True,
                                    text=True).stdout.split()[0])
        results = {}
        for rnd in range(args.rounds):
            for name in LOCATIONS:  # interleaved: each round visits every location
                down = subprocess.run(
                    ["curl", "-s", "-o", "/dev/null", "-w", "%{speed_download} %{size_download}",
                     f"http://127.0.0.1:{port}/{name}/gen?bytes={args.size}"],
                    capture_output=True, text=True, check=True).stdout.split()
                if int(down[1]) != args.size:
                    raise SystemExit(f"{name}: downloaded {down[1]} of {args.size} bytes")
                up = subprocess.run(
                    f"head -c {args.size} /dev/zero | curl -s -T - -o {run}/sink.json "
                    f"-w '%{{speed_upload}}' http://127.0.0.1:{port}/{name}/sink",
                    shell=True, capture_output=True, text=True, check=True).stdout
                with open(f"{run}/sink.json") as f:
                    got = json.load(f)["length"]
                if got != args.size:
                    raise SystemExit(f"{name}: upstream got {got} of {args.size} bytes")
                r = results.setdefault(name, {"down": [], "up": []})
                r["down"].append(float(down[0]) / 1e6)
                r["up"].append(float(up) / 1e6)
        with open(f"/proc/{worker}/status") as f:
            hwm = int(re.search(r"VmHWM:\s+(\d+)", f.read()).group(1)) / 1024
        print(f"{args.size} bytes each way, {args.rounds} rounds; median MB/s (each round)")
        print("| location | download MB/s | upload MB/s | download / plain | upload / plain |")
        print("|---|---|---|---|---|")
        base = results["plain"]
        for name, r in results.items():
            d, u = statistics.median(r["down"]), statistics.median(r["up"])
            print(f"| {name} | {d:,.0f} ({', '.join(f'{x:,.0f}' for x in r['down'])}) "
                  f"| {u:,.0f} ({', '.join(f'{x:,.0f}' for x in r['up'])}) "
                  f"| {d / statistics.median(base['down']):.2f}× "
                  f"| {u / statistics.median(base['up']):.2f}× |")
        print(f"nginx worker peak RSS (VmHWM) after all runs: {hwm:.1f} MB")
    finally:
        try:
            os.kill(master, signal.SIGQUIT)
        except (OSError, NameError):
            pass
        echo.terminate()
        echo.wait()
        time.sleep(1)
        shutil.rmtree(run, ignore_errors=True)


if __name__ == "__main__":
    main()
