/* Non-blocking runs. A dispatcher belongs to one host thread: it has its
 * own connection to each worker (connected lazily, reconnected lazily after
 * a worker is replaced), one epoll fd over them, and one timerfd armed to
 * the earliest deadline of its calls. Requests are pipelined: a worker
 * answers the requests of one connection in order, so each connection
 * keeps a FIFO of the calls it awaits. Nothing here takes a lock; the
 * in-flight budget and worker choice use atomics.
 *
 * Connection objects are never freed while the dispatcher lives (closed
 * ones are kept for reuse), so an event that names one stays safe to read
 * even if a callback closed it meanwhile: processing just finds nothing. */
#include "pe_py.h"

#include <errno.h>
#include <stdio.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <unistd.h>

#define EVENTS_PER_CALL 64

struct pe__py_call {
  pe__py_call *next;
  pe_exchange *ex;
  pe__batch batch; /* copied: the runner's is on its stack */
  uint64_t id;
  uint64_t deadline_ns;
  pe__py_worker *worker;
  size_t done; /* steps whose outcome partial replies gave already */
};

struct pe_dispatcher {
  pe_engine *engine; /* a reference */
  const pe_mem *mem;
  int epfd, timerfd;
  pe__py_conn **slots; /* current connection per worker, or NULL */
  size_t nslots;
  pe__py_conn *retired; /* stale connections with calls still listed */
  pe__py_conn *spare;   /* closed, kept for reuse */
  pe__py_call *free_calls;
  size_t pending;
  uint64_t timer_at; /* armed expiry (CLOCK_MONOTONIC ns), 0: none */
  bool closing;
};

_Static_assert(sizeof(void *) == sizeof(pe_run_done_fn), "run state keeps done as void *");

/* ---- timer ---- */

static void timer_set(pe_dispatcher *d, uint64_t at) {
  struct itimerspec its = {{0, 0}, {(time_t)(at / 1000000000u), (long)(at % 1000000000u)}};
  timerfd_settime(d->timerfd, TFD_TIMER_ABSTIME, &its, NULL);
  d->timer_at = at;
}

/* Arms the timer for `at` unless it already fires earlier. */
static void timer_arm(pe_dispatcher *d, uint64_t at) {
  if (d->timer_at && d->timer_at <= at)
    return;
  timer_set(d, at ? at : 1);
}

/* Makes the fd readable at once, so that the host calls dispatch. */
static void timer_arm_now(pe_dispatcher *d) {
  timer_arm(d, 1);
}

static void timer_rearm(pe_dispatcher *d) {
  uint64_t earliest = 0;
  for (size_t i = 0; i < d->nslots; i++)
    for (const pe__py_call *k = d->slots[i] ? d->slots[i]->head : NULL; k; k = k->next)
      if (!earliest || k->deadline_ns < earliest)
        earliest = k->deadline_ns;
  for (const pe__py_conn *c = d->retired; c; c = c->next)
    for (const pe__py_call *k = c->head; k; k = k->next)
      if (!earliest || k->deadline_ns < earliest)
        earliest = k->deadline_ns;
  d->timer_at = 0;
  if (earliest)
    timer_set(d, earliest);
  else {
    struct itimerspec off = {{0, 0}, {0, 0}};
    timerfd_settime(d->timerfd, 0, &off, NULL);
  }
}

/* ---- calls ---- */

static pe__py_call *call_get(pe_dispatcher *d, const pe__batch *b) {
  pe__py_call *k = d->free_calls;
  if (k)
    d->free_calls = k->next;
  else if (!(k = pe__calloc(d->mem, 1, sizeof *k)))
    return NULL;
  pe__batch_copy(&k->batch, b);
  k->next = NULL;
  k->done = 0;
  return k;
}

static void call_put(pe_dispatcher *d, pe__py_call *k) {
  k->ex = NULL;
  k->next = d->free_calls;
  d->free_calls = k;
}

/* Ends a call whose outcome has been applied: resumes its run and, if the
 * phase is complete, calls its done callback. Returns 1 if it completed.
 * A call whose exchange was freed meanwhile (ex NULL) just ends. */
