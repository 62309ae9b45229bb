"""policyexec.chunk and the streamed side of policyexec._worker: the
BodyChunk a chunk method writes to, run_chunk's per-body state, and the
whole-body fallback of a chunk-only policy."""

import unittest

import policyexec
from policyexec import BodyChunk, Policy, _worker

import sample_redact


class Upper(Policy):
    name = "unit-chunk-upper"
    version = "1.0.0"

    def on_request_body_chunk(self, ctx, chunk):
        chunk.state = (chunk.state or 0) + 1
        if chunk.last:
            ctx.metadata["calls"] = str(chunk.state)
        chunk.write(bytes(chunk.data).upper())


class Both(Policy):
    name = "unit-chunk-both"
    version = "1.0.0"

    def on_response_body(self, ctx):
        ctx.response_body = b"[whole]" + ctx.response_body

    def on_response_body_chunk(self, ctx, chunk):
        return chunk.data


class Raises(Policy):
    name = "unit-chunk-raises"
    version = "1.0.0"

    def on_request_body_chunk(self, ctx, chunk):
        chunk.state = "kept"
        if chunk.data == b"boom":
            raise ValueError("boom")
        return chunk.data


def run(instance_id, data, last, body_id=1, side=0):
    return _worker.run_chunk(instance_id, side, False, 0, "POST", "/", "", 0, None, None, data,
                             None, body_id, last)


class BodyChunkTest(unittest.TestCase):
    def test_pieces(self):
        chunk = BodyChunk(b"hello world", False)
        chunk.forward(0, 2)
        chunk.forward(2, 5)  # the next run: merged
        chunk.write("é")
        chunk.keep(3)
        self.assertEqual(chunk._finish(None), ([(0, 5), "é".encode()], 3))

    def test_return_data_forwards_everything(self):
        chunk = BodyChunk(b"abc", True)
        self.assertEqual(chunk._finish(chunk.data), ([(0, 3)], 0))

    def test_checks(self):
        chunk = BodyChunk(b"abc", True)
        with self.assertRaises(ValueError):
            chunk.forward(2, 4)
        with self.assertRaises(ValueError):
            chunk.keep(1)  # the last chunk holds nothing back
        with self.assertRaises(TypeError):
            chunk.write(3)
        BodyChunk(b"abc", False).keep(3)
        with self.assertRaises(ValueError):
            BodyChunk(b"abc", False).keep(4)

    def test_phases(self):
        self.assertEqual(Upper.phases(), 1 << policyexec.REQUEST_BODY)
        self.assertEqual(Upper.chunk_phases(), 1 << policyexec.REQUEST_BODY)
        self.assertEqual(Upper.needs_bodies(), (False, False))
        self.assertEqual(Both.needs_bodies(), (False, False))
        self.assertEqual(sample_redact.SampleRedact.chunk_phases(),
                         (1 << policyexec.REQUEST_BODY) | (1 << policyexec.RESPONSE_BODY))


class RunChunkTest(unittest.TestCase):
    def setUp(self):
        for i, cls in enumerate((Upper, Both, Raises)):
            self.assertIsNone(_worker.create(900 + i, cls.name, cls.version, "{}"))

    def tearDown(self):
        for i in range(3):
            _worker.destroy(900 + i)

    def test_state_lives_until_the_last_chunk(self):
        result, pieces, keep = run(900, b"ab", False)
        self.assertIs(result[0], True)
        self.assertEqual((pieces, keep), ([b"AB"], 0))
        self.assertIn((1, 900), _worker._chunk_states)
        result, pieces, keep = run(900, b"c", True)
        self.assertEqual(pieces, [b"C"])
        self.assertEqual(result[4], [(b"calls", b"2")])
        self.assertNotIn((1, 900), _worker._chunk_states)

    def test_failure_drops_the_state(self):
        run(902, b"ok", False, body_id=5)
        self.assertIn((5, 902), _worker._chunk_states)
        result, pieces, keep = run(902, b"boom", False, body_id=5)
        self.assertIs(result[0], False)
        self.assertIn("ValueError: boom", result[1])
        self.assertIsNone(pieces)
        self.assertNotIn((5, 902), _worker._chunk_states)

    def test_abort_drops_the_state(self):
        run(900, b"x", False, body_id=7)
        _worker.abort_body(7)
        self.assertNotIn((7, 900), _worker._chunk_states)

    def test_no_chunk_method_for_the_side(self):
        with self.assertRaises(LookupError):
            run(900, b"x", True, side=1)

    def test_whole_body_fallback(self):
        ctx = policyexec.Context(phase=policyexec.REQUEST_BODY, request_body=b"abc")
        _worker._instances[900][policyexec.REQUEST_BODY](ctx)
        self.assertEqual(ctx.request_body, b"ABC")
        ctx = policyexec.Context(phase=policyexec.RESPONSE_BODY, response_body=b"abc")
        _worker._instances[901][policyexec.RESPONSE_BODY](ctx)
        self.assertEqual(ctx.response_body, b"[whole]abc")  # its buffered method


class SampleRedactTest(unittest.TestCase):
    def redact(self, data, cuts):
        out, held, start = b"", b"", 0
        for i, end in enumerate(list(cuts) + [len(data)]):
            chunk = BodyChunk(held + data[start:end], i == len(cuts))
            sample_redact._redact(chunk)
            pieces, keep = chunk._finish(None)
            out += b"".join(chunk.data[p[0]:p[1]] if type(p) is tuple else p for p in pieces)
            held = chunk.data[len(chunk.data) - keep:] if keep else b""
            start = end
        return out

    def test_split_anywhere(self):
        text = b"card 4111111111111111, 12345, 123456789012345678901234, 5500000000000004."
        want = text.replace(b"4111111111111111", b"************1111").replace(
            b"5500000000000004", b"************0004")
        for cut in range(len(text) + 1):
            self.assertEqual(self.redact(text, [cut]), want, cut)
        self.assertEqual(self.redact(text, range(1, len(text))), want)


if __name__ == "__main__":
    unittest.main()
