"""policyexec.host against the real library: every public method, the bad
inputs, lifetimes, RTLD_LOCAL plugin loading, and byte-for-byte agreement
with the C API (tests/hosts/exchange_dump.c) on native and mixed chains.

Run by CTest with POLICYEXEC_LIBRARY, PE_SAMPLE_PLUGIN, PE_PYWORKER,
PE_PY_SAMPLES, PE_PY_TEST_POLICIES and PE_EXCHANGE_DUMP set."""

import ctypes
import gc
import os
import subprocess
import sys
import unittest

from policyexec import host

HERE = os.path.dirname(os.path.abspath(__file__))
CHAINS = os.path.join(os.environ["PE_SOURCE_DIR"], "tests", "hosts", "chains")
PLUGIN = os.environ["PE_SAMPLE_PLUGIN"]
PYWORKER = os.environ["PE_PYWORKER"]
PY_DIRS = [os.environ["PE_PY_SAMPLES"], os.environ["PE_PY_TEST_POLICIES"]]

NATIVE4 = [{"name": "sample-native-response-header", "version": "1.0.0"},
           {"name": "sample-native-request-body", "version": "1.0.0"},
           {"name": "sample-native-response-header", "version": "1.0.0"},
           {"name": "sample-native-response-body", "version": "1.0.0"}]


def native_engine(**kw):
    e = host.Engine(**kw)
    e.load_plugin(PLUGIN)
    return e


class LibraryLoading(unittest.TestCase):
    def test_loaded_rtld_local_and_plugin_still_loads(self):
        with native_engine() as e:
            self.assertTrue(e.has_policy("sample-native-request-body", "1.0.0"))
        # The library's symbols are not in the global namespace: the plugin
        # found the API through its table, as it must under any FFI.
        with self.assertRaises(AttributeError):
            ctypes.CDLL(None).pe_engine_new
        self.assertEqual(host.loaded_path(), os.environ["POLICYEXEC_LIBRARY"])
        # One library per process: the same path again is the same handle,
        # another path is refused.
        self.assertIs(host.load_library(), host.load_library(os.environ["POLICYEXEC_LIBRARY"]))
        with self.assertRaises(host.LibraryNotFoundError):
            host.load_library("/nonexistent/libpolicyexec.so.0")

    def test_missing_library_says_what_was_tried(self):
        code = ("from policyexec import host\n"
                "try:\n host.Engine()\nexcept host.LibraryNotFoundError as e:\n print(e)\n")
        env = dict(os.environ, POLICYEXEC_LIBRARY="/nonexistent/libpolicyexec.so.0")
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                             text=True, timeout=60)
        self.assertIn("libpolicyexec not found", out.stdout)
        self.assertIn("POLICYEXEC_LIBRARY", out.stdout)
        self.assertIn("/nonexistent/libpolicyexec.so.0", out.stdout)

    def test_found_through_pkg_config(self):
        # A policyexec.pc pointing at the build tree's library directory.
        import tempfile
        libdir = os.path.dirname(os.environ["POLICYEXEC_LIBRARY"])
        with tempfile.TemporaryDirectory() as d:
            with open(os.path.join(d, "policyexec.pc"), "w") as f:
                f.write(f"libdir={libdir}\nName: policyexec\nDescription: t\nVersion: 0\n"
                        "Libs: -L${libdir} -lpolicyexec\nCflags:\n")
            env = dict(os.environ, PKG_CONFIG_PATH=d)
            env.pop("POLICYEXEC_LIBRARY")
            code = ("from policyexec import host\nhost.Engine().close()\n"
                    "print(host.loaded_path())\n")
            out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                                 text=True, timeout=60)
            self.assertEqual(out.returncode, 0, out.stderr)
            self.assertEqual(out.stdout.strip(), os.path.join(libdir, "libpolicyexec.so.0"))


