/* Non-blocking runs on the Python pool. The core's dispatcher (one per
 * host thread) owns the epoll fd and the timer; this file keeps, per
 * dispatcher, its own connection to each worker (connected lazily,
 * reconnected lazily after a worker is replaced), registers those fds with
 * the dispatcher and asks its timer for the earliest deadline of its calls.
 * Requests are pipelined, and a worker may answer them out of order (a
 * batch whose coroutine step awaits I/O ends after later ones), so each
 * connection keeps the list of calls it awaits and matches each reply to
 * its call by id (the oldest first: synchronous replies come in order, so
 * the match is nearly always the head). Nothing here takes a lock; the
 * in-flight budget and worker choice use atomics.
 *
 * Connection objects are never freed while the dispatcher state lives
 * (closed ones are kept for reuse), so an event that names one stays safe
 * to read even if a callback closed it meanwhile: processing just finds
 * nothing. */
#include "pe_py.h"

#include <errno.h>
#include <stdio.h>
#include <unistd.h>

struct pe__py_call {
  pe__py_call *next, *prev;
  pe_exchange *ex;
  pe__batch batch; /* copied: the runner's is on its stack */
  uint64_t id;
  uint64_t deadline_ns;
  pe__py_worker *worker;
  size_t done; /* steps whose outcome partial replies gave already */
  /* Timed out with a coroutine step: ex has had its timeout, a Cancel has
   * been sent, and deadline_ns is now the end of the grace period. */
  bool cancelled;
  /* A chunk of a streamed body (pe__py_stream_submit), not a batch: where
   * the step's output goes and the body's worker (NULL once forgotten),
   * and the body to abort once answered when its exchange was freed
   * meanwhile (0: none). */
  pe_body_chunk *chunk;
  pe__py_body *sb;
  uint64_t abort_body;
};

/* This backend's state on one dispatcher (a pe__dstate to the core). */
typedef struct pe__py_dstate {
  pe_dispatcher *d;
  pe__py_backend *be;
  const pe_mem *mem;
  pe__py_conn **slots; /* current connection per worker, or NULL */
  size_t nslots;
  pe__py_conn *retired; /* stale connections with calls still listed */
  pe__py_conn *spare;   /* closed, kept for reuse */
  pe__py_call *free_calls;
} pe__py_dstate;

static pe__py_dstate *py_ds(pe__dstate *ds) {
  return (pe__py_dstate *)(void *)ds;
}

/* The earliest deadline of the calls still awaited, re-armed on the
 * dispatcher's timer. */
static void timer_rearm(pe__py_dstate *d) {
  uint64_t earliest = 0;
  for (size_t i = 0; i < d->nslots; i++)
    for (const pe__py_call *k = d->slots[i] ? d->slots[i]->head : NULL; k; k = k->next)
      if (!earliest || k->deadline_ns < earliest)
        earliest = k->deadline_ns;
  for (const pe__py_conn *c = d->retired; c; c = c->next)
    for (const pe__py_call *k = c->head; k; k = k->next)
      if (!earliest || k->deadline_ns < earliest)
        earliest = k->deadline_ns;
  if (earliest)
    pe__dispatcher_arm(d->d, earliest);
}

/* ---- calls ---- */

static pe__py_call *call_get(pe__py_dstate *d, const pe__batch *b) {
  pe__py_call *k = d->free_calls;
  if (k)
    d->free_calls = k->next;
  else if (!(k = pe__calloc(d->mem, 1, sizeof *k)))
    return NULL;
  pe__batch_copy(&k->batch, b);
  k->next = k->prev = NULL;
  k->done = 0;
  k->cancelled = false;
  k->chunk = NULL;
  k->sb = NULL;
  k->abort_body = 0;
  return k;
}

static void call_put(pe__py_dstate *d, pe__py_call *k) {
  k->ex = NULL;
  k->next = d->free_calls;
  d->free_calls = k;
}

/* Ends a call whose outcome has been applied: the core resumes its run
 * and, if it is complete, calls its done callback. Returns 1 if it
 * completed. A call whose exchange was freed meanwhile (ex NULL) just ends. */
