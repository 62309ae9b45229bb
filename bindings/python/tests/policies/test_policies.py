"""Policies that misbehave on purpose, or expose details, for test_pyworker."""

import os

import policyexec
from policyexec import Param


class Raise(policyexec.Policy):
    """Changes a header, metadata and the path, then raises."""

    name = "test-raise"
    version = "1.0.0"

    def on_request_headers(self, ctx):
        ctx.request_headers["x-partial"] = "yes"
        ctx.metadata["partial"] = "yes"
        ctx.path = "/partial"
        raise RuntimeError("boom")


class Observe(policyexec.Policy):
    """Reports whether it can see what test-raise changed before raising."""

    name = "test-observe"
    version = "1.0.0"

    def on_request_headers(self, ctx):
        saw = "x-partial" in ctx.request_headers or "partial" in ctx.metadata
        ctx.request_headers["x-saw-partial"] = "yes" if saw else "no"


class Respond(policyexec.Policy):
    """Answers at once."""

    name = "test-respond"
    version = "1.0.0"
    params = {"status": Param(int, default=403)}

    def on_request_headers(self, ctx):
        ctx.respond(self.params["status"], b"denied\n", {"x-why": "test"})


class EchoBytes(policyexec.Policy):
    """Copies header x-in to x-out; appends non-UTF-8 bytes to the response body."""

    name = "test-echo-bytes"
    version = "1.0.0"

    def on_request_headers(self, ctx):
        ctx.request_headers["x-out"] = ctx.request_headers["x-in"]

    def on_response_body(self, ctx):
        ctx.response_body = ctx.response_body + b"\xff\xfe\x00"


class SwapHalves(policyexec.Policy):
    """Swaps the two halves of the request body (so the edit is a replacement)."""

    name = "test-swap-halves"
    version = "1.0.0"

    def on_request_body(self, ctx):
        body = ctx.request_body
        half = len(body) // 2
        ctx.request_body = body[half:] + body[:half]


class Phases(policyexec.Policy):
    """Runs in both response phases, to show what a batch spanning them looks
    like: the headers hook adds "<phase>:<body visible?>" to x-phases and sets
    the status; the body hook appends to the body what it sees by then."""

    name = "test-phases"
    version = "1.0.0"

    def on_response_headers(self, ctx):
        body = "body" if ctx.response_body is not None else "no-body"
        ctx.response_headers.add("x-phases", f"{ctx.phase}:{body}")
        ctx.status = 203

    def on_response_body(self, ctx):
        seen = ",".join(ctx.response_headers.getall("x-phases"))
        sample = ctx.response_headers.get("x-sample-policy-phase")
        ctx.response_body += f"|{ctx.phase}:{seen}:{sample}:{ctx.status}".encode()


class Rewrite(policyexec.Policy):
    """Changes method, path, metadata and several headers."""

    name = "test-rewrite"
    version = "1.0.0"

    def on_request_headers(self, ctx):
        ctx.method = "POST"
        ctx.path = "/rewritten"
        ctx.metadata["seen"] = "yes"
        del ctx.metadata["drop"]
        ctx.request_headers.remove("x-remove")
        ctx.request_headers.add("x-multi", "two")
        ctx.request_headers["x-same"] = ctx.request_headers["x-same"]  # no net change


class Params(policyexec.Policy):
    """Has a params schema and a validate() hook."""

    name = "test-params"
    version = "1.0.0"
    params = {"header": str, "count": Param(int, default=1)}

    def validate(self):
        if self.params["count"] < 1:
            raise ValueError("count must be at least 1")

    def on_request_headers(self, ctx):
        ctx.request_headers[self.params["header"]] = str(self.params["count"])


class Exit(policyexec.Policy):
    """Kills the worker process."""

    name = "test-exit"
    version = "1.0.0"

    def on_request_headers(self, ctx):
        os._exit(3)


class Loop(policyexec.Policy):
    """Never returns."""

    name = "test-loop"
    version = "1.0.0"

    def on_request_headers(self, ctx):
        while True:
            pass
