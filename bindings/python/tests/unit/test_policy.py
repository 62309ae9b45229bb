"""Policy classes: registration, phases, params schema; the sample policies."""

import unittest

import policyexec
from policyexec import Context, Param, Policy

import sample_policies


class Rate(Policy):
    name = "unit-rate"
    version = "2.0.0"
    params = {"limit": int, "ratio": Param(float, default=0.5), "tags": Param(list, default=[])}

    def on_request_headers(self, ctx):
        pass

    def on_response_body(self, ctx):
        pass


class Base(Policy):
    """No name of its own: an abstract helper, never offered."""

    def on_request_headers(self, ctx):
        pass


class PolicyTest(unittest.TestCase):
    def test_registration(self):
        registered = policyexec.registered()
        self.assertIs(registered["unit-rate@2.0.0"], Rate)
        self.assertNotIn(None, [cls.name for cls in registered.values()])
        with self.assertRaises(TypeError):
            type("Dup", (Policy,), {"name": "unit-rate", "version": "2.0.0"})
        with self.assertRaises(TypeError):
            type("NoVersion", (Policy,), {"name": "unit-no-version"})

    def test_phases_and_bodies(self):
        self.assertEqual(Rate.phases(), 0b1001)
        self.assertEqual(Rate.needs_bodies(), (False, True))
        self.assertEqual(Base.phases(), 0b0001)

    def test_params_schema(self):
        self.assertEqual(Rate({"limit": 3}).params, {"limit": 3, "ratio": 0.5, "tags": []})
        self.assertEqual(Rate({"limit": 3, "ratio": 1}).params["ratio"], 1.0)
        cases = [({}, ValueError, "missing param 'limit'"),
                 ({"limit": "3"}, TypeError, "param 'limit' must be int"),
                 ({"limit": True}, TypeError, "param 'limit' must be int"),
                 ({"limit": 1, "extra": 1}, ValueError, "unknown param 'extra'"),
                 ([], TypeError, "params must be a JSON object")]
        for params, exc, text in cases:
            with self.subTest(params=params):
                with self.assertRaisesRegex(exc, text):
                    Rate(params)

    def test_no_schema_accepts_anything(self):
        self.assertEqual(Base({"x": 1}).params, {"x": 1})


class SamplePoliciesTest(unittest.TestCase):
    def test_names_and_versions(self):
        names = {cls.name: cls.version for cls in policyexec.registered().values()
                 if cls.__module__ == sample_policies.__name__}
        self.assertEqual(names, {
            "sample-python-request-header": "1.0.0", "sample-python-response-header": "1.0.0",
            "sample-python-request-body": "1.0.0", "sample-python-response-body": "1.0.0"})

    def test_effects(self):
        ctx = Context(request_headers={"X-Sample-Policy-Phase": "old"})
        sample_policies.SampleRequestHeader().on_request_headers(ctx)
        self.assertEqual(ctx.request_headers.getall("x-sample-policy-phase"), ["request-header"])

        ctx = Context(phase=policyexec.RESPONSE_HEADERS, status=200)
        sample_policies.SampleResponseHeader().on_response_headers(ctx)
        self.assertEqual(ctx.response_headers["x-sample-policy-phase"], "response-header")

        ctx = Context(phase=policyexec.REQUEST_BODY, request_body=b"payload")
        sample_policies.SampleRequestBody().on_request_body(ctx)
        self.assertEqual(ctx.request_body, b"[sample-request-body]payload")

        ctx = Context(phase=policyexec.RESPONSE_BODY, status=200,
                      response_body=b"[sample-request-body]payload")
        sample_policies.SampleResponseBody().on_response_body(ctx)
        self.assertEqual(ctx.response_body,
                         b"[sample-response-body][sample-request-body]payload")


if __name__ == "__main__":
    unittest.main()
