"""policyexec._worker.run: batches of one phase, and of consecutive phases."""

import unittest

import policyexec
from policyexec import Policy, _worker
from policyexec.context import BODY_PREFIX, BODY_SUFFIX, UNCHANGED

import sample_policies

RQH, RQB, RSH, RSB = (policyexec.REQUEST_HEADERS, policyexec.REQUEST_BODY,
                      policyexec.RESPONSE_HEADERS, policyexec.RESPONSE_BODY)


class Trace(Policy):
    """Appends "<hook>@<ctx.phase><bodies it sees>" to metadata "trace"."""

    name = "unit-worker-trace"
    version = "1.0.0"

    def _trace(self, ctx, hook):
        seen = ("q" if ctx.request_body is not None else "") + \
               ("s" if ctx.response_body is not None else "")
        ctx.metadata["trace"] = ctx.metadata.get("trace", "") + f"{hook}@{ctx.phase}{seen} "

    def on_request_headers(self, ctx):
        self._trace(ctx, "rqh")

    def on_request_body(self, ctx):
        self._trace(ctx, "rqb")

    def on_response_headers(self, ctx):
        self._trace(ctx, "rsh")

    def on_response_body(self, ctx):
        self._trace(ctx, "rsb")


class HeadersThenBody(Policy):
    """Sets a header and the status in the headers phase; the body phase
    appends what it sees of them to the body."""

    name = "unit-worker-headers-then-body"
    version = "1.0.0"

    def on_response_headers(self, ctx):
        ctx.response_headers["x-stage"] = "headers"
        ctx.status = 203

    def on_response_body(self, ctx):
        ctx.response_body += f"[{ctx.response_headers.get('x-stage')} {ctx.status}]".encode()


class RespondOnHeaders(Policy):
    name = "unit-worker-respond"
    version = "1.0.0"

    def on_response_headers(self, ctx):
        ctx.respond(502, b"no")


class RaiseOnHeaders(Policy):
    """Changes a header, then raises."""

    name = "unit-worker-raise"
    version = "1.0.0"

    def on_response_headers(self, ctx):
        ctx.response_headers["x-stage"] = "partial"
        raise RuntimeError("boom")


class BodyOnly(Policy):
    name = "unit-worker-body-only"
    version = "1.0.0"

    def on_response_body(self, ctx):
        ctx.response_body = b"<" + ctx.response_body


class SetRequestBody(Policy):
    name = "unit-worker-set-request-body"
    version = "1.0.0"

    def on_response_body(self, ctx):
        ctx.request_body = b"late"


