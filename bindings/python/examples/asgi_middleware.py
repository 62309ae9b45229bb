"""An ASGI middleware that runs a libpolicyexec chain around an app, with
the standard library only (plus policyexec.host).

    from policyexec import host
    engine = host.Engine()
    engine.load_plugin(".../sample_native_policies.so")
    app = PolicyMiddleware(app, engine, engine.chain(open("chain.json").read()))

Request headers and body phases run before the app (an immediate response
answers without calling it); the app's response is buffered and both
response phases run as one before it is sent. Content-Length is recomputed
after a body rewrite. Runs of chains with Python steps block on a worker
round trip, so they go to a thread (``offload=True``); an exchange is only
ever used by one thread at a time.
"""

import asyncio

from policyexec import host


def _latin1(b):
    return b.decode("latin-1")


class PolicyMiddleware:
    def __init__(self, app, engine, chain, offload=True):
        self.app = app
        self.engine = engine
        self.chain = chain
        self.offload = offload

    async def _run(self, ex, first, last):
        if self.offload:
            return await asyncio.to_thread(self.chain.run_phases, ex, first, last)
        return self.chain.run_phases(ex, first, last)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        with self.engine.exchange() as ex:
            await self._handle(ex, scope, receive, send)

    async def _handle(self, ex, scope, receive, send):
        path = scope.get("raw_path") or scope["path"].encode()
        if scope.get("query_string"):
            path += b"?" + scope["query_string"]
        ex.method = scope["method"]
        ex.path = path
        for name, value in scope.get("headers", []):
            if name.lower() == b"host":
                ex.authority = value
            ex.request_headers.add(name, value)

        # The request body is read whole: the request body phase needs it.
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        ex.request_body = bytes(body)

        if await self._run(ex, host.REQUEST_HEADERS, host.REQUEST_BODY) == host.RESPOND:
            return await self._send(ex, send)

        # The app sees the request as the policies left it.
        headers = [(n.lower().encode("latin-1"), v.encode("utf-8", "surrogateescape"))
                   for n, v in ex.request_headers.items() if n.lower() != "content-length"]
        new_body = ex.request_body
        headers.append((b"content-length", str(len(new_body)).encode()))
        inner_scope = dict(scope, headers=headers)
        sent = False

        async def inner_receive():
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": new_body, "more_body": False}
            return await receive()

        started = {}
        chunks = []

        async def inner_send(message):
            if message["type"] == "http.response.start":
                started.update(message)
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        await self.app(inner_scope, inner_receive, inner_send)
        ex.status = started.get("status", 500)
        for name, value in started.get("headers", []):
            if name.lower() != b"content-length":
                ex.response_headers.add(name, value)
        ex.response_body = b"".join(chunks)
        await self._run(ex, host.RESPONSE_HEADERS, host.RESPONSE_BODY)
        await self._send(ex, send)

    @staticmethod
    async def _send(ex, send):
        body = ex.response_body
        headers = [(n.lower().encode("latin-1"), v.encode("utf-8", "surrogateescape"))
                   for n, v in ex.response_headers.items() if n.lower() != "content-length"]
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": ex.status, "headers": headers})
        await send({"type": "http.response.body", "body": body, "more_body": False})


async def echo_app(scope, receive, send):
    """A tiny app: echoes the request body and reports a request header."""
    body = b""
    while True:
        m = await receive()
        body += m.get("body", b"")
        if not m.get("more_body"):
            break
    seen = dict(scope["headers"]).get(b"x-sample-policy-phase", b"-")
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"), (b"x-app-saw", seen)]})
    await send({"type": "http.response.body", "body": body})