static int complete(pe__py_dstate *d, pe__py_call *k) {
  pe_exchange *ex = k->ex;
  call_put(d, k);
  return ex ? pe__dispatch_complete(ex) : 0;
}

/* The same for a stream chunk whose step ended with rc. */
static int complete_stream(pe__py_dstate *d, pe__py_call *k, int rc) {
  pe_exchange *ex = k->ex;
  call_put(d, k);
  return ex ? pe__dispatch_stream_done(ex, rc) : 0;
}

/* A stream chunk's call k failed with its connection: its step fails with
 * rc (the worker's state of the body is gone if it was killed). */
static int fail_stream(pe__py_dstate *d, pe__py_call *k, int rc, const char *why, bool killed) {
  if (k->sb && killed)
    k->sb->worker_done = true;
  if (k->ex)
    pe__exchange_fail(k->ex, rc, "%s", why);
  return complete_stream(d, k, rc);
}

/* Queues a StreamAbort of body_id on c (answered by nothing). */
static void queue_abort(pe__py_dstate *d, pe__py_conn *c, uint64_t body_id);

/* ---- connections ---- */

static void conn_shut(pe__py_dstate *d, pe__py_conn *c) {
  if (c->fd >= 0)
    pe__dispatcher_unwatch(d->d, c->fd);
  pe__py_conn_close(c);
}

static void watch_out(pe__py_dstate *d, pe__py_conn *c, bool on) {
  if (c->watching_out == on || c->fd < 0)
    return;
  pe__dispatcher_rewatch(d->d, c->fd, EPOLLIN | (on ? EPOLLOUT : 0), &c->watch);
  c->watching_out = on;
}

/* Call k, sent on c for ex, waits for its reply at the tail of c's calls,
 * the dispatcher's timer armed for its deadline. */
static int call_wait(pe__py_dstate *d, pe__py_conn *c, pe__py_call *k, pe_exchange *ex,
                     pe__py_worker *w, const pe__batch *b) {
  k->ex = ex;
  k->worker = w;
  k->deadline_ns = pe__py_batch_deadline(b, pe__now_ns());
  k->prev = c->tail;
  if (c->tail)
    c->tail->next = k;
  else
    c->head = k;
  c->tail = k;
  c->calls++;
  pe__dispatcher_arm(d->d, k->deadline_ns);
  return PE_PENDING;
}

static void list_remove(pe__py_conn **list, pe__py_conn *c) {
  for (pe__py_conn **link = list; *link; link = &(*link)->next)
    if (*link == c) {
      *link = c->next;
      c->next = NULL;
      return;
    }
}

/* Moves a slot's connection aside so that the slot can reconnect: its
 * calls (if any) are failed by the next dispatch. */
static void conn_retire(pe__py_dstate *d, pe__py_conn *c) {
  d->slots[c->worker->index] = NULL;
  if (c->calls) {
    c->next = d->retired;
    d->retired = c;
    pe__dispatcher_arm(d->d, 1); /* its calls fail at the next dispatch */
  } else {
    conn_shut(d, c);
    c->next = d->spare;
    d->spare = c;
  }
}

/* Closes c and fails every call it awaits: those past their deadline (when
 * now_ns is set) as timed out, the others with rc / outcome. Kills the
 * worker when kill_reason is set. Returns the number of runs completed. */
