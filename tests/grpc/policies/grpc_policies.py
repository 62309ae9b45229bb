"""Policies for the gRPC executor tests (tests/grpc/test_grpc.c)."""

import os

import policyexec


class ExecutorPid(policyexec.Policy):
    """Tells which executor process ran it: x-executor-pid on the request."""

    name = "test-executor-pid"
    version = "1.0.0"

    def on_request_headers(self, ctx):
        ctx.request_headers["x-executor-pid"] = str(os.getpid())


_runs = 0


class Count(policyexec.Policy):
    """Counts the runs of this policy in the executor process: x-count."""

    name = "test-count"
    version = "1.0.0"

    def on_request_headers(self, ctx):
        global _runs
        _runs += 1
        ctx.request_headers["x-count"] = str(_runs)
