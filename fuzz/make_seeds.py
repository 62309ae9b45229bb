#!/usr/bin/env python3
"""Writes the seed corpora of fuzz/ (committed; rerun after changing them).

Protobuf is encoded by hand (stdlib only): field numbers follow
proto/policyexec/v1/executor.proto.
"""
import os

HERE = os.path.dirname(os.path.abspath(__file__))


def varint(n):
    n &= (1 << 64) - 1  # negative int32 values travel as 10-byte varints
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def f_int(num, n):
    return varint(num << 3) + varint(n)


def f_bytes(num, data):
    if isinstance(data, str):
        data = data.encode()
    return varint(num << 3 | 2) + varint(len(data)) + data


def header_edit(side, name, *values):
    return f_int(1, side) + f_bytes(2, name) + b"".join(f_bytes(3, v) for v in values)


def body_edit(side, replace=None, prefix=b"", suffix=b""):
    m = f_int(1, side)
    if replace is not None:
        m += f_int(2, 1) + f_bytes(3, replace)
    return m + (f_bytes(4, prefix) if prefix else b"") + (f_bytes(5, suffix) if suffix else b"")


def step(outcome=0, error="", headers=(), bodies=(), meta=(), status=0, method=b"", path=b"",
         respond=None):
    m = f_int(1, outcome) if outcome else b""
    m += f_bytes(2, error) if error else b""
    m += b"".join(f_bytes(3, h) for h in headers)
    m += b"".join(f_bytes(4, b) for b in bodies)
    m += b"".join(f_bytes(5, e) for e in meta)
    m += f_int(6, status) if status else b""
    m += (f_bytes(7, method) if method else b"") + (f_bytes(8, path) if path else b"")
    return m + (f_bytes(9, respond) if respond is not None else b"")


def run_reply(*steps):
    return f_int(1, 42) + f_bytes(5, b"".join(f_bytes(1, s) for s in steps))


# Control bytes of fuzz_py_reply: batch size-1, fail-open bits, first phase,
# phase-advance bits.
def reply_seed(n, open_bits, phase, advance, resp):
    return bytes([n - 1, open_bits, phase, advance]) + resp


REQ, RESP = 0, 1
replies = {
    "headers": reply_seed(2, 0, 0, 0, run_reply(
        step(headers=[header_edit(REQ, "x-added", "v1", "v2"), header_edit(REQ, "x-a")],
             meta=[f_bytes(1, "k") + f_bytes(2, "v"), f_bytes(1, "route") + f_int(3, 1)],
             method=b"PUT", path=b"/new"),
        step(headers=[header_edit(RESP, "server", "fz")]))),
    "bodies": reply_seed(3, 0b10, 1, 0b110, run_reply(
        step(bodies=[body_edit(REQ, prefix=b"<", suffix=b">")]),
        step(status=201),
        step(bodies=[body_edit(RESP, replace=b"new body")]))),
    "respond": reply_seed(3, 0, 0, 0, run_reply(
        step(respond=f_int(1, 403) + f_bytes(2, f_bytes(1, "x-why") + f_bytes(2, "no")) +
             f_bytes(3, "denied")))),
    "failed": reply_seed(2, 0b01, 2, 0, run_reply(
        step(outcome=1, error="fz: ValueError"), step(headers=[header_edit(RESP, "a", "b")]))),
    "error": reply_seed(1, 0, 0, 0, f_int(1, 42) + f_bytes(7, f_bytes(1, "no such instance"))),
    "bad_edit": reply_seed(1, 1, 0, 0, run_reply(
        step(headers=[header_edit(REQ, "bad name", "v\r\nx: y")], status=-1))),
}

http = {
    "get": b"\x00GET / HTTP/1.1\r\nHost: example.test\r\nConnection: keep-alive\r\n\r\n",
    "post_length": b"\x02POST /a?b=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
    "chunked": b"\x16POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"6\r\nalpha-\r\nA;ext=1\r\n0123456789\r\n0\r\nTrailer: x\r\n\r\n",
    "chunked_lf": b"\x3eGET / HTTP/1.0\nTransfer-Encoding: Chunked\n\n3\nabc\n0\n\n",
    "response": b"\x01HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok",
    "response_chunked": b"\x07HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                        b"2\r\nok\r\n0\r\n\r\n",
}

for target, seeds in (("fuzz_py_reply", replies), ("fuzz_gw_http", http)):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    for name, data in seeds.items():
        with open(os.path.join(d, name), "wb") as f:
            f.write(data)
