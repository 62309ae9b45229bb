"""Sample policies that wait on I/O: coroutine phase methods (async def).

* ``sample-python-lookup`` asks an HTTP service (standard library asyncio
  streams, kept-alive connections opened lazily and closed in teardown) and
  copies a field of its JSON answer into a request header.
* ``sample-python-io-wait`` awaits a timer (``ms``) and sets
  ``x-sample-policy-phase: request-header``: the benchmarks' stand-in for a
  policy that waits on the network.
* ``sample-python-rate-limit`` counts requests per fixed window in Redis
  (Debian's ``python3-redis`` asyncio client) and answers 429 past the
  limit.

While they wait, their worker serves other requests. A failure (service
down, bad answer, Redis unreachable) raises, so the step's failure mode
applies; a service that is too slow meets the step's timeout, and the
coroutine is cancelled.
"""

import asyncio
import json
import time
import urllib.parse

import policyexec


class SampleIoWait(policyexec.Policy):
    """Awaits ``ms`` milliseconds, then sets ``x-sample-policy-phase``."""

    name = "sample-python-io-wait"
    version = "1.0.0"
    params = {"ms": policyexec.Param(float, default=10.0)}

    async def on_request_headers(self, ctx):
        await asyncio.sleep(self.params["ms"] / 1000.0)
        ctx.request_headers["x-sample-policy-phase"] = "request-header"


class SampleLookup(policyexec.Policy):
    """GETs ``url`` (plus ``?key=<value of key_header>`` when that header is
    set), and sets request header ``header`` to the JSON answer's ``field``.
    """

    name = "sample-python-lookup"
    version = "1.0.0"
    params = {
        "url": str,
        "field": policyexec.Param(str, default="value", doc="field of the JSON answer"),
        "header": policyexec.Param(str, default="x-lookup", doc="request header to set"),
        "key_header": policyexec.Param(str, default="", doc="request header sent as ?key="),
        "max_idle": policyexec.Param(int, default=64, doc="idle connections kept"),
    }

    def validate(self):
        url = urllib.parse.urlsplit(self.params["url"])
        if url.scheme != "http" or not url.hostname:
            raise ValueError(f"url must be http://host[:port]/path, not {self.params['url']!r}")
        self._host = url.hostname
        self._port = url.port or 80
        self._path = (url.path or "/") + (f"?{url.query}" if url.query else "")
        self._authority = url.netloc

    def setup(self):
        # Idle kept-alive connections, shared by the requests of this worker.
        self._idle = []

    async def teardown(self):
        while self._idle:
            _, writer = self._idle.pop()
            writer.close()
            try:
                await writer.wait_closed()
            except OSError:
                pass

    async def on_request_headers(self, ctx):
        path = self._path
        key_header = self.params["key_header"]
        if key_header:
            key = ctx.request_headers.get(key_header)
            if key is not None:
                sep = "&" if "?" in path else "?"
                path += sep + "key=" + urllib.parse.quote(key, safe="")
        answer = await self._get(path)
        value = json.loads(answer)[self.params["field"]]
        ctx.request_headers[self.params["header"]] = str(value)

    async def _get(self, path):
        conn = self._idle.pop() if self._idle else None
        if conn is not None:
            try:
                return await self._exchange(conn, path)
            except (ConnectionError, asyncio.IncompleteReadError):
                pass  # the service closed a kept-alive connection: open another
        conn = await asyncio.open_connection(self._host, self._port)
        return await self._exchange(conn, path)

    async def _exchange(self, conn, path):
        reader, writer = conn
        try:
            writer.write(f"GET {path} HTTP/1.1\r\nhost: {self._authority}\r\n"
                         f"accept: application/json\r\n\r\n".encode())
            status_line = await reader.readline()
            if not status_line:
                raise ConnectionError("the lookup service closed the connection")
            parts = status_line.split(None, 2)
            status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
            length, keep, chunked = None, True, False
            while True:
                line = await reader.readline()
                if line in (b"\r\n", b"\n", b""):
                    break
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                value = value.strip().lower()
                if name == b"content-length":
                    length = int(value)
                elif name == b"transfer-encoding":
                    chunked = value == b"chunked"
                elif name == b"connection" and value == b"close":
                    keep = False
            if chunked:
                body = await _read_chunked(reader)
                length = len(body)
            elif length is not None:
                body = await reader.readexactly(length)
            else:
                body = await reader.read()  # delimited by the end of the connection
        except BaseException:
            writer.close()  # cancelled or broken: never reused half-read
            raise
        if keep and length is not None and len(self._idle) < self.params["max_idle"]:
            self._idle.append(conn)
        else:
            writer.close()
        if status != 200:
            raise RuntimeError(f"lookup service answered {status}")
        return body


async def _read_chunked(reader):
    """A chunked body (RFC 9112 7.1), trailers skipped."""
    parts = []
    while True:
        size = int((await reader.readline()).split(b";")[0].strip() or b"0", 16)
        if size == 0:
            while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                pass
            return b"".join(parts)
        parts.append(await reader.readexactly(size))
        await reader.readexactly(2)  # CRLF after the chunk


class SampleRateLimit(policyexec.Policy):
    """Fixed-window counter in Redis: at most ``limit`` requests per
    ``window`` seconds for each value of ``key_header`` (all requests share
    one counter when it is empty or absent); past it, answers 429."""

    name = "sample-python-rate-limit"
    version = "1.0.0"
    params = {
        "redis_url": policyexec.Param(str, default="redis://127.0.0.1:6379/0"),
        "limit": policyexec.Param(int, default=100),
        "window": policyexec.Param(int, default=1, doc="seconds"),
        "key_header": policyexec.Param(str, default=""),
        "prefix": policyexec.Param(str, default="policyexec:rl:"),
        "redis_timeout": policyexec.Param(float, default=1.0, doc="seconds per command"),
    }

    def validate(self):
        if self.params["limit"] < 0 or self.params["window"] < 1:
            raise ValueError("limit must be >= 0 and window >= 1")

    def setup(self):
        # Imported here: workers that never run this policy never load redis.
        import redis.asyncio
        timeout = self.params["redis_timeout"]
        # One connection pool per instance and worker; connections are made
        # on first use and remade after Redis restarts.
        self._redis = redis.asyncio.Redis.from_url(
            self.params["redis_url"], socket_timeout=timeout, socket_connect_timeout=timeout)

    async def teardown(self):
        await self._redis.close()
        await self._redis.connection_pool.disconnect()

    async def on_request_headers(self, ctx):
        window = self.params["window"]
        who = ctx.request_headers.get(self.params["key_header"]) if self.params["key_header"] else ""
        key = f"{self.params['prefix']}{who or '-'}:{int(time.time()) // window}"
        pipe = self._redis.pipeline(transaction=False)
        pipe.incr(key)
        pipe.expire(key, window + 1)
        count, _ = await pipe.execute()
        limit = self.params["limit"]
        if count > limit:
            ctx.respond(429, b"rate limit exceeded\n",
                        {"content-type": "text/plain", "retry-after": str(window)})
            return
        ctx.request_headers["x-ratelimit-remaining"] = str(limit - count)
