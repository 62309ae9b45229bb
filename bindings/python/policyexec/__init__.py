"""policyexec: write HTTP policies in Python for libpolicyexec.

A policy is a class deriving from :class:`Policy` with a ``name``, a
``version`` and the phase methods it implements. ``policyexec-pyworker``
imports every ``*.py`` file of its module paths, offers each such class to
the engine, creates one instance per chain step, and calls the phase methods
with a :class:`Context`::

    import policyexec

    class AddTenant(policyexec.Policy):
        '''Copies a param into a request header; refuses requests without auth.'''
        name = "add-tenant"
        version = "1.0.0"
        params = {"tenant": str, "header": policyexec.Param(str, default="x-tenant")}

        def on_request_headers(self, ctx):
            if "authorization" not in ctx.request_headers:
                ctx.respond(401, b"missing credentials\\n",
                            {"content-type": "text/plain"})
                return
            ctx.request_headers[self.params["header"]] = self.params["tenant"]

Text and bytes: header names and values, metadata keys and values, method,
path and authority are ``str``. Bytes from the wire are decoded as UTF-8 with
the ``surrogateescape`` handler, and encoded back the same way, so bytes that
are not UTF-8 pass through unchanged and non-ASCII text is sent as UTF-8.
Setters also accept ``bytes``; :func:`to_bytes` gives the exact wire bytes of
a str. Bodies are ``bytes``, or from 64 KiB on (the engine's shared-memory
threshold) a read-only :class:`Body` read in place, which concatenates and
compares like ``bytes`` (see :mod:`policyexec.body`).

Streamed bodies: a policy may define ``on_request_body_chunk(ctx, chunk)`` /
``on_response_body_chunk(ctx, chunk)`` to take a body one chunk at a time
instead of buffered (see :mod:`policyexec.chunk`).

Safety: every setter checks its value at once (header names must be RFC 9110
tokens, values must not contain CR, LF, NUL or DEL, statuses are 100..999) and
raises ``ValueError``/``TypeError`` before changing anything. An exception
escaping a phase method fails that step: its changes are undone and the
engine applies the step's failure mode (open: skip it; closed: answer 500).
"""

from ._text import decode as to_str, encode as to_bytes
from .body import Body
from .chunk import BodyChunk
from .context import (Context, REQUEST_HEADERS, REQUEST_BODY, RESPONSE_HEADERS,
                      RESPONSE_BODY)
from .headers import Headers
from .metadata import Metadata
from .policy import Param, Policy, check_params, registered

__version__ = "0.1.0"

__all__ = [
    "Body", "BodyChunk", "Context", "Headers", "Metadata", "Param", "Policy", "check_params", "registered",
    "to_bytes", "to_str", "REQUEST_HEADERS", "REQUEST_BODY", "RESPONSE_HEADERS",
    "RESPONSE_BODY",
]