class EngineTests(unittest.TestCase):
    def test_plugin_errors(self):
        with host.Engine() as e:
            with self.assertRaises(host.PolicyExecError) as cm:
                e.load_plugin("/nonexistent/plugin.so")
            self.assertEqual(cm.exception.code, host.Code.PLUGIN)
            self.assertEqual(cm.exception.name, "PE_ERR_PLUGIN")
            self.assertIn("/nonexistent/plugin.so", cm.exception.message)
            e.load_plugin(PLUGIN)
            with self.assertRaises(host.PolicyExecError) as cm:
                e.load_plugin(PLUGIN)
            self.assertEqual(cm.exception.code, host.Code.EXISTS)

    def test_limits_log_and_queries(self):
        lines = []
        with native_engine(limits={"header_count": 3, "body_bytes": 10},
                           log=lambda lvl, msg: lines.append((lvl, msg)), log_level="info") as e:
            self.assertEqual(e.limit("header_count"), 3)
            self.assertEqual(e.limit("body_bytes"), 10)
            self.assertTrue(any("loaded plugin" in m for _, m in lines))
            self.assertFalse(e.has_policy("sample-native-request-body", "9"))
            with self.assertRaises(host.PolicyExecError):
                e.limit("nope")
            with e.exchange() as ex:
                with self.assertRaises(host.PolicyExecError) as cm:
                    ex.request_body = b"x" * 11
                self.assertEqual(cm.exception.code, host.Code.BODY_TOO_LARGE)
                for i in range(3):
                    ex.request_headers.add(f"h{i}", "v")
                with self.assertRaises(host.PolicyExecError) as cm:
                    ex.request_headers.add("h4", "v")
                self.assertEqual(cm.exception.code, host.Code.TOO_MANY_HEADERS)
        with self.assertRaises(host.PolicyExecError):
            host.Engine(limits={"bogus": 1})

    def test_chain_errors(self):
        with native_engine() as e:
            for bad, code in (("[", host.Code.JSON), ('[{"name": "nope", "version": "1"}]',
                                                      host.Code.UNKNOWN_POLICY),
                              ('[{"name": "sample-native-request-body", "version": "1.0.0",'
                               ' "params": {"x": 1}}]', host.Code.PARAM)):
                with self.assertRaises(host.PolicyExecError) as cm:
                    e.chain(bad)
                self.assertEqual(cm.exception.code, code, cm.exception)
                self.assertTrue(cm.exception.message)
            c = e.chain(NATIVE4)
            self.assertEqual(c.step_count, 4)
            self.assertEqual(c.needs, host.NEEDS_REQUEST_BODY | host.NEEDS_RESPONSE_BODY)
            self.assertEqual(c.phases, 0b1110)
            c2 = e.chain(b'[{"name": "sample-native-request-header", "version": "1.0.0"}]')
            self.assertEqual(c2.step_count, 1)
            with e.exchange() as ex:
                with self.assertRaises(host.PolicyExecError) as cm:
                    c.run(ex, 7)
                self.assertEqual(cm.exception.code, host.Code.INVALID_ARGUMENT)

    def test_python_pool(self):
        with native_engine() as e:
            e.start_python(PY_DIRS, workers=1, worker_path=PYWORKER, default_timeout_ms=5000,
                           startup_timeout_ms=30000)
            self.assertEqual(e.python_ping(), 1)
            self.assertEqual(len(e.python_worker_pids()), 1)
            self.assertTrue(e.has_policy("sample-python-request-body", "1.0.0"))
            c = e.chain([{"name": "test-raise", "version": "1.0.0"}])
            with e.exchange() as ex:
                ex.method, ex.path = "GET", "/"
                self.assertEqual(c.run(ex, host.REQUEST_HEADERS), host.RESPOND)
                self.assertEqual(ex.status, 500)
                self.assertIn("test-raise", ex.errmsg)


