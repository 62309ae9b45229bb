"""The four sample-python-* policies of the design brief.

They mirror the sample-native-* policies and are used by the tests, the
benchmarks and the load test: two set ``x-sample-policy-phase``, two prefix a
body with a marker.
"""

import policyexec

PHASE_HEADER = "x-sample-policy-phase"


class SampleRequestHeader(policyexec.Policy):
    """Sets ``x-sample-policy-phase: request-header`` on the request."""

    name = "sample-python-request-header"
    version = "1.0.0"
    params = {}

    def on_request_headers(self, ctx):
        ctx.request_headers[PHASE_HEADER] = "request-header"


class SampleResponseHeader(policyexec.Policy):
    """Sets ``x-sample-policy-phase: response-header`` on the response."""

    name = "sample-python-response-header"
    version = "1.0.0"
    params = {}

    def on_response_headers(self, ctx):
        ctx.response_headers[PHASE_HEADER] = "response-header"


class SampleRequestBody(policyexec.Policy):
    """Prefixes the request body with ``[sample-request-body]``."""

    name = "sample-python-request-body"
    version = "1.0.0"
    params = {}

    def on_request_body(self, ctx):
        ctx.request_body = b"[sample-request-body]" + ctx.request_body


class SampleResponseBody(policyexec.Policy):
    """Prefixes the response body with ``[sample-response-body]``."""

    name = "sample-python-response-body"
    version = "1.0.0"
    params = {}

    def on_response_body(self, ctx):
        ctx.response_body = b"[sample-response-body]" + ctx.response_body
