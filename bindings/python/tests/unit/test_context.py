"""Context: phases, bodies, request line, metadata, respond, step results."""

import unittest

import policyexec
from policyexec import Context, Metadata
from policyexec.context import BODY_PREFIX, BODY_REPLACE, BODY_SUFFIX, UNCHANGED


class ContextTest(unittest.TestCase):
    def test_request_line(self):
        ctx = Context(method="GET", path="/a?b=1", authority="example.com")
        self.assertEqual((ctx.method, ctx.path, ctx.authority), ("GET", "/a?b=1", "example.com"))
        ctx.method = "POST"
        ctx.path = "/b"
        self.assertEqual(ctx._commit()[6:8], (b"POST", b"/b"))
        for bad in ["", "/a b", "/\x7f", "/caf\u00e9", "/a\r\n"]:
            with self.assertRaises(ValueError):
                ctx.path = bad
        with self.assertRaises(ValueError):
            ctx.method = "GE T"
        with self.assertRaises(AttributeError):
            ctx.authority = "other"

    def test_request_line_and_status_depend_on_the_phase(self):
        ctx = Context(phase=policyexec.RESPONSE_HEADERS, status=200)
        with self.assertRaises(RuntimeError):
            ctx.method = "POST"
        ctx.status = 404
        self.assertEqual(ctx._commit()[5], 404)
        for bad in [99, 1000]:
            with self.assertRaises(ValueError):
                ctx.status = bad
        with self.assertRaises(TypeError):
            ctx.status = True
        with self.assertRaises(RuntimeError):
            Context().status = 200

    def test_bodies_exist_only_in_their_phase(self):
        ctx = Context(phase=policyexec.REQUEST_HEADERS)
        self.assertIsNone(ctx.request_body)
        with self.assertRaises(RuntimeError):
            ctx.request_body = b"x"
        ctx = Context(phase=policyexec.REQUEST_BODY, request_body=b"abc")
        self.assertEqual(ctx.request_body, b"abc")
        self.assertIsNone(ctx.response_body)
        ctx.request_body = bytearray(b"xyz")
        self.assertEqual(ctx.request_body, b"xyz")
        with self.assertRaises(TypeError):
            ctx.request_body = 3

    def test_a_body_is_visible_only_in_its_own_phase(self):
        # Both bodies supplied, as in a batch holding the whole exchange.
        for phase, visible in [(policyexec.REQUEST_HEADERS, None),
                               (policyexec.REQUEST_BODY, "request"),
                               (policyexec.RESPONSE_HEADERS, None),
                               (policyexec.RESPONSE_BODY, "response")]:
            with self.subTest(phase=phase):
                ctx = Context(phase=phase, status=200 if phase >= 2 else 0,
                              request_body=b"rq", response_body=b"rs")
                self.assertEqual(ctx.request_body, b"rq" if visible == "request" else None)
                self.assertEqual(ctx.response_body, b"rs" if visible == "response" else None)
                if visible != "request":
                    with self.assertRaises(RuntimeError):
                        ctx.request_body = b"x"
                if visible != "response":
                    with self.assertRaises(RuntimeError):
                        ctx.response_body = b"x"
                self.assertEqual(ctx._commit(), (True, None, None, None, None, 0, None, None,
                                                 None))

    def test_a_body_not_supplied_stays_unavailable_in_its_phase(self):
        ctx = Context(phase=policyexec.RESPONSE_BODY, status=200)
        self.assertIsNone(ctx.response_body)
        with self.assertRaises(RuntimeError):
            ctx.response_body = b"x"

    def test_the_body_follows_the_phase_of_the_step(self):
        # What the worker does in a response headers + body batch.
        ctx = Context(phase=policyexec.RESPONSE_HEADERS, status=200, response_body=b"body")
        ctx.response_headers["x-stage"] = "headers"
        self.assertIsNone(ctx.response_body)
        self.assertIsNone(ctx._commit()[3])
        ctx.phase = policyexec.RESPONSE_BODY
        self.assertEqual(ctx.response_body, b"body")
        self.assertEqual(ctx.response_headers["x-stage"], "headers")
        ctx.response_body = b"new"
        ctx._rollback()
        self.assertEqual(ctx.response_body, b"body")
        ctx.response_body = b"body!"
        self.assertEqual(ctx._commit()[3], [(1, BODY_SUFFIX, b"!")])
        ctx.status = 201  # still a response phase
        ctx.phase = policyexec.RESPONSE_HEADERS
        self.assertIsNone(ctx.response_body)
        with self.assertRaises(RuntimeError):
            ctx.path = "/late"

    def test_body_edits_take_the_smallest_form(self):
        def edit(old, new):
            ctx = Context(phase=policyexec.RESPONSE_BODY, response_body=old)
            ctx.response_body = new
            bodies = ctx._commit()[3]
            return bodies[0] if bodies else None
        self.assertEqual(edit(b"body", b"[p]body"), (1, BODY_PREFIX, b"[p]"))
        self.assertEqual(edit(b"body", b"body[s]"), (1, BODY_SUFFIX, b"[s]"))
        self.assertEqual(edit(b"body", b"other"), (1, BODY_REPLACE, b"other"))
        self.assertEqual(edit(b"body", b""), (1, BODY_REPLACE, b""))
        self.assertEqual(edit(b"", b"new"), (1, BODY_PREFIX, b"new"))
        self.assertIsNone(edit(b"same", bytes(b"same")))

    def test_metadata(self):
        ctx = Context(metadata={"a": "1", "gone": "x"})
        ctx.metadata["b"] = b"\xff"
        del ctx.metadata["gone"]
        self.assertEqual(ctx.metadata["b"], "\udcff")
        self.assertEqual(sorted(ctx._commit()[4]), [(b"b", b"\xff"), (b"gone", None)])
        with self.assertRaises(ValueError):
            ctx.metadata[""] = "x"
        self.assertNotIn("", ctx.metadata)
        m = Metadata({"k": "v"})
        self.assertEqual(dict(m), {"k": "v"})
        self.assertEqual(m.pop("k"), "v")
        self.assertEqual(len(m), 0)

    def test_respond(self):
        ctx = Context()
        ctx.respond(403, b"no", {"Content-Type": "text/plain"})
        self.assertTrue(ctx.responded)
        self.assertEqual(ctx._commit()[8], (403, [(b"Content-Type", b"text/plain")], b"no"))
        with self.assertRaises(ValueError):
            ctx.respond(403, b"", [("x-bad", "a\r\nb")])
        with self.assertRaises(ValueError):
            ctx.respond(42)

    def test_rollback_undoes_a_step(self):
        ctx = Context(phase=policyexec.REQUEST_BODY, request_headers={"h": "1"},
                      request_body=b"b", metadata={"m": "1"})
        ctx.request_headers["h"] = "2"
        ctx.request_body = b"changed"
        ctx.metadata["m"] = "2"
        ctx.path = "/changed"
        ctx.respond(500)
        ctx._rollback()
        self.assertEqual((ctx.request_headers["h"], ctx.request_body, ctx.metadata["m"],
                          ctx.path, ctx.responded), ("1", b"b", "1", "/", False))
        self.assertEqual(ctx._commit(), (True, None, None, None, None, 0, None, None, None))



