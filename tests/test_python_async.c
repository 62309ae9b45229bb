/* Non-blocking runs: pe_chain_run_async + pe_dispatcher with the real
 * worker. Completion through the dispatcher's fd, timeouts through its
 * timer, dead workers, cancelling on free, and two host threads each
 * driving many runs at once with their own dispatcher. */
#include "test_python_util.h"

#include <pthread.h>

static const char python4[] = "[{\"name\":\"sample-python-response-header\",\"version\":\"1.0.0\"},"
                              " {\"name\":\"sample-python-request-body\",\"version\":\"1.0.0\"},"
                              " {\"name\":\"sample-python-response-header\",\"version\":\"1.0.0\"},"
                              " {\"name\":\"sample-python-response-body\",\"version\":\"1.0.0\"}]";

static void count_done(pe_exchange *ex, int rc, void *ud) {
  (void)ex;
  ck_assert_int_eq(rc, PE_OK);
  atomic_fetch_add((atomic_int *)ud, 1);
}

/* Runs one phase asynchronously to completion on this thread. */
static void run_phase(pe_dispatcher *d, const pe_chain *c, pe_exchange *ex, pe_phase phase) {
  atomic_int done = 0;
  int rc = pe_chain_run_async(c, ex, phase, d, count_done, &done);
  ck_assert_msg(rc == PE_OK || rc == PE_PENDING, "rc %s", pe_errname(rc));
  if (rc == PE_PENDING) {
    ck_assert_uint_eq(pe_dispatcher_pending(d), 1);
    py_drive(d, &done, 10000);
    ck_assert_int_eq(atomic_load(&done), 1);
  } else {
    ck_assert_int_eq(atomic_load(&done), 0); /* completed now: done not called */
  }
}

START_TEST(python4_async) {
  pe_engine *e = py_engine(2);
  pe_chain *c = py_chain(e, python4);
  pe_dispatcher *d = NULL;
  ck_assert_int_eq(pe_dispatcher_new(&d, e), PE_OK);
  ck_assert_int_ge(pe_dispatcher_fd(d), 0);
  pe_exchange *ex = py_exchange(e);
  run_phase(d, c, ex, PE_PHASE_REQUEST_HEADERS); /* no step: completes now */
  ck_assert_int_eq(pe_exchange_body_set(ex, PE_REQUEST, PE_LIT("hello")), PE_OK);
  run_phase(d, c, ex, PE_PHASE_REQUEST_BODY);
  ck_assert_int_eq(pe_exchange_set_status(ex, 200), PE_OK);
  ck_assert_int_eq(pe_exchange_body_set(ex, PE_RESPONSE, pe_exchange_body(ex, PE_REQUEST)), PE_OK);
  run_phase(d, c, ex, PE_PHASE_RESPONSE_HEADERS);
  run_phase(d, c, ex, PE_PHASE_RESPONSE_BODY);
  pe_slice v;
  ck_assert_int_eq(pe_exchange_header_get(ex, PE_RESPONSE, PE_LIT("x-sample-policy-phase"), &v),
                   PE_OK);
  ck_assert_slice_eq(v, "response-header");
  ck_assert_slice_eq(pe_exchange_body(ex, PE_RESPONSE),
                     "[sample-response-body][sample-request-body]hello");
  /* Nothing is left over: a dispatch with nothing ready completes nothing. */
  ck_assert_int_eq(pe_dispatcher_dispatch(d), 0);
  pe_exchange_free(ex);
  pe_dispatcher_free(d);
  pe_chain_free(c);
  pe_engine_free(e);
}
END_TEST

/* Response headers and body as one run: one batch, each step seeing its
 * own phase (no body in the headers phase) and the edits before it. */
