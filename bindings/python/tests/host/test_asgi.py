"""Drives the ASGI middleware example (bindings/python/examples) with a
hand-made ASGI server loop: no framework, no network."""

import asyncio
import os
import sys
import unittest

from policyexec import host

sys.path.insert(0, os.path.join(os.environ["PE_SOURCE_DIR"], "bindings", "python", "examples"))
import asgi_middleware  # noqa: E402

PLUGIN = os.environ["PE_SAMPLE_PLUGIN"]


async def call(app, method="POST", path="/echo", query=b"", headers=(), body=b""):
    """Sends one request (its body in two chunks) through app; returns
    (status, headers dict, body)."""
    parts = [body[:len(body) // 2], body[len(body) // 2:]]
    messages = [{"type": "http.request", "body": p, "more_body": i == 0}
                for i, p in enumerate(parts)]
    sent = []

    async def receive():
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": method, "path": path, "query_string": query,
             "headers": [(b"host", b"example.test")] + list(headers)}
    await app(scope, receive, send)
    start, body_msg = sent
    return start["status"], dict(start["headers"]), body_msg["body"]


class AsgiMiddleware(unittest.TestCase):
    def setUp(self):
        self.engine = host.Engine()
        self.engine.load_plugin(PLUGIN)

    def tearDown(self):
        self.engine.close()

    def test_chain_runs_around_the_app(self):
        chain = self.engine.chain([
            {"name": "sample-native-request-header", "version": "1.0.0"},
            {"name": "sample-native-request-body", "version": "1.0.0"},
            {"name": "sample-native-response-header", "version": "1.0.0"},
            {"name": "sample-native-response-body", "version": "1.0.0"}])
        app = asgi_middleware.PolicyMiddleware(asgi_middleware.echo_app, self.engine, chain)
        status, headers, body = asyncio.run(call(app, query=b"a=1", body=b"hello world",
                                                 headers=[(b"content-length", b"11")]))
        self.assertEqual(status, 200)
        self.assertEqual(body, b"[sample-response-body][sample-request-body]hello world")
        self.assertEqual(headers[b"content-length"], str(len(body)).encode())
        self.assertEqual(headers[b"x-app-saw"], b"request-header")  # the app saw the policy
        self.assertEqual(headers[b"x-sample-policy-phase"], b"response-header")

    def test_immediate_response_skips_the_app(self):
        called = []

        async def app(scope, receive, send):
            called.append(scope)

        # test-respond answers 403 at once; the app is never called.
        self.engine.start_python([os.environ["PE_PY_TEST_POLICIES"]], workers=1,
                                 worker_path=os.environ["PE_PYWORKER"])
        chain = self.engine.chain([{"name": "test-respond", "version": "1.0.0"}])
        mw = asgi_middleware.PolicyMiddleware(app, self.engine, chain)
        status, headers, body = asyncio.run(call(mw, body=b"x"))
        self.assertEqual((status, body), (403, b"denied by test-respond"))
        self.assertEqual(headers[b"x-denied-by"], b"test-respond")
        self.assertEqual(called, [])

    def test_other_scopes_pass_through(self):
        seen = []

        async def app(scope, receive, send):
            seen.append(scope["type"])

        chain = self.engine.chain([{"name": "sample-native-request-header", "version": "1.0.0"}])
        mw = asgi_middleware.PolicyMiddleware(app, self.engine, chain, offload=False)
        asyncio.run(mw({"type": "lifespan"}, None, None))
        self.assertEqual(seen, ["lifespan"])


if __name__ == "__main__":
    unittest.main()
