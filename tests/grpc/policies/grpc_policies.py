"""Policies for the gRPC executor tests (tests/grpc/test_grpc.c)."""

import os

import policyexec


class ExecutorPid(policyexec.Policy):
    """Tells which executor process ran it: x-executor-pid on the request."""

    name = "test-executor-pid"
    version = "1.0.0"

    def on_request_headers(self, ctx):
        ctx.request_headers["x-executor-pid"] = str(os.getpid())
