"""Policy: the base class of every Python policy, and its params schema."""

from .context import REQUEST_HEADERS, REQUEST_BODY, RESPONSE_HEADERS, RESPONSE_BODY

PHASE_METHODS = ("on_request_headers", "on_request_body", "on_response_headers",
                 "on_response_body")
# Streamed body methods, by phase (see policyexec.chunk).
CHUNK_METHODS = {REQUEST_BODY: "on_request_body_chunk", RESPONSE_BODY: "on_response_body_chunk"}

_REQUIRED = object()

# name@version -> class, filled as policy modules are imported.
_registry = {}


class Param:
    """One entry of a policy's ``params`` schema.

    ``Param(int, default=3, doc="...")`` is an optional int param;
    a bare type in the schema (``{"header": str}``) is a required param.
    Types: str, int (not bool), float (int accepted), bool, list, dict, or a
    tuple of them.
    """

    __slots__ = ("type", "default", "doc")

    def __init__(self, type, default=_REQUIRED, doc=""):
        self.type = type
        self.default = default
        self.doc = doc

    @property
    def required(self):
        """Whether the param must be given."""
        return self.default is _REQUIRED


class Policy:
    """Base class of Python policies.

    A subclass declares:

    * ``name`` and ``version`` (str): what chains refer to; a subclass that
      does not set ``name`` itself is an abstract helper and is not offered.
    * ``params`` (optional): a schema ``{param name: type or Param}``;
      ``None`` (the default) accepts any JSON object. With a schema, a
      missing, unknown or ill-typed param refuses the instance with a
      message naming the param.
    * the phase methods it implements, among :meth:`on_request_headers`,
      :meth:`on_request_body`, :meth:`on_response_headers`,
      :meth:`on_response_body`: the phases a policy runs in are exactly the
      methods it overrides. Each receives the :class:`~policyexec.Context`.
    * ``needs_request_body`` / ``needs_response_body`` (optional bool):
      whether the proxy must buffer that body for this policy; by default
      true exactly when the matching body method is overridden and the
      streamed one is not.
    * streamed body methods (optional): ``on_request_body_chunk(ctx, chunk)``
      / ``on_response_body_chunk(ctx, chunk)`` take that body one chunk at a
      time (:class:`~policyexec.chunk.BodyChunk`: read ``chunk.data``,
      ``write`` / ``forward`` what goes on, ``keep`` a tail, per-body
      ``chunk.state``), so the proxy need not buffer it. A policy may offer
      both shapes: the buffered method runs when another step makes the
      body buffered, else the chunk method runs once on the whole body.

    One instance is created per chain step, with the step's params
    (``self.params``, defaults filled in). Override :meth:`validate` to check
    params further: a ``TypeError`` or ``ValueError`` raised from
    ``__init__`` or ``validate`` refuses the step with its message.

    Instances live in a worker process and may see requests of many
    exchanges; keep per-request state in the context.

    Waiting on I/O: a phase method may be a coroutine (``async def``). The
    worker runs it on its asyncio event loop and meanwhile serves other
    requests, so one instance may have many requests in flight at once (each
    with its own context). Past the step's deadline the coroutine is
    cancelled: it sees ``asyncio.CancelledError`` at its ``await`` and may
    clean up (re-raise it). A synchronous method that blocks stops the whole
    worker, which is then killed at the step's deadline.

    :meth:`setup` and :meth:`teardown` (plain or ``async``) run once per
    instance in each worker: after the params are accepted, and when the
    step's chain is freed or the worker exits normally.
    """

    name = None
    version = None
    params = None
    needs_request_body = None
    needs_response_body = None

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "name" not in cls.__dict__:
            return
        if not isinstance(cls.name, str) or not cls.name:
            raise TypeError(f"{cls.__qualname__}.name must be a non-empty str")
        if not isinstance(cls.version, str) or not cls.version:
            raise TypeError(f"{cls.__qualname__}.version must be a non-empty str")
        key = f"{cls.name}@{cls.version}"
        other = _registry.get(key)
        if other is not None and other is not cls:
            raise TypeError(f"policy {key} is defined twice: by {_where(other)} and {_where(cls)}")
        _registry[key] = cls

    def __init__(self, params=None):
        """Checks ``params`` (a dict) against the class schema and stores the
        result, defaults included, in ``self.params``."""
        self.params = check_params(type(self), {} if params is None else params)

    def validate(self):
        """Hook for further checks of ``self.params``; raise ValueError to refuse."""

    def setup(self):
        """Runs once per instance and worker before it serves (may be ``async``:
        open a connection pool here). An exception refuses the step."""

    def teardown(self):
        """Runs when the instance goes away (may be ``async``: close what
        :meth:`setup` opened). Exceptions are logged and ignored."""

    def on_request_headers(self, ctx):
        """Runs in the request headers phase."""

    def on_request_body(self, ctx):
        """Runs in the request body phase (``ctx.request_body`` is the whole body)."""

    def on_response_headers(self, ctx):
        """Runs in the response headers phase."""

    def on_response_body(self, ctx):
        """Runs in the response body phase (``ctx.response_body`` is the whole body)."""

    def on_request_body_chunk(self, ctx, chunk):
        """Runs once per chunk of a streamed request body (policyexec.chunk)."""

    def on_response_body_chunk(self, ctx, chunk):
        """Runs once per chunk of a streamed response body (policyexec.chunk)."""

    # ---- what the worker reports about a class ----

    @classmethod
    def phases(cls):
        """Bit mask of the phases implemented: bit (1 << phase) for each."""
        mask = cls.chunk_phases()
        for phase, method in enumerate(PHASE_METHODS):
            if getattr(cls, method) is not getattr(Policy, method):
                mask |= 1 << phase
        return mask

    @classmethod
    def chunk_phases(cls):
        """Bit mask of the body phases with a streamed (chunk) method."""
        mask = 0
        for phase, method in CHUNK_METHODS.items():
            if getattr(cls, method) is not getattr(Policy, method):
                mask |= 1 << phase
        return mask

    @classmethod
    def needs_bodies(cls):
        """(needs_request_body, needs_response_body) with defaults applied."""
        mask = cls.phases() & ~cls.chunk_phases()
        rq = cls.needs_request_body
        rs = cls.needs_response_body
        return (bool(mask & (1 << REQUEST_BODY)) if rq is None else bool(rq),
                bool(mask & (1 << RESPONSE_BODY)) if rs is None else bool(rs))


