"""Python policies that misbehave on purpose, for the engine's tests of the
Python backend (tests/test_python_*.c)."""

import os
import time

import policyexec


class Raise(policyexec.Policy):
    """Raises in the request headers phase."""

    name = "test-raise"
    version = "1.0.0"

    def on_request_headers(self, ctx):
        ctx.request_headers["x-partial"] = "should be discarded"
        raise ValueError("boom from test-raise")


class Sleep(policyexec.Policy):
    """Sleeps for params["seconds"] (default: an hour) in request headers."""

    name = "test-sleep"
    version = "1.0.0"

    def on_request_headers(self, ctx):
        time.sleep(float(self.params.get("seconds", 3600)))
        ctx.request_headers["x-slept"] = "yes"


class Exit(policyexec.Policy):
    """Ends its worker process abruptly."""

    name = "test-exit"
    version = "1.0.0"

    def on_request_headers(self, ctx):
        os._exit(1)


class CrLf(policyexec.Policy):
    """Tries to inject a header through a value with CR/LF."""

    name = "test-crlf"
    version = "1.0.0"

    def on_request_headers(self, ctx):
        ctx.request_headers["x-evil"] = "a\r\ninjected: 1"


class Copy(policyexec.Policy):
    """Copies request header x-in to x-out (bytes kept exactly), and appends
    bytes that are not UTF-8 to the request body."""

    name = "test-copy"
    version = "1.0.0"

    def on_request_headers(self, ctx):
        ctx.request_headers["x-out"] = ctx.request_headers["x-in"]

    def on_request_body(self, ctx):
        ctx.request_body = ctx.request_body + b"\xff\x00\xfe-tail"


class Order(policyexec.Policy):
    """Adds its tag to x-order on the request and on the response."""

    name = "test-order"
    version = "1.0.0"
    params = {"tag": str}

    def on_request_headers(self, ctx):
        ctx.request_headers.add("x-order", self.params["tag"])

    def on_response_headers(self, ctx):
        ctx.response_headers.add("x-order", self.params["tag"])


class Respond(policyexec.Policy):
    """Answers 403 at once."""

    name = "test-respond"
    version = "1.0.0"

    def on_request_headers(self, ctx):
        ctx.respond(403, b"denied by test-respond", {"x-denied-by": "test-respond"})


class Echo(policyexec.Policy):
    """Leaves the request body as it is (a body round trip with no edit)."""

    name = "test-echo-body"
    version = "1.0.0"

    def on_request_body(self, ctx):
        ctx.metadata["body-length"] = str(len(ctx.request_body))


class IgnoreTerm(policyexec.Policy):
    """Makes its worker ignore SIGTERM, so that only SIGKILL stops it."""

    name = "test-ignore-term"
    version = "1.0.0"

    def on_request_headers(self, ctx):
        import signal
        signal.signal(signal.SIGTERM, signal.SIG_IGN)


class ResponseTrace(policyexec.Policy):
    """Tells what each response phase shows: the headers phase records
    whether it sees the body (it must not) and the status; the body phase
    copies the trace header into the body, so a run of both phases in one
    batch shows that the body step saw the header step's edit."""

    name = "test-response-trace"
    version = "1.0.0"

    def on_response_headers(self, ctx):
        seen = "none" if ctx.response_body is None else "body"
        ctx.response_headers.add("x-trace", f"{ctx.phase}:{seen}:{ctx.status}")

    def on_response_body(self, ctx):
        trace = ",".join(ctx.response_headers.getall("x-trace", []))
        ctx.response_body = f"[{ctx.phase}:{trace}]".encode() + ctx.response_body


class Forker(policyexec.Policy):
    """Starts a long-lived child process (as a policy might, by mistake) and
    reports its pid in request header x-child."""

    name = "test-forker"
    version = "1.0.0"

    def on_request_headers(self, ctx):
        import subprocess

        child = subprocess.Popen(["sleep", "60"])
        ctx.request_headers["x-child"] = str(child.pid)


class Framing(policyexec.Policy):
    """Sets (or, with params["remove"], removes) a framing response header
    named by params["name"]: the engine must refuse it."""

    name = "test-framing"
    version = "1.0.0"

    def on_response_headers(self, ctx):
        name = self.params.get("name", "content-length")
        if self.params.get("remove"):
            del ctx.response_headers[name]
        else:
            ctx.response_headers[name] = "5"


class Tag(policyexec.Policy):
    """Adds request header x-tag: params["tag"] (default "ok")."""

    name = "test-tag"
    version = "1.0.0"

    def on_request_headers(self, ctx):
        ctx.request_headers.add("x-tag", self.params.get("tag", "ok"))

    def on_response_headers(self, ctx):
        ctx.response_headers.add("x-tag", self.params.get("tag", "ok"))


class SlowInit(policyexec.Policy):
    """Sleeps params["seconds"] in __init__ (instance creation)."""

    name = "test-slow-init"
    version = "1.0.0"

    def __init__(self, params):
        super().__init__(params)
        time.sleep(float(params.get("seconds", 3600)))

    def on_request_headers(self, ctx):
        ctx.request_headers["x-slow-init"] = "yes"


class SleepBlocked(policyexec.Policy):
    """Sleeps like test-sleep with the worker's step timer signal blocked: a
    step the worker cannot interrupt (as one blocked in C code), which only
    the engine's hard deadline ends, by killing the worker."""

    name = "test-sleep-blocked"
    version = "1.0.0"

    def on_request_headers(self, ctx):
        import signal

        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
        time.sleep(float(self.params.get("seconds", 3600)))
        ctx.request_headers["x-slept"] = "yes"


class SleepResponseBody(policyexec.Policy):
    """Sleeps for params["seconds"] (default: an hour) in response body."""

    name = "test-sleep-response-body"
    version = "1.0.0"

    def on_response_body(self, ctx):
        time.sleep(float(self.params.get("seconds", 3600)))


class UpperBody(policyexec.Policy):
    """Replaces each body with its upper-case copy (a whole new body, as
    opposed to the sample policies' prefix), and records what the policy
    was given: ``Body`` (shared memory) or ``bytes``."""

    name = "test-upper-body"
    version = "1.0.0"

    def on_request_body(self, ctx):
        ctx.metadata["request-body-type"] = type(ctx.request_body).__name__
        ctx.request_body = ctx.request_body.upper()

    def on_response_body(self, ctx):
        ctx.metadata["response-body-type"] = type(ctx.response_body).__name__
        ctx.response_body = ctx.response_body.upper()


class KeepBody(policyexec.Policy):
    """Keeps the request body past its step (a misuse): a shared body must
    then refuse to be read rather than show another request's bytes."""

    name = "test-keep-body"
    version = "1.0.0"
    kept = []

    def on_request_body(self, ctx):
        if KeepBody.kept:
            old = KeepBody.kept.pop()
            try:
                bytes(old)
                ctx.metadata["kept-body"] = "readable"
            except ValueError:
                ctx.metadata["kept-body"] = "released"
        KeepBody.kept.append(ctx.request_body)
