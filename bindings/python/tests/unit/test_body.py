"""policyexec.Body: a shared body that behaves like bytes where policies use it."""

import fcntl
import mmap
import os
import unittest

from policyexec import Body
from policyexec import _worker
from policyexec.context import (BODY_PREFIX, BODY_REPLACE, BODY_SUFFIX, REQUEST_BODY,
                                SIDE_REQUEST, Context, _body_edits)


def shared(data):
    """A Body over a sealed memfd holding data, as the worker builds it."""
    fd = os.memfd_create("test-body", os.MFD_ALLOW_SEALING)
    os.write(fd, data)
    fcntl.fcntl(fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_WRITE | fcntl.F_SEAL_SHRINK
                | fcntl.F_SEAL_GROW | fcntl.F_SEAL_SEAL)
    try:
        return _worker.shm_body(fd, 0, len(data))
    finally:
        os.close(fd)


class BodyTest(unittest.TestCase):
    def test_behaves_like_bytes(self):
        b = shared(b"hello world")
        self.assertEqual(len(b), 11)
        self.assertEqual(bytes(b), b"hello world")
        self.assertEqual(b, b"hello world")
        self.assertNotEqual(b, b"hello worle")
        self.assertEqual(b[0], ord("h"))
        self.assertEqual(b[0:5], b"hello")
        self.assertTrue(b.startswith(b"hello"))
        self.assertTrue(b.endswith(b"world"))
        self.assertFalse(b.endswith(b"hello"))
        self.assertIn(b"lo w", b)
        self.assertEqual(b.decode(), "hello world")
        self.assertEqual(b.upper(), b"HELLO WORLD")
        self.assertEqual(b.find(b"world"), 6)
        self.assertEqual(list(b)[:2], [104, 101])
        self.assertEqual(hash(b), hash(b"hello world"))
        self.assertTrue(b.view.readonly)
        with self.assertRaises(TypeError):
            b.view[0] = 1

    def test_concatenation_records_prefix_and_suffix(self):
        b = shared(b"body")
        c = b"<" + b + b">"
        self.assertIsInstance(c, Body)
        self.assertEqual(c, b"<body>")
        self.assertEqual(_body_edits(SIDE_REQUEST, b, c),
                         [(SIDE_REQUEST, BODY_PREFIX, b"<"), (SIDE_REQUEST, BODY_SUFFIX, b">")])
        self.assertEqual(_body_edits(SIDE_REQUEST, b, b"new"),
                         [(SIDE_REQUEST, BODY_REPLACE, b"new")])
        self.assertEqual(_body_edits(SIDE_REQUEST, b, b"x" + bytes(b)),
                         [(SIDE_REQUEST, BODY_PREFIX, b"x")])

    def test_context_sends_only_the_prefix(self):
        b = shared(b"payload")
        ctx = Context(phase=REQUEST_BODY, request_body=b"")
        ctx._rq_body = b
        ctx.request_body = b"[p]" + ctx.request_body
        result = ctx._commit()
        self.assertEqual(result[3], [(SIDE_REQUEST, BODY_PREFIX, b"[p]")])

    def test_released_body_refuses_use(self):
        b = shared(b"gone soon")
        b._release()
        with self.assertRaises(ValueError):
            bytes(b)

    def test_size_check_is_the_callers(self):
        # mmap of the whole file; the slice is what the engine referenced.
        fd = os.memfd_create("t")
        os.write(fd, b"0123456789")
        try:
            self.assertEqual(bytes(_worker.shm_body(fd, 2, 3)), b"234")
        finally:
            os.close(fd)
        self.assertTrue(hasattr(mmap, "PROT_READ"))


if __name__ == "__main__":
    unittest.main()
