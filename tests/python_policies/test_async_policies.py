"""Coroutine policies (async def phase methods) for the engine's tests of
steps that wait on I/O (tests/test_python_aio.c)."""

import asyncio

import policyexec


class AsyncCopy(policyexec.Policy):
    """test-copy after awaiting params["delay"] seconds (default 0.05): the
    same edits, so its results must be byte-identical to test-copy's."""

    name = "test-async-copy"
    version = "1.0.0"

    async def on_request_headers(self, ctx):
        await asyncio.sleep(float(self.params.get("delay", 0.05)))
        ctx.request_headers["x-out"] = ctx.request_headers["x-in"]

    async def on_request_body(self, ctx):
        await asyncio.sleep(float(self.params.get("delay", 0.05)))
        ctx.request_body = ctx.request_body + b"\xff\x00\xfe-tail"


class AsyncOrder(policyexec.Policy):
    """test-order after a short await."""

    name = "test-async-order"
    version = "1.0.0"
    params = {"tag": str}

    async def on_request_headers(self, ctx):
        await asyncio.sleep(0.005)
        ctx.request_headers.add("x-order", self.params["tag"])

    async def on_response_headers(self, ctx):
        await asyncio.sleep(0.005)
        ctx.response_headers.add("x-order", self.params["tag"])


class AsyncSleep(policyexec.Policy):
    """Awaits params["seconds"] (default: an hour). When cancelled, writes
    "cancelled" to params["cancel_file"] (if given) before re-raising."""

    name = "test-async-sleep"
    version = "1.0.0"

    async def on_request_headers(self, ctx):
        try:
            await asyncio.sleep(float(self.params.get("seconds", 3600)))
        except asyncio.CancelledError:
            path = self.params.get("cancel_file")
            if path:
                with open(path, "w") as f:
                    f.write("cancelled")
            raise
        ctx.request_headers["x-slept"] = "yes"


class AsyncRaise(policyexec.Policy):
    """Sets a header, awaits, then raises."""

    name = "test-async-raise"
    version = "1.0.0"

    async def on_request_headers(self, ctx):
        ctx.request_headers["x-partial"] = "should be discarded"
        await asyncio.sleep(0.001)
        raise ValueError("boom from test-async-raise")


class AsyncSetup(policyexec.Policy):
    """Opens a pretend resource in an async setup() and reports it."""

    name = "test-async-setup"
    version = "1.0.0"

    async def setup(self):
        await asyncio.sleep(0.01)
        self.resource = "open"

    async def teardown(self):
        await asyncio.sleep(0.001)
        self.resource = "closed"
        path = self.params.get("teardown_file")
        if path:
            with open(path, "w") as f:
                f.write("closed")

    async def on_request_headers(self, ctx):
        await asyncio.sleep(0)
        ctx.request_headers["x-resource"] = self.resource


class SetupFails(policyexec.Policy):
    """An async setup() that raises refuses the step."""

    name = "test-async-setup-fails"
    version = "1.0.0"

    async def setup(self):
        await asyncio.sleep(0)
        raise ConnectionError("cannot reach the pretend service")

    async def on_request_headers(self, ctx):
        pass
