"""Engine and Chain: the policy registry and the chains built from it."""

import ctypes
import json
import os

from . import _lib
from ._handle import Handle
from .errors import Code, PolicyExecError, closed
from .. import _text

#: Phases (``pe_phase``), in the order a proxy meets them.
REQUEST_HEADERS, REQUEST_BODY, RESPONSE_HEADERS, RESPONSE_BODY = 0, 1, 2, 3
#: ``Chain.needs`` bits: the host must buffer that body.
NEEDS_REQUEST_BODY, NEEDS_RESPONSE_BODY = 0x1, 0x2

_LIMITS = {"header_count": 0, "header_bytes": 1, "body_bytes": 2, "meta_count": 3,
           "meta_bytes": 4}
_LOG_LEVELS = {"error": 0, "warn": 1, "info": 2, "debug": 3}


def as_bytes(value, what):
    """str (UTF-8, surrogateescape: lossless for bytes that came in) or
    bytes-like -> bytes."""
    if type(value) is bytes:
        return value
    if isinstance(value, str):
        try:
            return _text.encode(value)
        except UnicodeEncodeError as exc:
            raise ValueError(f"{what} cannot be encoded: {exc.reason}") from None
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    raise TypeError(f"{what} must be str or bytes, not {type(value).__name__}")


def check(rc, errmsg=None):
    """Raises PolicyExecError for a negative code; returns rc otherwise."""
    if rc < 0:
        msg = errmsg() if errmsg else b""
        text = msg.decode("utf-8", "replace") if msg else ""
        lib = _lib.load()
        raise PolicyExecError(rc, text or lib.pe_strerror(rc).decode(),
                              lib.pe_errname(rc).decode())
    return rc


class Engine(Handle):
    """The policy registry: native plugins, the Python pool, limits.

    ``library`` is the path of libpolicyexec (else it is found as
    :mod:`policyexec.host._lib` says). ``limits`` maps ``header_count``,
    ``header_bytes``, ``body_bytes``, ``meta_count``, ``meta_bytes`` to
    numbers. ``log`` is called as ``log(level, message)`` (level 0 error ..
    3 debug) from whichever thread logs, up to ``log_level``.

    Use it as a context manager, or call :meth:`close`; it is also closed
    when garbage-collected. Chains and exchanges keep what they need alive
    (the C engine is reference-counted), so closing the engine while they
    live is safe. Thread-safe, as the C engine.
    """

    _FREE = "pe_engine_free"

    def __init__(self, library=None, limits=None, log=None, log_level="info"):
        lib = _lib.load(library)
        self._lib = lib
        self._h = None
        self._log_cb = None
        opts = ctypes.c_void_p()
        check(lib.pe_engine_options_new(ctypes.byref(opts)))
        try:
            for name, value in (limits or {}).items():
                if name not in _LIMITS:
                    raise PolicyExecError(Code.INVALID_ARGUMENT, f"unknown limit {name!r}")
                check(lib.pe_engine_options_set_limit(opts, _LIMITS[name], int(value)))
            if log is not None:
                def trampoline(level, message, _user, log=log):
                    try:
                        log(level, message.decode("utf-8", "replace"))
                    except Exception:  # a logger must not unwind through C
                        pass
                # Kept on self: the C engine calls it as long as it lives,
                # and every chain and exchange keeps self alive.
                self._log_cb = _lib.LOG_FN(trampoline)
                check(lib.pe_engine_options_set_log(opts, self._log_cb, None))
                check(lib.pe_engine_options_set_log_level(opts, _LOG_LEVELS[log_level]))
            h = ctypes.c_void_p()
            check(lib.pe_engine_new(ctypes.byref(h), opts))
            self._h = h.value
        finally:
            lib.pe_engine_options_free(opts)

    # ---- lifetime ----

    def _handle(self):
        if self._h is None:
            raise closed("engine")
        return self._h

    def _errmsg(self):
        return self._lib.pe_engine_errmsg(self._h) if self._h else b""

    # ---- policies ----

    def load_plugin(self, path):
        """Loads a native plugin (``.so``); raises PolicyExecError
        (PE_ERR_PLUGIN, PE_ERR_EXISTS) with the library's reason."""
        check(self._lib.pe_engine_load_plugin(self._handle(), os.fsencode(path)), self._errmsg)

    def start_python(self, module_paths=(), workers=None, worker_path=None,
                     default_timeout_ms=None, startup_timeout_ms=None):
        """Starts the pool of ``policyexec-pyworker`` processes, which load
        the Python policies found in ``module_paths``."""
        lib = self._lib
        h = self._handle()
        opts = ctypes.c_void_p()
        check(lib.pe_python_options_new(ctypes.byref(opts)))
        try:
            for p in module_paths:
                check(lib.pe_python_options_add_module_path(opts, os.fsencode(p)))
            if workers is not None:
                check(lib.pe_python_options_set_workers(opts, int(workers)))
            if worker_path is not None:
                check(lib.pe_python_options_set_worker_path(opts, os.fsencode(worker_path)))
            if default_timeout_ms is not None:
                check(lib.pe_python_options_set_default_timeout(opts, int(default_timeout_ms)))
            if startup_timeout_ms is not None:
                check(lib.pe_python_options_set_startup_timeout(opts, int(startup_timeout_ms)))
            check(lib.pe_engine_start_python(h, opts), self._errmsg)
        finally:
            lib.pe_python_options_free(opts)

    def python_ping(self):
        """Pings every worker; returns how many answered."""
        alive = ctypes.c_size_t()
        check(self._lib.pe_engine_python_ping(self._handle(), ctypes.byref(alive)), self._errmsg)
        return alive.value

    def python_worker_pids(self):
        """The process ids of the Python workers."""
        pids = (ctypes.c_int * 256)()
        n = self._lib.pe_engine_python_worker_pids(self._handle(), pids, 256)
        return list(pids[:min(n, 256)])

    def has_policy(self, name, version):
        """Whether name@version is registered (native or Python)."""
        n, v = as_bytes(name, "name"), as_bytes(version, "version")
        return self._lib.pe_engine_has_policy_n(self._handle(), n, len(n), v, len(v)) == 1

    def limit(self, name):
        """The value of a limit (``"body_bytes"`` etc.)."""
        if name not in _LIMITS:
            raise PolicyExecError(Code.INVALID_ARGUMENT, f"unknown limit {name!r}")
        return self._lib.pe_engine_limit(self._handle(), _LIMITS[name])

    # ---- factories ----

    def chain(self, steps):
        """Builds a chain from JSON text (str or bytes) or from the same
        structure as Python lists and dicts. Raises PolicyExecError
        (PE_ERR_JSON, PE_ERR_UNKNOWN_POLICY, PE_ERR_PARAM, ...) with the
        builder's message."""
        return Chain(self, steps)

    def exchange(self):
        """A new, empty :class:`~policyexec.host.Exchange`."""
        from .exchange import Exchange
        return Exchange(self)


