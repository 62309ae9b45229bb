/* Non-blocking runs and the dispatcher that completes them. A dispatcher
 * belongs to one host thread: one epoll fd (the one the host watches) over
 * the fds that backends register, plus one timerfd armed to the earliest
 * deadline any backend asked for. Each executor keeps its own state per
 * dispatcher (connections, calls in flight), made on first use; the core
 * only routes events to it and resumes runs when it says a batch is done.
 * Nothing here takes a lock. */
#include "pe_backend.h"

#include <errno.h>
#include <sys/timerfd.h>
#include <unistd.h>

#define EVENTS_PER_CALL 64

struct pe_dispatcher {
  pe_engine *engine; /* a reference */
  const pe_mem *mem;
  int epfd, timerfd;
  pe__watch timer_watch;
  uint64_t timer_at; /* armed expiry (CLOCK_MONOTONIC ns), 0: none */
  size_t pending;
  bool closing;
  pe__dstate *state[PE__MAX_EXECUTORS]; /* per executor, by index */
};

/* ---- services for backends ---- */

int pe__dispatcher_watch(pe_dispatcher *d, int fd, uint32_t events, pe__watch *w) {
  struct epoll_event ev = {.events = events, .data.ptr = w};
  return epoll_ctl(d->epfd, EPOLL_CTL_ADD, fd, &ev) == 0 ? PE_OK : PE_ERR_IO;
}

int pe__dispatcher_rewatch(pe_dispatcher *d, int fd, uint32_t events, pe__watch *w) {
  struct epoll_event ev = {.events = events, .data.ptr = w};
  return epoll_ctl(d->epfd, EPOLL_CTL_MOD, fd, &ev) == 0 ? PE_OK : PE_ERR_IO;
}

void pe__dispatcher_unwatch(pe_dispatcher *d, int fd) {
  epoll_ctl(d->epfd, EPOLL_CTL_DEL, fd, NULL);
}

void pe__dispatcher_arm(pe_dispatcher *d, uint64_t at_ns) {
  if (!at_ns)
    at_ns = 1;
  if (d->timer_at && d->timer_at <= at_ns)
    return;
  struct itimerspec its = {{0, 0}, {(time_t)(at_ns / 1000000000u), (long)(at_ns % 1000000000u)}};
  timerfd_settime(d->timerfd, TFD_TIMER_ABSTIME, &its, NULL);
  d->timer_at = at_ns;
}

bool pe__dispatcher_closing(const pe_dispatcher *d) {
  return d->closing;
}

const pe_mem *pe__dispatcher_mem(const pe_dispatcher *d) {
  return d->mem;
}

static size_t executor_index(const pe_engine *e, const pe__executor *x) {
  return (size_t)(x - e->executors);
}

/* The executor's state on d, attached on first use. */
static int state_of(pe_dispatcher *d, const pe__executor *x, pe__dstate **out) {
  size_t i = executor_index(d->engine, x);
  if (!d->state[i]) {
    if (!x->ops->submit || !x->ops->dispatcher_attach)
      return PE_ERR_UNSUPPORTED;
    int rc = x->ops->dispatcher_attach(x->be, d, &d->state[i]);
    if (rc != PE_OK)
      return rc;
  }
  *out = d->state[i];
  return PE_OK;
}

/* ---- runs ---- */

int pe__dispatch_submit(pe_exchange *ex, const pe__executor *x, const pe__batch *b) {
  pe_dispatcher *d = ex->run.dispatcher;
  if (d->closing)
    return PE_ERR_STATE;
  pe__dstate *ds;
  int rc = state_of(d, x, &ds);
  if (rc != PE_OK)
    return rc;
  rc = x->ops->submit(x->be, ds, ex, b);
  if (rc == PE_PENDING)
    d->pending++;
  return rc;
}

static void clear_async(pe_exchange *ex) {
  ex->run.dispatcher = NULL;
  ex->run.done = NULL;
  ex->run.done_ud = NULL;
  ex->run.stream_dir = 0;
}

bool pe__dispatch_can_stream(pe_exchange *ex, const pe__executor *x) {
  pe_dispatcher *d = ex->run.dispatcher;
  pe__dstate *ds;
  return x->ops->stream_submit && !d->closing && state_of(d, x, &ds) == PE_OK;
}

int pe__dispatch_stream_submit(pe_exchange *ex, const pe__executor *x, const pe__step *step,
                               pe_body_chunk *chunk) {
  pe_dispatcher *d = ex->run.dispatcher;
  pe__dstate *ds;
  int rc = state_of(d, x, &ds); /* attached by pe__dispatch_can_stream */
  if (rc != PE_OK)
    return pe__exchange_fail(ex, rc, "no dispatcher state for the executor: %s", pe_strerror(rc));
  rc = x->ops->stream_submit(x->be, ds, ex, step, chunk);
  if (rc == PE_PENDING) {
    d->pending++;
    ex->run.exec = x;
    ex->run.pending = true;
  }
  return rc;
}

/* The pending step of ex came back and its run went on to rc: unless it is
 * pending again, the host's callback gets the result. Returns the number of
 * runs completed. */
static int finish_or_wait(pe_exchange *ex, int rc) {
  if (rc == PE_PENDING)
    return 0;
  pe_run_done_fn done = ex->run.done;
  void *ud = ex->run.done_ud;
  clear_async(ex);
  done(ex, rc, ud);
  return 1;
}

/* No longer pending on its dispatcher: called before the run goes on. */
static void unpend(pe_exchange *ex) {
  ex->run.dispatcher->pending--;
  ex->run.pending = false;
}

