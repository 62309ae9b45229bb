/* Supervision of the worker pool with the real worker: timeouts (closed ->
 * 504, open -> skipped), kill -9 while idle and while in flight, os._exit
 * in a policy; each time the worker is reaped and replaced and the next
 * request succeeds. Shutdown leaves no process and no socket behind. */
#include "test_python_util.h"

#include "pe_py.h"

#include <pthread.h>

static const char sample[] = "[{\"name\":\"sample-python-request-header\",\"version\":\"1.0.0\"}]";

/* Runs the sample on a fresh exchange and checks it worked. */
static void expect_sample_works(pe_engine *e, const pe_chain *c) {
  pe_exchange *ex = py_exchange(e);
  ck_assert_int_eq(pe_chain_run(c, ex, PE_PHASE_REQUEST_HEADERS), PE_OK);
  ck_assert_msg(pe_exchange_verdict(ex) == PE_VERDICT_CONTINUE, "sample failed: %s",
                pe_exchange_errmsg(ex));
  pe_slice v;
  ck_assert_int_eq(pe_exchange_header_get(ex, PE_REQUEST, PE_LIT("x-sample-policy-phase"), &v),
                   PE_OK);
  pe_exchange_free(ex);
}

/* A step the worker cannot interrupt (test-sleep-blocked): the engine's
 * hard deadline kills and replaces the worker. */
static void timeout_case(const char *mode, pe_verdict want) {
  pe_engine *e = py_engine(1);
  char json[256];
  snprintf(json, sizeof json,
           "[{\"name\":\"test-sleep-blocked\",\"version\":\"1.0.0\",\"failure_mode\":\"%s\","
           "\"timeout_ms\":200}]",
           mode);
  pe_chain *slow = py_chain(e, json);
  pe_chain *good = py_chain(e, sample);
  int pid = py_worker_pid(e, 0);
  pe_exchange *ex = py_exchange(e);
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  ck_assert_int_eq(pe_chain_run(slow, ex, PE_PHASE_REQUEST_HEADERS), PE_OK);
  clock_gettime(CLOCK_MONOTONIC, &t1);
  long ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
  ck_assert_int_ge(ms, 190);
  ck_assert_int_lt(ms, 3000);
  ck_assert_int_eq(pe_exchange_verdict(ex), want);
  if (want == PE_VERDICT_RESPOND)
    ck_assert_int_eq(pe_exchange_status(ex), 504);
  pe_slice v;
  ck_assert_int_eq(pe_exchange_header_get(ex, PE_REQUEST, PE_LIT("x-slept"), &v), PE_ERR_NOT_FOUND);
  ck_assert_int_eq(atomic_load(&py_outcomes[PE_STEP_TIMEOUT]), 1);
  /* The stuck worker was killed, reaped and replaced. */
  ck_assert_uint_eq(pe_engine_python_restarts(e), 1);
  ck_assert_int_eq(py_process_exists(pid), 0);
  expect_sample_works(e, good);
  ck_assert_int_ne(py_worker_pid(e, 0), pid);
  pe_exchange_free(ex);
  pe_chain_free(slow);
  pe_chain_free(good);
  pe_engine_free(e);
}

/* A step's own timeout wins over the pool's default, even when it equals
 * the library's built-in default (1000 ms); a step without one gets the
 * pool's default. */
START_TEST(step_timeout_overrides_pool_default) {
  py_config cfg = {.workers = 1, .default_timeout_ms = 150};
  pe_engine *e = py_engine_with(NULL, cfg);
  pe_chain *explicit_1s = py_chain(e, "[{\"name\":\"test-sleep\",\"version\":\"1.0.0\","
                                      "\"params\":{\"seconds\":0.4},\"timeout_ms\":1000}]");
  pe_chain *unset = py_chain(e, "[{\"name\":\"test-sleep\",\"version\":\"1.0.0\","
                                "\"params\":{\"seconds\":0.4}}]");
  pe_exchange *ex = py_exchange(e);
  pe_slice v;
  ck_assert_int_eq(pe_chain_run(explicit_1s, ex, PE_PHASE_REQUEST_HEADERS), PE_OK);
  ck_assert_int_eq(pe_exchange_verdict(ex), PE_VERDICT_CONTINUE);
  ck_assert_int_eq(pe_exchange_header_get(ex, PE_REQUEST, PE_LIT("x-slept"), &v), PE_OK);
  pe_exchange_free(ex);
  ex = py_exchange(e);
  ck_assert_int_eq(pe_chain_run(unset, ex, PE_PHASE_REQUEST_HEADERS), PE_OK);
  ck_assert_int_eq(pe_exchange_verdict(ex), PE_VERDICT_RESPOND);
  ck_assert_int_eq(pe_exchange_status(ex), 504);
  pe_exchange_free(ex);
  pe_chain_free(explicit_1s);
  pe_chain_free(unset);
  pe_engine_free(e);
}
END_TEST

