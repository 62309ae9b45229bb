"""The Python half of policyexec-pyworker: the C event loop calls these.

Not an API for policy authors. Every function here is called with the GIL
held from the worker's single thread; anything a function raises becomes an
Error reply (or a failed step, inside :func:`run`).
"""

import importlib.util
import json
import mmap
import os
import signal
import sys
import time
import traceback

from . import _aio
from . import policy as _policy
from .body import Body
from .chunk import BodyChunk
from .context import UNCHANGED, Context

# realpath of each imported module file (imported once per process).
_loaded = set()
# instance_id -> (the bound method of each phase or None, ..., name@version):
# entry[phase] is the hook of a phase (0..3), entry[4] the key for errors,
# entry[5] the instance, entry[6] its chunk methods by side (or None).
_instances = {}
# (body_id, instance_id) -> the per-body state of a streamed step
# (BodyChunk.state), kept between the chunks of one body.
_chunk_states = {}

_NOTHING = UNCHANGED
_FAILED_TAIL = _NOTHING[2:]
# First item of a step result: True (ok), False (failed) or this (timed out).
TIMED_OUT = 2


class _StepTimeout(BaseException):
    """Raised in a running step when its own timeout expires."""


# The timer. A system call costs about 2 us on a VM, so a step does not
# start its own timer when the one running already expires between now and
# the step's deadline: when it fires early, the handler starts it again for
# what is left of the running step's time. Under load that is about one
# timer per timeout period instead of two system calls per step.
_armed = None  # the running step's key while it has a timeout, else None
_deadline = 0.0  # its deadline (time.monotonic())
_expiry = None  # when the running timer fires (time.monotonic()), or None

_setitimer = getattr(signal, "setitimer", None)
_ITIMER_REAL = getattr(signal, "ITIMER_REAL", 0)
_monotonic = time.monotonic


def _on_alarm(signum, frame):
    global _expiry
    _expiry = None
    if _armed is None:
        return  # no step running, or one without a timeout: ignore
    left = _deadline - _monotonic()
    if left > 0:
        # The timer was started for an earlier deadline: start it again.
        _expiry = _deadline
        _setitimer(_ITIMER_REAL, left)
        return
    raise _StepTimeout()


def _arm(seconds, key):
    """A step with a timeout of ``seconds`` starts."""
    global _armed, _deadline, _expiry
    now = _monotonic()
    deadline = now + seconds
    _deadline = deadline
    _armed = key
    expiry = _expiry
    if expiry is None or expiry <= now or expiry > deadline:
        _expiry = deadline
        _setitimer(_ITIMER_REAL, seconds)


def _disarm():
    """The step ended: a timer still running is left to expire (ignored)."""
    global _armed
    _armed = None


# The worker runs Python on its main thread, where signal handlers run:
# Python checks for them between bytecodes and when a blocking call (sleep,
# a socket read) is interrupted, so a step stuck in Python code gets the
# exception. A step blocked inside C code that never returns is not
# interrupted: the engine's hard deadline kills the worker then.
if _setitimer is not None:
    signal.signal(signal.SIGALRM, _on_alarm)
_from_wire = Context._from_wire
_is_awaitable = _aio.is_awaitable
_MAX_ERROR = 4000
_TRACEBACK_FRAMES = 3


def load_modules(paths):
    """Imports every ``*.py`` in each directory of ``paths`` (in name order,
    once per process) and returns, for every policy registered so far, a tuple
    (name, version, phases mask, needs_request_body, needs_response_body,
    chunk phases mask)."""
    for directory in paths:
        directory = os.path.realpath(directory)
        if not os.path.isdir(directory):
            raise ImportError(f"module path {directory!r} is not a directory")
        if directory not in sys.path:
            # Lets policy modules import helper modules beside them.
            sys.path.append(directory)
        for entry in sorted(os.listdir(directory)):
            if entry.endswith(".py") and not entry.startswith("."):
                _import_file(os.path.join(directory, entry))
    infos = []
    for cls in _policy.registered().values():
        needs_rq, needs_rs = cls.needs_bodies()
        infos.append((cls.name, cls.version, cls.phases(), needs_rq, needs_rs,
                      cls.chunk_phases()))
    return infos