class Chain(Handle):
    """An immutable, shareable list of policy steps (``pe_chain``).

    Any number of threads may run one chain at once, each on its own
    exchange. Closed by :meth:`close`, ``with``, or garbage collection.
    """

    _FREE = "pe_chain_free"

    def __init__(self, engine, steps):
        if not isinstance(steps, (str, bytes, bytearray, memoryview)):
            steps = json.dumps(steps)
        text = as_bytes(steps, "chain JSON")
        lib = engine._lib
        self._lib = lib
        self._engine = engine
        self._h = None
        err = ctypes.create_string_buffer(1024)
        h = ctypes.c_void_p()
        rc = lib.pe_chain_new_from_json_n(ctypes.byref(h), engine._handle(), text, len(text),
                                          err, len(err))
        check(rc, lambda: err.value)
        self._h = h.value
        self._run = lib.pe_chain_run
        self._run_phases = lib.pe_chain_run_phases
        self._verdict = lib.pe_exchange_verdict
        self.step_count = lib.pe_chain_step_count(self._h)
        #: Bit mask of the phases some step runs in (``1 << phase``).
        self.phases = lib.pe_chain_phases(self._h)
        #: NEEDS_REQUEST_BODY / NEEDS_RESPONSE_BODY bits.
        self.needs = lib.pe_chain_needs(self._h)

    def run(self, exchange, phase):
        """Runs one phase on ``exchange`` (blocking, also for Python steps).

        Returns the verdict (``CONTINUE`` or ``RESPOND``). A failing step is
        not an error here: it follows its failure mode (an immediate 500/504
        response when closed). Raises PolicyExecError for misuse (a phase
        out of range, an exchange of another engine).
        """
        h = self._h
        if h is None:
            raise closed("chain")
        ex = exchange._h
        if ex is None:
            raise closed("exchange")
        rc = self._run(h, ex, phase)
        if rc < 0:
            check(rc, exchange._errmsg)
        return self._verdict(ex)

    def run_phases(self, exchange, first, last):
        """Runs phases ``first``..``last`` as one (one Python round trip for
        consecutive Python steps); returns the verdict, as :meth:`run`."""
        h = self._h
        if h is None:
            raise closed("chain")
        ex = exchange._h
        if ex is None:
            raise closed("exchange")
        rc = self._run_phases(h, ex, first, last)
        if rc < 0:
            check(rc, exchange._errmsg)
        return self._verdict(ex)
