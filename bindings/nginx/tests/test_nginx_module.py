#!/usr/bin/python3
"""End-to-end tests of ngx_http_policyexec_module in the stock /usr/sbin/nginx.

Each scenario starts nginx with the module built in the tree (its own prefix,
ports, temp paths and TMPDIR for the Python workers' sockets) in front of the
gateway tests' echo upstream:

  e2e         every profile and body size byte for byte, chunked upstream
              responses, immediate answers from each phase, failing and
              timing-out Python policies (closed and open), policyexec off,
              "return", normalised paths, HEAD, a static file, the status page
  configtest  nginx -t on each kind of bad chain: non-zero exit, a message
              naming the location; nginx refuses to start with it
  lifecycle   reload under load (no failed request), a killed nginx worker,
              quit: no process, socket file or "open socket" alert left
  stream      pass-through and streamed bodies (ngx_stream_tests.py)
  pystream    bodies through Python streamed steps without blocking the
              worker (ngx_pystream_tests.py)

Usage: test_nginx_module.py --module SO --libdir DIR --plugin SO --pyworker BIN
           --python-paths DIR... --echo echo_backend.py [--test-plugin SO] SCENARIO
"""

import argparse
import http.client
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

NGINX = "/usr/sbin/nginx"
PHASE_HEADER = "x-sample-policy-phase"
PREFIX_BODY = b"[sample-response-body][sample-request-body]"


def step(name, version="1.0.0", **extra):
    s = {"name": name, "version": version}
    s.update(extra)
    return s


def chain_json(steps):
    import json
    return json.dumps(steps, separators=(",", ":"))


N = "sample-native-"
P = "sample-python-"
CHAINS = {
    "native-4": [step(N + "response-header"), step(N + "request-body"),
                 step(N + "response-header"), step(N + "response-body")],
    "python-4": [step(P + "response-header"), step(P + "request-body"),
                 step(P + "response-header"), step(P + "response-body")],
    "mix-4": [step(N + "response-header"), step(P + "request-body"),
              step(N + "response-body"), step(P + "response-header")],
    "python-rh": [step(P + "response-header")],
    "empty": [],
}