class ExchangeTests(unittest.TestCase):
    def setUp(self):
        self.engine = native_engine()
        self.ex = self.engine.exchange()

    def tearDown(self):
        self.ex.close()
        self.engine.close()

    def test_request_line_and_status(self):
        ex = self.ex
        self.assertEqual((ex.method, ex.path, ex.authority, ex.status), ("", "", "", 0))
        ex.method, ex.path, ex.authority, ex.status = "PUT", "/a?b=1", b"h:1", 204
        self.assertEqual((ex.method, ex.path, ex.authority, ex.status),
                         ("PUT", "/a?b=1", "h:1", 204))
        for attr, value, code in (("method", "G T", host.Code.INVALID_VALUE),
                                  ("path", "/a b", host.Code.INVALID_VALUE),
                                  ("status", 42, host.Code.INVALID_VALUE)):
            with self.assertRaises(host.PolicyExecError) as cm:
                setattr(ex, attr, value)
            self.assertEqual(cm.exception.code, code)
        self.assertEqual(ex.method, "PUT")
        with self.assertRaises(TypeError):
            ex.status = "200"
        with self.assertRaises(TypeError):
            ex.method = 3

    def test_headers(self):
        h = self.ex.request_headers
        h.add("Accept", "a")
        h.add("accept", "b")
        h["X-One"] = "1"
        self.assertEqual(h["ACCEPT"], "a")
        self.assertEqual(h.getall("accept"), ["a", "b"])
        self.assertEqual(h.getall("none", ["d"]), ["d"])
        self.assertEqual(h.get("none"), None)
        self.assertIn("x-one", h)
        self.assertNotIn("x-two", h)
        self.assertEqual(len(h), 2)
        self.assertEqual(h.field_count(), 3)
        self.assertEqual(list(h), ["Accept", "X-One"])
        self.assertEqual(h.items(), [("Accept", "a"), ("accept", "b"), ("X-One", "1")])
        h["accept"] = "c"
        self.assertEqual(h.getall("Accept"), ["c"])
        self.assertEqual(h.remove("ACCEPT"), 1)
        del h["x-one"]
        with self.assertRaises(KeyError):
            del h["x-one"]
        with self.assertRaises(KeyError):
            h["x-one"]
        self.assertEqual(len(h), 0)
        h.add("x-bin", b"\xff\xfe")  # not UTF-8: kept exactly
        self.assertEqual(h["x-bin"].encode("utf-8", "surrogateescape"), b"\xff\xfe")
        self.assertIn("Headers(", repr(h))

    def test_invalid_headers_change_nothing(self):
        h = self.ex.response_headers
        h["x"] = "ok"
        for name, value, code in (("x", "a\r\nb", host.Code.HEADER_VALUE),
                                  ("x", "a\nb", host.Code.HEADER_VALUE),
                                  ("x", "a\0b", host.Code.HEADER_VALUE),
                                  ("a b", "v", host.Code.HEADER_NAME),
                                  ("", "v", host.Code.HEADER_NAME),
                                  ("x:y", "v", host.Code.HEADER_NAME)):
            for op in (h.__setitem__, h.add):
                with self.assertRaises(host.PolicyExecError) as cm:
                    op(name, value)
                self.assertEqual(cm.exception.code, code, (name, value))
                self.assertTrue(cm.exception.message)
        self.assertEqual(h.items(), [("x", "ok")])
        with self.assertRaises(TypeError):
            h["x"] = 3

    def test_bodies(self):
        ex = self.ex
        self.assertEqual(ex.request_body, b"")
        ex.request_body = b"b\0c"
        ex.prepend_body(host.REQUEST, b"a")
        ex.append_body(host.REQUEST, bytearray(b"d"))
        self.assertEqual(ex.request_body, b"ab\0cd")
        ex.response_body = memoryview(b"xyz")
        self.assertEqual(ex.body(host.RESPONSE), b"xyz")
        ex.set_body(host.RESPONSE, b"")
        self.assertEqual(ex.response_body, b"")
        with self.assertRaises(TypeError):
            ex.request_body = "text"

    def test_metadata(self):
        m = self.ex.metadata
        m["k"] = "v"
        m[b"b"] = b"\xff"
        self.assertEqual(m["k"], "v")
        self.assertEqual(len(m), 2)
        self.assertEqual(list(m), ["k", "b"])
        self.assertEqual(m.items()[1][1].encode("utf-8", "surrogateescape"), b"\xff")
        del m["k"]
        with self.assertRaises(KeyError):
            del m["k"]
        with self.assertRaises(KeyError):
            m["k"]
        with self.assertRaises(host.PolicyExecError) as cm:
            m[""] = "v"
        self.assertEqual(cm.exception.code, host.Code.INVALID_ARGUMENT)
        self.assertIn("Metadata(", repr(m))

    def test_respond_verdict_reset(self):
        ex = self.ex
        self.assertEqual(ex.verdict, host.CONTINUE)
        self.assertFalse(ex.responded)
        ex.response_headers["x-old"] = "1"
        ex.respond(403, b"no", {"content-type": "text/plain"})
        self.assertTrue(ex.responded)
        self.assertEqual((ex.status, ex.response_body), (403, b"no"))
        self.assertEqual(ex.response_headers.items(), [("content-type", "text/plain")])
        with self.assertRaises(host.PolicyExecError) as cm:
            ex.respond(1000)
        self.assertEqual(cm.exception.code, host.Code.INVALID_VALUE)
        ex.respond(401, headers=[("www-authenticate", "Basic")])
        self.assertEqual(ex.response_headers["www-authenticate"], "Basic")
        ex.reset()
        self.assertEqual((ex.verdict, ex.status, ex.response_body), (host.CONTINUE, 0, b""))
        self.assertEqual(ex.errmsg, "")
        self.assertIn("<Exchange", repr(ex))

    def test_native4_run(self):
        c = self.engine.chain(NATIVE4)
        ex = self.ex
        ex.method, ex.path = "POST", "/"
        ex.request_body = b"hello"
        self.assertEqual(c.run(ex, host.REQUEST_HEADERS), host.CONTINUE)
        self.assertEqual(c.run(ex, host.REQUEST_BODY), host.CONTINUE)
        ex.status = 200
        ex.response_body = ex.request_body
        self.assertEqual(c.run_phases(ex, host.RESPONSE_HEADERS, host.RESPONSE_BODY),
                         host.CONTINUE)
        self.assertEqual(ex.response_headers["x-sample-policy-phase"], "response-header")
        self.assertEqual(ex.response_body, b"[sample-response-body][sample-request-body]hello")


