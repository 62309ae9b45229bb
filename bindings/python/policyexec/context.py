"""Context: what one exchange looks like to a policy, phase by phase."""

from . import _text
from . import body as _body
from .body import Body
from .headers import Headers
from .metadata import Metadata

REQUEST_HEADERS = 0
REQUEST_BODY = 1
RESPONSE_HEADERS = 2
RESPONSE_BODY = 3
PHASE_NAMES = ("request_headers", "request_body", "response_headers", "response_body")

SIDE_REQUEST = 0
SIDE_RESPONSE = 1

# Kinds of body edit sent back to the engine (see BodyEdit in executor.proto).
BODY_PREFIX = 0
BODY_SUFFIX = 1
BODY_REPLACE = 2

# The result of a step that changed nothing (see Context._commit).
UNCHANGED = (True, None, None, None, None, 0, None, None, None)


class Context:
    """The exchange as a policy sees it during one phase.

    Attributes and properties:

    * ``phase``: the phase of the step being run, one of
      ``REQUEST_HEADERS``, ``REQUEST_BODY``, ``RESPONSE_HEADERS``,
      ``RESPONSE_BODY`` (0..3).
    * ``method``, ``path`` (str): settable in request phases only.
    * ``authority`` (str): read-only.
    * ``status`` (int): 0 in request phases; settable (100..999) in response phases.
    * ``request_headers``, ``response_headers``: :class:`Headers`.
    * ``request_body``, ``response_body``: the whole buffered body as
      ``bytes`` in the body phase of its side, ``None`` elsewhere (a body
      of at least the engine's shared-memory threshold, 64 KiB by default,
      is a read-only :class:`policyexec.Body` read in place: see
      :mod:`policyexec.body`); assign bytes (or str, encoded UTF-8, or a
      Body) to replace it. Assigning a body that is
      ``None`` raises ``RuntimeError``: the phase does not carry it. A body
      given for another phase stays hidden (the worker may hold the whole
      response while response header steps run).
    * ``metadata``: :class:`Metadata`, shared by all steps and phases.

    :meth:`respond` answers the client at once and stops the chain.

    Within a chain, every step of a phase sees the same context, with the
    changes of the steps before it; so do the steps of consecutive phases
    that the worker runs together (``phase`` then changes between steps). If
    a step raises, its changes are undone before the next step runs.
    """

    __slots__ = (
        "phase", "_method", "_path", "_authority", "_status",
        "_rq_flat", "_rs_flat", "_rq", "_rs", "_meta_flat", "_meta",
        "_rq_body", "_rs_body", "_respond", "_saved",
    )

    def __init__(self, phase=REQUEST_HEADERS, method="GET", path="/", authority="",
                 status=0, request_headers=None, response_headers=None,
                 request_body=None, response_body=None, metadata=None):
        """Builds a context by hand, e.g. to unit-test a policy.

        Headers and metadata may be mappings or lists of pairs; bodies are
        bytes or None (None: the phase does not carry that body). A body is
        only visible while ``phase`` is its body phase.
        """
        if phase not in (0, 1, 2, 3):
            raise ValueError(f"invalid phase {phase!r}")
        self.phase = phase
        self._method = _text.method(method)
        self._path = _text.path(path)
        self._authority = _text.as_text(authority, "authority")
        self._status = 0 if status == 0 else _text.status(status)
        self._rq_flat = self._rs_flat = self._meta_flat = None
        self._rq = Headers(request_headers)
        self._rs = Headers(response_headers)
        self._rs._side = SIDE_RESPONSE
        self._meta = Metadata(metadata)
        self._rq_body = None if request_body is None else _text.body(request_body, "request body")
        self._rs_body = None if response_body is None else _text.body(response_body, "response body")
        self._begin()

    @classmethod
    def _from_wire(cls, phase, method, path, authority, status, rq_flat, rs_flat,
                   rq_body, rs_body, meta_flat):
        """Fast path for the worker: values are already decoded and were
        validated by the engine; headers and metadata are built on first use."""
        self = cls.__new__(cls)
        self.phase = phase
        self._method = method
        self._path = path
        self._authority = authority
        self._status = status
        self._rq_flat = rq_flat
        self._rs_flat = rs_flat
        self._meta_flat = meta_flat
        self._rq = self._rs = self._meta = None
        self._rq_body = rq_body
        self._rs_body = rs_body
        self._respond = self._saved = None
        return self

    # ---- request line and status ----

    @property
    def method(self):
        """The request method, e.g. ``"GET"``."""
        return self._method

    @method.setter
    def method(self, value):
        self._request_phase_only("method")
        value = _text.method(value)
        self._save()
        self._method = value

    @property
    def path(self):
        """The request target, e.g. ``"/items?id=3"``."""
        return self._path

    @path.setter
    def path(self, value):
        self._request_phase_only("path")
        value = _text.path(value)
        self._save()
        self._path = value

    @property
    def authority(self):
        """The authority (host[:port]) of the request; read-only."""
        return self._authority

    @property
    def status(self):
        """The response status; 0 in request phases."""
        return self._status

    @status.setter
    def status(self, value):
        if self.phase < RESPONSE_HEADERS:
            raise RuntimeError("status can only be set in a response phase")
        value = _text.status(value)
        self._save()
        self._status = value

    def _request_phase_only(self, what):
        if self.phase > REQUEST_BODY:
            raise RuntimeError(f"{what} can only be set in a request phase")

    # ---- headers and metadata ----

    @property
    def request_headers(self):
        """The request headers (:class:`Headers`)."""
        headers = self._rq
        if headers is None:
            self._rq = headers = Headers._from_wire(self._rq_flat or (), SIDE_REQUEST)
        return headers

    @property
    def response_headers(self):
        """The response headers (:class:`Headers`); empty in request phases."""
        headers = self._rs
        if headers is None:
            self._rs = headers = Headers._from_wire(self._rs_flat or (), SIDE_RESPONSE)
        return headers

    @property
    def metadata(self):
        """The exchange's metadata (:class:`Metadata`)."""
        meta = self._meta
        if meta is None:
            self._meta = meta = Metadata._from_wire(self._meta_flat or ())
        return meta

    # ---- bodies ----

    # A body may be held outside its phase (a batch spanning the response
    # headers and body phases carries the body from its first step): it is
    # shown, and can change, only in its own phase.

    @property
    def request_body(self):
        """The buffered request body (bytes), or None outside the request body phase."""
        return self._rq_body if self.phase == REQUEST_BODY else None

    @request_body.setter
    def request_body(self, value):
        if self.phase != REQUEST_BODY or self._rq_body is None:
            raise RuntimeError("the request body is not available in this phase")
        if not isinstance(value, Body):  # a Body is immutable: kept as is
            value = _text.body(value, "request body")
        if self._saved is None:
            self._saved = (self._method, self._path, self._status, self._rq_body, self._rs_body)
        self._rq_body = value

    @property
    def response_body(self):
        """The buffered response body (bytes), or None outside the response body phase."""
        return self._rs_body if self.phase == RESPONSE_BODY else None

    @response_body.setter
    def response_body(self, value):
        if self.phase != RESPONSE_BODY or self._rs_body is None:
            raise RuntimeError("the response body is not available in this phase")
        if not isinstance(value, Body):
            value = _text.body(value, "response body")
        if self._saved is None:
            self._saved = (self._method, self._path, self._status, self._rq_body, self._rs_body)
        self._rs_body = value

    # ---- answering at once ----

    def respond(self, status, body=b"", headers=None):
        """Answers the client now with ``status``, ``body`` and ``headers``.

        ``headers`` is a mapping or a list of (name, value) pairs, checked like
        any header. The chain stops after this step; the step's other changes
        are still reported. A later call in the same step replaces an earlier one.
        """
        status = _text.status(status)
        body = _text.body(body, "response body")
        encode = _text.encode
        pairs = []
        if headers is not None:
            if hasattr(headers, "items"):
                headers = headers.items()
            for name, value in headers:
                name, _ = _text.header_name(name)
                pairs.append((encode(name), encode(_text.header_value(value))))
        self._respond = (status, pairs, body)

    @property
    def responded(self):
        """Whether :meth:`respond` was called in the current step."""
        return self._respond is not None

    # ---- step boundaries, used by the worker ----

    # What a step may change besides headers and metadata (request line,
    # status, bodies) is saved by its first change, in ``_saved``: a step
    # that changes none of it costs no bookkeeping. Headers and metadata
    # keep their own undo logs.

    def _save(self):
        """Called before a change of the request line, status or a body:
        remembers their values at the start of the step, once per step."""
        if self._saved is None:
            self._saved = (self._method, self._path, self._status, self._rq_body, self._rs_body)

    def _begin(self):
        """Starts a step: nothing changed yet."""
        self._saved = None
        self._respond = None

    def _commit(self):
        """Ends a step that returned: its net effect as the tuple the worker
        turns into a StepResult, then starts the next step."""
        rq = self._rq
        rs = self._rs
        meta = self._meta
        saved = self._saved
        respond = self._respond
        if (saved is None and respond is None and (rq is None or not rq._undo)
                and (rs is None or not rs._undo) and (meta is None or not meta._undo)):
            return UNCHANGED  # the common "looked but did not touch" step
        headers = []
        if rq is not None and rq._undo:
            rq._commit(headers)
        if rs is not None and rs._undo:
            rs._commit(headers)
        meta_edits = None
        if meta is not None and meta._undo:
            meta_edits = []
            meta._commit(meta_edits)
        bodies = None
        status = 0
        method = path = None
        if saved is not None:
            method0, path0, status0, rq_body0, rs_body0 = saved
            rq_body = self._rq_body
            rs_body = self._rs_body
            if rq_body is not rq_body0 and rq_body != rq_body0:
                bodies = _body_edits(SIDE_REQUEST, rq_body0, rq_body)
            if rs_body is not rs_body0 and rs_body != rs_body0:
                edits = _body_edits(SIDE_RESPONSE, rs_body0, rs_body)
                bodies = edits if bodies is None else bodies + edits
            if self._status != status0:
                status = self._status
            if self._method != method0:
                method = _text.encode(self._method)
            if self._path != path0:
                path = _text.encode(self._path)
            self._saved = None
        self._respond = None
        return (True, None, headers or None, bodies, meta_edits or None, status, method, path,
                respond)

    def _rollback(self):
        """Ends a step that raised: undoes everything it changed."""
        if self._rq is not None:
            self._rq._rollback()
        if self._rs is not None:
            self._rs._rollback()
        if self._meta is not None:
            self._meta._rollback()
        saved = self._saved
        if saved is not None:
            self._method, self._path, self._status, self._rq_body, self._rs_body = saved
            self._saved = None
        self._respond = None


def _body_edits(side, old, new):
    """The smallest BodyEdits turning ``old`` into ``new``: [(side, kind, data)]."""
    shared = _body.edits(side, old, new, BODY_PREFIX, BODY_SUFFIX, BODY_REPLACE)
    if shared is not None:
        return shared
    return [_body_edit(side, old, new)]


def _body_edit(side, old, new):
    """The smallest BodyEdit turning ``old`` into ``new``: (side, kind, data)."""
    if len(new) >= len(old):
        if new.endswith(old):
            return (side, BODY_PREFIX, new[:len(new) - len(old)])
        if new.startswith(old):
            return (side, BODY_SUFFIX, new[len(old):])
    return (side, BODY_REPLACE, new)
