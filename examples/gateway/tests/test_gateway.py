#!/usr/bin/python3
"""End-to-end tests of policyexec-gateway (standard library only).

Each scenario starts the echo backend and a gateway with a generated
configuration on free ports, talks to it over real sockets, and stops both.

  test_gateway.py --gateway BIN --plugin SO --python-paths DIR
                  --python-available ON|OFF SCENARIO

Scenarios: smoke, admin, errors, chunked, shutdown, config, paths, framing,
pipelining, slowloris, slow_reader, abandoned, fd_limit, spares, admin_async,
downloads, uploads, stream_failures, redaction, python_stream, python_upload.
Exit status 0 on success, 1 on failure, 77 when the scenario cannot run here
(CTest skip).
"""

import argparse
import hashlib
import http.client
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import echo_backend  # noqa: E402  (the pattern /gen serves)
PHASE_HEADER = "x-sample-policy-phase"
MARKERS = b"[sample-response-body][sample-request-body]"

NATIVE_4 = ["sample-native-response-header", "sample-native-request-body",
            "sample-native-response-header", "sample-native-response-body"]
PYTHON_4 = [n.replace("native", "python") for n in NATIVE_4]
MIX_4 = ["sample-native-response-header", "sample-python-request-body",
         "sample-native-response-body", "sample-python-response-header"]


class Failure(Exception):
    pass


def check(condition, message):
    if not condition:
        raise Failure(message)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def chain(names):
    return [{"name": n, "version": "1.0.0", "params": {}, "failure_mode": "closed"}
            for n in names]


