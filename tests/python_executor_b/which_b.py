"""test-which as pool B has it: tags x-pool with "b" (tests/test_executors.c)."""

import policyexec


class Which(policyexec.Policy):
    name = "test-which"
    version = "1.0.0"
    params = {}

    def on_request_headers(self, ctx):
        ctx.request_headers.add("x-pool", "b")

    def on_response_headers(self, ctx):
        ctx.response_headers.add("x-pool", "b")
