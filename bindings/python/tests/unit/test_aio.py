"""Coroutine steps in policyexec._worker.run and the loop of policyexec._aio,
driven the way the worker's C loop drives them (track, pump, cancel)."""

import asyncio
import json
import unittest

from policyexec import Policy, _aio, _worker


class SyncTag(Policy):
    name = "unit-aio-sync-tag"
    version = "1.0.0"

    def on_request_headers(self, ctx):
        ctx.request_headers.add("x-order", self.params["tag"])


class AsyncTag(Policy):
    name = "unit-aio-async-tag"
    version = "1.0.0"

    async def on_request_headers(self, ctx):
        await asyncio.sleep(float(self.params.get("delay", 0.001)))
        if self.params.get("fail"):
            raise ValueError("async failure")
        ctx.request_headers.add("x-order", self.params["tag"])


class Setup(Policy):
    name = "unit-aio-setup"
    version = "1.0.0"
    events = []

    async def setup(self):
        await asyncio.sleep(0)
        Setup.events.append("setup")

    async def teardown(self):
        await asyncio.sleep(0)
        Setup.events.append("teardown")

    async def on_request_headers(self, ctx):
        ctx.request_headers["x-setup"] = Setup.events[-1]


ARGS = ("GET", "/", "example.test", 0, None, None, None, None, None)


def run(ids, fail_open=None):
    return _worker.run(0, tuple(ids), tuple(fail_open or [False] * len(ids)), *ARGS)


def finish(task, token=1, cancel=False):
    """Tracks a pending batch and pumps the loop until it ends."""
    _worker.track(task, token)
    if cancel:
        _worker.cancel(token)
    for _ in range(10000):
        ended = _worker.pump()
        if ended:
            ((got, result),) = ended
            assert got == token
            return result
    raise AssertionError("the batch never ended")


class AioTest(unittest.TestCase):
    def setUp(self):
        self.ids = []

    def tearDown(self):
        for i in self.ids:
            _worker.destroy(i)

    def create(self, name, **params):
        i = 1000 + len(self.ids)
        self.assertIsNone(_worker.create(i, name, "1.0.0", json.dumps(params)))
        self.ids.append(i)
        return i

    def test_sync_batch_returns_a_list(self):
        a = self.create("unit-aio-sync-tag", tag="a")
        self.assertIsInstance(run([a]), list)
        self.assertEqual(_worker.async_phases(a), 0)

    def test_mixed_batch_keeps_order_and_matches_sync(self):
        a = self.create("unit-aio-sync-tag", tag="a")
        b = self.create("unit-aio-async-tag", tag="b")
        c = self.create("unit-aio-sync-tag", tag="c")
        d = self.create("unit-aio-async-tag", tag="d")
        self.assertEqual(_worker.async_phases(b), 1)
        task = run([a, b, c, d])
        self.assertNotIsInstance(task, list)
        mixed = finish(task)
        sb, sd = self.create("unit-aio-sync-tag", tag="b"), self.create("unit-aio-sync-tag", tag="d")
        self.assertEqual(mixed, run([a, sb, c, sd]))

    def test_exception_follows_the_failure_mode(self):
        a = self.create("unit-aio-async-tag", tag="a", fail=True)
        b = self.create("unit-aio-sync-tag", tag="b")
        closed = finish(run([a, b]))
        self.assertEqual(len(closed), 1)
        self.assertFalse(closed[0][0])
        self.assertIn("async failure", closed[0][1])
        opened = finish(run([a, b], [True, False]), token=2)
        self.assertEqual(len(opened), 2)
        self.assertTrue(opened[1][0])

    def test_cancel_before_and_after_start(self):
        a = self.create("unit-aio-async-tag", tag="a", delay=3600)
        before = finish(run([a]), token=3, cancel=True)
        self.assertIn("cancelled", before[0][1])
        task = run([a])
        _worker.track(task, 4)
        _worker.pump()  # the task starts and awaits its hour
        _worker.cancel(4)
        for _ in range(100):
            ended = _worker.pump()
            if ended:
                break
        self.assertIn("cancelled", ended[0][1][0][1])

    def test_async_setup_and_teardown(self):
        i = self.create("unit-aio-setup")
        self.assertEqual(Setup.events[-1], "setup")
        result = finish(run([i]), token=5)
        self.assertTrue(result[0][0])
        _worker.destroy(i)
        self.ids.remove(i)
        self.assertEqual(Setup.events[-1], "teardown")

    def test_loop_state(self):
        a = self.create("unit-aio-async-tag", tag="a")
        finish(run([a]), token=6)
        fd, wait_us = _aio.loop_state()
        self.assertGreaterEqual(fd, 0)
        self.assertEqual(wait_us, -1)  # nothing scheduled once the batch ended

if __name__ == "__main__":
    unittest.main()