START_TEST(timeout_fail_closed) {
  timeout_case("closed", PE_VERDICT_RESPOND);
}
END_TEST

START_TEST(timeout_fail_open) {
  timeout_case("open", PE_VERDICT_CONTINUE);
}
END_TEST

/* With two workers, requests keep flowing on the other one while one is
 * stuck and then replaced. */
START_TEST(timeout_leaves_other_worker_serving) {
  pe_engine *e = py_engine(2);
  pe_chain *slow = py_chain(e, "[{\"name\":\"test-sleep-blocked\",\"version\":\"1.0.0\","
                               "\"timeout_ms\":300}]");
  pe_chain *good = py_chain(e, sample);
  pe_exchange *ex = py_exchange(e);
  ck_assert_int_eq(pe_chain_run(slow, ex, PE_PHASE_REQUEST_HEADERS), PE_OK);
  ck_assert_int_eq(pe_exchange_status(ex), 504);
  for (int i = 0; i < 20; i++)
    expect_sample_works(e, good);
  ck_assert_uint_eq(pe_engine_python_restarts(e), 1);
  pe_exchange_free(ex);
  pe_chain_free(slow);
  pe_chain_free(good);
  pe_engine_free(e);
}
END_TEST

START_TEST(kill_idle_worker) {
  pe_engine *e = py_engine(1);
  pe_chain *good = py_chain(e, sample);
  expect_sample_works(e, good);
  int pid = py_worker_pid(e, 0);
  ck_assert_int_eq(kill(pid, SIGKILL), 0);
  /* Dead for sure (a sanitized worker takes a while to go on a loaded
   * machine), so that its idle connection is found broken. */
  ck_assert(py_wait_dead(pid, 5000));
  /* The next request finds the dead worker, replaces it and is served. */
  expect_sample_works(e, good);
  ck_assert_uint_eq(pe_engine_python_restarts(e), 1);
  ck_assert_int_eq(py_process_exists(pid), 0); /* reaped: no zombie */
  int fresh = py_worker_pid(e, 0);
  ck_assert_int_ne(fresh, pid);
  ck_assert_int_eq(py_process_exists(fresh), 1);
  pe_chain_free(good);
  pe_engine_free(e);
}
END_TEST

static bool all_workers_ready(pe_engine *e) {
  const pe__py_backend *be =
      (const pe__py_backend *)(const void *)pe__engine_executor_of(e, &pe__py_backend_ops)->be;
  for (size_t i = 0; i < be->nworkers; i++)
    if (atomic_load(&be->workers[i].state) != PE__PY_READY)
      return false;
  return true;
}

/* A crashed worker's replacement becomes ready by itself (the supervisor
 * thread): the pool is whole again without anyone calling into it, and
 * nobody's thread waited for the new interpreter. */
START_TEST(replacement_becomes_ready_by_itself) {
  pe_engine *e = py_engine(2);
  pe_chain *bad = py_chain(e, "[{\"name\":\"test-exit\",\"version\":\"1.0.0\"}]");
  pe_exchange *ex = py_exchange(e);
  int before[2] = {py_worker_pid(e, 0), py_worker_pid(e, 1)};
  ck_assert_int_eq(pe_chain_run(bad, ex, PE_PHASE_REQUEST_HEADERS), PE_OK);
  ck_assert_int_eq(pe_exchange_status(ex), 500);
  ck_assert_uint_eq(pe_engine_python_restarts(e), 1);
  int waited = 0;
  while (!all_workers_ready(e) && waited < 10000) {
    py_sleep_ms(10);
    waited += 10;
  }
  ck_assert_msg(all_workers_ready(e), "the replacement is not ready after %d ms", waited);
  int after[2] = {py_worker_pid(e, 0), py_worker_pid(e, 1)};
  ck_assert((after[0] != before[0]) != (after[1] != before[1])); /* exactly one replaced */
  pe_exchange_free(ex);
  pe_chain_free(bad);
  pe_engine_free(e);
}
END_TEST

typedef struct kill_arg {
  int pid;
  long after_ms;
} kill_arg;

static void *kill_later(void *p) {
  kill_arg *a = p;
  py_sleep_ms(a->after_ms);
  kill(a->pid, SIGKILL);
  return NULL;
}