static int conn_fail(pe__py_dstate *d, pe__py_conn *c, int rc, pe_step_outcome outcome,
                     const char *why, uint64_t now_ns, const char *kill_reason) {
  pe__py_call *calls = c->head;
  c->head = c->tail = NULL;
  c->calls = 0;
  pe__py_worker *w = c->worker;
  unsigned gen = c->gen;
  conn_shut(d, c);
  if (d->slots[w->index] != c) {
    list_remove(&d->retired, c);
    c->next = d->spare;
    d->spare = c;
  }
  if (kill_reason)
    pe__py_worker_fail(w, gen, kill_reason);
  char crashed[PE__ERRMSG_SIZE], timed_out[PE__ERRMSG_SIZE];
  pe__errmsg_set(crashed, "python worker %zu: %s", w->index, why);
  int completed = 0;
  while (calls) {
    pe__py_call *k = calls;
    calls = k->next;
    pe__py_inflight_give(d->be, k->worker);
    pe_exchange *ex = k->ex;
    if (!ex) {
      call_put(d, k);
      continue;
    }
    if (now_ns && k->deadline_ns <= now_ns) {
      pe__errmsg_set(timed_out, "no answer from python worker %zu in time%s", w->index,
                     kill_reason ? " (worker replaced)" : "");
      if (k->chunk) {
        completed += fail_stream(d, k, PE_ERR_TIMEOUT, timed_out, kill_reason != NULL);
        continue;
      }
      pe__py_fail_steps(ex, &k->batch, k->done, PE_ERR_TIMEOUT, PE_STEP_TIMEOUT, timed_out);
    } else if (k->chunk) {
      completed += fail_stream(d, k, PE_ERR_WORKER, crashed, kill_reason != NULL);
      continue;
    } else {
      pe__py_fail_steps(ex, &k->batch, k->done, rc, outcome, crashed);
    }
    completed += complete(d, k);
  }
  return completed;
}

/* The dispatcher's connection to w's current process, connecting (and
 * saying Hello, blocking) if needed. NULL if w cannot be reached. */
static int conn_ready(pe__watch *w, uint32_t events);

static pe__py_conn *slot_conn(pe__py_dstate *d, pe__py_backend *be, pe__py_worker *w) {
  unsigned gen = atomic_load(&w->gen);
  pe__py_conn *c = d->slots[w->index];
  if (c && c->fd >= 0 && c->gen == gen)
    return c;
  if (c && c->calls) {
    conn_retire(d, c);
    c = NULL;
  }
  if (!c && (c = d->spare))
    d->spare = c->next;
  if (!c) {
    if (!(c = pe__calloc(d->mem, 1, sizeof *c)))
      return NULL;
    pe__py_conn_init(c, d->mem, be->max_message);
    c->shm_threshold = be->cfg.shm_threshold;
    c->ds = d;
    c->watch.ready = conn_ready;
  }
  conn_shut(d, c);
  c->next = NULL;
  c->worker = w;
  c->gen = gen;
  d->slots[w->index] = c;
  uint64_t deadline = pe__now_ns() + (uint64_t)be->cfg.startup_timeout_ms * 1000000u;
  c->watching_out = false;
  if (pe__py_conn_connect(c, w->sock_path) != PE_OK ||
      pe__py_conn_hello(c, deadline, NULL) != PE_OK ||
      pe__dispatcher_watch(d->d, c->fd, EPOLLIN, &c->watch) != PE_OK) {
    conn_shut(d, c);
    pe__py_worker_fail(w, gen, "a new connection to it failed");
    return NULL;
  }
  return c;
}

static int ensure_slots(pe__py_dstate *d, const pe__py_backend *be) {
  if (d->nslots == be->nworkers)
    return PE_OK;
  d->slots = pe__calloc(d->mem, be->nworkers, sizeof *d->slots);
  if (!d->slots)
    return PE_ERR_NOMEM;
  d->nslots = be->nworkers;
  return PE_OK;
}

/* One attempt to send the batch through w: PE_PENDING when sent, PE_OK when
 * its failure has been applied, PE_ERR_WORKER when it never reached the
 * worker (retry elsewhere), or a negative code when no step ran. */