class WorkerRunTest(unittest.TestCase):
    def setUp(self):
        self.ids = []

    def tearDown(self):
        for instance_id in self.ids:
            _worker.destroy(instance_id)

    def create(self, *classes):
        """One instance per class; returns their ids."""
        ids = []
        for cls in classes:
            instance_id = 1000 + len(self.ids)
            self.assertIsNone(_worker.create(instance_id, cls.name, cls.version, ""))
            self.ids.append(instance_id)
            ids.append(instance_id)
        return tuple(ids)

    @staticmethod
    def run_batch(ids, step_phases, fail_open=(), phase=None):
        """A batch over an exchange whose request and response are buffered."""
        if phase is None:
            phase = step_phases[0] if step_phases else RQH
        return _worker.run(phase, ids, tuple(fail_open), "GET", "/", "example.com", 200,
                           ["Host", "example.com"], ["Content-Type", "text/plain"],
                           b"rq", b"rs", None, step_phases)

    @staticmethod
    def trace(result):
        return dict(result[4])[b"trace"]

    def test_each_step_runs_in_its_own_phase(self):
        ids = self.create(Trace, Trace, BodyOnly, Trace)
        results = self.run_batch(ids, (RSH, RSH, RSB, RSB))
        self.assertEqual(len(results), 4)
        self.assertEqual(self.trace(results[0]), b"rsh@2 ")
        self.assertEqual(self.trace(results[1]), b"rsh@2 rsh@2 ")
        self.assertEqual(results[2][3], [(1, BODY_PREFIX, b"<")])
        self.assertEqual(self.trace(results[3]), b"rsh@2 rsh@2 rsb@3s ")

        results = self.run_batch(self.create(Trace, Trace), (RQH, RQB))
        self.assertEqual(self.trace(results[1]), b"rqh@0 rqb@1q ")

    def test_a_step_without_a_method_for_its_phase_does_nothing(self):
        ids = self.create(BodyOnly, Trace)
        results = self.run_batch(ids, (RSH, RSB))
        self.assertEqual(results[0], _worker._NOTHING)
        self.assertEqual(self.trace(results[1]), b"rsb@3s ")

    def test_without_step_phases_every_step_runs_in_the_phase(self):
        ids = self.create(Trace, BodyOnly, Trace)
        results = self.run_batch(ids, None, phase=RSB)
        self.assertEqual(self.trace(results[0]), b"rsb@3s ")
        self.assertEqual(results[1][3], [(1, BODY_PREFIX, b"<")])
        self.assertEqual(self.trace(results[2]), b"rsb@3s rsb@3s ")

    def test_edits_of_a_headers_step_reach_the_body_step(self):
        ids = self.create(HeadersThenBody, HeadersThenBody)
        results = self.run_batch(ids, (RSH, RSB))
        self.assertEqual(results[0][2], [(1, b"x-stage", [b"headers"])])
        self.assertEqual(results[0][5], 203)
        self.assertIsNone(results[0][3])  # the body is not the headers step's
        self.assertEqual(results[1][3], [(1, BODY_SUFFIX, b"[headers 203]")])
        self.assertIsNone(results[1][2])

    def test_respond_in_a_headers_step_stops_the_body_steps(self):
        ids = self.create(Trace, RespondOnHeaders, Trace, Trace)
        results = self.run_batch(ids, (RSH, RSH, RSH, RSB))
        self.assertEqual(len(results), 2)
        self.assertEqual(results[1][8], (502, [], b"no"))

    def test_a_closed_failure_stops_the_later_phases(self):
        ids = self.create(RaiseOnHeaders, Trace)
        results = self.run_batch(ids, (RSH, RSB), fail_open=(False, True))
        self.assertEqual(len(results), 1)
        self.assertFalse(results[0][0])
        self.assertIn("unit-worker-raise@1.0.0: RuntimeError: boom", results[0][1])

    def test_an_open_failure_goes_on_into_the_next_phase(self):
        ids = self.create(RaiseOnHeaders, HeadersThenBody)
        results = self.run_batch(ids, (RSH, RSB), fail_open=(True, False))
        self.assertEqual(len(results), 2)
        self.assertFalse(results[0][0])
        self.assertIsNone(results[0][2])
        # The failed step's header was undone before the body step ran.
        self.assertEqual(results[1][:2], (True, None))
        self.assertEqual(results[1][3], [(1, BODY_SUFFIX, b"[None 200]")])

    def test_a_body_step_cannot_touch_the_other_side_body(self):
        ids = self.create(SetRequestBody)
        results = self.run_batch(ids, (RSB,))
        self.assertFalse(results[0][0])
        self.assertIn("RuntimeError: the request body is not available", results[0][1])

    def test_an_unknown_instance_runs_nothing(self):
        ids = self.create(Trace)
        with self.assertRaisesRegex(LookupError, "unknown instance 999"):
            self.run_batch(ids + (999,), (RSH, RSB))


    def test_the_load_test_batches(self):
        """The two messages of the load test (bench_run.py times them)."""
        ids = self.create(sample_policies.SampleRequestBody, sample_policies.SampleResponseHeader,
                          sample_policies.SampleResponseHeader,
                          sample_policies.SampleResponseBody)
        rq = ["Host", "h", "Content-Type", "application/json", "X-Sample-Policy-Phase", "a"]
        results = _worker.run(RQB, ids[:1], (False,), "POST", "/", "h", 0, list(rq), None,
                              b"q" * 50, None, None, None)
        self.assertEqual(results, [(True, None, None, [(0, BODY_PREFIX, b"[sample-request-body]")],
                                    None, 0, None, None, None)])
        rs = ["Content-Type", "text/plain", "x-sample-policy-phase", "a", "X-Sample-Policy-Phase",
              "b"]
        results = _worker.run(RSH, ids[1:], (False, False, False), "POST", "/", "h", 200, rq, rs,
                              None, b"s" * 70, None, (RSH, RSH, RSB))
        self.assertEqual(results, [
            (True, None, [(1, b"x-sample-policy-phase", [b"response-header"])], None, None, 0,
             None, None, None),
            UNCHANGED,
            (True, None, None, [(1, BODY_PREFIX, b"[sample-response-body]")], None, 0, None,
             None, None)])


if __name__ == "__main__":
    unittest.main()