/* The run blocks on this thread while another thread kills the worker. */
START_TEST(kill_worker_in_flight) {
  pe_engine *e = py_engine(1);
  pe_chain *slow = py_chain(e, "[{\"name\":\"test-sleep\",\"version\":\"1.0.0\","
                               "\"params\":{\"seconds\":3},\"timeout_ms\":10000}]");
  pe_chain *good = py_chain(e, sample);
  kill_arg arg = {py_worker_pid(e, 0), 300};
  pthread_t t;
  ck_assert_int_eq(pthread_create(&t, NULL, kill_later, &arg), 0);
  pe_exchange *ex = py_exchange(e);
  ck_assert_int_eq(pe_chain_run(slow, ex, PE_PHASE_REQUEST_HEADERS), PE_OK);
  pthread_join(t, NULL);
  ck_assert_int_eq(pe_exchange_status(ex), 500);
  ck_assert_int_eq(atomic_load(&py_outcomes[PE_STEP_CRASHED]), 1);
  ck_assert_ptr_nonnull(strstr(pe_exchange_errmsg(ex), "crashed"));
  ck_assert_int_eq(py_process_exists(arg.pid), 0);
  expect_sample_works(e, good);
  pe_exchange_free(ex);
  pe_chain_free(slow);
  pe_chain_free(good);
  pe_engine_free(e);
}
END_TEST

START_TEST(os_exit_in_policy) {
  pe_engine *e = py_engine(1);
  pe_chain *bad = py_chain(e, "[{\"name\":\"test-exit\",\"version\":\"1.0.0\"}]");
  pe_chain *good = py_chain(e, sample);
  int pid = py_worker_pid(e, 0);
  pe_test_log_clear();
  pe_exchange *ex = py_exchange(e);
  ck_assert_int_eq(pe_chain_run(bad, ex, PE_PHASE_REQUEST_HEADERS), PE_OK);
  ck_assert_int_eq(pe_exchange_status(ex), 500);
  ck_assert_int_eq(atomic_load(&py_outcomes[PE_STEP_CRASHED]), 1);
  ck_assert_int_eq(pe_test_log_contains("exited with status 1"), 1);
  ck_assert_int_eq(py_process_exists(pid), 0);
  expect_sample_works(e, good);
  pe_exchange_free(ex);
  pe_chain_free(bad);
  pe_chain_free(good);
  pe_engine_free(e);
}
END_TEST

/* A policy that crashes its worker on every call: restarts back off, and
 * the engine keeps answering (500) without spinning. */
START_TEST(crash_loop_backs_off) {
  py_config cfg = {.workers = 1, .backoff_ms = 300};
  pe_engine *e = py_engine_with(NULL, cfg);
  pe_chain *bad = py_chain(e, "[{\"name\":\"test-exit\",\"version\":\"1.0.0\"}]");
  pe_chain *good = py_chain(e, sample);
  for (int i = 0; i < 3; i++) {
    pe_exchange *ex = py_exchange(e);
    ck_assert_int_eq(pe_chain_run(bad, ex, PE_PHASE_REQUEST_HEADERS), PE_OK);
    ck_assert_int_eq(pe_exchange_status(ex), 500);
    pe_exchange_free(ex);
  }
  /* Died quickly twice or more: the worker waits out its back-off... */
  ck_assert_int_eq(py_worker_pid(e, 0), 0);
  pe_exchange *ex = py_exchange(e);
  ck_assert_int_eq(pe_chain_run(good, ex, PE_PHASE_REQUEST_HEADERS), PE_OK);
  ck_assert_int_eq(pe_exchange_status(ex), 500);
  ck_assert_ptr_nonnull(strstr(pe_exchange_errmsg(ex), "no python worker"));
  pe_exchange_free(ex);
  /* ...and then comes back. */
  py_sleep_ms(700);
  expect_sample_works(e, good);
  pe_chain_free(bad);
  pe_chain_free(good);
  pe_engine_free(e);
}
END_TEST

/* Regression: workers once died with the *thread* that spawned them
 * (PR_SET_PDEATHSIG). The engine may spawn from any thread, so a pool
 * started, and a replacement spawned, from short-lived threads must live on. */
static void *start_pool(void *arg) {
  *(pe_engine **)arg = py_engine(1);
  return NULL;
}

typedef struct run_arg {
  pe_engine *e;
  pe_chain *c;
} run_arg;

static void *serve_once(void *arg) {
  run_arg *r = arg;
  expect_sample_works(r->e, r->c);
  return NULL;
}