static int submit_to(pe__py_dstate *d, pe__py_backend *be, pe__py_worker *w, pe_exchange *ex,
                     const pe__batch *b) {
  int rc = pe__py_inflight_take(be, w);
  if (rc != PE_OK)
    return rc;
  pe__py_conn *c = slot_conn(d, be, w);
  pe__py_call *k = c ? call_get(d, b) : NULL;
  if (!k) {
    pe__py_inflight_give(be, w);
    return c ? PE_ERR_NOMEM : PE_ERR_WORKER;
  }
  bool was_idle = c->calls == 0 && c->out_off == c->out.len;
  rc = pe__py_encode_run(c, ex, b, &k->id);
  if (rc == PE_OK)
    rc = pe__py_conn_flush(c);
  if (rc == PE_ERR_WORKER) {
    /* The worker is gone. If nothing of this request was written, it never
     * saw it and another worker may take it. */
    bool unsent = was_idle && c->out_off == 0;
    char why[PE__ERRMSG_SIZE];
    pe__errmsg_set(why, "%s", c->why);
    call_put(d, k);
    pe__py_inflight_give(be, w);
    pe__py_worker_fail(w, c->gen, why);
    conn_retire(d, c);
    if (unsent)
      return PE_ERR_WORKER;
    pe__py_fail_steps(ex, b, 0, PE_ERR_WORKER, PE_STEP_CRASHED, why);
    return PE_OK;
  }
  if (rc < 0) {
    call_put(d, k);
    pe__py_inflight_give(be, w);
    return rc;
  }
  watch_out(d, c, rc == PE_PENDING);
  return call_wait(d, c, k, ex, w, b);
}

int pe__py_submit(pe__backend *self, pe__dstate *ds, pe_exchange *ex, const pe__batch *b) {
  pe__py_backend *be = (pe__py_backend *)(void *)self;
  pe__py_dstate *d = py_ds(ds);
  int rc = ensure_slots(d, be);
  if (rc != PE_OK)
    return rc;
  for (int attempt = 0; attempt < 2; attempt++) {
    pe__py_worker *w = pe__py_pick_worker(be);
    if (!w)
      break;
    rc = submit_to(d, be, w, ex, b);
    if (rc != PE_ERR_WORKER)
      return rc;
  }
  pe__py_fail_steps(ex, b, 0, PE_ERR_WORKER, PE_STEP_CRASHED,
                    "no python worker is available (restarting after failures)");
  return PE_OK;
}

/* ---- stream chunks ---- */

static void queue_abort(pe__py_dstate *d, pe__py_conn *c, uint64_t body_id) {
  Policyexec__V1__StreamAbort abort_msg = POLICYEXEC__V1__STREAM_ABORT__INIT;
  abort_msg.body_id = body_id;
  pe__py_request req = POLICYEXEC__V1__REQUEST__INIT;
  req.body_case = POLICYEXEC__V1__REQUEST__BODY_STREAM_ABORT;
  req.stream_abort = &abort_msg;
  if (c->fd < 0 || pe__py_conn_queue(c, &req) != PE_OK)
    return; /* the connection is going: so is the state, with its worker */
  int rc = pe__py_conn_flush(c);
  if (rc == PE_PENDING)
    watch_out(d, c, true);
}

