#!/usr/bin/python3
"""End-to-end tests of policyexec-gateway (standard library only).

Each scenario starts the echo backend and a gateway with a generated
configuration on free ports, talks to it over real sockets, and stops both.

  test_gateway.py --gateway BIN --plugin SO --python-paths DIR
                  --python-available ON|OFF SCENARIO

Scenarios: smoke, admin, errors, chunked, shutdown. Exit status 0 on
success, 1 on failure, 77 when the scenario cannot run here (CTest skip).
"""

import argparse
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
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

    def __init__(self, args, apis, python=False, limits=None, upstream_timeout_ms=None):
        self.args = args
        self.tmp = tempfile.TemporaryDirectory(prefix="gw-test-")
        self.backend_port = free_port()
        self.port = free_port()
        self.admin_port = free_port()
        config = {
            "listen": "127.0.0.1:%d" % self.port,
            "admin": "127.0.0.1:%d" % self.admin_port,
            "threads": 2,
            "plugins": [args.plugin],
            "apis": [dict(api, upstream=api.get("upstream", self.backend_url)) for api in apis],
        }
        if python:
            config["python"] = {"workers": 2, "timeout_ms": 2000, "paths": [args.python_paths]}
            # Pinned threads and workers under SCHED_BATCH, as in the sample config.
            config["cpu_affinity"] = True
            config["sched_batch"] = True
        if limits:
            config["limits"] = limits
        if upstream_timeout_ms:
            config["upstream_timeout_ms"] = upstream_timeout_ms
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
        self.gateway = subprocess.Popen([self.args.gateway, "--config", self.config_path],
                                        stderr=self.log)
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
        for path in ("/no-policies/big", "/native-4/big"):
            status = status_of(gw.raw(b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n"
                                      b"\r\n" % (path.encode(), len(big)) + big))
            check(status == 413, "%s oversize body: %d" % (path, status))
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


def main():
    parser = argparse.ArgumentParser(description="policyexec-gateway end-to-end tests")
    parser.add_argument("--gateway", required=True)
    parser.add_argument("--plugin", required=True)
    parser.add_argument("--python-paths", required=True)
    parser.add_argument("--python-available", default="OFF")
    parser.add_argument("scenario", choices=["smoke", "admin", "errors", "chunked", "shutdown",
                                                 "config"])
    args = parser.parse_args()
    args.python_available = args.python_available.upper() in ("ON", "1", "TRUE", "YES")
    args.gateway = os.path.abspath(args.gateway)
    args.plugin = os.path.abspath(args.plugin)
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
