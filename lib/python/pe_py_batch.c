/* The table's run_batch (blocking runs): one round trip per batch on a connection
 * borrowed from the chosen worker's pool of idle connections. The pool's
 * mutex is held only to pop or push a connection; each connection keeps
 * its encode and decode buffers, so a warm round trip allocates nothing. */
#include "pe_py.h"

#include <stdio.h>

void pe__py_conn_discard(pe__py_backend *be, pe__py_conn *c) {
  pe__py_conn_free(c);
  pe__free(be->mem, c);
}

pe__py_conn *pe__py_pool_take(pe__py_backend *be, pe__py_worker *w) {
  unsigned gen = atomic_load(&w->gen);
  pthread_mutex_lock(&w->pool_lock);
  pe__py_conn *c = w->idle;
  if (c)
    w->idle = c->next;
  pthread_mutex_unlock(&w->pool_lock);
  if (c && c->gen == gen)
    return c;
  if (c)
    pe__py_conn_discard(be, c);
  if (!(c = pe__calloc(be->mem, 1, sizeof *c)))
    return NULL;
  pe__py_conn_init(c, be->mem, be->max_message);
  c->shm_threshold = be->cfg.shm_threshold;
  c->worker = w;
  c->gen = gen;
  uint64_t deadline = pe__now_ns() + (uint64_t)be->cfg.startup_timeout_ms * 1000000u;
  if (pe__py_conn_connect(c, w->sock_path) != PE_OK ||
      pe__py_conn_hello(c, deadline, NULL) != PE_OK) {
    pe__py_conn_discard(be, c);
    pe__py_worker_fail(w, gen, "a new connection to it failed");
    return NULL;
  }
  return c;
}

void pe__py_pool_put(pe__py_backend *be, pe__py_worker *w, pe__py_conn *c) {
  if (c->gen != atomic_load(&w->gen)) {
    pe__py_conn_discard(be, c);
    return;
  }
  pthread_mutex_lock(&w->pool_lock);
  c->next = w->idle;
  w->idle = c;
  pthread_mutex_unlock(&w->pool_lock);
}

/* Request id on c timed out: when its batch may be awaiting a coroutine,
 * asks the worker to cancel it and waits the grace period for its (dropped)
 * answer. Returns whether c is clean again (the worker is not stuck). */
static bool cancel_in_time(pe__py_conn *c, uint64_t id, const pe__batch *b) {
  if (!pe__py_batch_may_wait(b) || pe__py_queue_cancel(c, id) != PE_OK)
    return false;
  uint64_t grace = pe__now_ns() + (uint64_t)PE__PY_CANCEL_GRACE_MS * 1000000u;
  pe__py_response *resp;
  bool unsent;
  if (pe__py_conn_wait(c, id, grace, &resp, &unsent) != PE_OK)
    return false;
  pe__py_conn_consume(c);
  return true;
}

/* One attempt on one worker. Returns PE_OK when the batch's outcome has
 * been applied (successes and failures alike), or a negative code when no
 * step ran; then *retry says whether the request never reached the worker,
 * so that another may take it. */