class StepBoundaryTest(unittest.TestCase):
    """_commit has a fast path for a step that changed nothing: it must give
    the same results as the full comparison, step after step."""

    def wire(self, phase=policyexec.REQUEST_BODY):
        return Context._from_wire(phase, "GET", "/p", "example.com", 0, ["Host", "h"],
                                  None, b"body", None, ["m", "1"])

    def test_a_step_that_only_reads_is_unchanged(self):
        ctx = self.wire()
        (ctx.method, ctx.path, ctx.status, ctx.request_body, ctx.response_body)
        (ctx.request_headers.items(), ctx.response_headers.items(), dict(ctx.metadata))
        self.assertIs(ctx._commit(), UNCHANGED)
        self.assertEqual(Context()._commit(), UNCHANGED)

    def test_changes_undone_within_a_step_report_nothing(self):
        ctx = self.wire()
        ctx.request_body = b"other"
        ctx.request_body = b"body"
        ctx.method = "PUT"
        ctx.method = "GET"
        ctx.path = "/p"
        ctx.request_headers["host"] = "x"
        ctx.request_headers["Host"] = "h"
        ctx.metadata["m"] = "1"
        self.assertEqual(ctx._commit(), UNCHANGED)
        self.assertIs(ctx._commit(), UNCHANGED)  # and the next step starts clean

    def test_each_step_is_measured_from_its_own_start(self):
        ctx = self.wire()
        ctx.request_body = b">" + ctx.request_body
        self.assertEqual(ctx._commit()[3], [(0, BODY_PREFIX, b">")])
        self.assertIs(ctx._commit(), UNCHANGED)
        ctx.request_body = b"dropped"
        ctx.path = "/dropped"
        ctx.request_headers["x-dropped"] = "1"
        ctx._rollback()  # back to the start of this step, not of the exchange
        self.assertEqual((ctx.request_body, ctx.path, "x-dropped" in ctx.request_headers),
                         (b">body", "/p", False))
        self.assertIs(ctx._commit(), UNCHANGED)
        ctx.request_body += b"<"
        ctx.method = "POST"
        self.assertEqual(ctx._commit(), (True, None, None, [(0, BODY_SUFFIX, b"<")], None, 0,
                                         b"POST", None, None))
        ctx.phase = policyexec.RESPONSE_HEADERS
        ctx.status = 201
        self.assertEqual(ctx._commit()[5], 201)
        ctx.status = 202
        ctx._rollback()
        self.assertEqual(ctx.status, 201)
        ctx._rollback()  # nothing changed: nothing to undo
        self.assertEqual((ctx.status, ctx.method, ctx.path), (201, "POST", "/p"))

    def test_respond_alone_is_reported(self):
        ctx = self.wire()
        ctx.respond(204)
        self.assertEqual(ctx._commit(), (True, None, None, None, None, 0, None, None,
                                         (204, [], b"")))
        self.assertIs(ctx._commit(), UNCHANGED)

    def test_a_refused_change_is_not_a_change(self):
        ctx = self.wire()
        with self.assertRaises(ValueError):
            ctx.path = "has space"
        with self.assertRaises(TypeError):
            ctx.request_body = 3
        with self.assertRaises(ValueError):
            ctx.request_headers["x"] = "a\nb"
        self.assertIs(ctx._commit(), UNCHANGED)


if __name__ == "__main__":
    unittest.main()