int pe__py_stream_submit(pe__backend *self, pe__dstate *ds, pe_exchange *ex, const pe__step *step,
                         pe_body_chunk *chunk) {
  pe__py_backend *be = (pe__py_backend *)(void *)self;
  pe__py_dstate *d = py_ds(ds);
  if (ensure_slots(d, be) != PE_OK)
    return pe__exchange_fail(ex, PE_ERR_NOMEM, "out of memory");
  pe__py_body *sb = NULL;
  int rc = pe__py_stream_worker(be, ex, chunk, &sb);
  if (rc != PE_OK)
    return rc;
  pe__py_worker *w = sb->w;
  pe__py_conn *c = slot_conn(d, be, w);
  pe__batch b = {.n = 1};
  b.step[0] = step;
  b.phase[0] = pe__py_body_phase(pe_body_chunk_dir(chunk));
  pe__py_call *k = c && c->gen == sb->gen ? call_get(d, &b) : NULL;
  if (!k) {
    pe__py_inflight_give(be, w);
    if (c && c->gen == sb->gen)
      return pe__exchange_fail(ex, PE_ERR_NOMEM, "out of memory");
    sb->worker_done = true;
    return pe__exchange_fail(ex, PE_ERR_WORKER,
                             "python worker %zu was replaced in the middle of the body (its "
                             "state of the body is lost)",
                             w->index);
  }
  Policyexec__V1__StreamChunk sc = POLICYEXEC__V1__STREAM_CHUNK__INIT;
  sc.body_id = sb->body_id;
  sc.last = pe_body_chunk_is_last(chunk) != 0;
  c->stream = &sc;
  c->stream_data = pe_body_chunk_data(chunk);
  rc = pe__py_encode_run(c, ex, &b, &k->id);
  c->stream = NULL;
  if (rc == PE_OK)
    rc = pe__py_conn_flush(c);
  if (rc < 0) {
    char why[PE__ERRMSG_SIZE];
    pe__errmsg_set(why, "%s", c->why);
    call_put(d, k);
    pe__py_inflight_give(be, w);
    if (rc != PE_ERR_WORKER)
      return pe__exchange_fail(ex, rc, "cannot send the chunk: %s", why);
    pe__py_worker_fail(w, c->gen, why);
    conn_retire(d, c);
    sb->worker_done = true;
    return pe__exchange_fail(ex, PE_ERR_WORKER, "python worker %zu crashed: %s", w->index, why);
  }
  watch_out(d, c, rc == PE_PENDING);
  k->chunk = chunk;
  k->sb = sb;
  return call_wait(d, c, k, ex, w, &b);
}

/* ---- dispatching ---- */

/* The call that a reply with this id answers, or NULL. */
static pe__py_call *call_find(const pe__py_conn *c, uint64_t id) {
  for (pe__py_call *k = c->head; k; k = k->next)
    if (k->id == id)
      return k;
  return NULL;
}

static void call_unlink(pe__py_conn *c, pe__py_call *k) {
  if (k->prev)
    k->prev->next = k->next;
  else
    c->head = k->next;
  if (k->next)
    k->next->prev = k->prev;
  else
    c->tail = k->prev;
  k->next = k->prev = NULL;
  c->calls--;
}

static int process_conn(pe__py_dstate *d, pe__py_conn *c) {
  if (c->fd < 0)
    return 0;
  if (c->out_off < c->out.len) {
    int rc = pe__py_conn_flush(c);
    if (rc == PE_ERR_WORKER)
      return conn_fail(d, c, PE_ERR_WORKER, PE_STEP_CRASHED, c->why, 0, c->why);
    watch_out(d, c, rc == PE_PENDING);
  }
  if (pe__py_conn_fill(c) != PE_OK)
    return conn_fail(d, c, PE_ERR_WORKER, PE_STEP_CRASHED, c->why, 0, c->why);
  int completed = 0;
  char why[PE__ERRMSG_SIZE];
  for (;;) {
    pe__py_response *resp;
    int rc = pe__py_conn_next(c, &resp);
    if (rc == PE_PENDING)
      break;
    if (rc != PE_OK)
      return completed + conn_fail(d, c, PE_ERR_WORKER, PE_STEP_CRASHED, c->why, 0, c->why);
    pe__py_call *k = call_find(c, resp->id);
    if (!k) {
      pe__errmsg_set(why, "unexpected reply id %llu", (unsigned long long)resp->id);
      rc = PE_ERR_WORKER;
    } else if (k->ex && !k->chunk) {
      rc = pe__py_check_reply(resp, &k->batch, k->done, why);
    } /* else a chunk (checked below), or forgotten or cancelled: dropped */
    if (rc != PE_OK) {
      pe__py_conn_consume(c);
      return completed + conn_fail(d, c, PE_ERR_WORKER, PE_STEP_CRASHED, why, 0, why);
    }
    if (k->chunk) {
      call_unlink(c, k);
      pe__py_inflight_give(d->be, k->worker);
      bool lied = false;
      int step_rc = k->ex ? pe__py_stream_apply(k->ex, k->chunk, resp, k->sb, &lied) : PE_OK;
      pe__py_conn_consume(c);
      if (k->abort_body)
        queue_abort(d, c, k->abort_body); /* after the chunk that made the state */
      if (lied) {
        pe__errmsg_set(why, "%s", k->ex->errmsg);
        k->sb->worker_done = true;
        completed += conn_fail(d, c, PE_ERR_WORKER, PE_STEP_CRASHED, why, 0, why);
        return completed + complete_stream(d, k, PE_ERR_WORKER);
      }
      completed += complete_stream(d, k, step_rc);
      if (c->fd < 0)
        return completed;
      continue;
    }
    if (pe__py_reply_partial(resp)) {
      /* A progress report: those steps are done; the call goes on. */
      if (k->ex)
        k->done += pe__py_apply_reply(k->ex, &k->batch, k->done, resp);
      else
        k->done += resp->run->n_steps;
      pe__py_conn_consume(c);
      continue;
    }
    call_unlink(c, k);
    pe__py_inflight_give(d->be, k->worker);
    if (k->ex)
      pe__py_apply_reply(k->ex, &k->batch, k->done, resp);
    pe__py_conn_consume(c);
    completed += complete(d, k);
    if (c->fd < 0)
      return completed; /* a callback's failure closed it */
  }
  if (c->eof)
    completed += conn_fail(d, c, PE_ERR_WORKER, PE_STEP_CRASHED, "worker closed the connection", 0,
                           "its connection closed");
  else if (!c->calls && d->slots[c->worker->index] != c) {
    list_remove(&d->retired, c); /* retired and drained: recycle */
    conn_shut(d, c);
    c->next = d->spare;
    d->spare = c;
  }
  return completed;
}