START_TEST(response_phases_in_one_run) {
  pe_engine *e = py_engine(1);
  pe_chain *c = py_chain(e, "[{\"name\":\"test-response-trace\",\"version\":\"1.0.0\"},"
                            " {\"name\":\"test-response-trace\",\"version\":\"1.0.0\"}]");
  pe_dispatcher *d = NULL;
  ck_assert_int_eq(pe_dispatcher_new(&d, e), PE_OK);
  for (int round = 0; round < 2; round++) {
    pe_exchange *ex = py_exchange(e);
    ck_assert_int_eq(pe_exchange_set_status(ex, 201), PE_OK);
    ck_assert_int_eq(pe_exchange_body_set(ex, PE_RESPONSE, PE_LIT("payload")), PE_OK);
    atomic_int done = 0;
    int rc = round == 0
                 ? pe_chain_run_phases_async(c, ex, PE_PHASE_RESPONSE_HEADERS,
                                             PE_PHASE_RESPONSE_BODY, d, count_done, &done)
                 : pe_chain_run_phases(c, ex, PE_PHASE_RESPONSE_HEADERS, PE_PHASE_RESPONSE_BODY);
    if (round == 0) {
      ck_assert_int_eq(rc, PE_PENDING);
      ck_assert_uint_eq(pe_dispatcher_pending(d), 1);
      py_drive(d, &done, 10000);
      ck_assert_int_eq(atomic_load(&done), 1);
    } else {
      ck_assert_int_eq(rc, PE_OK);
    }
    ck_assert_int_eq(pe_exchange_verdict(ex), PE_VERDICT_CONTINUE);
    ck_assert_slice_eq(pe_exchange_body(ex, PE_RESPONSE),
                       "[3:2:none:201,2:none:201][3:2:none:201,2:none:201]payload");
    pe_exchange_free(ex);
  }
  ck_assert_int_eq(atomic_load(&py_outcomes[PE_STEP_OK]), 8);
  pe_dispatcher_free(d);
  pe_chain_free(c);
  pe_engine_free(e);
}
END_TEST

START_TEST(bad_arguments) {
  pe_engine *e = py_engine(1);
  pe_chain *c = py_chain(e, python4);
  pe_dispatcher *d = NULL;
  ck_assert_int_eq(pe_dispatcher_new(&d, NULL), PE_ERR_INVALID_ARGUMENT);
  ck_assert_int_eq(pe_dispatcher_new(&d, e), PE_OK);
  pe_exchange *ex = py_exchange(e);
  atomic_int done = 0;
  ck_assert_int_eq(pe_chain_run_async(c, ex, PE_PHASE_REQUEST_BODY, d, NULL, &done),
                   PE_ERR_INVALID_ARGUMENT);
  ck_assert_int_eq(pe_chain_run_async(c, ex, (pe_phase)7, d, count_done, &done),
                   PE_ERR_INVALID_ARGUMENT);
  ck_assert_int_eq(pe_chain_run_phases_async(c, ex, PE_PHASE_RESPONSE_BODY,
                                             PE_PHASE_RESPONSE_HEADERS, d, count_done, &done),
                   PE_ERR_INVALID_ARGUMENT);
  ck_assert_int_eq(pe_chain_run_async(c, ex, PE_PHASE_REQUEST_BODY, d, count_done, &done),
                   PE_PENDING);
  /* One phase at a time per exchange, blocking or not. */
  ck_assert_int_eq(pe_chain_run_async(c, ex, PE_PHASE_REQUEST_BODY, d, count_done, &done),
                   PE_ERR_STATE);
  ck_assert_int_eq(pe_chain_run(c, ex, PE_PHASE_REQUEST_BODY), PE_ERR_STATE);
  py_drive(d, &done, 10000);
  ck_assert_int_eq(atomic_load(&done), 1);
  ck_assert_int_eq(pe_dispatcher_fd(NULL), PE_ERR_INVALID_ARGUMENT);
  ck_assert_int_eq(pe_dispatcher_dispatch(NULL), PE_ERR_INVALID_ARGUMENT);
  pe_dispatcher_free(NULL);
  pe_exchange_free(ex);
  pe_dispatcher_free(d);
  pe_chain_free(c);
  pe_engine_free(e);
}
END_TEST