def wait_until(predicate, what, limit_s=60.0):
    """Polls @predicate; the limit only stops a hung start, nothing is timed."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise Failure("gave up waiting for " + what)


def port_open(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


class Setup:
    """The echo backend and one gateway, with a config built from @apis."""

    def __init__(self, args, apis, python=False, limits=None, upstream_timeout_ms=None,
                 extra=None, nofile=None, python_timeout_ms=2000):
        self.args = args
        self.tmp = tempfile.TemporaryDirectory(prefix="gw-test-")
        self.backend_port = free_port()
        self.port = free_port()
        self.admin_port = free_port()
        config = {
            "listen": "127.0.0.1:%d" % self.port,
            "admin": "127.0.0.1:%d" % self.admin_port,
            "threads": 2,
            "plugins": [args.plugin, args.test_plugin],
            "apis": [dict(api, upstream=api.get("upstream", self.backend_url)) for api in apis],
        }
        if python:
            config["python"] = {"workers": 2, "timeout_ms": python_timeout_ms,
                                "paths": [args.python_paths, os.path.join(HERE, "python")]}
            # Pinned threads and workers under SCHED_BATCH, as in the sample config.
            config["cpu_affinity"] = True
            config["sched_batch"] = True
        if limits:
            config["limits"] = limits
        if upstream_timeout_ms:
            config["upstream_timeout_ms"] = upstream_timeout_ms
        config.update(extra or {})
        self.nofile = nofile
        self.config_path = os.path.join(self.tmp.name, "gateway.json")
        with open(self.config_path, "w") as f:
            json.dump(config, f)
        self.backend = None
        self.gateway = None

    @property
    def backend_url(self):
        return "http://127.0.0.1:%d" % self.backend_port

    def __enter__(self):
        self.backend = subprocess.Popen(
            [sys.executable, os.path.join(HERE, "echo_backend.py"), "--port",
             str(self.backend_port)])
        wait_until(lambda: port_open(self.backend_port), "the echo backend")
        self.log = open(os.path.join(self.tmp.name, "gateway.log"), "w+")
        limit = self.nofile

        def lower_fd_limit():  # in the child only: like `ulimit -n` before the start
            resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))

        self.gateway = subprocess.Popen([self.args.gateway, "--config", self.config_path],
                                        stderr=self.log,
                                        preexec_fn=lower_fd_limit if limit else None)
        try:
            wait_until(lambda: self.gateway.poll() is not None or self.admin_ok(), "the gateway")
            if self.gateway.poll() is not None:
                raise Failure("the gateway exited at start:\n" + self.gateway_log())
        except BaseException:
            self.__exit__(*sys.exc_info())  # stops the backend too: no stray process
            raise
        return self

    def admin_ok(self):
        try:
            return self.admin("GET", "/health")[0] == 200
        except OSError:
            return False

    def gateway_log(self):
        self.log.flush()
        self.log.seek(0)
        return self.log.read()

    def __exit__(self, *exc):
        # Every scenario ends with a graceful stop, which must exit 0: under
        # the sanitizers that also proves the run leaked and corrupted nothing.
        code = None
        if self.gateway and self.gateway.poll() is None:
            self.gateway.send_signal(signal.SIGTERM)
            try:
                code = self.gateway.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.gateway.kill()
                self.gateway.wait()
        if self.backend:
            self.backend.kill()
            self.backend.wait()
        failed = exc[0] is not None or (code is not None and code != 0)
        if failed:
            sys.stderr.write("--- gateway log ---\n" + self.gateway_log())
        self.log.close()
        self.tmp.cleanup()
        if exc[0] is None and code is not None and code != 0:
            raise Failure("the gateway exited with status %d after SIGTERM" % code)

    def connect(self):
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)

    def status_kib(self, field):
        """A VmRSS-like field of the gateway's /proc status, in KiB."""
        with open("/proc/%d/status" % self.gateway.pid) as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
        raise Failure("no %s in the gateway's status" % field)

    def request(self, method, path, body=None, headers=None, conn=None, chunked=False):
        own = conn is None
        conn = conn or self.connect()
        try:
            conn.request(method, path, body=body, headers=headers or {}, encode_chunked=chunked)
            resp = conn.getresponse()
            return resp.status, resp.headers, resp.read()
        finally:
            if own:
                conn.close()

    def admin(self, method, path, body=None):
        conn = http.client.HTTPConnection("127.0.0.1", self.admin_port, timeout=30)
        try:
            conn.request(method, path, body=body)
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()

    def raw(self, data):
        """Sends raw bytes on a new connection; returns the response head
        and Content-Length body that came back (the server may keep the
        connection open, or close it early on a refused request)."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=30) as s:
            try:
                s.sendall(data)
            except (BrokenPipeError, ConnectionResetError):
                pass
            received = b""
            while True:
                head, sep, body = received.partition(b"\r\n\r\n")
                if sep:
                    length = 0
                    for line in head.split(b"\r\n")[1:]:
                        name, _, value = line.partition(b":")
                        if name.strip().lower() == b"content-length":
                            length = int(value)
                    if len(body) >= length:
                        return received
                try:
                    piece = s.recv(65536)
                except ConnectionResetError:
                    piece = b""
                if not piece:
                    return received
                received += piece


def status_of(raw_response):
    check(raw_response.startswith(b"HTTP/1."), "no HTTP response: %r" % raw_response[:80])
    return int(raw_response.split(b" ", 2)[1])


def expect_policied(status, headers, body, payload, what):
    check(status == 200, "%s: status %d" % (what, status))
    check(headers.get(PHASE_HEADER) == "response-header",
          "%s: %s is %r" % (what, PHASE_HEADER, headers.get(PHASE_HEADER)))
    check(body == MARKERS + payload, "%s: body %r" % (what, body[:120]))


def expect_plain(status, headers, body, payload, what):
    check(status == 200, "%s: status %d" % (what, status))
    check(headers.get(PHASE_HEADER) is None, "%s: unexpected %s" % (what, PHASE_HEADER))
    check(body == payload, "%s: body %r" % (what, body[:120]))


def profile_apis(python):
    apis = [{"name": "no-policies", "context": "/no-policies", "policies": []},
            {"name": "native-4", "context": "/native-4", "policies": chain(NATIVE_4)}]
    if python:
        apis += [{"name": "python-4", "context": "/python-4", "policies": chain(PYTHON_4)},
                 {"name": "mix-4", "context": "/mix-4", "policies": chain(MIX_4)}]
    return apis


# ---- scenarios ----

def scenario_smoke(args):
    """A few hundred requests per profile over concurrent keep-alive
    connections; every response is checked."""
    python = args.python_available
    if not python:
        print("SKIP python-4 and mix-4: the Python backend is not built here")
    per_profile, workers = 320, 4
    with Setup(args, profile_apis(python), python=python) as gw:
        profiles = ["no-policies", "native-4"] + (["python-4", "mix-4"] if python else [])
        for profile in profiles:
            errors = []

            def client(worker, profile=profile, errors=errors):
                conn = gw.connect()
                try:
                    for i in range(per_profile // workers):
                        payload = ("%s-%d-%d-" % (profile, worker, i)).encode() * (1 + i % 7)
                        status, headers, body = gw.request(
                            "POST", "/%s/echo?i=%d" % (profile, i), body=payload,
                            headers={"Content-Type": "text/plain"}, conn=conn)
                        expect = expect_plain if profile == "no-policies" else expect_policied
                        expect(status, headers, body, payload, "%s #%d" % (profile, i))
                        check(headers.get("Content-Length") == str(len(body)),
                              "%s: Content-Length %r for %d bytes" %
                              (profile, headers.get("Content-Length"), len(body)))
                except Exception as e:  # collected: threads cannot raise to main
                    errors.append(e)
                finally:
                    conn.close()

            threads = [threading.Thread(target=client, args=(w,)) for w in range(workers)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            check(not errors, "%s: %d failures, first: %s" % (profile, len(errors),
                                                              errors[0] if errors else ""))
            print("%s: %d/%d responses correct" % (profile, per_profile, per_profile))

        status, metrics = gw.admin("GET", "/metrics")
        text = metrics.decode()
        check(status == 200, "/metrics status %d" % status)
        for profile in profiles:
            line = 'policyexec_gateway_requests_total{api="%s",code="2xx"} %d' % (
                profile, per_profile)
            check(line in text, "/metrics lacks %r" % line)
        check('policyexec_policy_executions_total{policy="sample-native-request-body",'
              'version="1.0.0",phase="request_body"} %d' % per_profile in text,
              "/metrics lacks the native request-body executions")
        check("policyexec_gateway_request_duration_seconds_bucket" in text,
              "/metrics lacks the latency histogram")
        if python:
            check("policyexec_python_worker_restarts_total" in text,
                  "/metrics lacks the worker restarts")
            # sched_batch: the gateway's threads and its workers inherit it.
            pid = gw.gateway.pid
            tids = [int(t) for t in os.listdir("/proc/%d/task" % pid)]
            children = []
            for tid in tids:
                with open("/proc/%d/task/%d/children" % (pid, tid)) as f:
                    children += [int(c) for c in f.read().split()]
            check(len(children) == 2, "expected 2 python workers, found %r" % children)
            for who in tids + children:
                check(os.sched_getscheduler(who) == os.SCHED_BATCH,
                      "thread/process %d is not under SCHED_BATCH" % who)


def scenario_admin(args):
    """POST creates and replaces, GET lists, DELETE removes; a bad chain is
    refused and leaves the table as it was."""
    with Setup(args, profile_apis(False)) as gw:
        status, body = gw.admin("GET", "/apis")
        names = sorted(api["name"] for api in json.loads(body))
        check(status == 200 and names == ["native-4", "no-policies"], "GET /apis: %r" % names)
        check(gw.admin("GET", "/health")[0] == 200, "GET /health")

        check(gw.request("POST", "/added/x", body=b"hi")[0] == 404, "/added before POST")
        api = {"name": "added", "context": "/added", "upstream": gw.backend_url,
               "policies": chain(NATIVE_4)}
        status, body = gw.admin("POST", "/apis", json.dumps(api))
        check(status == 200, "POST /apis: %d %r" % (status, body))
        expect_policied(*gw.request("POST", "/added/x", body=b"hi"), b"hi", "added API")

        # Replace on a live keep-alive connection: the next request sees the new chain.
        conn = gw.connect()
        expect_policied(*gw.request("POST", "/added/y", body=b"a", conn=conn), b"a", "before")
        api["policies"] = []
        check(gw.admin("POST", "/apis", json.dumps(api))[0] == 200, "replace")
        expect_plain(*gw.request("POST", "/added/y", body=b"b", conn=conn), b"b", "replaced")
        conn.close()

        bad = dict(api, policies=chain(["no-such-policy"]))
        status, body = gw.admin("POST", "/apis", json.dumps(bad))
        check(status == 400 and b"no-such-policy" in body, "bad chain: %d %r" % (status, body))
        expect_plain(*gw.request("POST", "/added/z", body=b"c"), b"c", "after refused POST")
        check(gw.admin("POST", "/apis", b"{not json")[0] == 400, "POST invalid JSON")
        check(gw.admin("POST", "/apis", json.dumps({"name": "x"}))[0] == 400,
              "POST without context")

        check(gw.admin("DELETE", "/apis/added")[0] == 200, "DELETE /apis/added")
        check(gw.request("POST", "/added/x", body=b"hi")[0] == 404, "/added after DELETE")
        check(gw.admin("DELETE", "/apis/added")[0] == 404, "DELETE twice")
        status, body = gw.admin("GET", "/apis")
        check([a["name"] for a in json.loads(body)].count("added") == 0, "GET after DELETE")
        check(gw.admin("PUT", "/apis")[0] == 405, "PUT /apis")


def scenario_errors(args):
    """404, 400, 413, 431, 502 and 504, none of which disturbs a keep-alive
    connection that is open meanwhile."""
    dead_port = free_port()  # nothing listens there
    apis = profile_apis(False) + [
        {"name": "dead", "context": "/dead", "upstream": "http://127.0.0.1:%d" % dead_port,
         "policies": []},
        {"name": "dead-native", "context": "/dead-native",
         "upstream": "http://127.0.0.1:%d" % dead_port, "policies": chain(NATIVE_4)}]
    limits = {"body_bytes": 65536, "header_bytes": 8192}
    with Setup(args, apis, limits=limits, upstream_timeout_ms=500) as gw:
        bystander = gw.connect()
        expect_plain(*gw.request("POST", "/no-policies/a", body=b"1", conn=bystander), b"1",
                     "bystander")

        check(gw.request("GET", "/nowhere")[0] == 404, "unknown path")
        check(gw.request("GET", "/no-policiesX")[0] == 404, "context matches whole segments")
        check(status_of(gw.raw(b"NONSENSE\r\n\r\n")) == 400, "malformed request line")
        check(status_of(gw.raw(b"GET /no-policies/a HTTP/1.1\r\nHost: x\r\nbad header\r\n\r\n"))
              == 400, "malformed header line")
        check(status_of(gw.raw(b"GET /no-policies/a HTTP/1.1\r\nHost: x\r\n"
                               b"Content-Length: zz\r\n\r\n")) == 400, "bad Content-Length")

        big = b"x" * 70000
        # The body limit binds only a chain that wants the body whole: a
        # chain with no body step streams it, whatever its size.
        for path, want in (("/no-policies/big", 200), ("/native-4/big", 413)):
            status = status_of(gw.raw(b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n"
                                      b"\r\n" % (path.encode(), len(big)) + big))
            check(status == want, "%s oversize body: %d" % (path, status))
        check(gw.request("POST", "/native-4/ok", body=b"y" * 60000)[0] == 200, "body under limit")

        status = status_of(gw.raw(b"GET /no-policies/h HTTP/1.1\r\nHost: x\r\nX-Big: " +
                                  b"h" * 9000 + b"\r\n\r\n"))
        check(status == 431, "oversize header: %d" % status)

        for path in ("/dead/x", "/dead-native/x"):
            status, _, _ = gw.request("POST", path, body=b"z")
            check(status == 502, "%s unreachable upstream: %d" % (path, status))
        status, _, _ = gw.request("GET", "/no-policies/slow?ms=3000")
        check(status == 504, "slow upstream: %d" % status)
        status, _, _ = gw.request("POST", "/native-4/slow?ms=3000", body=b"s")
        check(status == 504, "slow upstream, buffered: %d" % status)

        expect_plain(*gw.request("POST", "/no-policies/b", body=b"2", conn=bystander), b"2",
                     "bystander after the errors")
        expect_policied(*gw.request("POST", "/native-4/b", body=b"3", conn=bystander), b"3",
                        "bystander, policies")
        bystander.close()
        check(gw.gateway.poll() is None, "the gateway died")


def scenario_chunked(args):
    """Chunked bodies both ways: a chunked request body is forwarded with
    its real length; a chunked upstream response streams through, or is
    buffered and sent with a Content-Length when the chain needs it."""
    with Setup(args, profile_apis(False)) as gw:
        pieces = [b"alpha-", b"beta-" * 100, b"gamma"]
        payload = b"".join(pieces)
        for profile in ("no-policies", "native-4"):
            conn = gw.connect()
            status, headers, body = gw.request(
                "POST", "/%s/c" % profile, body=iter(pieces),
                headers={"Transfer-Encoding": "chunked"}, conn=conn, chunked=True)
            expect = expect_plain if profile == "no-policies" else expect_policied
            expect(status, headers, body, payload, "%s chunked request" % profile)
            check(headers.get("X-Echo-Length") == str(len(payload) + (
                0 if profile == "no-policies" else len(b"[sample-request-body]"))),
                "%s: upstream saw %r bytes" % (profile, headers.get("X-Echo-Length")))

            status, headers, body = gw.request("POST", "/%s/chunked" % profile, body=payload,
                                               conn=conn)
            expect(status, headers, body, payload, "%s chunked response" % profile)
            if profile == "no-policies":
                check(headers.get("Transfer-Encoding") == "chunked",
                      "streamed response not chunked: %r" % dict(headers))
            else:
                check(headers.get("Content-Length") == str(len(body)),
                      "buffered response length %r" % headers.get("Content-Length"))
            # The connection is still good for another request.
            expect(*gw.request("POST", "/%s/again" % profile, body=b"q", conn=conn), b"q",
                   "%s after chunked" % profile)
            conn.close()

        # Pipelining: two requests in one write come back in order.
        with socket.create_connection(("127.0.0.1", gw.port), timeout=30) as s:
            s.sendall(b"POST /native-4/p1 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\none"
                      b"POST /no-policies/p2 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
                      b"Connection: close\r\n\r\ntwo")
            received = b""
            while True:
                piece = s.recv(65536)
                if not piece:
                    break
                received += piece
        first = received.find(MARKERS + b"one")
        second = received.find(b"\r\n\r\ntwo")
        check(received.count(b"HTTP/1.1 200") == 2 and 0 <= first < second,
              "pipelined responses: %r" % received)

        status, headers, body = gw.request("HEAD", "/no-policies/h")
        check(status == 200 and body == b"", "HEAD: %d %r" % (status, body))
        status, headers, body = gw.request("GET", "/native-4/g")
        expect_policied(status, headers, body, b"", "GET without body")


def scenario_shutdown(args):
    """SIGTERM: a request in flight still gets its answer, then the gateway
    exits 0 and accepts nothing more."""
    with Setup(args, profile_apis(False)) as gw:
        result = {}

        def slow_request():
            try:
                result["response"] = gw.request("POST", "/native-4/slow?ms=1500", body=b"late")
            except Exception as e:  # reported below
                result["error"] = e

        t = threading.Thread(target=slow_request)
        t.start()
        # Wait (no timing assumption) until the backend has the request: the
        # gateway reports it in flight through its metrics only at the end, so
        # watch the backend's connection instead.
        wait_until(lambda: backend_busy(gw.backend_port), "the request to reach the backend")
        gw.gateway.send_signal(signal.SIGTERM)
        t.join()
        check("error" not in result, "in-flight request failed: %s" % result.get("error"))
        expect_policied(*result["response"], b"late", "request in flight at SIGTERM")
        code = gw.gateway.wait(timeout=60)
        check(code == 0, "exit status %d" % code)
        check(not port_open(gw.port), "still accepting after exit")


def backend_busy(port):
    """Whether some connection to @port is established (from /proc/net/tcp)."""
    hex_port = ":%04X" % port
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            if fields[2].endswith(hex_port) and fields[3] == "01":
                return True
    return False


def scenario_config(args):
    """Bad configuration files: a clear message on stderr and exit status 1,
    before anything starts."""
    cases = [
        ("not json", "{", "gateway.json"),
        ("a bad member", {"listen": "127.0.0.1:1", "bogus": 1}, "bogus"),
        ("a bad cpu_affinity", {"cpu_affinity": "yes"}, '"cpu_affinity" must be true or false'),
        ("a bad sched_batch", {"sched_batch": 1}, '"sched_batch" must be true or false'),
        ("a bad threads", {"threads": -1}, "threads"),
        ("a bad client member", {"client": {"header_timeout": 5}}, 'client: unknown member'),
        ("a bad send timeout", {"client": {"send_timeout_ms": 0}}, '"send_timeout_ms" must be'),
        ("a bad stream buffer", {"client": {"stream_buffer_bytes": 10}},
         '"stream_buffer_bytes" must be'),
        ("a bad backlog", {"listen_backlog": 0}, '"listen_backlog" must be'),
        ("a bad spare budget", {"spare_exchange_bytes": "1M"}, '"spare_exchange_bytes" must be'),
        ("a bad context", {"apis": [{"name": "a", "context": "/a b",
                                     "upstream": "http://127.0.0.1:1"}]},
         'api a: "context" /a b is not a normalised path'),
        ("a bad python.virtualenv", {"python": {"virtualenv": ""}},
         '"python.virtualenv" must be a non-empty string'),
        ("a virtualenv of no interpreter", {"python": {"virtualenv": "/nonexistent-venv"}},
         "not a virtualenv of this interpreter"),
    ]
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "gateway.json")
        for what, config, expected in cases:
            with open(path, "w") as f:
                f.write(config if isinstance(config, str) else json.dumps(config))
            run = subprocess.run([args.gateway, "--config", path], capture_output=True,
                                 text=True, timeout=30)
            check(run.returncode == 1, "%s: exit status %d" % (what, run.returncode))
            check(expected in run.stderr, "%s: stderr %r lacks %r" % (what, run.stderr, expected))
            print("%s: refused (%s)" % (what, run.stderr.strip()))


def upstream_connections(backend_port):
    """Established connections to @backend_port, seen from the gateway's end."""
    hex_port = ":%04X" % backend_port
    count = 0
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            if fields[2].endswith(hex_port) and fields[3] == "01":
                count += 1
    return count


