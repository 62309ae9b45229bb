/* Coroutine steps: the worker's asyncio loop beside its C loop.
 *
 * A RunPhase whose step returns an awaitable comes back from Python as an
 * asyncio task instead of a result list: it is filed here under a token with
 * the connection and request id its reply goes to, and the C loop carries on
 * serving other requests. Once any loop exists, the C loop also polls the
 * loop's selector fd, with the loop's next timer as its timeout, and runs
 * the loop when that fd is ready or a timer is due; batches that ended are
 * answered then, in completion order (the engine matches replies by id). A
 * worker whose policies never await creates no loop and runs none of this. */
#ifndef PW_ASYNC_H
#define PW_ASYNC_H

#include "pw_python.h"

#include <stdint.h>

typedef struct pw_async_slot pw_async_slot;

typedef struct pw_async {
  PyObject *track; /* policyexec._aio functions (through _worker) */
  PyObject *cancel;
  PyObject *pump;
  PyObject *loop_state;
  PyObject *async_phases;
  PyObject *shutdown;
  pw_async_slot *slots; /* token -> where the reply goes */
  size_t cap;
  size_t free_head; /* first free slot, or cap */
  size_t pending;   /* batches awaiting their task */
  int active;       /* the Python loop exists: poll it and pump it */
  uint64_t due_ns;  /* CLOCK_MONOTONIC time the loop has work at; 0: none */
} pw_async;

/* Takes the handles from policyexec._worker (imported by pw_python_init).
 * Returns 0, or -1 after logging. */
int pw_async_start(pw_async *a);
/* Tears every instance down (async teardown runs on the loop), closes the
 * loop and drops the handles. */
void pw_async_finalize(pw_async *a);

/* Files @p task (a pending batch) under a new token for request @p id of
 * connection @p conn. Returns 0, or -1 with a Python exception set. */
int pw_async_track(pw_async *a, PyObject *task, uint64_t conn, uint64_t id);
/* Cancels the pending batch of request @p id on @p conn, if any. */
void pw_async_cancel(pw_async *a, uint64_t conn, uint64_t id);
/* Connection @p conn closed: cancels its pending batches (their replies are
 * dropped). */
void pw_async_conn_closed(pw_async *a, uint64_t conn);
/* Notes that Python may have created the loop (after a setup()). */
void pw_async_refresh(pw_async *a);
/* The Phase bits of instance @p id whose method is a coroutine function. */
uint32_t pw_async_phases(pw_async *a, uint64_t id);

/* Before poll(): the loop's selector fd to poll too (-1: none) and the
 * timeout in microseconds (*timeout_us keeps -1 when nothing is scheduled
 * or no loop exists). */
int pw_async_poll_setup(pw_async *a, long long *timeout_us);

/* One answered batch: the loop side calls back into the request handler to
 * encode it (see pw_requests.c). */
typedef int (*pw_async_reply_fn)(void *ctx, uint64_t conn, uint64_t id, PyObject *result);

/* After poll(): when the loop's fd was ready (@p fd_ready) or its next
 * timer is due, runs the loop (never blocking) and hands each batch that
 * ended to @p reply; otherwise does nothing, so that a turn woken by a
 * synchronous request does not pay for the loop. Returns 0, or -1 when
 * Python failed outside a policy (logged). */
int pw_async_pump(pw_async *a, int fd_ready, pw_async_reply_fn reply, void *ctx);

#endif