static int attempt(pe__py_backend *be, pe__py_worker *w, pe_exchange *ex, const pe__batch *b,
                   bool last_try, bool *retry) {
  *retry = false;
  int rc = pe__py_inflight_take(be, w);
  if (rc != PE_OK)
    return rc;
  pe__py_conn *c = pe__py_pool_take(be, w);
  if (!c) {
    pe__py_inflight_give(be, w);
    *retry = !last_try;
    return PE_ERR_WORKER;
  }
  uint64_t id;
  uint64_t start = pe__now_ns();
  uint64_t deadline = pe__py_batch_deadline(b, start);
  rc = pe__py_encode_run(c, ex, b, &id);
  if (rc != PE_OK) {
    pe__py_inflight_give(be, w);
    pe__py_pool_put(be, w, c); /* nothing was written: the connection is intact */
    return rc;
  }
  pe__py_response *resp = NULL;
  bool unsent;
  char why[PE__ERRMSG_SIZE];
  size_t done = 0; /* steps whose outcome partial replies gave already */
  for (;;) {
    rc = pe__py_conn_wait(c, id, deadline, &resp, &unsent);
    if (rc == PE_OK && (rc = pe__py_check_reply(resp, b, done, why)) != PE_OK)
      pe__py_conn_consume(c);
    else if (rc != PE_OK)
      pe__errmsg_set(why, "%s", c->why);
    if (rc != PE_OK || !pe__py_reply_partial(resp))
      break;
    /* A progress report: those steps are done, whatever happens next. */
    done += pe__py_apply_reply(ex, b, done, resp);
    pe__py_conn_consume(c);
  }
  pe__py_inflight_give(be, w);
  if (rc == PE_OK) {
    pe__py_apply_reply(ex, b, done, resp);
    pe__py_conn_consume(c);
    pe__py_pool_put(be, w, c);
    return PE_OK;
  }
  if (rc == PE_ERR_TIMEOUT && cancel_in_time(c, id, b)) {
    /* A coroutine step was cancelled: the worker lives on (pe_py_cancel.c). */
    pe__py_pool_put(be, w, c);
    pe__errmsg_set(why, "no answer from python worker %zu within %llu ms (coroutine cancelled)",
                   w->index, (unsigned long long)((deadline - start) / 1000000u));
    pe__py_fail_steps(ex, b, done, PE_ERR_TIMEOUT, PE_STEP_TIMEOUT, why);
    return PE_OK;
  }
  unsigned gen = c->gen;
  pe__py_conn_discard(be, c);
  if (rc == PE_ERR_TIMEOUT) {
    const pe__policy *creating = atomic_load(&w->creating);
    if (creating) {
      /* Not stuck: busy with a constructor, which has its own timeout. */
      pe__errmsg_set(why,
                     "python worker %zu was busy creating an instance of %s@%s for longer than "
                     "the batch's deadline",
                     w->index, creating->name, creating->version);
      pe__py_fail_steps(ex, b, done, PE_ERR_TIMEOUT, PE_STEP_TIMEOUT, why);
      return PE_OK;
    }
    pe__py_worker_fail(w, gen, "a python step exceeded its timeout and could not be interrupted");
    pe__errmsg_set(why,
                   "no answer from python worker %zu within %llu ms, the steps' timeouts and a "
                   "grace (worker replaced)",
                   w->index, (unsigned long long)((deadline - start) / 1000000u));
    pe__py_fail_steps(ex, b, done, PE_ERR_TIMEOUT, PE_STEP_TIMEOUT, why);
    return PE_OK;
  }
  if (rc == PE_ERR_WORKER) {
    pe__py_worker_fail(w, gen, why);
    if (unsent && !last_try) {
      *retry = true; /* the worker never saw it: safe to retry */
      return PE_ERR_WORKER;
    }
    char msg[PE__ERRMSG_SIZE];
    pe__errmsg_set(msg, "python worker %zu crashed or broke the protocol: %s", w->index, why);
    pe__py_fail_steps(ex, b, done, PE_ERR_WORKER, PE_STEP_CRASHED, msg);
    return PE_OK;
  }
  return rc;
}

int pe__py_run_batch(pe__backend *self, pe_exchange *ex, const pe__batch *b) {
  pe__py_backend *be = (pe__py_backend *)(void *)self;
  /* Two tries: a worker that died while idle is found out only when the
   * request cannot be written, and then its replacement (or another
   * worker) gets the request. */
  for (int i = 0; i < 2; i++) {
    pe__py_worker *w = pe__py_pick_worker(be);
    if (!w) {
      pe__py_fail_steps(ex, b, 0, PE_ERR_WORKER, PE_STEP_CRASHED,
                        "no python worker is available (restarting after failures)");
      return PE_OK;
    }
    bool retry;
    int rc = attempt(be, w, ex, b, i == 1, &retry);
    if (!retry)
      return rc;
  }
  return PE_ERR_WORKER;
}