class Failure(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Failure(what)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Env:
    """A scratch nginx prefix with the echo upstream running."""

    def __init__(self, args):
        self.args = args
        self.dir = tempfile.mkdtemp(prefix="pe-nginx-test-")
        os.chmod(self.dir, 0o755)
        for sub in ("logs", "tmp", "run", "html"):
            os.makedirs(os.path.join(self.dir, sub))
        self.port = free_port()
        self.echo_port = free_port()
        self.dead_port = free_port()  # nothing listens there
        self.conf = os.path.join(self.dir, "nginx.conf")
        self.error_log = os.path.join(self.dir, "logs", "error.log")
        self.env = dict(os.environ, LD_LIBRARY_PATH=args.libdir,
                        TMPDIR=os.path.join(self.dir, "run"))
        if args.preload:
            # A sanitized library build: nginx itself is not instrumented and
            # keeps its memory until exit by design, so no leak report; any
            # error in the library aborts the worker, which the test sees.
            self.env["LD_PRELOAD"] = args.preload
            self.env["ASAN_OPTIONS"] = "detect_leaks=0:abort_on_error=1"
            self.env["UBSAN_OPTIONS"] = "print_stacktrace=1:halt_on_error=1"
        self.echo = subprocess.Popen(
            [sys.executable, args.echo, "--port", str(self.echo_port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(self.echo_port)
        with open(os.path.join(self.dir, "html", "static.txt"), "wb") as f:
            f.write(b"static file body\n" * 4096)

    def main_conf(self, locations, workers=2, extra_http=""):
        a = self.args
        paths = "\n".join(f"  policyexec_python_path {p};" for p in a.python_paths)
        user = "user root;" if os.geteuid() == 0 else ""
        return f"""
load_module {a.module};
{user}
worker_processes {workers};
error_log {self.error_log} info;
pid {self.dir}/nginx.pid;
env TMPDIR;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  client_body_temp_path {self.dir}/tmp/body;
  proxy_temp_path {self.dir}/tmp/proxy;
  fastcgi_temp_path {self.dir}/tmp/fastcgi;
  uwsgi_temp_path {self.dir}/tmp/uwsgi;
  scgi_temp_path {self.dir}/tmp/scgi;
  client_max_body_size 32m;
  policyexec_plugin {a.plugin};
{paths}
  policyexec_python_worker {a.pyworker};
  policyexec_python_workers 1;
  upstream echo {{ server 127.0.0.1:{self.echo_port}; keepalive 16; }}
  proxy_http_version 1.1;
  proxy_set_header Connection "";
{extra_http}
  server {{
    listen 127.0.0.1:{self.port};
    root {self.dir}/html;
{locations}
  }}
}}
"""

    def write_conf(self, text):
        with open(self.conf, "w") as f:
            f.write(text)

    def nginx(self, *extra, check_rc=True):
        p = subprocess.run([NGINX, "-p", self.dir, "-c", self.conf, "-e", self.error_log] +
                           list(extra), env=self.env, capture_output=True, text=True,
                           timeout=120)
        if check_rc and p.returncode != 0:
            raise Failure(f"nginx {' '.join(extra)} failed: {p.stderr}")
        return p

    def start(self):
        self.nginx()
        wait_port(self.port)
        wait_for(lambda: len(self.nginx_workers()) > 0, "nginx workers")

    def master_pid(self):
        try:
            with open(os.path.join(self.dir, "nginx.pid")) as f:
                return int(f.read().strip())
        except (OSError, ValueError):
            return None

    def nginx_workers(self):
        master = self.master_pid()
        return [pid for pid, ppid, cmd in processes()
                if ppid == master and "nginx: worker process" in cmd]

    def pyworkers(self):
        run = os.path.join(self.dir, "run")
        return [(pid, ppid) for pid, ppid, cmd in processes()
                if "policyexec-pyworker" in cmd and run in cmd]

    def socket_files(self):
        found = []
        for root, _, files in os.walk(os.path.join(self.dir, "run")):
            found += [os.path.join(root, f) for f in files]
        return found

    def stop(self):
        """Quits nginx by signalling the master (not "nginx -s quit", which
        reads the configuration first and fails on a bad one); kills the
        master and its workers if they do not go."""
        master = self.master_pid()
        if not master or not pid_alive(master):
            return
        workers = self.nginx_workers()
        os.kill(master, signal.SIGQUIT)
        wait_for(lambda: not pid_alive(master) and not any(map(pid_alive, workers)),
                 "nginx master exit", timeout=30, fail=False)
        for pid in [master] + workers:
            if pid_alive(pid):
                os.kill(pid, signal.SIGKILL)

    def close(self, keep):
        self.stop()
        self.echo.terminate()
        self.echo.wait()
        if keep:
            print(f"kept {self.dir}")
        else:
            shutil.rmtree(self.dir, ignore_errors=True)

    def log(self):
        with open(self.error_log, errors="replace") as f:
            return f.read()


def processes():
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if ") Z " in stat:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        out.append((int(entry), ppid, cmd))
    return out


class Background(threading.Thread):
    """Runs fn() in a thread, keeping its result (or exception) and when it
    finished."""

    def __init__(self, fn):
        super().__init__(daemon=True)
        self.fn, self.result, self.error, self.done_at = fn, None, None, None
        self.start()

    def run(self):
        try:
            self.result = self.fn()
        except Exception as e:  # reported by the check that reads it
            self.error = e
        self.done_at = time.monotonic()


def pid_alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return ") Z " not in f.read()
    except OSError:
        return False


def wait_for(cond, what, timeout=60, fail=True):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    if fail:
        raise Failure(f"timed out waiting for {what}")
    return False


def wait_port(port):
    def up():
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            return False
    wait_for(up, f"port {port}")


def request(port, method, path, body=None, headers=None, timeout=60):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
    finally:
        conn.close()


def chain_loc(path, steps, extra=""):
    return (f"    location {path} {{\n      policyexec_chain '{chain_json(steps)}';\n"
            f"      {extra}\n    }}\n")


def proxied(path, steps, extra=""):
    return chain_loc(path, steps, f"proxy_pass http://echo; {extra}")


def e2e_locations(env):
    locs = ["    location /none/ { proxy_pass http://echo; }\n"]
    for name, steps in CHAINS.items():
        locs.append(proxied(f"/{name}/", steps))
    # policyexec off in a nested location inherits nothing of the chain.
    locs.append(chain_loc("/outer/", CHAINS["native-4"],
                          "proxy_pass http://echo;\n"
                          "      location /outer/off/ { policyexec off; proxy_pass http://echo; }"))
    dead = f"proxy_pass http://127.0.0.1:{env.dead_port};"
    locs.append(chain_loc("/respond-rqh/", [step("ngx-test-respond-request-headers")], dead))
    locs.append(chain_loc("/respond-rqb/", [step("ngx-test-respond-request-body")], dead))
    locs.append(proxied("/respond-rsh/", [step("ngx-test-respond-response-headers")]))
    locs.append(proxied("/respond-rsb/", [step("ngx-test-respond-response-body")]))
    locs.append(proxied("/raise-closed/", [step("ngx-test-raise")]))
    locs.append(proxied("/raise-open/", [step("ngx-test-raise", failure_mode="open")]))
    locs.append(proxied("/slow-closed/", [step("ngx-test-sleep", timeout_ms=300)]))
    locs.append(proxied("/slow-open/", [step("ngx-test-sleep", timeout_ms=300,
                                              failure_mode="open")]))
    locs.append(chain_loc("/ret/", [step("ngx-test-respond-request-headers")],
                          'return 200 "returned\\n";'))
    locs.append(chain_loc("/prot/", [step("ngx-test-echo-path")], dead))
    locs.append(proxied("/rewrite/", [step("ngx-test-rewrite-path")]))
    locs.append(proxied("/edit/", [step("ngx-test-edit-heads")]))
    locs.append(chain_loc("/static.txt", [step(N + "response-body")], ""))
    # An upstream failure redirected (error_page) into a location with a chain.
    locs.append(chain_loc("/redir/", CHAINS["native-4"],
                          f"{dead} error_page 502 = /native-4/fallback;"))
    locs.append(proxied("/srv/", CHAINS["native-4"], "proxy_pass_header Server;"))
    # A request body read but not changed: nginx's own copy goes upstream.
    locs.append(proxied("/measure/", [step("ngx-test-measure-body")]))
    # Only the body changes: nginx's head is kept, its Content-Length corrected.
    locs.append(proxied("/rb-only/", [step(N + "response-body")]))
    locs.append("    location /status { policyexec_status; }\n")
    return "".join(locs)


def expect_profile(env, profile, size, path_suffix="x", method="POST"):
    payload = os.urandom(size // 2).hex().encode()[:size]
    status, headers, body = request(env.port, method, f"/{profile}/{path_suffix}", payload)
    check(status == 200, f"{profile} {size} B: status {status}")
    if profile in ("none", "empty"):
        want, phase = payload, None
    elif profile == "python-rh":
        want, phase = payload, "response-header"
    else:
        want, phase = PREFIX_BODY + payload, "response-header"
    if method == "HEAD":
        want = b""
    check(body == want, f"{profile} {size} B {path_suffix}: body differs "
          f"(got {len(body)} bytes, want {len(want)}): {body[:80]!r}")
    check(headers.get(PHASE_HEADER) == phase,
          f"{profile} {size} B: {PHASE_HEADER} is {headers.get(PHASE_HEADER)!r}")
    if method != "HEAD" and "content-length" in headers:
        check(int(headers["content-length"]) == len(want), f"{profile}: Content-Length wrong")


def scenario_e2e(env):
    env.write_conf(env.main_conf(e2e_locations(env)))
    env.start()
    sizes = [50, 1024, 1 << 20, 8 << 20]
    for profile in ("none", "empty", "native-4", "python-4", "mix-4", "python-rh"):
        for size in sizes:
            expect_profile(env, profile, size)
        # a chunked upstream response, re-framed with Content-Length when held
        for size in (50, 1 << 20):
            expect_profile(env, profile, size, "chunked")
        expect_profile(env, profile, 50, method="HEAD")
    print("ok: profiles x sizes, chunked upstream, HEAD")

    for phase, path, body in (("request_headers", "/respond-rqh/x", b"abc"),
                              ("request_body", "/respond-rqb/x", b"abc"),
                              ("response_headers", "/respond-rsh/x", b"abc"),
                              ("response_body", "/respond-rsb/x", b"abc"),
                              ("response_headers", "/respond-rsh/chunked", b"x" * 200000)):
        status, headers, data = request(env.port, "POST", path, body)
        check(status == 403 and data == f"denied at {phase}\n".encode() and
              headers.get("x-why") == phase, f"{path}: {status} {headers} {data[:80]!r}")
        check("x-echo-method" not in headers, f"{path}: the upstream's head leaked")
    print("ok: immediate answers from each phase (request phases never reach the upstream)")

    status, _, data = request(env.port, "GET", "/raise-closed/x")
    check(status == 500, f"raise closed: {status} {data!r}")
    status, headers, data = request(env.port, "POST", "/raise-open/x", b"open")
    check(status == 200 and data == b"open", f"raise open: {status} {data!r}")
    t0 = time.monotonic()
    status, _, data = request(env.port, "GET", "/slow-closed/x")
    check(status == 504, f"timeout closed: {status} {data!r}")
    status, _, data = request(env.port, "POST", "/slow-open/x", b"late")
    check(status == 200 and data == b"late", f"timeout open: {status} {data!r}")
    check(time.monotonic() - t0 < 30, "timeouts took far longer than the step timeouts")
    # the error log names the step, the policy and the phase
    wait_for(lambda: re.search(r"ngx-test-raise.*request_headers|request_headers.*ngx-test-raise",
                               env.log()), "the raise in the error log", timeout=10)
    print("ok: raising and timing-out Python policies, closed (500/504) and open")

    status, headers, data = request(env.port, "POST", "/outer/x", b"in")
    check(data == PREFIX_BODY + b"in", f"outer: {data!r}")
    status, headers, data = request(env.port, "POST", "/outer/off/x", b"off")
    check(status == 200 and data == b"off" and PHASE_HEADER not in headers,
          f"policyexec off: {status} {headers} {data!r}")
    print("ok: policyexec off in a nested location")

    status, headers, data = request(env.port, "POST", "/redir/x", b"redirected")
    check(status == 200 and headers.get(PHASE_HEADER) == "response-header" and
          headers.get("x-echo-path") == "/native-4/fallback" and
          data.startswith(b"[sample-response-body]"),
          f"error_page into a chain: {status} {headers} {data!r}")
    print("ok: error_page redirects into another location's chain")

    conn = http.client.HTTPConnection("127.0.0.1", env.port, timeout=60)
    conn.request("GET", "/srv/x")
    resp = conn.getresponse()
    resp.read()
    servers = [v for k, v in resp.getheaders() if k.lower() == "server"]
    conn.close()
    check(servers == ["echo-backend"] or (len(servers) == 1 and "echo-backend" in servers[0]),
          f"Server fields after the chain: {servers}")
    print("ok: an upstream Server field passed on is not doubled by nginx's own")

    for suffix in ("x", "chunked"):
        status, headers, data = request(env.port, "POST", f"/rb-only/{suffix}", b"only")
        check(status == 200 and data == b"[sample-response-body]only" and
              headers.get("content-length") == str(len(data)) and
              headers.get("x-echo-method") == "POST" and PHASE_HEADER not in headers,
              f"rb-only {suffix}: {status} {headers} {data!r}")
    print("ok: a body-only change keeps the upstream's head with a new Content-Length")

    for size in (50, 1 << 20, 8 << 20):  # 8 MiB: nginx's temp file is what goes upstream
        payload = os.urandom(size)
        status, headers, data = request(env.port, "POST", "/measure/x", payload)
        check(status == 200 and data == payload and headers.get("x-measured") == str(size) and
              headers.get("x-echo-length") == str(size),
              f"measure {size}: {status} {headers.get('x-measured')} {len(data)}")
    print("ok: a request body read and left unchanged goes upstream from nginx's own buffers")

    status, _, data = request(env.port, "GET", "/ret/x")
    check(status == 200 and data == b"returned\n", f"return: {status} {data!r}")
    print("ok: 'return' (rewrite phase) answers before the chain runs")

    for raw in ("/prot/../prot/x", "/prot/%78", "//prot/x", "/prot/./x", "/other/../prot/x"):
        status, headers, data = request(env.port, "GET", raw)
        check(status == 200 and data == b"/prot/x", f"{raw}: {status} {data!r}")
    status, _, data = request(env.port, "GET", "/prot/a%20b?q=%2F")
    check(data == b"/prot/a%20b?q=%2F", f"escaped path: {data!r}")
    status, _, data = request(env.port, "GET", "/../prot/x")
    check(status == 400, f"a path above the root: {status} {data!r}")
    # proxy_pass without a URI part forwards the client's request target as sent
    status, headers, data = request(env.port, "GET", "/none/%78//y")
    check(headers.get("x-echo-path") == "/none/%78//y", f"upstream target: {headers}")
    print("ok: normalised paths reach the protected location's chain")

    status, headers, data = request(env.port, "POST", "/rewrite/x", b"body")
    check(headers.get("x-echo-path") == "/rewritten/a%20b?x=1" and
          headers.get("content-type") == "text/x-rewritten" and data == b"body",
          f"rewrite: {headers} {data!r}")
    print("ok: a policy's path and header edits reach the upstream")

    conn = http.client.HTTPConnection("127.0.0.1", env.port, timeout=60)
    conn.request("POST", "/edit/x", body=b"edit", headers={
        "Content-Type": "text/plain", "X-Drop-Me": "1", "X-Keep-Me": "k"})
    resp = conn.getresponse()
    data = resp.read()
    fields = [(k.lower(), v) for k, v in resp.getheaders()]
    conn.close()
    names = [k for k, _ in fields]
    check(resp.status == 200 and data == b"edit" and
          ("content-type", "text/x-edited") in fields and
          ("x-echo-method", "EDITED") in fields and "x-echo-length" not in names and
          ("x-added-resp", "2") in fields and ("x-echo-path", "/edit/x") in fields and
          names.count("server") == 1 and names.count("date") == 1 and
          names.count("x-echo-method") == 1 and names.count("content-type") == 1,
          f"edit: {resp.status} {fields} {data!r}")
    print("ok: changed, removed, added and kept fields in both heads")

    status, headers, data = request(env.port, "GET", "/static.txt")
    check(status == 200 and data == b"[sample-response-body]" + b"static file body\n" * 4096,
          f"static: {status} {len(data)}")
    print("ok: a static file through a response-body chain")

    status, headers, data = request(env.port, "GET", "/status")
    text = data.decode()
    m = re.search(r'policyexec_steps_total\{phase="request_body",outcome="ok"\} (\d+)', text)
    check(status == 200 and m and int(m.group(1)) > 0, f"status page: {text[:300]}")
    check(re.search(r'phase="request_headers",outcome="failed"\} [1-9]', text),
          "status page does not count the failed step")
    check(re.search(r'phase="request_headers",outcome="timeout"\} [1-9]', text),
          "status page does not count the timed-out step")
    print("ok: status page counts steps per phase and outcome")
    check("[alert]" not in env.log() and "[emerg]" not in env.log(), "alerts in the error log")


BAD_CHAINS = [
    ("unknown policy", '[{"name":"no-such-policy","version":"1.0.0"}]',
     "unknown policy"),
    ("unknown python policy", '[{"name":"sample-python-nope","version":"1.0.0"}]',
     "unknown policy"),
    ("bad params", '[{"name":"sample-native-request-header","version":"1.0.0",'
                   '"params":{"nope":1}}]', "nope"),
    ("malformed JSON", '[{"name":', "JSON"),
    ("bad member", '[{"name":"sample-native-request-header","version":"1.0.0",'
                   '"failure_mode":"sideways"}]', "failure_mode"),
]


def scenario_configtest(env):
    ok_loc = proxied("/good/", CHAINS["mix-4"])
    env.write_conf(env.main_conf(ok_loc))
    p = env.nginx("-t", check_rc=False)
    check(p.returncode == 0, f"a good config fails nginx -t: {p.stderr}")
    for what, text, needle in BAD_CHAINS:
        loc = ok_loc + f"    location /bad/ {{\n      policyexec_chain '{text}';\n    }}\n"
        env.write_conf(env.main_conf(loc))
        p = env.nginx("-t", check_rc=False)
        check(p.returncode != 0, f"{what}: nginx -t exits 0")
        check('location "/bad/"' in p.stderr and needle in p.stderr and "nginx.conf:" in p.stderr,
              f"{what}: message does not name the location and the fault: {p.stderr}")
        p = env.nginx(check_rc=False)
        check(p.returncode != 0 and not env.master_pid(), f"{what}: nginx started anyway")
        print(f"ok: nginx -t rejects {what}: "
              f"{[line for line in p.stderr.splitlines() if 'bad' in line][0]}")
    # a chain from a file that does not exist
    env.write_conf(env.main_conf("    location /bad/ { policyexec_chain file=missing.json; }\n"))
    p = env.nginx("-t", check_rc=False)
    check(p.returncode != 0 and "missing.json" in p.stderr, f"missing file: {p.stderr}")
    # a chain from a file
    with open(os.path.join(env.dir, "chain.json"), "w") as f:
        f.write(chain_json(CHAINS["native-4"]))
    env.write_conf(env.main_conf(
        "    location /f/ { policyexec_chain file=chain.json; proxy_pass http://echo; }\n"))
    env.start()
    status, headers, data = request(env.port, "POST", "/f/x", b"f")
    check(data == PREFIX_BODY + b"f", f"chain from file: {data!r}")
    print("ok: file= chains, missing file refused")
    # nginx -t leaves no Python worker behind
    check(all(ppid != 1 for _, ppid in env.pyworkers()), "orphan Python workers after nginx -t")


def load(env, stop, errors, counts, paths):
    while not stop.is_set():
        for path in paths:
            payload = os.urandom(64).hex().encode()
            try:
                status, headers, body = request(env.port, "POST", path, payload, timeout=60)
                want = payload if path.startswith("/none") else PREFIX_BODY + payload
                if status != 200 or body != want:
                    errors.append(f"{path}: {status} {body[:60]!r}")
            except Exception as e:  # noqa: BLE001 - any failure counts
                errors.append(f"{path}: {e!r}")
            counts[0] += 1


def check_no_orphans(env, workers_expected):
    """Every Python worker belongs to a live nginx worker."""
    def settled():
        workers = set(env.nginx_workers())
        py = env.pyworkers()
        return (len(workers) == workers_expected and
                all(ppid in workers for _, ppid in py) and len(py) == len(workers))
    wait_for(settled, f"pyworkers to match nginx workers: {env.pyworkers()} "
             f"vs {env.nginx_workers()}", timeout=60)


SCHED_BATCH = 3


def sched_policy(pid):
    """The scheduling policy of a process (field 41 of /proc/PID/stat)."""
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[38])


def reload_and_settle(env):
    """Reloads, then waits until only the new nginx workers run, each with
    its one Python worker (the old ones may linger while they finish)."""
    old = set(env.nginx_workers())
    env.nginx("-s", "reload")
    wait_for(lambda: not old & set(env.nginx_workers()), "the old nginx workers to go")
    check_no_orphans(env, 2)


def check_sched_batch(env, locs):
    """policyexec_sched_batch: off by default; on puts each nginx worker and,
    inherited, its Python workers under SCHED_BATCH, the master untouched."""
    procs = lambda: env.nginx_workers() + [pid for pid, _ in env.pyworkers()]
    check(all(sched_policy(p) != SCHED_BATCH for p in procs()),
          "SCHED_BATCH without policyexec_sched_batch")
    good = open(env.conf).read()
    env.write_conf(env.main_conf(locs, extra_http="  policyexec_sched_batch on;"))
    reload_and_settle(env)
    batch = procs()
    check(len(batch) == 4 and all(sched_policy(p) == SCHED_BATCH for p in batch) and
          sched_policy(env.master_pid()) != SCHED_BATCH,
          f"policyexec_sched_batch on: {[(p, sched_policy(p)) for p in batch]}")
    status, _, data = request(env.port, "POST", "/python-4/x", b"batch")
    check(data == PREFIX_BODY + b"batch", f"under SCHED_BATCH: {status} {data!r}")
    env.write_conf(good)
    reload_and_settle(env)
    print("ok: policyexec_sched_batch puts nginx workers and their Python workers "
          "under SCHED_BATCH")


def scenario_lifecycle(env):
    locs = (proxied("/python-4/", CHAINS["python-4"]) + proxied("/native-4/", CHAINS["native-4"]) +
            proxied("/sleepy/", [step("ngx-test-sleep", params={"ms": 1500}, timeout_ms=10000)]))
    env.write_conf(env.main_conf(locs))
    env.start()
    check_no_orphans(env, 2)
    check_sched_batch(env, locs)
    stop, errors, counts = threading.Event(), [], [0]
    threads = [threading.Thread(target=load, args=(env, stop, errors, counts,
                                                   ["/python-4/x", "/native-4/x"]))
               for _ in range(4)]
    for t in threads:
        t.start()
    try:
        for _ in range(3):
            time.sleep(1.0)
            env.nginx("-s", "reload")
        time.sleep(1.0)
    finally:
        stop.set()
        for t in threads:
            t.join()
    check(not errors, f"{len(errors)} failed requests during reloads: {errors[:5]}")
    check(counts[0] > 20, f"only {counts[0]} requests during the reloads")
    check_no_orphans(env, 2)
    print(f"ok: 3 reloads under load, {counts[0]} requests, none failed, no orphan")

    # A reload with a bad chain is refused: the old workers and chains stay.
    good = open(env.conf).read()
    env.write_conf(good.replace(chain_json(CHAINS["native-4"]),
                                '[{"name":"no-such-policy","version":"1.0.0"}]'))
    workers_before = set(env.nginx_workers())
    # "nginx -s reload" reads the configuration itself and refuses already;
    # SIGHUP makes the running master read it.
    p = env.nginx("-s", "reload", check_rc=False)
    check(p.returncode != 0 and "no-such-policy" in p.stderr, f"nginx -s reload: {p.stderr}")
    refused = env.log().count("no-such-policy")
    os.kill(env.master_pid(), signal.SIGHUP)
    wait_for(lambda: env.log().count("no-such-policy") > refused,
             "the master's refusal in the error log")
    status, headers, data = request(env.port, "POST", "/native-4/x", b"kept")
    check(data == PREFIX_BODY + b"kept" and set(env.nginx_workers()) == workers_before,
          f"after a refused reload: {status} {data!r}")
    env.write_conf(good)
    print("ok: a reload with a bad chain is refused, the running configuration stays")

    victim = env.nginx_workers()[0]
    os.kill(victim, signal.SIGKILL)
    wait_for(lambda: victim not in env.nginx_workers(), "the killed worker to go")
    check_no_orphans(env, 2)
    status, _, data = request(env.port, "POST", "/python-4/x", b"after")
    check(data == PREFIX_BODY + b"after", f"after a killed worker: {status} {data!r}")
    print("ok: a killed nginx worker leaves no Python worker behind")

    # A graceful quit waits for a request whose Python phase is pending,
    # then ends at once: nothing of the module holds a worker any longer.
    master = env.master_pid()
    slow = Background(lambda: request(env.port, "POST", "/sleepy/x", b"quit body", timeout=60))
    time.sleep(0.5)
    env.nginx("-s", "quit")
    slow.join(60)
    check(slow.error is None and slow.result[0] == 200 and slow.result[2] == b"quit body",
          f"request pending at quit: {slow.error or slow.result}")
    done_at = time.monotonic()
    wait_for(lambda: not pid_alive(master), "nginx to quit")
    check(time.monotonic() - done_at < 10, "nginx took more than 10 s to quit once idle")
    wait_for(lambda: not env.pyworkers(), "Python workers to exit")
    check(not env.socket_files(), f"socket files left: {env.socket_files()}")
    log = env.log()
    check("open socket" not in log, "open socket alert in the error log")
    alerts = [line for line in log.splitlines() if "[alert]" in line and
              f"worker process {victim} exited on signal 9" not in line]
    check(not alerts, "alerts in the error log: " + "\n".join(alerts))
    print("ok: quit leaves no process, socket file or alert")


def scenario_stream(env):
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import ngx_stream_tests
    ngx_stream_tests.scenario_stream(env, sys.modules[__name__])


def scenario_pystream(env):
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import ngx_pystream_tests
    ngx_pystream_tests.scenario_pystream(env, sys.modules[__name__])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--module", required=True)
    ap.add_argument("--libdir", required=True)
    ap.add_argument("--plugin", required=True)
    ap.add_argument("--pyworker", required=True)
    ap.add_argument("--python-paths", nargs="+", required=True)
    ap.add_argument("--echo", required=True)
    ap.add_argument("--test-plugin", help="the gateway's test policies (stream scenario)")
    ap.add_argument("--preload", help="LD_PRELOAD for nginx (sanitizer runtimes)")
    ap.add_argument("--keep", action="store_true", help="keep the scratch directory")
    ap.add_argument("scenario", choices=["e2e", "configtest", "lifecycle", "stream", "pystream"])
    args = ap.parse_args()
    if args.scenario == "stream" and not args.test_plugin:
        ap.error("the stream scenario needs --test-plugin")
    env = Env(args)
    failed = False
    try:
        {"e2e": scenario_e2e, "configtest": scenario_configtest,
         "lifecycle": scenario_lifecycle, "stream": scenario_stream,
         "pystream": scenario_pystream}[args.scenario](env)
    except Failure as e:
        failed = True
        print(f"FAIL: {e}")
        print("---- error log (tail) ----")
        try:
            print("\n".join(env.log().splitlines()[-40:]))
        except OSError:
            pass
    finally:
        env.close(keep=args.keep or failed)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
