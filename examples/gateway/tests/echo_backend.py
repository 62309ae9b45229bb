#!/usr/bin/python3
"""A small HTTP/1.1 echo upstream for the gateway's tests and demo.

Every request is answered 200 with the request body as the response body
(keep-alive, Content-Length). Two paths help the tests:

  .../slow?ms=N      waits N milliseconds before answering (default 3000)
  .../chunked        answers with a chunked body (the echo, in 3 pieces)
  .../stream?bytes=N answers N bytes of 'x' (Content-Length), written as the
                     client takes them
  .../endless        a chunked body that never ends (until the reader goes)
  .../badchunk       a chunked response whose first chunk size is malformed
  .../gen?bytes=N    answers N bytes of pattern() (Content-Length), written
                     as the client takes them: large bodies, checked by hash
  .../sink           reads the request body as it comes, without keeping
                     it, and answers {"length": n, "sha256": "..."}

Usage: echo_backend.py [--host 127.0.0.1] [--port 9000]
"""

import argparse
import hashlib
import http.server
import json
import random
import socketserver
import sys
import time
import urllib.parse


PATTERN_LEN = 65521  # prime: a chunk lost or repeated anywhere shifts every later byte


def pattern():
    """The bytes /gen repeats (the tests make the same ones to check)."""
    return random.Random(7).randbytes(PATTERN_LEN)


def pattern_pieces(total, piece=262144):
    """Yields the first @total bytes of the repeated pattern, in pieces."""
    block = pattern()
    ring = memoryview(block * (piece // PATTERN_LEN + 2))
    offset = 0
    while total > 0:
        n = min(total, piece)
        yield ring[offset:offset + n]
        offset = (offset + n) % PATTERN_LEN
        total -= n


class EchoHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "echo-backend"

    def log_message(self, fmt, *args):  # quiet: tests send thousands
        pass

    def _read_body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            body = bytearray()  # grows in place: bytes += bytes is quadratic
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return bytes(body)
                body += self.rfile.read(size)
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length", 0) or 0))

    def _stream(self, url):
        total = int(urllib.parse.parse_qs(url.query).get("bytes", ["4194304"])[0])
        self.send_response(200)
        self.send_header("Content-Length", str(total))
        self.end_headers()
        if self.command == "HEAD":
            return
        piece = b"x" * 65536
        try:
            while total > 0:
                self.wfile.write(piece[:total])
                total -= min(total, len(piece))
        except OSError:
            self.close_connection = True

    def _gen(self, url):
        total = int(urllib.parse.parse_qs(url.query).get("bytes", ["0"])[0])
        self.send_response(200)
        self.send_header("Content-Length", str(total))
        self.end_headers()
        if self.command == "HEAD":
            return
        try:
            for piece in pattern_pieces(total):
                self.wfile.write(piece)
        except OSError:
            self.close_connection = True

    def _read_pieces(self):
        """Yields the request body as it arrives (Content-Length or chunked)."""
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return
                while size > 0:
                    piece = self.rfile.read(min(size, 262144))
                    if not piece:
                        raise OSError("request body cut short")
                    size -= len(piece)
                    yield piece
                self.rfile.readline()
        left = int(self.headers.get("Content-Length", 0) or 0)
        while left > 0:
            piece = self.rfile.read(min(left, 262144))
            if not piece:
                raise OSError("request body cut short")
            left -= len(piece)
            yield piece

    def _early(self, url):
        """Answers before reading the request body: the head and the first
        half of `bytes` pattern bytes, then reads the body, then the rest
        (so the response streams while the request still does, and ends
        after it)."""
        total = int(urllib.parse.parse_qs(url.query).get("bytes", ["0"])[0])
        data = b"".join(bytes(p) for p in pattern_pieces(total))
        self.send_response(200)
        self.send_header("Content-Length", str(total))
        self.end_headers()
        try:
            self.wfile.write(data[:total // 2])
            self.wfile.flush()
            for _ in self._read_pieces():
                pass
            self.wfile.write(data[total // 2:])
        except (OSError, ValueError):
            self.close_connection = True

    def _sink(self):
        digest, length = hashlib.sha256(), 0
        try:
            for piece in self._read_pieces():
                digest.update(piece)
                length += len(piece)
        except (OSError, ValueError):
            self.close_connection = True
            return
        body = json.dumps({"length": length, "sha256": digest.hexdigest()}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _endless(self):
        self.send_response(200)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        piece = b"4000\r\n" + b"e" * 0x4000 + b"\r\n"
        try:
            while True:
                self.wfile.write(piece)
        except OSError:
            self.close_connection = True

    def _answer(self):
        url = urllib.parse.urlsplit(self.path)
        if url.path.endswith("/sink"):
            return self._sink()
        if url.path.endswith("/early"):
            return self._early(url)
        body = self._read_body()
        if url.path.endswith("/gen"):
            return self._gen(url)
        if url.path.endswith("/stream"):
            return self._stream(url)
        if url.path.endswith("/endless"):
            return self._endless()
        if url.path.endswith("/badchunk"):
            # One write, so the gateway has the head and the bad size together.
            self.wfile.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n")
            self.close_connection = True
            return
        if url.path.endswith("/slow"):
            query = urllib.parse.parse_qs(url.query)
            time.sleep(int(query.get("ms", ["3000"])[0]) / 1000.0)
        self.send_response(200)
        self.send_header("Content-Type", self.headers.get("Content-Type", "application/octet-stream"))
        self.send_header("X-Echo-Method", self.command)
        self.send_header("X-Echo-Path", self.path)
        self.send_header("X-Echo-Length", str(len(body)))
        if url.path.endswith("/chunked"):
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            if self.command != "HEAD":
                third = max(1, len(body) // 3)
                for piece in (body[:third], body[third:2 * third], body[2 * third:]):
                    if piece:
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                self.wfile.write(b"0\r\n\r\n")
            return
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_HEAD = _answer


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 512


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9000)
    args = parser.parse_args()
    server = Server((args.host, args.port), EchoHandler)
    print("echo backend on http://%s:%d" % (args.host, args.port), file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