class Lifetimes(unittest.TestCase):
    def test_use_after_close_is_refused(self):
        e = native_engine()
        c = e.chain(NATIVE4)
        ex = e.exchange()
        h = ex.request_headers
        ex.close()
        ex.close()  # twice is fine, frees once
        for op in (lambda: ex.method, lambda: setattr(ex, "path", "/"), lambda: h.add("a", "b"),
                   lambda: ex.metadata.items(), lambda: ex.request_body, ex.reset,
                   lambda: c.run(ex, 0), lambda: ex.respond(200)):
            with self.assertRaises(host.PolicyExecError) as cm:
                op()
            self.assertEqual(cm.exception.code, host.Code.STATE)
        self.assertTrue(ex.closed)
        self.assertFalse(c.closed)
        c.close()
        self.assertTrue(c.closed)
        with e.exchange() as ex2:
            with self.assertRaises(host.PolicyExecError) as cm:
                c.run(ex2, 0)
            self.assertIn("chain is closed", str(cm.exception))
        self.assertFalse(e.closed)
        e.close()
        self.assertTrue(e.closed)
        for op in (e.exchange, lambda: e.chain(NATIVE4), lambda: e.load_plugin(PLUGIN),
                   lambda: e.has_policy("a", "b")):
            with self.assertRaises(host.PolicyExecError) as cm:
                op()
            self.assertEqual(cm.exception.code, host.Code.STATE)

    def test_engine_closed_first_keeps_children_working(self):
        e = native_engine()
        c = e.chain(NATIVE4)
        ex = e.exchange()
        e.close()  # the C engine lives on while the chain and exchange do
        ex.method, ex.path = "GET", "/"
        ex.status = 200
        self.assertEqual(c.run(ex, host.RESPONSE_HEADERS), host.CONTINUE)
        self.assertEqual(ex.response_headers["x-sample-policy-phase"], "response-header")
        ex.close()
        c.close()

    def test_garbage_collection_frees(self):
        # Many engines, chains and exchanges dropped without close(): each is
        # freed once by __del__ (the ASan build would catch a double free).
        for _ in range(50):
            e = native_engine()
            c = e.chain(NATIVE4)
            ex = e.exchange()
            ex.request_body = b"x" * 1000
            c.run(ex, host.REQUEST_BODY)
            del e, c, ex
        gc.collect()


def _dump(argv):
    """The C reference's output for one chain."""
    out = subprocess.run([os.environ["PE_EXCHANGE_DUMP"]] + argv, capture_output=True,
                         timeout=120)
    if out.returncode != 0:
        raise AssertionError(out.stderr.decode())
    return out.stdout.decode("ascii")


class SameAsC(unittest.TestCase):
    def check_chain(self, name, python):
        sys.path.insert(0, HERE)
        import dump
        argv = [PLUGIN, PYWORKER, os.path.join(CHAINS, name + ".json")] + (PY_DIRS if python
                                                                             else [])
        want = _dump(argv)
        got = dump.main(argv)
        self.assertEqual(got, want)
        return got

    def test_native4(self):
        self.assertIn("response-body [sample-response-body][sample-request-body]hello",
                      self.check_chain("native4", False))

    def test_mixed_native_and_python(self):
        got = self.check_chain("mixed", True)
        self.assertIn("meta body-length=", got)
        self.assertIn("x-out: v\\xe9", got)

    def test_immediate_response(self):
        self.assertIn("status 403", self.check_chain("respond", True))


if __name__ == "__main__":
    unittest.main()