static int complete(pe_dispatcher *d, pe__py_call *k) {
  pe_exchange *ex = k->ex;
  call_put(d, k);
  if (!ex)
    return 0;
  d->pending--;
  ex->run.pending = false;
  int rc = pe__run_continue(ex);
  if (rc == PE_PENDING)
    return 0;
  pe_run_done_fn done;
  memcpy(&done, &ex->run.done, sizeof done);
  void *ud = ex->run.done_ud;
  ex->run.dispatcher = NULL;
  ex->run.done = NULL;
  ex->run.done_ud = NULL;
  done(ex, rc, ud);
  return 1;
}

/* ---- connections ---- */

static void conn_shut(pe_dispatcher *d, pe__py_conn *c) {
  if (c->fd >= 0)
    epoll_ctl(d->epfd, EPOLL_CTL_DEL, c->fd, NULL);
  pe__py_conn_close(c);
}

static void watch_out(pe_dispatcher *d, pe__py_conn *c, bool on) {
  if (c->watching_out == on || c->fd < 0)
    return;
  struct epoll_event ev = {.events = EPOLLIN | (on ? EPOLLOUT : 0), .data.ptr = c};
  epoll_ctl(d->epfd, EPOLL_CTL_MOD, c->fd, &ev);
  c->watching_out = on;
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
static void conn_retire(pe_dispatcher *d, pe__py_conn *c) {
  d->slots[c->worker->index] = NULL;
  if (c->calls) {
    c->next = d->retired;
    d->retired = c;
    timer_arm_now(d);
  } else {
    conn_shut(d, c);
    c->next = d->spare;
    d->spare = c;
  }
}

/* Closes c and fails every call it awaits: those past their deadline (when
 * now_ns is set) as timed out, the others with rc / outcome. Kills the
 * worker when kill_reason is set. Returns the number of runs completed. */
static int conn_fail(pe_dispatcher *d, pe__py_conn *c, int rc, pe_step_outcome outcome,
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
    pe__py_inflight_give(d->engine->backend, k->worker);
    pe_exchange *ex = k->ex;
    if (!ex) {
      call_put(d, k);
      continue;
    }
    if (now_ns && k->deadline_ns <= now_ns) {
      pe__errmsg_set(timed_out, "no answer from python worker %zu in time%s", w->index,
                     kill_reason ? " (worker replaced)" : "");
      pe__py_fail_steps(ex, &k->batch, k->done, PE_ERR_TIMEOUT, PE_STEP_TIMEOUT, timed_out);
    } else {
      pe__py_fail_steps(ex, &k->batch, k->done, rc, outcome, crashed);
    }
    completed += complete(d, k);
  }
  return completed;
}

/* The dispatcher's connection to w's current process, connecting (and
 * saying Hello, blocking) if needed. NULL if w cannot be reached. */
static pe__py_conn *slot_conn(pe_dispatcher *d, pe__py_backend *be, pe__py_worker *w) {
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
  }
  conn_shut(d, c);
  c->next = NULL;
  c->worker = w;
  c->gen = gen;
  d->slots[w->index] = c;
  uint64_t deadline = pe__now_ns() + (uint64_t)be->cfg.startup_timeout_ms * 1000000u;
  struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
  if (pe__py_conn_connect(c, w->sock_path) != PE_OK ||
      pe__py_conn_hello(c, deadline, NULL) != PE_OK ||
      epoll_ctl(d->epfd, EPOLL_CTL_ADD, c->fd, &ev) != 0) {
    conn_shut(d, c);
    pe__py_worker_fail(w, gen, "a new connection to it failed");
    return NULL;
  }
  return c;
}

