"""policyexec.host: run libpolicyexec chains from a Python host.

A thin binding over the installed C library (ctypes, loaded ``RTLD_LOCAL``):
objects map one to one onto the C ABI and behave as it does::

    from policyexec import host

    with host.Engine() as engine:
        engine.load_plugin("/usr/local/lib/policyexec/policies/sample_native_policies.so")
        chain = engine.chain([{"name": "sample-native-request-header", "version": "1.0.0"}])
        with engine.exchange() as ex:
            ex.method, ex.path = "GET", "/"
            ex.request_headers.add("accept", "*/*")
            chain.run(ex, host.REQUEST_HEADERS)
            print(ex.request_headers["x-sample-policy-phase"])

Failures raise :class:`PolicyExecError` carrying the library's code, name
and message. This subpackage does not need the worker's modules; importing
it does not load the library (the first Engine does).
"""

from ._lib import LibraryNotFoundError, load as load_library, loaded_path
from .engine import (Chain, Engine, NEEDS_REQUEST_BODY, NEEDS_RESPONSE_BODY, REQUEST_BODY,
                     REQUEST_HEADERS, RESPONSE_BODY, RESPONSE_HEADERS)
from .errors import Code, PolicyExecError
from .exchange import CONTINUE, REQUEST, RESPOND, RESPONSE, Exchange, Headers, Metadata

__all__ = ["Chain", "Code", "CONTINUE", "Engine", "Exchange", "Headers", "LibraryNotFoundError",
           "Metadata", "NEEDS_REQUEST_BODY", "NEEDS_RESPONSE_BODY", "PolicyExecError", "REQUEST",
           "REQUEST_BODY", "REQUEST_HEADERS", "RESPOND", "RESPONSE", "RESPONSE_BODY",
           "RESPONSE_HEADERS", "load_library", "loaded_path"]