static int conn_ready(pe__watch *w, uint32_t events) {
  (void)events;
  pe__py_conn *c = (pe__py_conn *)(void *)((char *)w - offsetof(pe__py_conn, watch));
  return process_conn(c->ds, c);
}

/* Call k of c passed its deadline and some step of its batch is a
 * coroutine: its run gets the timeout now, the worker gets a Cancel and
 * the grace period to answer. Returns the number of runs completed. */
static int call_cancel(pe__py_dstate *d, pe__py_conn *c, pe__py_call *k, uint64_t now) {
  pe_exchange *ex = k->ex;
  k->ex = NULL;
  k->cancelled = true;
  k->deadline_ns = now + (uint64_t)PE__PY_CANCEL_GRACE_MS * 1000000u;
  int rc = pe__py_queue_cancel(c, k->id);
  if (rc == PE_OK)
    rc = pe__py_conn_flush(c);
  if (rc == PE_PENDING)
    watch_out(d, c, true);
  else if (rc != PE_OK)
    k->deadline_ns = now; /* could not send it: the next tick kills */
  if (!ex)
    return 0;
  char why[PE__ERRMSG_SIZE];
  pe__errmsg_set(why, "no answer from python worker %zu in time (coroutine cancelled)",
                 c->worker->index);
  pe__py_fail_steps(ex, &k->batch, k->done, PE_ERR_TIMEOUT, PE_STEP_TIMEOUT, why);
  return pe__dispatch_complete(ex);
}

/* Handles the first call of c past its deadline, if any: 1 if one was
 * handled (c's list may have changed: look again), 0 if none is due. */
static int conn_expire(pe__py_dstate *d, pe__py_conn *c, uint64_t now, int *completed) {
  pe__py_call *k = c ? c->head : NULL;
  while (k && k->deadline_ns > now)
    k = k->next;
  if (!k)
    return 0;
  if (!k->cancelled && !k->chunk && pe__py_batch_may_wait(&k->batch)) {
    *completed += call_cancel(d, c, k, now);
    return 1;
  }
  /* A synchronous step is stuck, or a cancelled call got no answer in its
   * grace period: kill the worker; the other calls on this connection
   * crash with it. Unless the worker is busy creating an instance: that
   * has its own timeout, and the calls only fail. */
  bool creating = atomic_load(&c->worker->creating) != NULL;
  const char *kill = k->cancelled ? "a cancelled python step did not end in time"
                                  : "a python step exceeded its timeout";
  *completed += conn_fail(d, c, PE_ERR_WORKER, PE_STEP_CRASHED,
                          creating ? "the worker was busy creating an instance"
                                   : "killed because another step on it timed out",
                          now, creating ? NULL : kill);
  return 1;
}

