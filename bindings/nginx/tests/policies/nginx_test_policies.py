"""Python policies for the nginx module's end-to-end test.

They answer at once from each phase, fail (raise, time out), and show the
path a chain sees, so the test can check the module's plumbing of each.
"""

import time

import policyexec
from policyexec import Param


def _deny(ctx, phase):
    ctx.respond(403, f"denied at {phase}\n".encode(), {"x-why": phase})


class RespondRequestHeaders(policyexec.Policy):
    name = "ngx-test-respond-request-headers"
    version = "1.0.0"

    def on_request_headers(self, ctx):
        _deny(ctx, "request_headers")


class RespondRequestBody(policyexec.Policy):
    name = "ngx-test-respond-request-body"
    version = "1.0.0"

    def on_request_body(self, ctx):
        _deny(ctx, "request_body")


class RespondResponseHeaders(policyexec.Policy):
    name = "ngx-test-respond-response-headers"
    version = "1.0.0"

    def on_response_headers(self, ctx):
        _deny(ctx, "response_headers")


class RespondResponseBody(policyexec.Policy):
    name = "ngx-test-respond-response-body"
    version = "1.0.0"

    def on_response_body(self, ctx):
        _deny(ctx, "response_body")


class Raise(policyexec.Policy):
    name = "ngx-test-raise"
    version = "1.0.0"

    def on_request_headers(self, ctx):
        raise RuntimeError("ngx-test-raise failed on purpose")


class Sleep(policyexec.Policy):
    name = "ngx-test-sleep"
    version = "1.0.0"
    params = {"ms": Param(int, default=5000)}

    def on_request_headers(self, ctx):
        time.sleep(self.params["ms"] / 1000.0)


class EchoPath(policyexec.Policy):
    """Answers with the path the chain sees."""

    name = "ngx-test-echo-path"
    version = "1.0.0"

    def on_request_headers(self, ctx):
        ctx.respond(200, ctx.path.encode(), {"x-seen-method": ctx.method})


class RewritePath(policyexec.Policy):
    """Sends the request upstream with another path and a request header."""

    name = "ngx-test-rewrite-path"
    version = "1.0.0"

    def on_request_headers(self, ctx):
        ctx.path = "/rewritten/a%20b?x=1"
        ctx.request_headers["content-type"] = "text/x-rewritten"


class MeasureBody(policyexec.Policy):
    """Reads the request body without changing it (the module then forwards
    nginx's own copy of it) and shows its length in a response header."""

    name = "ngx-test-measure-body"
    version = "1.0.0"

    def on_request_body(self, ctx):
        ctx.metadata["measured"] = str(len(ctx.request_body))

    def on_response_headers(self, ctx):
        ctx.response_headers["x-measured"] = ctx.metadata.get("measured", "none")


class SlowStream(policyexec.Policy):
    """A streamed step that sleeps per chunk and passes each chunk on: a
    body through it takes long, which must not hold up the nginx worker."""

    name = "ngx-test-slow-stream"
    version = "1.0.0"
    params = {"ms": Param(int, default=200)}

    def _chunk(self, chunk):
        time.sleep(self.params["ms"] / 1000.0)
        chunk.forward()

    def on_request_body_chunk(self, ctx, chunk):
        self._chunk(chunk)

    def on_response_body_chunk(self, ctx, chunk):
        self._chunk(chunk)


class RaiseStream(policyexec.Policy):
    """A streamed step that passes `after` bytes on, then raises."""

    name = "ngx-test-raise-stream"
    version = "1.0.0"
    params = {"after": Param(int, default=0)}

    def _chunk(self, ctx, chunk):
        seen = chunk.state or 0
        if seen + len(chunk.data) > self.params["after"]:
            raise RuntimeError("ngx-test-raise-stream failed on purpose")
        chunk.state = seen + len(chunk.data)
        chunk.forward()

    def on_request_body_chunk(self, ctx, chunk):
        self._chunk(ctx, chunk)

    def on_response_body_chunk(self, ctx, chunk):
        self._chunk(ctx, chunk)


class EditHeads(policyexec.Policy):
    """Changes, removes and adds fields in both heads, keeping the rest: the
    module rebuilds nginx's lists taking unchanged fields as they were."""

    name = "ngx-test-edit-heads"
    version = "1.0.0"

    def on_request_headers(self, ctx):
        ctx.request_headers["content-type"] = "text/x-edited"
        del ctx.request_headers["x-drop-me"]
        ctx.request_headers.add("x-added", "1")

    def on_response_headers(self, ctx):
        ctx.response_headers["x-echo-method"] = "EDITED"
        del ctx.response_headers["x-echo-length"]
        ctx.response_headers.add("x-added-resp", "2")
