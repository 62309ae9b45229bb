"""Streamed (chunk) policies for tests/test_python_stream.c."""

import os
import time

import policyexec
from policyexec import _worker


class StreamIdentity(policyexec.Policy):
    """Passes every chunk on unchanged; counts chunks and bytes in the
    per-body state and reports them in metadata at the last chunk."""

    name = "test-stream-identity"
    version = "1.0.0"

    def on_request_body_chunk(self, ctx, chunk):
        return self._count(ctx, chunk)

    def on_response_body_chunk(self, ctx, chunk):
        return self._count(ctx, chunk)

    def _count(self, ctx, chunk):
        calls, size = chunk.state or (0, 0)
        chunk.state = (calls + 1, size + len(chunk.data))
        if chunk.last:
            ctx.metadata["stream-calls"] = str(calls + 1)
            ctx.metadata["stream-bytes"] = str(size + len(chunk.data))
            # Per-body states the worker holds now (this body's is out).
            ctx.metadata["stream-states"] = str(len(_worker._chunk_states))
        return chunk.data


class StreamHoldTail(policyexec.Policy):
    """Holds back the last `hold` bytes of every chunk, writes the rest in
    pieces (forward runs, copies and a copy of a Body slice), and passes
    everything on in the end: identity with split writes and held tails."""

    name = "test-stream-hold"
    version = "1.0.0"
    params = {"hold": policyexec.Param(int, default=3)}

    def on_request_body_chunk(self, ctx, chunk):
        data = chunk.data
        n = len(data)
        keep = 0 if chunk.last else min(self.params["hold"], n)
        half = (n - keep) // 2
        chunk.forward(0, half // 2)
        chunk.write(data[half // 2:half])
        chunk.forward(half, n - keep)
        if keep:
            chunk.keep(keep)

    on_response_body_chunk = on_request_body_chunk


class StreamUpper(policyexec.Policy):
    """Replaces each chunk with its upper-case copy plus a marker at the end
    of the body: output differs in bytes and length."""

    name = "test-stream-upper"
    version = "1.0.0"

    def on_request_body_chunk(self, ctx, chunk):
        chunk.write(bytes(chunk.data).upper())
        if chunk.last:
            chunk.write(b"[end]")

    on_response_body_chunk = on_request_body_chunk


class StreamFail(policyexec.Policy):
    """Fails on the chunk where the bytes seen reach `after`: raises, sleeps
    past its timeout (`how` = "sleep"), or kills its worker ("exit")."""

    name = "test-stream-fail"
    version = "1.0.0"
    params = {"after": int, "how": policyexec.Param(str, default="raise"),
              "hold": policyexec.Param(int, default=0)}

    def on_request_body_chunk(self, ctx, chunk):
        seen = (chunk.state or 0) + len(chunk.data)
        if seen >= self.params["after"]:
            how = self.params["how"]
            if how == "sleep":
                time.sleep(30)
            elif how == "exit":
                os._exit(3)
            raise RuntimeError(f"failing after {seen} bytes")
        keep = 0 if chunk.last else min(self.params["hold"], len(chunk.data))
        chunk.state = seen - keep
        chunk.forward(0, len(chunk.data) - keep)
        if keep:
            chunk.keep(keep)

    on_response_body_chunk = on_request_body_chunk


class StreamRespond(policyexec.Policy):
    """Answers 403 when a chunk contains b"forbidden"."""

    name = "test-stream-respond"
    version = "1.0.0"

    def on_request_body_chunk(self, ctx, chunk):
        if b"forbidden" in chunk.data:
            ctx.respond(403, b"no\n")
            return None
        return chunk.data


class StreamBoth(policyexec.Policy):
    """Offers both shapes: the buffered method marks the body, the chunk
    method passes it on."""

    name = "test-stream-both"
    version = "1.0.0"

    def on_request_body(self, ctx):
        ctx.request_body = b"[whole]" + ctx.request_body

    def on_request_body_chunk(self, ctx, chunk):
        return chunk.data