int pe__py_dispatcher_timer(pe__dstate *ds, uint64_t now) {
  pe__py_dstate *d = py_ds(ds);
  int completed = 0;
  /* Calls of replaced workers: their process is gone. */
  while (d->retired)
    completed += conn_fail(d, d->retired, PE_ERR_WORKER, PE_STEP_CRASHED,
                           "its process was replaced while the batch was in flight", 0, NULL);
  for (size_t i = 0; i < d->nslots; i++) {
    /* Replies already in the socket count: the timer's event may come
     * before the connection's in the same dispatch (or the host may have
     * dispatched late), and a call answered in time must not be expired. */
    const pe__py_call *k = d->slots[i] ? d->slots[i]->head : NULL;
    while (k && k->deadline_ns > now)
      k = k->next;
    if (k)
      completed += process_conn(d, d->slots[i]);
    while (conn_expire(d, d->slots[i], now, &completed))
      ;
  }
  timer_rearm(d);
  return completed;
}

static bool forget_in(pe__py_conn *c, const pe_exchange *ex) {
  for (pe__py_call *k = c ? c->head : NULL; k; k = k->next)
    if (k->ex == ex) {
      k->ex = NULL; /* the call stays in line: its reply is still due */
      if (k->sb) {
        /* The body's state slot goes with ex: the worker's state is
         * aborted here once the chunk is answered, on this connection so
         * that the abort comes after the chunk. */
        if (!k->sb->worker_done && k->sb->gen == c->gen)
          k->abort_body = k->sb->body_id;
        k->sb->worker_done = true;
        k->sb = NULL;
      }
      return true;
    }
  return false;
}

bool pe__py_forget(pe__dstate *ds, pe_exchange *ex) {
  pe__py_dstate *d = py_ds(ds);
  bool found = false;
  for (size_t i = 0; i < d->nslots && !found; i++)
    found = forget_in(d->slots[i], ex);
  for (pe__py_conn *c = d->retired; c && !found; c = c->next)
    found = forget_in(c, ex);
  return found;
}

/* ---- lifetime ---- */

int pe__py_dispatcher_attach(pe__backend *self, pe_dispatcher *dispatcher, pe__dstate **out) {
  pe__py_backend *be = (pe__py_backend *)(void *)self;
  pe__py_dstate *d = pe__calloc(be->mem, 1, sizeof *d);
  if (!d)
    return PE_ERR_NOMEM;
  d->d = dispatcher;
  d->be = be;
  d->mem = be->mem;
  *out = (pe__dstate *)(void *)d;
  return PE_OK;
}

static void conn_list_free(pe__py_dstate *d, pe__py_conn *c) {
  while (c) {
    pe__py_conn *next = c->next;
    conn_shut(d, c);
    pe__py_conn_free(c);
    pe__free(d->mem, c);
    c = next;
  }
}

void pe__py_dispatcher_detach(pe__dstate *ds) {
  pe__py_dstate *d = py_ds(ds);
  /* Cancel pending runs; the workers stay (they did nothing wrong). */
  while (d->retired)
    conn_fail(d, d->retired, PE_ERR_WORKER, PE_STEP_CRASHED, "dispatcher freed", 0, NULL);
  for (size_t i = 0; i < d->nslots; i++)
    if (d->slots[i] && d->slots[i]->calls)
      conn_fail(d, d->slots[i], PE_ERR_WORKER, PE_STEP_CRASHED, "dispatcher freed", 0, NULL);
  for (size_t i = 0; i < d->nslots; i++)
    conn_list_free(d, d->slots[i]);
  conn_list_free(d, d->spare);
  while (d->free_calls) {
    pe__py_call *k = d->free_calls;
    d->free_calls = k->next;
    pe__free(d->mem, k);
  }
  pe__free(d->mem, d->slots);
  pe__free(d->mem, d);
}
