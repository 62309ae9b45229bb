"""The worker's asyncio event loop, driven by the worker's C loop.

Not an API for policy authors. The C loop (``pw_async.c``) stays in charge:
it polls its connections and, once any coroutine has run, also the loop's
selector fd with the loop's next timer as timeout, and calls :func:`pump`
to run the loop when that fd is ready or a timer is due. A worker whose
policies never return an awaitable never creates the loop and pays nothing
for it.
"""

import asyncio
import inspect
import math

CancelledError = asyncio.CancelledError

# How long an async setup() or teardown() may take (seconds).
SETUP_TIMEOUT = 30.0

# Loop iterations one pump() may run while callbacks are ready.
_PUMP_ITERATIONS = 16

_loop = None
# token -> task of a pending batch; finished ones wait in _done.
_tasks = {}
_done = []
# Tasks that cancel() was called on (Task.cancelling() cannot tell: some
# libraries, such as async_timeout, leave it raised after their own cancels).
_cancelled = set()


def loop():
    """The worker's event loop, created on first use."""
    global _loop
    if _loop is None:
        _loop = asyncio.new_event_loop()
        asyncio.set_event_loop(_loop)
    return _loop


def is_awaitable(value):
    """Whether a phase method's return value must be awaited."""
    return inspect.isawaitable(value)


def is_async(method):
    """Whether a phase method is a coroutine function."""
    return inspect.iscoroutinefunction(method)


def cancelling():
    """Whether the current task was asked to stop (the step's deadline)."""
    return asyncio.current_task() in _cancelled


# task -> what its batch answers if it is cancelled before it ever ran.
_if_unstarted = {}


def start(coro, if_cancelled_unstarted):
    """Starts the rest of a batch as a task of the loop; the C side then
    calls :func:`track` with the token its reply is filed under. A task
    cancelled before its first step never enters ``coro``:
    ``if_cancelled_unstarted()`` then gives its result list."""
    task = loop().create_task(coro)
    _if_unstarted[task] = if_cancelled_unstarted
    return task


def track(task, token):
    """Files ``task`` under ``token``: when it ends, :func:`pump` returns
    (token, its result list)."""
    _tasks[token] = task
    task.add_done_callback(lambda t, token=token: _finished(token, t))


def _finished(token, task):
    _cancelled.discard(task)
    fallback = _if_unstarted.pop(task, None)
    if task.cancelled() and fallback is not None:
        task = fallback()  # a list: see pump()
    if _tasks.pop(token, None) is not None:
        _done.append((token, task))


def cancel(token):
    """Cancels the pending batch filed under ``token`` (deadline passed, or
    its connection closed). Returns whether it was pending."""
    task = _tasks.get(token)
    if task is None:
        return False
    _cancelled.add(task)
    task.cancel()
    return True


def pump():
    """Runs the loop until nothing is ready, at most _PUMP_ITERATIONS
    iterations (ready callbacks, due timers, ready fds; never blocks) and returns the batches that ended, as a list of
    (token, result list); a task that ended without one gives an exception
    instead of the list."""
    lp = loop()
    budget = [_PUMP_ITERATIONS]

    def stop_when_idle():
        # Runs first among the callbacks of each iteration: while others are
        # ready (a timer's future woke a task, whose end wakes its done
        # callback), go round again in this same call rather than through
        # another turn of the C loop; a bounded number of times, so that
        # the sockets are read meanwhile.
        budget[0] -= 1
        if budget[0] > 0 and getattr(lp, "_ready", None):
            lp.call_soon(stop_when_idle)
        else:
            lp.stop()

    lp.call_soon(stop_when_idle)
    lp.run_forever()
    if not _done:
        return None
    ended = []
    for token, task in _done:
        if isinstance(task, list):
            ended.append((token, task))
            continue
        if task.cancelled():
            ended.append((token, CancelledError("the batch was cancelled")))
            continue
        exc = task.exception()
        ended.append((token, task.result() if exc is None else exc))
    _done.clear()
    return ended


def loop_state():
    """(selector fd, microseconds until the loop next has work: 0 now, -1
    nothing scheduled), or None when no loop exists yet. Reads the loop's
    private queues (CPython's BaseEventLoop keeps them in _ready and
    _scheduled); without them the C loop wakes up every millisecond. In
    microseconds, not milliseconds: a 10 ms wait must not end up to a
    millisecond late."""
    if _loop is None:
        return None
    try:
        fd = _loop._selector.fileno()
        if _loop._ready:
            return (fd, 0)
        scheduled = _loop._scheduled
    except AttributeError:
        return (-1, 1000)
    if not scheduled:
        return (fd, -1)
    delay = scheduled[0].when() - _loop.time()
    if delay <= 0:
        return (fd, 0)
    return (fd, math.ceil(delay * 1e6))


def complete(value, timeout):
    """Runs ``value`` to completion on the loop when it is awaitable (setup
    and teardown): other pending batches progress meanwhile."""
    if value is None or not inspect.isawaitable(value):
        return value
    return loop().run_until_complete(asyncio.wait_for(value, timeout))


def close():
    """Cancels what is left and closes the loop (worker exit)."""
    global _loop
    if _loop is None:
        return
    for task in list(_tasks.values()):
        task.cancel()
    if _tasks:
        _loop.run_until_complete(asyncio.gather(*_tasks.values(), return_exceptions=True))
    _loop.run_until_complete(_loop.shutdown_asyncgens())
    _loop.close()
    _loop = None