START_TEST(workers_outlive_the_thread_that_spawned_them) {
  pe_engine *e = NULL;
  pthread_t t;
  ck_assert_int_eq(pthread_create(&t, NULL, start_pool, &e), 0);
  ck_assert_int_eq(pthread_join(t, NULL), 0);
  py_sleep_ms(100);
  int pid = py_worker_pid(e, 0);
  ck_assert_int_eq(py_process_exists(pid), 1);
  pe_chain *good = py_chain(e, sample);
  expect_sample_works(e, good);
  /* Kill it: the replacement is spawned by a thread that then exits. */
  ck_assert_int_eq(kill(pid, SIGKILL), 0);
  py_sleep_ms(50);
  run_arg r = {e, good};
  ck_assert_int_eq(pthread_create(&t, NULL, serve_once, &r), 0);
  ck_assert_int_eq(pthread_join(t, NULL), 0);
  py_sleep_ms(100);
  expect_sample_works(e, good);
  ck_assert_uint_eq(pe_engine_python_restarts(e), 1);
  pe_chain_free(good);
  pe_engine_free(e);
}
END_TEST

/* Ctrl-C in a terminal signals the whole foreground process group: the
 * workers must not be in the host's, or they would die while the host
 * drains its in-flight requests. */
START_TEST(workers_have_their_own_process_group) {
  pe_engine *e = py_engine(1);
  int pid = py_worker_pid(e, 0);
  ck_assert_int_ne(getpgid(pid), getpgrp());
  pe_chain *good = py_chain(e, sample);
  expect_sample_works(e, good);
  pe_chain_free(good);
  pe_engine_free(e);
}
END_TEST

START_TEST(shutdown_leaves_nothing) {
  pe_engine *e = py_engine(3);
  pe_chain *good = py_chain(e, sample);
  expect_sample_works(e, good);
  int pids[3];
  ck_assert_uint_eq(pe_engine_python_worker_pids(e, pids, 3), 3);
  char sock[256], dir[256];
  py_worker_socket(pids[0], sock, sizeof sock);
  snprintf(dir, sizeof dir, "%s", sock);
  *strrchr(dir, '/') = '\0';
  struct stat st;
  ck_assert_int_eq(stat(sock, &st), 0);
  pe_chain_free(good);
  pe_engine_free(e);
  for (int i = 0; i < 3; i++)
    ck_assert_msg(!py_process_exists(pids[i]), "worker %d still exists", pids[i]);
  ck_assert_int_ne(stat(sock, &st), 0);
  ck_assert_int_ne(stat(dir, &st), 0);
}
END_TEST

/* A worker that ignores SIGTERM still goes away at shutdown: SIGKILL after
 * the grace period (1 s), then it is reaped. */
START_TEST(shutdown_kills_worker_ignoring_sigterm) {
  pe_engine *e = py_engine(1);
  pe_chain *c = py_chain(e, "[{\"name\":\"test-ignore-term\",\"version\":\"1.0.0\"}]");
  pe_exchange *ex = py_exchange(e);
  ck_assert_int_eq(pe_chain_run(c, ex, PE_PHASE_REQUEST_HEADERS), PE_OK);
  ck_assert_int_eq(pe_exchange_verdict(ex), PE_VERDICT_CONTINUE);
  int pid = py_worker_pid(e, 0);
  pe_exchange_free(ex);
  pe_chain_free(c);
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  pe_engine_free(e);
  clock_gettime(CLOCK_MONOTONIC, &t1);
  long ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
  ck_assert_int_ge(ms, 900);
  ck_assert_int_eq(py_process_exists(pid), 0);
}
END_TEST

int main(void) {
  Suite *s = suite_create("python_supervise");
  TCase *tc = tcase_create("supervise");
  tcase_set_timeout(tc, 30);
  tcase_add_test(tc, step_timeout_overrides_pool_default);
  tcase_add_test(tc, replacement_becomes_ready_by_itself);
  tcase_add_test(tc, timeout_fail_closed);
  tcase_add_test(tc, timeout_fail_open);
  tcase_add_test(tc, timeout_leaves_other_worker_serving);
  tcase_add_test(tc, kill_idle_worker);
  tcase_add_test(tc, kill_worker_in_flight);
  tcase_add_test(tc, os_exit_in_policy);
  tcase_add_test(tc, crash_loop_backs_off);
  tcase_add_test(tc, workers_outlive_the_thread_that_spawned_them);
  tcase_add_test(tc, workers_have_their_own_process_group);
  tcase_add_test(tc, shutdown_leaves_nothing);
  tcase_add_test(tc, shutdown_kills_worker_ignoring_sigterm);
  suite_add_tcase(s, tc);
  return pe_test_run_suite(s);
}