def closed_by_server(sock, limit_s):
    """Reads (and drops) what @sock receives until the server closes it;
    True if that happens within @limit_s, False if it is still open then."""
    sock.settimeout(0.2)
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        try:
            if not sock.recv(65536):
                return True
        except socket.timeout:
            continue
        except (ConnectionResetError, BrokenPipeError):
            return True
    return False


def read_responses(sock, limit_s=30):
    """Reads until the server closes @sock; returns everything received."""
    sock.settimeout(limit_s)
    received = b""
    while True:
        try:
            piece = sock.recv(65536)
        except ConnectionResetError:
            break
        if not piece:
            break
        received += piece
    return received


def scenario_paths(args):
    """Routing on the normalised path: no spelling of a path protected by a
    longer context reaches the upstream through a shorter one; what cannot
    be normalised is refused. Host fields, DEL and contexts are checked."""
    apis = [{"name": "static", "context": "/static", "policies": []},
            {"name": "secret", "context": "/static/secret",
             "policies": chain(["gw-test-deny"])},
            {"name": "no-policies", "context": "/no-policies", "policies": []}]
    with Setup(args, apis) as gw:
        for spelling in ("/static/secret/file.txt", "/static/../static/secret/file.txt",
                         "/static/%73ecret/file.txt", "/static//secret/file.txt",
                         "/static/./secret/file.txt", "/static/%2e%2e/static/secret/file.txt",
                         "//static/secret/file.txt"):
            status, _, body = gw.request("GET", spelling)
            check(status == 403, "%s: status %d %r (the upstream was reached)" %
                  (spelling, status, body[:80]))
        for spelling in ("/static/%2Fsecret/file.txt", "/static%2fsecret/file.txt",
                         "/static\\\\secret/file.txt", "/static/%5Csecret", "/static/%00/x",
                         "/static/%zz", "/static/../../secret", "/static/a#b"):
            status = status_of(gw.raw(b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % spelling.encode()))
            check(status == 400, "%s: status %d, not refused" % (spelling, status))
        # What the upstream receives: the normalised path, the query as sent.
        status, headers, _ = gw.request("GET", "/static/a/./b//%7Ejoe/../c%3f?q=/../%2F")
        check(status == 200 and headers.get("X-Echo-Path") == "/static/a/b/c%3F?q=/../%2F",
              "upstream path %r" % headers.get("X-Echo-Path"))

        # Host: exactly one in HTTP/1.1 (RFC 9112 section 3.2).
        two = gw.raw(b"GET /static/x HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n")
        check(status_of(two) == 400, "two Host fields: %r" % two[:60])
        none = gw.raw(b"GET /static/x HTTP/1.1\r\n\r\n")
        check(status_of(none) == 400, "no Host in HTTP/1.1: %r" % none[:60])
        check(status_of(gw.raw(b"GET /static/x HTTP/1.0\r\n\r\n")) == 200, "HTTP/1.0 without Host")
        check(status_of(gw.raw(b"GET /static/x HTTP/1.1\r\nHost: x\r\nX-A: a\x7fb\r\n\r\n"))
              == 400, "DEL in a field value")

        # A context that no normalised path can match is refused.
        for context in ("/a b", "/a//b", "/a/./b", "/%61b", "/a?b"):
            api = {"name": "bad", "context": context, "upstream": gw.backend_url}
            status, body = gw.admin("POST", "/apis", json.dumps(api))
            check(status == 400 and b"context" in body,
                  "context %r: %d %r" % (context, status, body))
        api = {"name": "good", "context": "/a%20b", "upstream": gw.backend_url}
        check(gw.admin("POST", "/apis", json.dumps(api))[0] == 200, "context /a%20b")
        check(gw.request("GET", "/a%20b/x")[0] == 200, "request on /a%20b")

        # The listen backlog is the configured one, 1024 by default (ss shows
        # it as Send-Q; the kernel caps it at net.core.somaxconn).
        with open("/proc/sys/net/core/somaxconn") as f:
            expected = min(1024, int(f.read()))
        run = subprocess.run(["ss", "-Hltn", "sport = :%d" % gw.port], capture_output=True,
                             text=True, timeout=30)
        backlogs = [int(line.split()[2]) for line in run.stdout.splitlines() if line.strip()]
        check(backlogs and all(b == expected for b in backlogs),
              "listen backlogs %r, expected %d" % (backlogs, expected))


