"""Exchange: one HTTP request/response, with Pythonic headers and metadata
over the C exchange (nothing is copied into Python until read)."""

import ctypes
from collections.abc import MutableMapping

from . import _lib
from ._handle import Handle
from .engine import as_bytes, check
from .errors import Code, closed
from .. import _text

REQUEST, RESPONSE = 0, 1
#: Verdicts (``pe_verdict``).
CONTINUE, RESPOND = 0, 1

_string_at = ctypes.string_at
_decode = _text.decode
_ENC, _ERRS = _text.ENCODING, _text.ERRORS
_NOT_FOUND = int(Code.NOT_FOUND)


def _slice_bytes(s):
    return _string_at(s.ptr, s.len) if s.len else b""


class Headers(MutableMapping):
    """The headers of one side of an exchange, as a case-insensitive
    multi-map, read and written through to the C exchange.

    ``h[name]`` is the first value (KeyError if absent); ``h[name] = v``
    replaces every value; ``del h[name]`` removes every value;
    :meth:`add` appends one; :meth:`getall` lists them. ``len()`` and
    iteration count distinct names (spelled as first seen); :meth:`items`
    yields one ``(name, value)`` pair per field, in order. Names and values
    are ``str`` (UTF-8, bytes that are not UTF-8 kept via surrogateescape)
    and may be given as ``bytes``. The library checks every change: an
    invalid name or a value with CR, LF or NUL raises PolicyExecError
    (PE_ERR_HEADER_NAME / PE_ERR_HEADER_VALUE) and changes nothing.
    """

    __slots__ = ("_ex", "_dir", "_add", "_set", "_get_nth")

    def __init__(self, exchange, direction):
        self._ex = exchange
        self._dir = direction
        lib = exchange._lib
        # Bound once: attribute lookups on the CDLL cost more than the call.
        self._add = lib.pe_exchange_header_add_n
        self._set = lib.pe_exchange_header_set_n
        self._get_nth = lib.pe_exchange_header_get_nth_n

    def _get(self, name, nth):
        ex = self._ex
        h = ex._h
        if h is None:
            raise closed("exchange")
        n = name.encode(_ENC, _ERRS) if type(name) is str else as_bytes(name, "header name")
        out = ex._slice
        rc = self._get_nth(h, self._dir, n, len(n), nth, ex._slice_ref)
        if rc < 0:
            if rc == _NOT_FOUND:
                return None
            check(rc, ex._errmsg)
        return _decode(_string_at(out.ptr, out.len)) if out.len else ""

    def __getitem__(self, name):
        value = self._get(name, 0)
        if value is None:
            raise KeyError(name)
        return value

    def get(self, name, default=None):
        """The first value of ``name``, or ``default``."""
        value = self._get(name, 0)
        return default if value is None else value

    def getall(self, name, default=()):
        """Every value of ``name``, in order (``list(default)`` if none)."""
        out = []
        while True:
            value = self._get(name, len(out))
            if value is None:
                return out if out else list(default)
            out.append(value)

    def __contains__(self, name):
        return self._get(name, 0) is not None

    def __setitem__(self, name, value):
        self._change(self._set, name, value)

    def add(self, name, value):
        """Appends a field, keeping the values already there."""
        self._change(self._add, name, value)

    def _change(self, fn, name, value):
        ex = self._ex
        h = ex._h
        if h is None:
            raise closed("exchange")
        n = name.encode(_ENC, _ERRS) if type(name) is str else as_bytes(name, "header name")
        v = value.encode(_ENC, _ERRS) if type(value) is str else as_bytes(value, "header value")
        rc = fn(h, self._dir, n, len(n), v, len(v))
        if rc < 0:
            check(rc, ex._errmsg)

    def remove(self, name):
        """Removes every value of ``name``; returns how many there were."""
        ex = self._ex
        n = as_bytes(name, "header name")
        return check(ex._lib.pe_exchange_header_remove_n(ex._handle(), self._dir, n, len(n)),
                     ex._errmsg)

    def __delitem__(self, name):
        if self.remove(name) == 0:
            raise KeyError(name)

    def items(self):
        """One ``(name, value)`` pair per field, in order."""
        ex = self._ex
        h = ex._handle()
        at = ex._lib.pe_exchange_header_at
        k, v = _lib.Slice(), _lib.Slice()
        out = []
        i = 0
        while at(h, self._dir, i, ctypes.byref(k), ctypes.byref(v)) == 0:
            out.append((_decode(_slice_bytes(k)), _decode(_slice_bytes(v))))
            i += 1
        return out

    def __iter__(self):
        seen = {}
        for name, _ in self.items():
            seen.setdefault(name.lower(), name)
        return iter(list(seen.values()))

    def __len__(self):
        return len({name.lower() for name, _ in self.items()})

    def field_count(self):
        """Number of fields (a name with two values counts 2)."""
        ex = self._ex
        return ex._lib.pe_exchange_header_count(ex._handle(), self._dir)

    def __repr__(self):
        return f"Headers({self.items()!r})"


