"""Python policies for the gateway's end-to-end tests only.

gw-test-slow-init sleeps ``sleep_ms`` in ``__init__``: creating its
instance (a POST /apis) takes that long, which the admin API must survive.
"""

import time

import policyexec


class SlowInit(policyexec.Policy):
    """Takes ``sleep_ms`` to create; then does nothing."""

    name = "gw-test-slow-init"
    version = "1.0.0"
    params = {"sleep_ms": int}

    def __init__(self, params=None):
        super().__init__(params)
        time.sleep(self.params["sleep_ms"] / 1000.0)

    def on_request_headers(self, ctx):
        pass


class GwTestPyStreamFail(policyexec.Policy):
    """Streamed, both bodies: passes chunks on until `after` bytes were
    seen, then raises (the failure-mode tests of a streamed Python step)."""

    name = "gw-test-py-stream-fail"
    version = "1.0.0"
    params = {"after": int}

    def on_request_body_chunk(self, ctx, chunk):
        seen = (chunk.state or 0) + len(chunk.data)
        if seen >= self.params["after"]:
            raise RuntimeError(f"failing after {seen} bytes seen")
        chunk.state = seen
        return chunk.data

    on_response_body_chunk = on_request_body_chunk


class GwTestPySlowChunk(policyexec.Policy):
    """Streamed request body: sleeps `sleep_ms` on each chunk, then passes
    it on unchanged (a slow worker: the gateway must not wait for it)."""

    name = "gw-test-py-slow-chunk"
    version = "1.0.0"
    params = {"sleep_ms": int}

    def on_request_body_chunk(self, ctx, chunk):
        time.sleep(self.params["sleep_ms"] / 1000.0)
        return chunk.data