def scenario_framing(args):
    """The gateway owns a response's framing: a policy that sets or removes
    Content-Length on a streamed response changes nothing on the wire; a
    broken upstream response that nothing was sent of yet is a 502."""
    apis = [{"name": "set-length", "context": "/set-length",
             "policies": chain(["gw-test-set-length"])},
            {"name": "drop-length", "context": "/drop-length",
             "policies": chain(["gw-test-drop-length"])},
            {"name": "no-policies", "context": "/no-policies", "policies": []}]
    with Setup(args, apis) as gw:
        for profile in ("set-length", "drop-length"):
            conn = gw.connect()
            for i in range(2):  # the second request proves the connection still in sync
                status, headers, body = gw.request("GET", "/%s/stream?bytes=5000" % profile,
                                                   conn=conn)
                check(status == 200 and body == b"x" * 5000,
                      "%s #%d: %d, %d bytes" % (profile, i, status, len(body)))
                check(headers.get("Content-Length") == "5000",
                      "%s: Content-Length %r" % (profile, headers.get("Content-Length")))
            status, headers, body = gw.request("POST", "/%s/chunked" % profile, body=b"abc" * 99,
                                               conn=conn)
            check(status == 200 and body == b"abc" * 99 and
                  headers.get("Transfer-Encoding") == "chunked" and
                  headers.get("Content-Length") is None,
                  "%s chunked: %d %r %r" % (profile, status, dict(headers), body[:40]))
            status, headers, body = gw.request("HEAD", "/%s/stream?bytes=77" % profile, conn=conn)
            check(status == 200 and body == b"" and headers.get("Content-Length") == "77",
                  "%s HEAD: %d %r" % (profile, status, dict(headers)))
            conn.close()
        raw = gw.raw(b"GET /no-policies/badchunk HTTP/1.1\r\nHost: x\r\n\r\n")
        check(raw.startswith(b"HTTP/1.1 502"), "bad chunk size: %r" % raw[:80])
        expect_plain(*gw.request("POST", "/no-policies/after", body=b"ok"), b"ok", "after")