class Metadata(MutableMapping):
    """The exchange's metadata: a str -> str map shared by every step and
    phase (keys compare exactly). Read and written through."""

    __slots__ = ("_ex",)

    def __init__(self, exchange):
        self._ex = exchange

    def __getitem__(self, key):
        ex = self._ex
        k = as_bytes(key, "metadata key")
        out = _lib.Slice()
        rc = ex._lib.pe_exchange_meta_get_n(ex._handle(), k, len(k), ctypes.byref(out))
        if rc == Code.NOT_FOUND:
            raise KeyError(key)
        check(rc, ex._errmsg)
        return _decode(_slice_bytes(out))

    def __setitem__(self, key, value):
        ex = self._ex
        k, v = as_bytes(key, "metadata key"), as_bytes(value, "metadata value")
        check(ex._lib.pe_exchange_meta_set_n(ex._handle(), k, len(k), v, len(v)), ex._errmsg)

    def __delitem__(self, key):
        ex = self._ex
        k = as_bytes(key, "metadata key")
        if check(ex._lib.pe_exchange_meta_remove_n(ex._handle(), k, len(k)), ex._errmsg) == 0:
            raise KeyError(key)

    def items(self):
        """(key, value) pairs, in the library's order."""
        ex = self._ex
        h = ex._handle()
        at = ex._lib.pe_exchange_meta_at
        k, v = _lib.Slice(), _lib.Slice()
        out = []
        i = 0
        while at(h, i, ctypes.byref(k), ctypes.byref(v)) == 0:
            out.append((_decode(_slice_bytes(k)), _decode(_slice_bytes(v))))
            i += 1
        return out

    def __iter__(self):
        return iter([k for k, _ in self.items()])

    def __len__(self):
        ex = self._ex
        return ex._lib.pe_exchange_meta_count(ex._handle())

    def __repr__(self):
        return f"Metadata({dict(self.items())!r})"