int pe__dispatch_stream_done(pe_exchange *ex, int rc) {
  unpend(ex);
  return finish_or_wait(ex, pe__stream_resume(ex, rc));
}

int pe__dispatch_complete(pe_exchange *ex) {
  unpend(ex);
  return finish_or_wait(ex, pe__run_continue(ex));
}

bool pe__dispatch_forget(pe_exchange *ex) {
  pe_dispatcher *d = ex->run.dispatcher;
  const pe__executor *x = ex->run.exec;
  if (!d || !x)
    return false;
  pe__dstate *ds = d->state[executor_index(d->engine, x)];
  if (!ds || !x->ops->forget(ds, ex))
    return false;
  d->pending--;
  return true;
}

/* ---- dispatching ---- */

static int on_timer(pe__watch *w, uint32_t events) {
  (void)events;
  pe_dispatcher *d = (pe_dispatcher *)((char *)w - offsetof(pe_dispatcher, timer_watch));
  uint64_t ticks;
  while (read(d->timerfd, &ticks, sizeof ticks) < 0 && errno == EINTR) {
  }
  d->timer_at = 0; /* fired: backends arm it again for what they still wait for */
  uint64_t now = pe__now_ns();
  int completed = 0;
  const pe_engine *e = d->engine;
  size_t n = atomic_load_explicit(&e->executor_count, memory_order_acquire);
  for (size_t i = 0; i < n; i++)
    if (d->state[i])
      completed += e->executors[i].ops->dispatcher_timer(d->state[i], now);
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
  for (int i = 0; i < n; i++) {
    pe__watch *w = ev[i].data.ptr;
    completed += w->ready(w, ev[i].events);
  }
  return completed;
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
  d->timer_watch.ready = on_timer;
  d->epfd = epoll_create1(EPOLL_CLOEXEC);
  d->timerfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
  if (d->epfd < 0 || d->timerfd < 0 ||
      pe__dispatcher_watch(d, d->timerfd, EPOLLIN, &d->timer_watch) != PE_OK) {
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

void pe_dispatcher_free(pe_dispatcher *d) {
  if (!d)
    return;
  d->closing = true;
  /* Each backend cancels its pending runs (their done callbacks run now)
   * and lets go of its fds; the executors themselves stay. */
  const pe_engine *e = d->engine;
  size_t n = atomic_load_explicit(&e->executor_count, memory_order_acquire);
  for (size_t i = 0; i < n; i++)
    if (d->state[i])
      e->executors[i].ops->dispatcher_detach(d->state[i]);
  close(d->epfd);
  close(d->timerfd);
  pe_engine *engine = d->engine;
  pe__free(d->mem, d);
  pe__engine_unref(engine);
}

int pe_dispatcher_fd(const pe_dispatcher *d) {
  return d ? d->epfd : PE_ERR_INVALID_ARGUMENT;
}

size_t pe_dispatcher_pending(const pe_dispatcher *d) {
  return d ? d->pending : 0;
}

/* PE_OK when every executor that phases first..last of chain would send a
 * batch to has room for one more; else its PE_ERR_BUSY (message in ex). */
static int admit(const pe_chain *chain, pe_exchange *ex, pe_phase first, pe_phase last) {
  const pe__executor *checked = NULL;
  for (unsigned p = first; p <= last; p++)
    for (size_t i = 0; i < chain->order_len[p]; i++) {
      const pe__step *s = &chain->steps[chain->order[p][i]];
      if (s->policy->kind == PE__KIND_NATIVE)
        continue;
      const pe__executor *x = pe__step_executor(ex->engine, s);
      if (!x || x == checked || !x->ops->admit)
        continue;
      char why[PE__ERRMSG_SIZE];
      if (x->ops->admit(x->be, why) != PE_OK)
        return pe__exchange_fail(ex, PE_ERR_BUSY, "pe_chain_run_async: executor '%s': %s", x->name,
                                 why);
      checked = x;
    }
  return PE_OK;
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
  int rc = admit(chain, ex, first, last);
  if (rc != PE_OK)
    return rc;
  ex->run.chain = chain;
  ex->run.phase = first;
  ex->run.last = last;
  ex->run.pos = 0;
  ex->run.dispatcher = d;
  ex->run.done = done;
  ex->run.done_ud = user_data;
  rc = pe__run_continue(ex);
  if (rc != PE_PENDING)
    clear_async(ex);
  return rc;
}

int pe_chain_stream_body_async(const pe_chain *chain, pe_exchange *ex, pe_dir dir, pe_slice chunk,
                               int last, pe_slice *out, pe_dispatcher *d, pe_run_done_fn done,
                               void *user_data) {
  if (out)
    *out = PE_LIT("");
  if (!chain || !ex || !d || !done || !out || d->engine != ex->engine)
    return PE_ERR_INVALID_ARGUMENT;
  if (d->closing)
    return PE_ERR_STATE;
  if (ex->run.pending)
    return pe__exchange_fail(ex, PE_ERR_STATE,
                             "pe_chain_stream_body_async: a phase or chunk of this exchange is "
                             "pending");
  ex->run.dispatcher = d;
  ex->run.done = done;
  ex->run.done_ud = user_data;
  int rc = pe__stream_start_async(chain, ex, dir, chunk, last, out);
  if (rc != PE_PENDING)
    clear_async(ex);
  return rc;
}

int pe_chain_run_async(const pe_chain *chain, pe_exchange *ex, pe_phase phase, pe_dispatcher *d,
                       pe_run_done_fn done, void *user_data) {
  return pe_chain_run_phases_async(chain, ex, phase, phase, d, done, user_data);
}