START_TEST(timeout_through_timer) {
  pe_engine *e = py_engine(1);
  /* Blocked: only the engine's hard deadline (the dispatcher's timer) ends it. */
  pe_chain *slow = py_chain(e, "[{\"name\":\"test-sleep-blocked\",\"version\":\"1.0.0\","
                               "\"timeout_ms\":200}]");
  pe_chain *good = py_chain(e, "[{\"name\":\"sample-python-request-header\","
                               "\"version\":\"1.0.0\"}]");
  pe_dispatcher *d = NULL;
  ck_assert_int_eq(pe_dispatcher_new(&d, e), PE_OK);
  pe_exchange *ex = py_exchange(e);
  atomic_int done = 0;
  ck_assert_int_eq(pe_chain_run_async(slow, ex, PE_PHASE_REQUEST_HEADERS, d, count_done, &done),
                   PE_PENDING);
  /* Nothing before the deadline... */
  py_sleep_ms(100);
  pe_dispatcher_dispatch(d);
  ck_assert_int_eq(atomic_load(&done), 0);
  /* ...then the timer makes the fd readable and the run completes: 504. */
  py_drive(d, &done, 3000);
  ck_assert_int_eq(pe_exchange_status(ex), 504);
  ck_assert_int_eq(atomic_load(&py_outcomes[PE_STEP_TIMEOUT]), 1);
  ck_assert_uint_eq(pe_engine_python_restarts(e), 1);
  pe_exchange_free(ex);
  ex = py_exchange(e);
  run_phase(d, good, ex, PE_PHASE_REQUEST_HEADERS);
  ck_assert_int_eq(pe_exchange_verdict(ex), PE_VERDICT_CONTINUE);
  pe_exchange_free(ex);
  pe_dispatcher_free(d);
  pe_chain_free(slow);
  pe_chain_free(good);
  pe_engine_free(e);
}
END_TEST

START_TEST(worker_killed_in_flight) {
  pe_engine *e = py_engine(1);
  pe_chain *slow = py_chain(e, "[{\"name\":\"test-sleep\",\"version\":\"1.0.0\","
                               "\"params\":{\"seconds\":3},\"timeout_ms\":10000}]");
  pe_dispatcher *d = NULL;
  ck_assert_int_eq(pe_dispatcher_new(&d, e), PE_OK);
  pe_exchange *ex = py_exchange(e);
  atomic_int done = 0;
  int pid = py_worker_pid(e, 0);
  ck_assert_int_eq(pe_chain_run_async(slow, ex, PE_PHASE_REQUEST_HEADERS, d, count_done, &done),
                   PE_PENDING);
  py_sleep_ms(200);
  ck_assert_int_eq(kill(pid, SIGKILL), 0);
  py_drive(d, &done, 3000);
  ck_assert_int_eq(pe_exchange_status(ex), 500);
  ck_assert_int_eq(atomic_load(&py_outcomes[PE_STEP_CRASHED]), 1);
  ck_assert_int_eq(py_process_exists(pid), 0);
  pe_exchange_free(ex);
  pe_dispatcher_free(d);
  pe_chain_free(slow);
  pe_engine_free(e);
}
END_TEST

START_TEST(free_cancels_pending_runs) {
  pe_engine *e = py_engine(1);
  pe_chain *slow = py_chain(e, "[{\"name\":\"test-sleep\",\"version\":\"1.0.0\","
                               "\"params\":{\"seconds\":0.3},\"failure_mode\":\"open\"}]");
  pe_dispatcher *d = NULL;
  ck_assert_int_eq(pe_dispatcher_new(&d, e), PE_OK);
  pe_exchange *a = py_exchange(e), *b = py_exchange(e);
  atomic_int done = 0;
  ck_assert_int_eq(pe_chain_run_async(slow, a, PE_PHASE_REQUEST_HEADERS, d, count_done, &done),
                   PE_PENDING);
  ck_assert_int_eq(pe_chain_run_async(slow, b, PE_PHASE_REQUEST_HEADERS, d, count_done, &done),
                   PE_PENDING);
  pe_dispatcher_free(d);
  ck_assert_int_eq(atomic_load(&done), 2);
  ck_assert_int_eq(pe_exchange_verdict(a), PE_VERDICT_CONTINUE); /* open: skipped */
  /* The worker did nothing wrong and is still there. */
  ck_assert_uint_eq(pe_engine_python_restarts(e), 0);
  pe_exchange_free(a);
  pe_exchange_free(b);
  pe_chain_free(slow);
  pe_engine_free(e);
}
END_TEST