def add_virtualenv(path):
    """Adds the site-packages of the virtualenv at ``path`` to sys.path,
    after the system's (with its .pth files, as ``site`` does): policies may
    import what it holds while the interpreter stays the isolated system one."""
    import site
    lib = f"python{sys.version_info[0]}.{sys.version_info[1]}"
    packages = os.path.join(os.path.realpath(path), "lib", lib, "site-packages")
    if not os.path.isdir(packages):
        raise ImportError(f"{packages!r} is not a directory: not a virtualenv of "
                          f"this interpreter ({lib})")
    site.addsitedir(packages)


def _import_file(path):
    if path in _loaded:
        return
    stem = os.path.splitext(os.path.basename(path))[0]
    # A private name per file: policy files never shadow each other or the stdlib.
    module_name = f"_policyexec_policies_{len(_loaded)}_{stem}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException as exc:
        del sys.modules[module_name]
        raise ImportError(f"cannot import {path}: {type(exc).__name__}: {exc}") from exc
    _loaded.add(path)


def create(instance_id, name, version, params_json, timeout_ms=0):
    """Creates (or replaces) instance ``instance_id`` of name@version.
    Returns None on success, else the reason as str, or (TIMED_OUT, reason)
    when the constructor (with validation) ran past ``timeout_ms`` (0: no
    limit) and was interrupted."""
    key = f"{name}@{version}"
    cls = _policy.registered().get(key)
    if cls is None:
        return f"unknown policy {key}"
    try:
        params = json.loads(params_json) if params_json else {}
    except ValueError as exc:
        return f"{key}: params are not valid JSON: {exc}"
    try:
        if timeout_ms:
            _arm(timeout_ms / 1000.0, key)
        instance = cls(params)
        instance.validate()
        if timeout_ms:
            _disarm()
    except _StepTimeout:
        _disarm()
        return (TIMED_OUT, f"{key}: creating the instance took longer than the create "
                           f"timeout of {timeout_ms} ms (interrupted by the worker)")
    except (TypeError, ValueError) as exc:
        if timeout_ms:
            _disarm()
        return f"{key}: {exc}"
    except Exception as exc:
        if timeout_ms:
            _disarm()
        return f"{key}: {type(exc).__name__}: {exc}"
    try:
        # setup() may be a coroutine (open a connection pool once): it runs
        # to completion on the worker's loop before the instance serves.
        _aio.complete(instance.setup(), _aio.SETUP_TIMEOUT)
    except BaseException as exc:
        return f"{key}: setup failed: {type(exc).__name__}: {exc}"
    old = _instances.get(instance_id)
    if old is not None:
        _teardown(old)
    phases = cls.phases()
    chunked = cls.chunk_phases()
    chunk_methods = (
        getattr(instance, _policy.CHUNK_METHODS[1]) if chunked & (1 << 1) else None,
        getattr(instance, _policy.CHUNK_METHODS[3]) if chunked & (1 << 3) else None)
    hooks = []
    for phase, method in enumerate(_policy.PHASE_METHODS):
        hook = None
        if getattr(cls, method) is not getattr(_policy.Policy, method):
            hook = getattr(instance, method)
        elif phases & (1 << phase):
            # Only a chunk method: in a buffered body phase it runs once on
            # the whole body, as its last chunk.
            hook = _whole_body(chunk_methods[phase // 2], phase // 2)
        hooks.append(hook)
    _instances[instance_id] = tuple(hooks) + (
        key, instance, chunk_methods if chunked else None)
    return None


def _whole_body(method, side):
    """The body phase hook of a policy with only a chunk method for it."""
    def hook(ctx):
        body = ctx.request_body if side == 0 else ctx.response_body
        chunk = BodyChunk(body, True, side)
        waiting = method(ctx, chunk)
        if waiting is not None and _is_awaitable(waiting):
            if hasattr(waiting, "close"):
                waiting.close()
            raise TypeError("a chunk method must not be a coroutine")
        chunk._finish(waiting)
        if len(chunk._out) == 1 and type(chunk._out[0]) is tuple and \
                chunk._out[0] == (0, len(body)):
            return None  # passed on unchanged: no edit
        if side == 0:
            ctx.request_body = chunk._joined()
        else:
            ctx.response_body = chunk._joined()
        return None
    return hook


def run_chunk(instance_id, side, fail_open, timeout_ms, method, path, authority, status,
              request_headers, response_headers, data, metadata, body_id, last):
    """Runs one chunk of a streamed body through the chunk method of
    ``side`` of instance ``instance_id``. Returns (result, pieces, keep):
    result as one item of :func:`run`'s list, pieces the output (input
    runs as (start, end) tuples, or bytes), keep the bytes held back.
    The per-body state is kept under (body_id, instance_id) until the last
    chunk or a failure. Raises LookupError (nothing ran) when the instance
    is unknown or has no chunk method for ``side``."""
    entry = _instances.get(instance_id)
    if entry is None or entry[6] is None or entry[6][side] is None:
        raise LookupError(f"instance {instance_id} has no chunk method for side {side}")
    hook = entry[6][side]
    key = (body_id, instance_id)
    phase = 1 if side == 0 else 3
    ctx = _from_wire(phase, method, path, authority, status, request_headers,
                     response_headers, None, None, metadata)
    chunk = BodyChunk(data, last, side, _chunk_states.pop(key, None))
    try:
        try:
            if timeout_ms:
                _arm(timeout_ms / 1000.0, entry[4])
            returned = hook(ctx, chunk)
            if timeout_ms:
                _disarm()
            if returned is not None and _is_awaitable(returned):
                if hasattr(returned, "close"):
                    returned.close()
                raise TypeError("a chunk method must not be a coroutine")
            pieces, keep = chunk._finish(returned)
            result = ctx._commit()
        except _StepTimeout:
            _disarm()
            ctx._rollback()
            return ((TIMED_OUT, f"{entry[4]}: exceeded its timeout of {timeout_ms} ms "
                                "(interrupted by the worker)") + _FAILED_TAIL, None, 0)
        except BaseException as exc:  # a policy never stops the worker
            if timeout_ms:
                _disarm()
            ctx._rollback()
            return ((False, _describe(entry[4], exc)) + _FAILED_TAIL, None, 0)
    finally:
        if type(data) is Body:
            data._release()
    if not last and result[8] is None and chunk.state is not None:
        _chunk_states[key] = chunk.state
    return result, pieces, keep


def abort_body(body_id):
    """The engine abandoned body ``body_id``: drops its per-body states."""
    for key in [k for k in _chunk_states if k[0] == body_id]:
        del _chunk_states[key]


def async_phases(instance_id):
    """Bit (1 << phase) for each phase method of the instance that is a
    coroutine function: the engine cancels those at their deadline instead
    of killing the worker."""
    entry = _instances.get(instance_id)
    if entry is None:
        return 0
    return sum(1 << phase for phase in range(4)
               if entry[phase] is not None and _aio.is_async(entry[phase]))


def destroy(instance_id):
    """Forgets instance ``instance_id`` (after its teardown); returns whether
    it existed."""
    entry = _instances.pop(instance_id, None)
    if entry is None:
        return False
    for key in [k for k in _chunk_states if k[1] == instance_id]:
        del _chunk_states[key]
    _teardown(entry)
    return True


def shutdown():
    """The worker is exiting: tears every instance down, closes the loop."""
    while _instances:
        _teardown(_instances.popitem()[1])
    _aio.close()


def _teardown(entry):
    try:
        _aio.complete(entry[5].teardown(), _aio.SETUP_TIMEOUT)
    except BaseException as exc:  # a teardown never stops the worker
        print(f"policyexec-pyworker: {entry[4]}: teardown failed: "
              f"{type(exc).__name__}: {exc}", file=sys.stderr)


def count():
    """Number of live instances."""
    return len(_instances)


def shm_body(fd, offset, length):
    """A Body over bytes [offset, offset + length) of the sealed memfd fd
    (checked by the caller), mapped read-only; mmap duplicates fd, and the
    mapping lives as long as the Body and its views."""
    mapping = mmap.mmap(fd, 0, prot=mmap.PROT_READ)
    return Body(memoryview(mapping)[offset:offset + length], mapping=mapping)


def _release(*bodies):
    for body in bodies:
        if type(body) is Body:
            body._release()


def run(phase, instance_ids, fail_open, method, path, authority, status,
        request_headers, response_headers, request_body, response_body, metadata,
        step_phases=None, timeouts=None, progress=None):
    """:func:`_run`, then the release of the shared bodies (see
    :meth:`Body._release`) once the batch is over."""
    if type(request_body) is not Body and type(response_body) is not Body:
        return _run(phase, instance_ids, fail_open, method, path, authority, status,
                    request_headers, response_headers, request_body, response_body,
                    metadata, step_phases, timeouts, progress)
    try:
        result = _run(phase, instance_ids, fail_open, method, path, authority, status,
                      request_headers, response_headers, request_body, response_body,
                      metadata, step_phases, timeouts, progress)
    except BaseException:
        _release(request_body, response_body)
        raise
    if isinstance(result, list):
        _release(request_body, response_body)
    else:
        result.add_done_callback(lambda _task: _release(request_body, response_body))
    return result


def _run(phase, instance_ids, fail_open, method, path, authority, status,
         request_headers, response_headers, request_body, response_body, metadata,
         step_phases=None, timeouts=None, progress=None):
    """Runs the steps of one phase, or of consecutive phases, on one shared
    context; returns one result tuple per step that ran: (ok, error, header
    edits, body edits, metadata edits, status, method, path, respond), where
    ok is True, False (failed) or TIMED_OUT.

    A step whose method returns an awaitable (``async def``) makes the batch
    pending: run then returns an asyncio task, whose result is that list,
    and the rest of the batch (synchronous steps too, in order) continues in
    it once the awaitable completes (see :func:`track`).

    ``step_phases`` is None (every step runs in ``phase``) or the phase of
    each step, checked by the caller (one per step, known, non-decreasing).
    ``timeouts`` is None or each step's own timeout in milliseconds (0:
    none): a step still running then is interrupted, its changes discarded,
    and it ends TIMED_OUT; the next step gets its own full timeout.
    ``progress`` is None or a callable taking a list of results: it is
    called with the results not yet reported before each fail-open step
    after the first, so that they survive the worker's death in that step;
    the list returned then holds only the results after those reported.
    Raises LookupError (nothing runs) when an instance is unknown."""
    steps = []
    for instance_id in instance_ids:
        entry = _instances.get(instance_id)
        if entry is None:
            raise LookupError(f"unknown instance {instance_id}")
        steps.append(entry)
    ctx = _from_wire(phase, method, path, authority, status, request_headers,
                     response_headers, request_body, response_body, metadata)
    results = []
    reported = 0
    for index, entry in enumerate(steps):
        if (progress is not None and index > reported and index < len(fail_open)
                and fail_open[index]):
            progress(results[reported:])
            reported = index
        if step_phases is not None:
            # The context follows the step: what it lets the policy see and
            # set (bodies, status, request line) depends on the phase.
            phase = ctx.phase = step_phases[index]
        hook = entry[phase]
        if hook is None:
            results.append(_NOTHING)
            continue
        limit = timeouts[index] if timeouts is not None and index < len(timeouts) else 0
        try:
            if limit:
                _arm(limit / 1000.0, entry[4])
            waiting = hook(ctx)
            if limit:
                _disarm()
            if waiting is not None and _is_awaitable(waiting):
                # A coroutine: the batch goes on in a task of the loop, and
                # answers once (the results not reported yet); from here the
                # engine's deadline and a Cancel bound it, not the timer.
                results = results[reported:]
                return _aio.start(_run_rest(ctx, steps, index, waiting, fail_open,
                                            step_phases, results),
                                  lambda: _never_ran(ctx, entry, waiting, results))
            result = ctx._commit()
        except _StepTimeout:
            _disarm()
            ctx._rollback()
            results.append((TIMED_OUT, f"{entry[4]}: exceeded its timeout of {limit} ms "
                                       "(interrupted by the worker)") + _FAILED_TAIL)
            if index >= len(fail_open) or not fail_open[index]:
                break
            continue
        except BaseException as exc:  # even SystemExit: a policy never stops the worker
            if limit:
                _disarm()
            if not _failed(ctx, entry, index, exc, fail_open, results):
                break
            continue
        results.append(result)
        if result[8] is not None:
            break
    return results[reported:] if reported else results


def _failed(ctx, entry, index, exc, fail_open, results):
    """Records a failed step; returns whether the batch goes on (fail open)."""
    ctx._rollback()
    results.append((False, _describe(entry[4], exc)) + _FAILED_TAIL)
    return index < len(fail_open) and fail_open[index]


def _never_ran(ctx, entry, waiting, results):
    """The result list of a batch cancelled before its task started."""
    if hasattr(waiting, "close"):
        waiting.close()  # a coroutine never awaited: no warning for it
    ctx._rollback()
    return results + [(False, f"{entry[4]}: cancelled: the step passed its deadline")
                      + _FAILED_TAIL]


async def _run_rest(ctx, steps, index, waiting, fail_open, step_phases, results):
    """The rest of a batch from step ``index``, whose method returned the
    awaitable ``waiting``: awaits it, then runs the following steps in order
    (awaiting those that return awaitables) on the same context."""
    phase = ctx.phase
    while True:
        entry = steps[index]
        try:
            if waiting is not None:
                await waiting
                if _aio.cancelling():
                    # The policy swallowed the cancel: the engine has given
                    # up on this batch all the same.
                    raise _aio.CancelledError()
            result = ctx._commit()
        except _aio.CancelledError:
            ctx._rollback()
            results.append((False, f"{entry[4]}: cancelled: the step passed its deadline")
                           + _FAILED_TAIL)
            return results
        except BaseException as exc:
            if not _failed(ctx, entry, index, exc, fail_open, results):
                return results
        else:
            results.append(result)
            if result[8] is not None:
                return results
        index += 1
        waiting = None
        while index < len(steps):
            entry = steps[index]
            if step_phases is not None:
                phase = ctx.phase = step_phases[index]
            hook = entry[phase]
            if hook is not None:
                try:
                    waiting = hook(ctx)
                    if waiting is not None and not _is_awaitable(waiting):
                        waiting = None  # as in run(): a plain return value is ignored
                except BaseException as exc:
                    if not _failed(ctx, entry, index, exc, fail_open, results):
                        return results
                    index += 1
                    continue
                break
            results.append(_NOTHING)
            index += 1
        if index == len(steps):
            return results


# The loop's side, called by the worker's C loop (pw_async.c).
track = _aio.track
cancel = _aio.cancel
pump = _aio.pump
loop_state = _aio.loop_state


def _describe(key, exc):
    """ "name@version: ExceptionType: message" plus the last frames of the traceback."""
    text = f"{key}: {type(exc).__name__}: {exc}"
    tb = exc.__traceback__
    if tb is not None and tb.tb_next is not None:
        frames = traceback.format_tb(tb.tb_next)[-_TRACEBACK_FRAMES:]
        text += "\n" + "".join(frames).rstrip()
    if len(text) > _MAX_ERROR:
        text = text[:_MAX_ERROR] + "..."
    return text