class Exchange(Handle):
    """One HTTP request/response (``pe_exchange``), used by one thread at a
    time. Create it with :meth:`Engine.exchange`; reuse it across requests
    with :meth:`reset`. Closed by :meth:`close`, ``with``, or garbage
    collection; any use after that raises PolicyExecError (PE_ERR_STATE).
    """

    _FREE = "pe_exchange_free"

    def __init__(self, engine):
        lib = engine._lib
        self._lib = lib
        self._engine = engine  # keeps the engine's log callback alive
        self._h = None
        h = ctypes.c_void_p()
        check(lib.pe_exchange_new(ctypes.byref(h), engine._handle()), engine._errmsg)
        self._h = h.value
        self._len = ctypes.c_size_t()
        self._len_ref = ctypes.byref(self._len)
        self._slice = _lib.Slice()
        self._slice_ref = ctypes.byref(self._slice)
        self._body_n = lib.pe_exchange_body_n
        self._body_set_n = lib.pe_exchange_body_set_n
        self._status = lib.pe_exchange_status
        self._set_status = lib.pe_exchange_set_status
        self._verdict = lib.pe_exchange_verdict
        self._reset = lib.pe_exchange_reset
        self._set_method = lib.pe_exchange_set_method_n
        self._set_path = lib.pe_exchange_set_path_n
        self._set_authority = lib.pe_exchange_set_authority_n
        self.request_headers = Headers(self, REQUEST)
        self.response_headers = Headers(self, RESPONSE)
        self.metadata = Metadata(self)

    # ---- lifetime ----

    def _handle(self):
        h = self._h
        if h is None:
            raise closed("exchange")
        return h

    def _errmsg(self):
        return self._lib.pe_exchange_errmsg(self._h) if self._h else b""

    def reset(self):
        """Empties the exchange for the next request, keeping its memory."""
        rc = self._reset(self._handle())
        if rc < 0:
            check(rc, self._errmsg)

    # ---- request line and status ----

    def _get_text(self, fn):
        p = fn(self._handle(), self._len_ref)
        return _decode(_string_at(p, self._len.value))

    @property
    def method(self):
        """The request method (str; "" until set)."""
        return self._get_text(self._lib.pe_exchange_method_n)

    @method.setter
    def method(self, value):
        h = self._h
        if h is None:
            raise closed("exchange")
        b = value.encode(_ENC, _ERRS) if type(value) is str else as_bytes(value, "method")
        rc = self._set_method(h, b, len(b))
        if rc < 0:
            check(rc, self._errmsg)

    @property
    def path(self):
        """The request target, e.g. ``"/v1/items?id=3"``."""
        return self._get_text(self._lib.pe_exchange_path_n)

    @path.setter
    def path(self, value):
        h = self._h
        if h is None:
            raise closed("exchange")
        b = value.encode(_ENC, _ERRS) if type(value) is str else as_bytes(value, "path")
        rc = self._set_path(h, b, len(b))
        if rc < 0:
            check(rc, self._errmsg)

    @property
    def authority(self):
        """host[:port] ("" until set)."""
        return self._get_text(self._lib.pe_exchange_authority_n)

    @authority.setter
    def authority(self, value):
        h = self._h
        if h is None:
            raise closed("exchange")
        b = value.encode(_ENC, _ERRS) if type(value) is str else as_bytes(value, "authority")
        rc = self._set_authority(h, b, len(b))
        if rc < 0:
            check(rc, self._errmsg)

    @property
    def status(self):
        """The response status (0 until set); 100..999."""
        return self._status(self._handle())

    @status.setter
    def status(self, value):
        if type(value) is not int:
            raise TypeError(f"status must be int, not {type(value).__name__}")
        rc = self._set_status(self._handle(), value)
        if rc < 0:
            check(rc, self._errmsg)

    # ---- bodies ----

    def body(self, direction):
        """The body of ``REQUEST`` or ``RESPONSE``, as bytes (a copy)."""
        p = self._body_n(self._handle(), direction, self._len_ref)
        n = self._len.value
        return _string_at(p, n) if n else b""

    def set_body(self, direction, data):
        """Replaces a body (bytes-like)."""
        self._set_body(self._body_set_n, direction, data)

    def append_body(self, direction, data):
        """Appends to a body (a host buffering a body chunk by chunk)."""
        self._set_body(self._lib.pe_exchange_body_append_n, direction, data)

    def prepend_body(self, direction, data):
        """Inserts before a body."""
        self._set_body(self._lib.pe_exchange_body_prepend_n, direction, data)

    def _set_body(self, fn, direction, data):
        if type(data) is not bytes:
            if not isinstance(data, (bytearray, memoryview)):
                raise TypeError(f"body must be bytes, not {type(data).__name__}")
            data = bytes(data)
        rc = fn(self._handle(), direction, data, len(data))
        if rc < 0:
            check(rc, self._errmsg)

    @property
    def request_body(self):
        """The buffered request body (bytes)."""
        h = self._h
        if h is None:
            raise closed("exchange")
        p = self._body_n(h, REQUEST, self._len_ref)
        n = self._len.value
        return _string_at(p, n) if n else b""

    @request_body.setter
    def request_body(self, data):
        self._set_body(self._body_set_n, REQUEST, data)

    @property
    def response_body(self):
        """The buffered response body (bytes)."""
        h = self._h
        if h is None:
            raise closed("exchange")
        p = self._body_n(h, RESPONSE, self._len_ref)
        n = self._len.value
        return _string_at(p, n) if n else b""

    @response_body.setter
    def response_body(self, data):
        self._set_body(self._body_set_n, RESPONSE, data)

    # ---- verdict ----

    def respond(self, status, body=b"", headers=None):
        """Answers at once: the response becomes ``status``, ``headers``
        (a mapping or (name, value) pairs) and ``body``; the verdict becomes
        RESPOND and the chain stops after the current step."""
        if type(status) is not int:
            raise TypeError(f"status must be int, not {type(status).__name__}")
        if not isinstance(body, (bytes, bytearray, memoryview)):
            raise TypeError(f"body must be bytes, not {type(body).__name__}")
        body = bytes(body)
        check(self._lib.pe_exchange_respond_n(self._handle(), status, body, len(body)),
              self._errmsg)
        if headers:
            pairs = headers.items() if hasattr(headers, "items") else headers
            for name, value in pairs:
                self.response_headers.add(name, value)

    @property
    def verdict(self):
        """CONTINUE (0) or RESPOND (1)."""
        return self._verdict(self._handle())

    @property
    def responded(self):
        """Whether the verdict is RESPOND (answer the client now)."""
        return self.verdict == RESPOND

    @property
    def errmsg(self):
        """The message of the last failure ("" if none): a refused call or
        the last step that failed."""
        return self._errmsg().decode("utf-8", "replace")

    def __repr__(self):
        if self._h is None:
            return "<Exchange closed>"
        return f"<Exchange {self.method} {self.path} status={self.status} verdict={self.verdict}>"