/* Freeing an exchange whose run is pending cancels that run: no callback,
 * no leak, and the late reply does not disturb the runs behind it. */
START_TEST(exchange_free_cancels_its_run) {
  pe_test_alloc alloc = {0};
  py_config cfg = {.workers = 1};
  pe_engine *e = py_engine_with(&alloc, cfg);
  pe_chain *c = py_chain(e, python4);
  pe_dispatcher *d = NULL;
  ck_assert_int_eq(pe_dispatcher_new(&d, e), PE_OK);
  pe_exchange *gone = py_exchange(e), *kept = py_exchange(e);
  ck_assert_int_eq(pe_exchange_body_set(gone, PE_REQUEST, PE_LIT("a")), PE_OK);
  ck_assert_int_eq(pe_exchange_body_set(kept, PE_REQUEST, PE_LIT("b")), PE_OK);
  atomic_int gone_done = 0, kept_done = 0;
  ck_assert_int_eq(pe_chain_run_async(c, gone, PE_PHASE_REQUEST_BODY, d, count_done, &gone_done),
                   PE_PENDING);
  ck_assert_int_eq(pe_chain_run_async(c, kept, PE_PHASE_REQUEST_BODY, d, count_done, &kept_done),
                   PE_PENDING);
  ck_assert_uint_eq(pe_dispatcher_pending(d), 2);
  pe_exchange_free(gone);
  ck_assert_uint_eq(pe_dispatcher_pending(d), 1);
  ck_assert_int_eq(pe_test_log_contains("leaked"), 0);
  py_drive(d, &kept_done, 10000);
  ck_assert_slice_eq(pe_exchange_body(kept, PE_REQUEST), "[sample-request-body]b");
  ck_assert_int_eq(atomic_load(&gone_done), 0);
  ck_assert_uint_eq(pe_dispatcher_pending(d), 0);
  /* The connection is in step: another run on it completes normally. */
  ck_assert_int_eq(pe_exchange_reset(kept), PE_OK);
  ck_assert_int_eq(pe_exchange_body_set(kept, PE_REQUEST, PE_LIT("c")), PE_OK);
  run_phase(d, c, kept, PE_PHASE_REQUEST_BODY);
  ck_assert_slice_eq(pe_exchange_body(kept, PE_REQUEST), "[sample-request-body]c");
  ck_assert_uint_eq(pe_engine_python_restarts(e), 0);
  pe_exchange_free(kept);
  pe_dispatcher_free(d);
  pe_chain_free(c);
  pe_engine_free(e);
  ck_assert_int_eq(alloc.allocs, alloc.frees);
}
END_TEST

/* ---- two host threads, each with its own dispatcher ---- */

#define RUNS_PER_THREAD 200
#define IN_FLIGHT 8

typedef struct slot {
  pe_exchange *ex;
  int phase; /* next phase to run, 4: finished */
} slot;

typedef struct host {
  pe_engine *e;
  const pe_chain *c;
  pe_dispatcher *d;
  slot slots[IN_FLIGHT];
  int started, finished, bad;
} host;

static void start_phase(host *h, slot *s);

static void check_finished(host *h, slot *s) {
  pe_slice v;
  if (pe_exchange_header_get(s->ex, PE_RESPONSE, PE_LIT("x-sample-policy-phase"), &v) != PE_OK ||
      v.len != strlen("response-header"))
    h->bad++;
  pe_slice body = pe_exchange_body(s->ex, PE_RESPONSE);
  static const char want[] = "[sample-response-body][sample-request-body]payload";
  if (body.len != sizeof want - 1 || memcmp(body.ptr, want, body.len) != 0)
    h->bad++;
  h->finished++;
  s->phase = 4;
  if (h->started < RUNS_PER_THREAD) {
    h->started++;
    pe_exchange_reset(s->ex);
    pe_exchange_set_method(s->ex, PE_LIT("GET"));
    s->phase = 0;
    start_phase(h, s);
  }
}