static int ensure_slots(pe_dispatcher *d, const pe__py_backend *be) {
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
static int submit_to(pe_dispatcher *d, pe__py_backend *be, pe__py_worker *w, pe_exchange *ex,
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
  k->ex = ex;
  k->worker = w;
  k->deadline_ns = pe__py_batch_deadline(b, pe__now_ns());
  if (c->tail)
    c->tail->next = k;
  else
    c->head = k;
  c->tail = k;
  c->calls++;
  d->pending++;
  timer_arm(d, k->deadline_ns);
  ex->run.pending = true;
  return PE_PENDING;
}

int pe__py_dispatch_submit(pe_dispatcher *d, pe_exchange *ex, const pe__batch *b) {
  if (d->closing)
    return PE_ERR_STATE;
  pe__py_backend *be = d->engine->backend;
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

/* ---- dispatching ---- */

static int process_conn(pe_dispatcher *d, pe__py_conn *c) {
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
    pe__py_call *k = c->head;
    if (!k || resp->id != k->id) {
      pe__errmsg_set(why, "unexpected reply id %llu", (unsigned long long)resp->id);
      rc = PE_ERR_WORKER;
    } else {
      rc = pe__py_check_reply(resp, &k->batch, k->done, why);
    }
    if (rc != PE_OK) {
      pe__py_conn_consume(c);
      return completed + conn_fail(d, c, PE_ERR_WORKER, PE_STEP_CRASHED, why, 0, why);
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
    c->head = k->next;
    if (!c->head)
      c->tail = NULL;
    c->calls--;
    pe__py_inflight_give(d->engine->backend, k->worker);
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

static int process_timer(pe_dispatcher *d) {
  uint64_t ticks;
  while (read(d->timerfd, &ticks, sizeof ticks) < 0 && errno == EINTR) {
  }
  int completed = 0;
  /* Calls of replaced workers: their process is gone. */
  while (d->retired)
    completed += conn_fail(d, d->retired, PE_ERR_WORKER, PE_STEP_CRASHED,
                           "its process was replaced while the batch was in flight", 0, NULL);
  uint64_t now = pe__now_ns();
  for (size_t i = 0; i < d->nslots; i++) {
    pe__py_conn *c = d->slots[i];
    bool expired = false;
    for (const pe__py_call *k = c ? c->head : NULL; k && !expired; k = k->next)
      expired = k->deadline_ns <= now;
    /* The worker is stuck in a step: kill it; the calls behind the stuck
     * one on this connection crash with it. */
    /* (Unless it is busy creating an instance: that has its own timeout.) */
    bool creating = expired && atomic_load(&c->worker->creating) != NULL;
    if (expired)
      completed += conn_fail(d, c, PE_ERR_WORKER, PE_STEP_CRASHED,
                             creating ? "the worker was busy creating an instance"
                                      : "killed because another step on it timed out",
                             now, creating ? NULL : "a python step exceeded its timeout");
  }
  timer_rearm(d);
  return completed;
}

int pe_dispatcher_dispatch(pe_dispatcher *d) {
  if (!d)
    return PE_ERR_INVALID_ARGUMENT;
  struct epoll_event ev[EVENTS_PER_CALL];
  int n;
  while ((n = epoll_wait(d->epfd, ev, EVENTS_PER_CALL, 0)) < 0 && errno == EINTR) {
  }
  int completed = 0;
  for (int i = 0; i < n; i++)
    completed += ev[i].data.ptr == d ? process_timer(d) : process_conn(d, ev[i].data.ptr);
  return completed;
}

static bool forget_in(pe__py_conn *c, const pe_exchange *ex) {
  for (pe__py_call *k = c ? c->head : NULL; k; k = k->next)
    if (k->ex == ex) {
      k->ex = NULL; /* the call stays in line: its reply is still due */
      return true;
    }
  return false;
}

bool pe__dispatch_forget(void *dispatcher, pe_exchange *ex) {
  pe_dispatcher *d = dispatcher;
  bool found = false;
  for (size_t i = 0; i < d->nslots && !found; i++)
    found = forget_in(d->slots[i], ex);
  for (pe__py_conn *c = d->retired; c && !found; c = c->next)
    found = forget_in(c, ex);
  if (found)
    d->pending--;
  return found;
}

/* ---- lifetime ---- */

int pe_dispatcher_new(pe_dispatcher **out, pe_engine *engine) {
  if (!out || !engine)
    return PE_ERR_INVALID_ARGUMENT;
  const pe_mem *mem = pe__engine_mem(engine);
  pe_dispatcher *d = pe__calloc(mem, 1, sizeof *d);
  if (!d)
    return PE_ERR_NOMEM;
  d->mem = mem;
  d->epfd = epoll_create1(EPOLL_CLOEXEC);
  d->timerfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
  struct epoll_event ev = {.events = EPOLLIN, .data.ptr = d};
  if (d->epfd < 0 || d->timerfd < 0 || epoll_ctl(d->epfd, EPOLL_CTL_ADD, d->timerfd, &ev) != 0) {
    if (d->epfd >= 0)
      close(d->epfd);
    if (d->timerfd >= 0)
      close(d->timerfd);
    pe__free(mem, d);
    return PE_ERR_IO;
  }
  pe__engine_ref(engine);
  d->engine = engine;
  *out = d;
  return PE_OK;
}

static void conn_list_free(pe_dispatcher *d, pe__py_conn *c) {
  while (c) {
    pe__py_conn *next = c->next;
    conn_shut(d, c);
    pe__py_conn_free(c);
    pe__free(d->mem, c);
    c = next;
  }
}

void pe_dispatcher_free(pe_dispatcher *d) {
  if (!d)
    return;
  d->closing = true;
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
  close(d->epfd);
  close(d->timerfd);
  pe_engine *e = d->engine;
  pe__free(d->mem, d);
  pe__engine_unref(e);
}

int pe_dispatcher_fd(const pe_dispatcher *d) {
  return d ? d->epfd : PE_ERR_INVALID_ARGUMENT;
}

size_t pe_dispatcher_pending(const pe_dispatcher *d) {
  return d ? d->pending : 0;
}

/* Whether running phases first..last of `chain` would send anything to a
 * worker. */
static bool phases_have_python(const pe_chain *chain, pe_phase first, pe_phase last) {
  for (unsigned p = first; p <= last; p++)
    for (size_t i = 0; i < chain->order_len[p]; i++)
      if (chain->steps[chain->order[p][i]].policy->kind != PE__KIND_NATIVE)
        return true;
  return false;
}

int pe_chain_run_phases_async(const pe_chain *chain, pe_exchange *ex, pe_phase first, pe_phase last,
                              pe_dispatcher *d, pe_run_done_fn done, void *user_data) {
  if (!chain || !ex || !d || !done || (unsigned)first >= PE_PHASE_COUNT ||
      (unsigned)last >= PE_PHASE_COUNT || first > last || ex->engine != chain->engine ||
      d->engine != ex->engine)
    return PE_ERR_INVALID_ARGUMENT;
  if (ex->run.pending)
    return pe__exchange_fail(ex, PE_ERR_STATE,
                             "pe_chain_run_async: a phase of this exchange is pending");
  if (ex->run.in_step)
    return pe__exchange_fail(ex, PE_ERR_STATE,
                             "pe_chain_run_async: called from a policy running on this exchange");
  if (d->closing)
    return PE_ERR_STATE;
  if (ex->verdict == PE_VERDICT_RESPOND)
    return PE_OK; /* answered already: later phases do nothing */
  pe__py_backend *be = ex->engine->backend;
  if (ex->engine->backend_ops == &pe__py_backend_ops && phases_have_python(chain, first, last) &&
      (size_t)atomic_load_explicit(&be->inflight, memory_order_relaxed) >= be->cfg.max_in_flight)
    return pe__exchange_fail(ex, PE_ERR_BUSY, "pe_chain_run_async: %zu python calls in flight",
                             be->cfg.max_in_flight);
  ex->run.chain = chain;
  ex->run.phase = first;
  ex->run.last = last;
  ex->run.pos = 0;
  ex->run.dispatcher = d;
  memcpy(&ex->run.done, &done, sizeof done);
  ex->run.done_ud = user_data;
  int rc = pe__run_continue(ex);
  if (rc == PE_PENDING)
    return PE_PENDING;
  ex->run.dispatcher = NULL;
  ex->run.done = NULL;
  ex->run.done_ud = NULL;
  return rc;
}

int pe_chain_run_async(const pe_chain *chain, pe_exchange *ex, pe_phase phase, pe_dispatcher *d,
                       pe_run_done_fn done, void *user_data) {
  return pe_chain_run_phases_async(chain, ex, phase, phase, d, done, user_data);
}