def check_params(cls, params):
    """Validates ``params`` against ``cls.params``; returns a new dict with
    defaults filled in. Raises TypeError/ValueError naming the param."""
    if not isinstance(params, dict):
        raise TypeError(f"params must be a JSON object, not {type(params).__name__}")
    schema = cls.params
    if schema is None:
        return dict(params)
    unknown = sorted(set(params) - set(schema))
    if unknown:
        expected = ", ".join(sorted(schema)) or "none"
        raise ValueError(f"unknown param {unknown[0]!r} (expected: {expected})")
    result = {}
    for name, spec in schema.items():
        if not isinstance(spec, Param):
            spec = Param(spec)
        if name not in params:
            if spec.required:
                raise ValueError(f"missing param {name!r}")
            result[name] = spec.default
            continue
        value = params[name]
        if not _is_a(value, spec.type):
            raise TypeError(f"param {name!r} must be {_type_name(spec.type)}, "
                            f"not {type(value).__name__}")
        result[name] = float(value) if spec.type is float else value
    return result


def _is_a(value, types):
    if not isinstance(types, tuple):
        types = (types,)
    for t in types:
        if t is int and isinstance(value, int) and not isinstance(value, bool):
            return True
        if t is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return True
        if t not in (int, float) and isinstance(value, t):
            return True
    return False


def _type_name(types):
    if isinstance(types, tuple):
        return " or ".join(t.__name__ for t in types)
    return types.__name__


def _where(cls):
    return f"{cls.__module__}.{cls.__qualname__}"


def registered():
    """Every registered policy class, as a dict name@version -> class."""
    return dict(_registry)


__all__ = ["Policy", "Param", "check_params", "registered", "REQUEST_HEADERS",
           "REQUEST_BODY", "RESPONSE_HEADERS", "RESPONSE_BODY"]