typedef struct done_ctx {
  host *h;
  slot *s;
} done_ctx;

static void phase_done(pe_exchange *ex, int rc, void *ud);

/* Runs phases of s until one is pending or the exchange is finished. */
static void start_phase(host *h, slot *s) {
  static _Thread_local done_ctx ctxs[IN_FLIGHT];
  done_ctx *ctx = &ctxs[s - h->slots];
  ctx->h = h;
  ctx->s = s;
  while (s->phase < 4) {
    pe_phase phase = (pe_phase)s->phase;
    if (phase == PE_PHASE_REQUEST_BODY)
      pe_exchange_body_set(s->ex, PE_REQUEST, PE_LIT("payload"));
    if (phase == PE_PHASE_RESPONSE_HEADERS) {
      pe_exchange_set_status(s->ex, 200);
      pe_exchange_body_set(s->ex, PE_RESPONSE, pe_exchange_body(s->ex, PE_REQUEST));
    }
    s->phase++;
    int rc = pe_chain_run_async(h->c, s->ex, phase, h->d, phase_done, ctx);
    if (rc == PE_PENDING)
      return;
    if (rc != PE_OK) {
      h->bad++;
      break;
    }
  }
  check_finished(h, s);
}

static void phase_done(pe_exchange *ex, int rc, void *ud) {
  (void)ex;
  done_ctx *ctx = ud;
  if (rc != PE_OK)
    ctx->h->bad++;
  start_phase(ctx->h, ctx->s);
}

static void *host_thread(void *p) {
  host *h = p;
  if (pe_dispatcher_new(&h->d, h->e) != PE_OK)
    return NULL;
  for (int i = 0; i < IN_FLIGHT; i++) {
    pe_exchange_new(&h->slots[i].ex, h->e);
    pe_exchange_set_method(h->slots[i].ex, PE_LIT("GET"));
    h->started++;
    start_phase(h, &h->slots[i]);
  }
  for (int spins = 0; h->finished < RUNS_PER_THREAD && spins < 20000; spins++) {
    struct pollfd pfd = {.fd = pe_dispatcher_fd(h->d), .events = POLLIN};
    if (poll(&pfd, 1, 10) > 0)
      pe_dispatcher_dispatch(h->d);
  }
  for (int i = 0; i < IN_FLIGHT; i++)
    pe_exchange_free(h->slots[i].ex);
  pe_dispatcher_free(h->d);
  return NULL;
}

START_TEST(two_threads_two_dispatchers) {
  pe_engine *e = py_engine(2);
  pe_chain *c = py_chain(e, python4);
  host hosts[2];
  memset(hosts, 0, sizeof hosts);
  pthread_t t[2];
  for (int i = 0; i < 2; i++) {
    hosts[i].e = e;
    hosts[i].c = c;
    ck_assert_int_eq(pthread_create(&t[i], NULL, host_thread, &hosts[i]), 0);
  }
  for (int i = 0; i < 2; i++) {
    pthread_join(t[i], NULL);
    ck_assert_int_eq(hosts[i].finished, RUNS_PER_THREAD);
    ck_assert_int_eq(hosts[i].bad, 0);
  }
  ck_assert_int_eq(atomic_load(&py_outcomes[PE_STEP_OK]), 2 * RUNS_PER_THREAD * 4);
  ck_assert_uint_eq(pe_engine_python_restarts(e), 0);
  pe_chain_free(c);
  pe_engine_free(e);
}
END_TEST

int main(void) {
  Suite *s = suite_create("python_async");
  TCase *tc = tcase_create("async");
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, python4_async);
  tcase_add_test(tc, response_phases_in_one_run);
  tcase_add_test(tc, bad_arguments);
  tcase_add_test(tc, timeout_through_timer);
  tcase_add_test(tc, worker_killed_in_flight);
  tcase_add_test(tc, free_cancels_pending_runs);
  tcase_add_test(tc, exchange_free_cancels_its_run);
  tcase_add_test(tc, two_threads_two_dispatchers);
  suite_add_tcase(s, tc);
  return pe_test_run_suite(s);
}