def scenario_pipelining(args):
    """Nothing after a request with Connection: close is forwarded or
    answered; pipelined requests followed by a half-close are all answered."""
    with Setup(args, profile_apis(False)) as gw:
        with socket.create_connection(("127.0.0.1", gw.port), timeout=30) as s:
            s.sendall(b"GET /no-policies/first HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                      b"GET /no-policies/second HTTP/1.1\r\nHost: x\r\n\r\n")
            received = read_responses(s)
        check(received.count(b"HTTP/1.1 ") == 1 and b"/no-policies/second" not in received,
              "after Connection: close: %r" % received)

        for profile in ("no-policies", "native-4"):
            with socket.create_connection(("127.0.0.1", gw.port), timeout=30) as s:
                s.sendall(b"".join(b"POST /%s/p%d HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"
                                   b"\r\n%02d" % (profile.encode(), i, i) for i in range(10)))
                s.shutdown(socket.SHUT_WR)
                received = read_responses(s)
            check(received.count(b"HTTP/1.1 200") == 10,
                  "%s: %d responses to 10 pipelined requests and a half-close: %r" %
                  (profile, received.count(b"HTTP/1.1 200"), received[-200:]))
            positions = [received.find(b"X-Echo-Path: /%s/p%d\r\n" % (profile.encode(), i))
                         for i in range(10)]
            check(-1 not in positions and positions == sorted(positions),
                  "%s: responses out of order" % profile)


def scenario_slowloris(args):
    """A request head (or body) that trickles in is closed once its whole
    time is up, however often a byte arrives."""
    client = {"header_timeout_ms": 1500, "body_timeout_ms": 1500, "body_min_rate": 100000}
    with Setup(args, profile_apis(False), extra={"client": client}) as gw:
        with socket.create_connection(("127.0.0.1", gw.port), timeout=30) as s:
            s.sendall(b"GET /no-policies/x HTTP/1.1\r\n")
            closed = False
            deadline = time.monotonic() + 10
            while not closed and time.monotonic() < deadline:
                try:
                    s.sendall(b"X")  # one byte of a header name every 0.3 s
                except (BrokenPipeError, ConnectionResetError):
                    closed = True
                    break
                closed = closed_by_server(s, 0.3)
            check(closed, "a head trickling in was held for 10 s (head timeout 1.5 s)")

        with socket.create_connection(("127.0.0.1", gw.port), timeout=30) as s:
            s.sendall(b"POST /no-policies/x HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n")
            closed = False
            deadline = time.monotonic() + 10
            while not closed and time.monotonic() < deadline:
                try:
                    s.sendall(b"y" * 10)  # 33 bytes/s, far below the minimum rate
                except (BrokenPipeError, ConnectionResetError):
                    closed = True
                    break
                closed = closed_by_server(s, 0.3)
            check(closed, "a body trickling in was held for 10 s")
        # An ordinary request still works, and a whole head in time is fine.
        expect_plain(*gw.request("POST", "/no-policies/ok", body=b"ok"), b"ok", "after")


def scenario_slow_reader(args):
    """Clients that read nothing of a large streamed response: the gateway
    holds at most its stream buffer for each, and closes them (and their
    upstream connections) after the send timeout."""
    client = {"send_timeout_ms": 1000, "stream_buffer_bytes": 65536}
    with Setup(args, profile_apis(False), extra={"client": client}) as gw:
        socks = []
        for i in range(5):
            s = socket.create_connection(("127.0.0.1", gw.port), timeout=30)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.sendall(b"GET /no-policies/stream?bytes=67108864 HTTP/1.1\r\nHost: x\r\n\r\n")
            socks.append(s)
        wait_until(lambda: upstream_connections(gw.backend_port) == 5, "5 upstream requests")
        try:
            wait_until(lambda: upstream_connections(gw.backend_port) == 0,
                       "the send timeout to close the upstream connections", limit_s=20)
        finally:
            for s in socks:
                s.close()
        expect_plain(*gw.request("POST", "/no-policies/ok", body=b"ok"), b"ok", "after")


def scenario_abandoned(args):
    """Clients that leave an endless streamed response: their upstream
    connections are closed with them."""
    with Setup(args, profile_apis(False)) as gw:
        for i in range(5):
            with socket.create_connection(("127.0.0.1", gw.port), timeout=30) as s:
                s.sendall(b"GET /no-policies/endless HTTP/1.1\r\nHost: x\r\n\r\n")
                got = b""
                while len(got) < 100000:
                    got += s.recv(65536)
            # closed with unread data: the gateway's next write fails
        wait_until(lambda: upstream_connections(gw.backend_port) == 0,
                   "the upstream connections of abandoned streams to close", limit_s=20)
        expect_plain(*gw.request("POST", "/no-policies/ok", body=b"ok"), b"ok", "after")


def process_cpu_s(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def scenario_fd_limit(args):
    """Out of file descriptors (ulimit -n 64, 80 idle connections): the
    gateway neither spins nor floods its log, and a new client is served
    because the oldest idle connections make room."""
    with Setup(args, profile_apis(False), nofile=64) as gw:
        idle = []
        try:
            for i in range(80):
                idle.append(socket.create_connection(("127.0.0.1", gw.port), timeout=30))
            time.sleep(0.5)  # the gateway meets the limit
            cpu_before, log_before = process_cpu_s(gw.gateway.pid), len(gw.gateway_log())
            time.sleep(2)
            cpu = process_cpu_s(gw.gateway.pid) - cpu_before
            logged = len(gw.gateway_log()) - log_before
            check(cpu < 1.0, "the gateway used %.2f s of CPU in 2 s at the fd limit" % cpu)
            check(logged < 4096, "the gateway logged %d bytes in 2 s at the fd limit" % logged)
            status, _, body = gw.request("POST", "/no-policies/new", body=b"new")
            check(status == 200 and body == b"new", "a new client at the fd limit: %d" % status)
        finally:
            for s in idle:
                s.close()
        status, metrics = gw.admin("GET", "/metrics")
        check(b"policyexec_gateway_accept_failures_total " in metrics, "no accept failure metric")

    # Nothing idle to close (every connection has a request head under way):
    # accepting pauses instead of spinning.
    with Setup(args, profile_apis(False), nofile=64) as gw:
        busy = []
        try:
            for i in range(80):
                s = socket.create_connection(("127.0.0.1", gw.port), timeout=30)
                s.sendall(b"GET /no-policies/x HTTP/1.1\r\n")
                busy.append(s)
            time.sleep(0.5)
            cpu_before, log_before = process_cpu_s(gw.gateway.pid), len(gw.gateway_log())
            time.sleep(2)
            cpu = process_cpu_s(gw.gateway.pid) - cpu_before
            logged = len(gw.gateway_log()) - log_before
            check(cpu < 1.0, "%.2f s of CPU in 2 s at the fd limit, nothing idle" % cpu)
            check(logged < 4096, "%d bytes of log in 2 s at the fd limit, nothing idle" % logged)
        finally:
            for s in busy:
                s.close()


def rss_mib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return -1.0


def uses_system_allocator(pid):
    """False under AddressSanitizer, whose allocator keeps freed memory
    (quarantine): RSS then says nothing about the gateway's own buffers."""
    with open("/proc/%d/maps" % pid) as f:
        return "libasan" not in f.read()


def scenario_spares(args):
    """After bursts of large requests the gateway gives their memory back:
    the exchanges kept for reuse hold no more than the configured byte
    budget (and none of the large bodies), and large buffers are returned
    to the system when freed (RSS, with the system allocator)."""
    budget = 65536
    with Setup(args, profile_apis(False), extra={"spare_exchange_bytes": budget},
               limits={"body_bytes": 8 << 20}) as gw:
        payload = b"b" * (4 << 20)
        errors = []
        start_rss = rss_mib(gw.gateway.pid)

        def post():
            try:
                status, _, body = gw.request("POST", "/native-4/big", body=payload)
                if status != 200 or len(body) != len(payload) + len(MARKERS):
                    errors.append(status)
            except Exception as e:  # collected: threads cannot raise to main
                errors.append(e)

        for _ in range(2):
            threads = [threading.Thread(target=post) for _ in range(6)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        check(not errors, "large POSTs failed: %r" % errors[:3])
        for i in range(20):
            gw.request("POST", "/native-4/small", body=b"s" * 100)
        text = gw.admin("GET", "/metrics")[1].decode()
        values = [int(line.split()[1]) for line in text.splitlines()
                  if line.startswith("policyexec_gateway_spare_exchange_bytes ")]
        check(values and 0 < values[0] <= budget, "spare exchange bytes %r" % values)
        if uses_system_allocator(gw.gateway.pid):
            # 12 requests of 4 MiB held about 100 MiB at their peak.
            grown = rss_mib(gw.gateway.pid) - start_rss
            check(grown < 24, "RSS grew by %.1f MiB after the bursts" % grown)
            print("RSS after the bursts: +%.1f MiB" % grown)


def scenario_admin_async(args):
    """A chain whose policy takes seconds to create (a Python __init__):
    the admin API answers meanwhile, the POST still succeeds, and SIGTERM
    during such a build does not wait for it."""
    if not args.python_available:
        print("SKIP: the Python backend is not built here")
        sys.exit(77)
    sleep_ms = 3000

    def slow_api(name):
        return {"name": name, "context": "/" + name,
                "policies": [{"name": "gw-test-slow-init", "version": "1.0.0",
                              "params": {"sleep_ms": sleep_ms}, "failure_mode": "closed"}]}

    with Setup(args, profile_apis(False), python=True, python_timeout_ms=30000) as gw:
        done = {}
        result = {}

        def post(name):
            api = dict(slow_api(name), upstream=gw.backend_url)
            try:
                result[name] = gw.admin("POST", "/apis", json.dumps(api))
            except OSError as e:  # the gateway stopped before answering
                result[name] = e
            done[name] = time.monotonic()

        t = threading.Thread(target=post, args=("slow",))
        t.start()
        time.sleep(0.5)  # the build has started (its __init__ sleeps 3 s)
        status, _ = gw.admin("GET", "/health")
        status_list, body = gw.admin("GET", "/apis")
        answered = time.monotonic()
        expect_plain(*gw.request("POST", "/no-policies/x", body=b"x"), b"x", "during the build")
        t.join()
        check(status == 200 and status_list == 200, "/health %d, /apis %d" % (status, status_list))
        # The build takes 3 s from about 0.5 s before /health was asked: an
        # admin loop that waited for it answers /health only as the POST ends.
        check(done["slow"] - answered > 1.0,
              "the admin API waited for the build: /health and /apis answered %.2f s before "
              "the POST" % (done["slow"] - answered))
        check(result["slow"][0] == 200, "POST of the slow chain: %r" % (result["slow"],))
        check(b'"slow"' in gw.admin("GET", "/apis")[1], "the slow API is not listed")
        check(gw.request("GET", "/slow/x")[0] == 200, "request on the slow API")

        # SIGTERM while another build runs: no waiting for its __init__.
        t = threading.Thread(target=post, args=("slower",))
        t.start()
        time.sleep(0.5)
        start = time.monotonic()
        gw.gateway.send_signal(signal.SIGTERM)
        code = gw.gateway.wait(timeout=60)
        took = time.monotonic() - start
        t.join()
        check(code == 0, "exit status %d" % code)
        check(took < sleep_ms / 1000.0 - 0.5,
              "SIGTERM took %.1f s with a %d ms build in progress" % (took, sleep_ms))


# ---- bodies of any size (pass-through, streamed, buffered) ----

# Chunk-boundary sizes: the gateway's 8 KiB client reads, 16 KiB upstream
# reads, 64 KiB stream buffer, and the pattern's length.
BODY_SIZES = [0, 1, 8191, 8192, 8193, 16384, 65521, 65536, 65537, 1 << 20, 64 << 20]
TAG = b"[tag]"
STREAM_CHAIN = ["sample-native-redact", "gw-test-stream-tag"]
BODY_APIS = [{"name": "pass", "context": "/pass", "policies": []},
             {"name": "stream", "context": "/stream", "policies": chain(STREAM_CHAIN)},
             {"name": "buffer", "context": "/buffer",
              "policies": chain(["sample-native-response-body", "sample-native-request-body"])}]


def pattern_digest(total, prefix=b"", suffix=b""):
    digest = hashlib.sha256(prefix)
    for piece in echo_backend.pattern_pieces(total):
        digest.update(piece)
    digest.update(suffix)
    return digest.hexdigest()


def read_digest(resp):
    """Status, headers, length and sha256 of a response, its body read in
    pieces (never held whole)."""
    digest, length = hashlib.sha256(), 0
    while True:
        piece = resp.read(262144)
        if not piece:
            break
        digest.update(piece)
        length += len(piece)
    return resp.status, resp.headers, length, digest.hexdigest()


def download(gw, path):
    """GETs @path; returns status, headers, length and sha256 of the body,
    read in pieces (never held whole)."""
    conn = gw.connect()
    try:
        conn.request("GET", path)
        return read_digest(conn.getresponse())
    finally:
        conn.close()


def upload(gw, path, total, chunked=False):
    """POSTs @total pattern bytes to @path (Content-Length, or chunked);
    returns status and the parsed JSON answer of /sink (or the raw body)."""
    conn = gw.connect()
    try:
        # Written by hand in both framings: a refusal (413) may close the
        # connection while the body is still going out, and http.client's
        # request() would then leave no way to read the answer.
        conn.putrequest("POST", path)
        conn.putheader("Content-Type", "application/octet-stream")
        if chunked:
            conn.putheader("Transfer-Encoding", "chunked")
        else:
            conn.putheader("Content-Length", str(total))
        conn.endheaders()
        try:
            for piece in echo_backend.pattern_pieces(total):
                conn.send(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
            if chunked:
                conn.send(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused early (413): the answer is still there to read
        resp = conn.getresponse()
        raw = resp.read()
        # Through the chains the answer carries their marks too.
        raw = raw[:-len(TAG)] if raw.endswith(TAG) else raw
        raw = raw[22:] if raw.startswith(b"[sample-response-body]") else raw
        try:
            return resp.status, json.loads(raw)
        except ValueError:
            return resp.status, raw
    finally:
        conn.close()


def scenario_downloads(args):
    """Responses of 0 B to 64 MiB, byte for byte, through a pass-through
    chain (upstream framing kept), a streamed chain (redaction + a tag that
    changes the length: chunked framing) and a buffered chain."""
    with Setup(args, BODY_APIS, limits={"body_bytes": 80 << 20}) as gw:
        for size in BODY_SIZES:
            want = {"pass": (size, pattern_digest(size)),
                    "stream": (size + len(TAG), pattern_digest(size, suffix=TAG)),
                    "buffer": (size + 22, pattern_digest(size, prefix=b"[sample-response-body]"))}
            for api, (length, digest) in want.items():
                status, headers, got_len, got = download(gw, "/%s/gen?bytes=%d" % (api, size))
                what = "%s %d bytes" % (api, size)
                check(status == 200 and got_len == length and got == digest,
                      "%s: status %d, %d bytes (want %d), digest %s" %
                      (what, status, got_len, length, "ok" if got == digest else "differs"))
                if api == "stream":
                    check(headers.get("Transfer-Encoding") == "chunked" and
                          headers.get("Content-Length") is None,
                          "%s: framing %r" % (what, dict(headers)))
                else:
                    check(headers.get("Content-Length") == str(length),
                          "%s: Content-Length %r" % (what, headers.get("Content-Length")))
        # HEAD through a streamed chain: no body, the resource's length.
        status, headers, body = gw.request("HEAD", "/stream/gen?bytes=77")
        check(status == 200 and body == b"" and headers.get("Content-Length") == "77",
              "stream HEAD: %d %r" % (status, dict(headers)))
        # HTTP/1.0: no chunked coding, so a streamed body ends with the close.
        raw = gw.raw(b"GET /stream/gen?bytes=1000 HTTP/1.0\r\nHost: x\r\n\r\n")
        head, _, body = raw.partition(b"\r\n\r\n")
        check(raw.startswith(b"HTTP/1.1 200") and b"chunked" not in head.lower() and
              hashlib.sha256(body).hexdigest() == pattern_digest(1000, suffix=TAG),
              "stream HTTP/1.0: %r" % head)


def scenario_uploads(args):
    """Requests of 0 B to 64 MiB, byte for byte, through the same chains;
    Content-Length and chunked uploads; a buffered chain refuses a body
    past its limit with 413."""
    with Setup(args, BODY_APIS, limits={"body_bytes": 80 << 20}) as gw:
        for size in BODY_SIZES:
            want = {"pass": (size, pattern_digest(size)),
                    "stream": (size + len(TAG), pattern_digest(size, suffix=TAG)),
                    "buffer": (size + 21, pattern_digest(size, prefix=b"[sample-request-body]"))}
            for api, (length, digest) in want.items():
                for chunked in (False, True):
                    status, answer = upload(gw, "/%s/sink" % api, size, chunked)
                    what = "%s %d bytes%s" % (api, size, " chunked" if chunked else "")
                    check(status == 200 and isinstance(answer, dict) and
                          answer["length"] == length and answer["sha256"] == digest,
                          "%s: status %d, %r (want %d bytes)" % (what, status, answer, length))
    with Setup(args, BODY_APIS, limits={"body_bytes": 1 << 20}) as gw:
        # Expect: 100-continue: the interim answer comes before the body is sent.
        for api in ("pass", "stream", "buffer"):
            with socket.create_connection(("127.0.0.1", gw.port), timeout=30) as s:
                s.sendall(b"POST /%s/sink HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                          b"Expect: 100-continue\r\n\r\n" % api.encode())
                interim = s.recv(65536)
                check(interim.startswith(b"HTTP/1.1 100 Continue\r\n\r\n"),
                      "%s: no 100 Continue: %r" % (api, interim))
                s.sendall(b"hello")
                got = interim[25:]
                while b"sha256" not in got:
                    piece = s.recv(65536)
                    check(piece, "%s: no answer after the body" % api)
                    got += piece
                check(got.startswith(b"HTTP/1.1 200"), "%s after 100: %r" % (api, got[:80]))
        status, _ = upload(gw, "/buffer/sink", 2 << 20)
        check(status == 413, "buffered, past the limit: %d" % status)
        status, _ = upload(gw, "/buffer/sink", 2 << 20, chunked=True)
        check(status == 413, "buffered chunked, past the limit: %d" % status)
        for api in ("pass", "stream"):  # no step wants it whole: no limit applies
            extra = len(TAG) if api == "stream" else 0
            status, answer = upload(gw, "/%s/sink" % api, 4 << 20)
            check(status == 200 and answer["length"] == (4 << 20) + extra,
                  "%s past the buffer limit: %d %r" % (api, status, answer))


def read_until_close(sock, limit_s=30):
    sock.settimeout(limit_s)
    got = b""
    try:
        while True:
            piece = sock.recv(65536)
            if not piece:
                return got, True
            got += piece
    except socket.timeout:
        return got, False
    except ConnectionResetError:
        return got, True


def check_stream_failures(args, policy, setup):
    """Routes whose streamed step @policy fails after some bytes: closed
    before any byte went out is a clean 500; closed after bytes went out
    cuts the connection (the chunked body never ends); open skips the step
    and the body completes; a failing request body gets the 500."""
    def failing(after, mode):
        return [{"name": policy, "version": "1.0.0", "params": {"after": after},
                 "failure_mode": mode}]
    apis = [{"name": "early", "context": "/early", "policies": failing(10, "closed")},
            {"name": "late", "context": "/late", "policies": failing(1 << 20, "closed")},
            {"name": "open", "context": "/open", "policies": failing(1 << 20, "open")}]
    with Setup(args, apis, **setup) as gw:
        status, headers, body = gw.request("GET", "/early/gen?bytes=100000")
        check(status == 500, "early failure: status %d" % status)
        with socket.create_connection(("127.0.0.1", gw.port), timeout=30) as s:
            s.sendall(b"GET /late/gen?bytes=4194304 HTTP/1.1\r\nHost: x\r\n\r\n")
            got, closed = read_until_close(s)
        head, _, body = got.partition(b"\r\n\r\n")
        check(closed and head.startswith(b"HTTP/1.1 200") and b"chunked" in head.lower(),
              "late failure: closed=%s head %r" % (closed, head[:200]))
        check(not body.endswith(b"0\r\n\r\n") and len(body) < (4 << 20),
              "late failure: the body looks complete (%d bytes)" % len(body))
        status, headers, length, digest = download(gw, "/open/gen?bytes=4194304")
        check(status == 200 and length == 4 << 20 and digest == pattern_digest(4 << 20),
              "open failure: %d, %d bytes" % (status, length))
        status, answer = upload(gw, "/early/sink", 100000)
        check(status == 500, "request stream failure: %d %r" % (status, answer))
        log = gw.gateway_log()
        check(policy in log and "bytes seen" in log, "the failures are logged")
        expect_plain(*gw.request("POST", "/open/echo", body=b"ok"), b"ok", "after")


def scenario_stream_failures(args):
    """A streamed step failing mid-body: closed before any byte went out is
    a clean 500; closed after bytes went out cuts the connection (the
    chunked body never ends); open skips the step and the body completes."""
    check_stream_failures(args, "gw-test-stream-fail", {})


def scenario_redaction(args):
    """sample-native-redact masks card numbers in both bodies, also where
    the upstream's chunks split a number."""
    apis = [{"name": "redact", "context": "/redact", "policies": chain(["sample-native-redact"])}]
    card = b"4111111111111111"
    masked = b"************1111"
    with Setup(args, apis) as gw:
        # The echo backend's /chunked answer splits the body in thirds.
        for pad in range(0, 40, 3):
            payload = b"a" * pad + b" card " + card + b" and 12345 ok " + card
            status, headers, body = gw.request("POST", "/redact/chunked", body=payload)
            want = b"a" * pad + b" card " + masked + b" and 12345 ok " + masked
            check(status == 200 and body == want, "pad %d: %d %r" % (pad, status, body))
        # A long upload with numbers at every offset around 64 KiB pieces.
        payload = b"".join(b"x" * 65530 + card for _ in range(20))
        status, headers, body = gw.request("POST", "/redact/echo", body=payload)
        check(status == 200 and body == b"".join(b"x" * 65530 + masked for _ in range(20)),
              "long body: %d, %d bytes, %d masked" % (status, len(body), body.count(masked)))


def scenario_gigabyte(args, size=1 << 30):
    """1 GiB down and up, byte for byte, through a pass-through chain and a
    streamed native chain (no limit applies to either; the gateway's peak
    RSS stays far below the body: it never holds it), a streamed Python
    chain, and a buffered chain whose limit allows 1 GiB."""
    plain = pattern_digest(size)
    tagged = pattern_digest(size, suffix=TAG)
    with Setup(args, BODY_APIS, limits={"body_bytes": 1 << 20}) as gw:
        start = gw.status_kib("VmRSS")
        for api, (length, digest) in (("pass", (size, plain)),
                                      ("stream", (size + len(TAG), tagged))):
            status, _, got_len, got = download(gw, "/%s/gen?bytes=%d" % (api, size))
            check(status == 200 and got_len == length and got == digest,
                  "%s 1 GiB down: status %d, %d bytes (want %d), digest %s" %
                  (api, status, got_len, length, "ok" if got == digest else "differs"))
            status, answer = upload(gw, "/%s/sink" % api, size)
            check(status == 200 and isinstance(answer, dict) and
                  answer["length"] == length and answer["sha256"] == digest,
                  "%s 1 GiB up: status %d, %r (want %d bytes)" % (api, status, answer, length))
        # Growth, not the absolute peak: a sanitizer build starts far larger.
        grown = gw.status_kib("VmHWM") - start
        check(grown < 32 << 10, "gateway peak RSS grew by %d KiB moving 4 GiB" % grown)
    # A streamed Python step (sample-python-redact, both bodies): the same
    # bytes come back, the worker never holds the body.
    if args.python_available:
        apis = [{"name": "pyredact", "context": "/pyredact",
                 "policies": chain(["sample-python-redact"])}]
        with Setup(args, apis, python=True, python_timeout_ms=30000) as gw:
            status, _, got_len, got = download(gw, "/pyredact/gen?bytes=%d" % size)
            check(status == 200 and got_len == size and got == plain,
                  "Python stream 1 GiB down: status %d, %d bytes, digest %s" %
                  (status, got_len, "ok" if got == plain else "differs"))
            status, _, got_len, got = echo_digest(gw, "/pyredact/echo", size, False)
            check(status == 200 and got_len == size and got == plain,
                  "Python stream 1 GiB up and back: status %d, %d bytes" % (status, got_len))
    # Buffered chains hold the whole body: 1 GiB passes under a limit that
    # allows it (the body steps mark it, so the bytes are checked changed).
    with Setup(args, BODY_APIS, limits={"body_bytes": (1 << 30) + 64}) as gw:
        status, _, got_len, got = download(gw, "/buffer/gen?bytes=%d" % size)
        want = pattern_digest(size, prefix=b"[sample-response-body]")
        check(status == 200 and got_len == size + 22 and got == want,
              "buffered 1 GiB down: status %d, %d bytes, digest %s" %
              (status, got_len, "ok" if got == want else "differs"))
        status, answer = upload(gw, "/buffer/sink", size)
        want = pattern_digest(size, prefix=b"[sample-request-body]")
        check(status == 200 and isinstance(answer, dict) and answer["length"] == size + 21 and
              answer["sha256"] == want, "buffered 1 GiB up: status %d, %r" % (status, answer))


def echo_digest(gw, path, total, chunked):
    """POSTs @total pattern bytes to @path (an echo), Content-Length or
    chunked; returns status, headers, length and sha256 of the answer, read
    in pieces."""
    conn = gw.connect()
    try:
        if chunked:
            body = (bytes(p) for p in echo_backend.pattern_pieces(total))
            conn.request("POST", path, body=body, encode_chunked=True)
        else:
            conn.putrequest("POST", path)
            conn.putheader("Content-Length", str(total))
            conn.endheaders()
            for piece in echo_backend.pattern_pieces(total):
                conn.send(piece)
        return read_digest(conn.getresponse())
    finally:
        conn.close()


def scenario_python_stream(args):
    """A route whose chain is the streamed Python sample (sample-python-redact,
    both bodies): downloads and uploads of 0 B to 64 MiB come through byte
    for byte, chunked; card numbers are masked where the upstream's chunks
    split them and around 64 KiB pieces of an upload. A streamed Python
    step failing mid-body: a clean 500 before any byte went out, a cut
    connection after, the body complete when it fails open."""
    if not args.python_available:
        print("SKIP: the Python backend is not built here")
        sys.exit(77)
    apis = [{"name": "pyredact", "context": "/pyredact",
             "policies": chain(["sample-python-redact"])}]
    with Setup(args, apis, python=True, python_timeout_ms=30000) as gw:
        for size in BODY_SIZES:
            status, headers, length, digest = download(gw, "/pyredact/gen?bytes=%d" % size)
            check(status == 200 and length == size and digest == pattern_digest(size),
                  "download %d bytes: status %d, %d bytes, digest %s" %
                  (size, status, length, "ok" if digest == pattern_digest(size) else "differs"))
            check(headers.get("Transfer-Encoding") == "chunked" and
                  headers.get("Content-Length") is None,
                  "download %d bytes: framing %r" % (size, dict(headers)))
        for size in BODY_SIZES[:-1]:
            for chunked in (False, True):
                status, headers, length, digest = echo_digest(gw, "/pyredact/echo", size, chunked)
                check(status == 200 and length == size and digest == pattern_digest(size),
                      "upload %d bytes%s: status %d, %d bytes" %
                      (size, " chunked" if chunked else "", status, length))
        card = b"4111111111111111"
        masked = b"************1111"
        for pad in range(0, 40, 3):
            payload = b"a" * pad + b" card " + card + b" and 12345 ok " + card
            status, headers, body = gw.request("POST", "/pyredact/chunked", body=payload)
            want = b"a" * pad + b" card " + masked + b" and 12345 ok " + masked
            check(status == 200 and body == want, "pad %d: %d %r" % (pad, status, body))
        payload = b"".join(b"x" * 65530 + card for _ in range(20))
        status, headers, body = gw.request("POST", "/pyredact/echo", body=payload)
        check(status == 200 and body == b"".join(b"x" * 65530 + masked for _ in range(20)),
              "long body: %d, %d bytes, %d masked" % (status, len(body), body.count(masked)))
        log = gw.gateway_log()
        check("failed in" not in log, "no step failed: %s" % log[-2000:])
    # A streamed Python step failing mid-body, as scenario_stream_failures
    # does with a native one.
    check_stream_failures(args, "gw-test-py-stream-fail",
                          {"python": True, "python_timeout_ms": 30000})


def scenario_python_upload(args):
    """Request bodies through streamed Python steps never block the
    gateway's loop: uploads of 0 B to 64 MiB come through
    sample-python-redact byte for byte (Content-Length and chunked) with
    card numbers masked where pieces split them; while an upload waits on a
    slow Python step, another request on the same (only) gateway thread is
    answered at once; a step failing mid-body gives a clean 500 and cuts
    the upstream request; a client leaving while its chunk is pending
    leaves nothing behind (the sanitizer build's exit proves no leak)."""
    if not args.python_available:
        print("SKIP: the Python backend is not built here")
        sys.exit(77)
    sleep_ms = 3000
    apis = [{"name": "pyredact", "context": "/pyredact",
             "policies": chain(["sample-python-redact"])},
            {"name": "slow", "context": "/slow",
             "policies": [{"name": "gw-test-py-slow-chunk", "version": "1.0.0",
                           "params": {"sleep_ms": sleep_ms}, "failure_mode": "closed"}]},
            {"name": "fail", "context": "/fail",
             "policies": [{"name": "gw-test-py-stream-fail", "version": "1.0.0",
                           "params": {"after": 1 << 20}, "failure_mode": "closed"}]},
            {"name": "plain", "context": "/plain", "policies": []}]
    with Setup(args, apis, python=True, python_timeout_ms=30000, extra={"threads": 1}) as gw:
        for size in BODY_SIZES:
            for chunked in (False, True):
                status, answer = upload(gw, "/pyredact/sink", size, chunked)
                check(status == 200 and isinstance(answer, dict) and answer["length"] == size
                      and answer["sha256"] == pattern_digest(size),
                      "upload %d bytes%s: status %d, %r" %
                      (size, " chunked" if chunked else "", status, answer))
        card = b"4111111111111111"
        masked = b"************1111"
        for chunked in (False, True):
            payload = b"".join(b"x" * 65530 + card for _ in range(40))
            status, _, body = gw.request("POST", "/pyredact/echo", body=payload, chunked=chunked)
            check(status == 200 and body == b"".join(b"x" * 65530 + masked for _ in range(40)),
                  "long body: %d, %d bytes, %d masked" % (status, len(body), body.count(masked)))

        # The upstream answers before it reads the body: response chunks go
        # through the Python step while request chunks still stream.
        want = b"".join(bytes(p) for p in echo_backend.pattern_pieces(200000))
        for chunked in (False, True):
            status, raw = upload(gw, "/pyredact/early?bytes=200000", 4 << 20, chunked)
            check(status == 200 and raw == want,
                  "early answer%s: %d, %d bytes" % (" chunked" if chunked else "", status,
                                                    len(raw)))

        # An upload whose first chunk waits sleep_ms on its worker; a GET on
        # the same thread meanwhile must not wait for it.
        with socket.create_connection(("127.0.0.1", gw.port), timeout=60) as s:
            s.sendall(b"POST /slow/sink HTTP/1.1\r\nHost: x\r\nContent-Length: 20\r\n\r\n"
                      b"0123456789")
            time.sleep(0.5)  # the first chunk is with the worker
            began = time.monotonic()
            status, _, body = gw.request("GET", "/plain/gen?bytes=10")
            took = time.monotonic() - began
            print("GET during a slow upload answered in %.3f s" % took)
            check(status == 200, "GET during a slow upload: %d" % status)
            check(took < sleep_ms / 2000.0,
                  "GET during a slow upload took %.2f s (the step sleeps %d ms)" % (took, sleep_ms))
            s.sendall(b"abcdefghij")
            got = b""
            while b"}" not in got:  # the sink's JSON answer ends with it
                piece = s.recv(65536)
                if not piece:
                    break
                got += piece
            check(got.startswith(b"HTTP/1.1 200") and b'"length": 20' in got,
                  "slow upload answer: %r" % got[:300])

        # A client that goes away while its chunk is pending.
        with socket.create_connection(("127.0.0.1", gw.port), timeout=60) as s:
            s.sendall(b"POST /slow/sink HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n"
                      + b"y" * 30000)
            time.sleep(0.5)
        time.sleep(sleep_ms / 1000.0 + 0.5)  # the chunk completes on a dead client
        expect_plain(*gw.request("GET", "/plain/gen?bytes=0"), b"", "after a disconnect")

        # A step failing after 1 MiB of a 4 MiB upload: a clean 500, and the
        # upstream request is cut (the sink never answers).
        for chunked in (False, True):
            status, answer = upload(gw, "/fail/sink", 4 << 20, chunked)
            check(status == 500 and not isinstance(answer, dict),
                  "failing step mid-upload%s: %d %r" % (" chunked" if chunked else "",
                                                       status, answer))
        log = gw.gateway_log()
        check("request body stream stopped" in log and "bytes seen" in log,
              "the failure is logged: %s" % log[-2000:])
        expect_plain(*gw.request("POST", "/plain/echo", body=b"ok"), b"ok", "after")


def main():
    parser = argparse.ArgumentParser(description="policyexec-gateway end-to-end tests")
    parser.add_argument("--gateway", required=True)
    parser.add_argument("--plugin", required=True)
    parser.add_argument("--test-plugin", required=True)
    parser.add_argument("--python-paths", required=True)
    parser.add_argument("--python-available", default="OFF")
    parser.add_argument("scenario", choices=[name[len("scenario_"):] for name in globals()
                                             if name.startswith("scenario_")])
    args = parser.parse_args()
    args.python_available = args.python_available.upper() in ("ON", "1", "TRUE", "YES")
    args.gateway = os.path.abspath(args.gateway)
    args.plugin = os.path.abspath(args.plugin)
    args.test_plugin = os.path.abspath(args.test_plugin)
    args.python_paths = os.path.abspath(args.python_paths)
    try:
        globals()["scenario_" + args.scenario](args)
    except Failure as e:
        print("FAIL %s: %s" % (args.scenario, e))
        return 1
    print("PASS %s" % args.scenario)
    return 0


if __name__ == "__main__":
    sys.exit(main())
