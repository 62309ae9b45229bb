/* Creating Python instances (issue item 8), with the real worker: a slow
 * constructor has its own timeout and error naming the policy, is
 * interrupted without killing its worker, does not stall or kill workers
 * serving traffic, and shutdown does not wait for a worker's start-up. */
#include "test_python_util.h"

#include "pe_py.h"

#include <fcntl.h>
#include <pthread.h>

static const char sample[] = "[{\"name\":\"sample-python-request-header\",\"version\":\"1.0.0\"}]";

static long ms_since(const struct timespec *t0) {
  struct timespec t1;
  clock_gettime(CLOCK_MONOTONIC, &t1);
  return (t1.tv_sec - t0->tv_sec) * 1000 + (t1.tv_nsec - t0->tv_nsec) / 1000000;
}

static int sample_works(pe_engine *e, const pe_chain *c) {
  pe_exchange *ex = py_exchange(e);
  ck_assert_int_eq(pe_chain_run(c, ex, PE_PHASE_REQUEST_HEADERS), PE_OK);
  int ok = pe_exchange_verdict(ex) == PE_VERDICT_CONTINUE;
  if (!ok)
    fprintf(stderr, "sample failed: %s\n", pe_exchange_errmsg(ex));
  pe_exchange_free(ex);
  return ok;
}

START_TEST(create_timeout_fails_the_build_naming_the_policy) {
  py_config cfg = {.workers = 1, .create_timeout_ms = 300};
  pe_engine *e = py_engine_with(NULL, cfg);
  pe_chain *c = NULL;
  char err[256] = "";
  struct timespec t0;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  int rc = pe_chain_new_from_json(
      &c, e,
      PE_LIT("[{\"name\":\"test-slow-init\",\"version\":\"1.0.0\",\"params\":{\"seconds\":20}}]"),
      err, sizeof err);
  long ms = ms_since(&t0);
  ck_assert_int_eq(rc, PE_ERR_TIMEOUT);
  ck_assert_ptr_null(c);
  ck_assert_msg(strstr(err, "test-slow-init@1.0.0") && strstr(err, "create timeout of 300 ms"),
                "%s", err);
  ck_assert_msg(ms < 5000, "took %ld ms", ms);
  /* Interrupted in the worker: it was not killed, and it serves. */
  ck_assert_uint_eq(pe_engine_python_restarts(e), 0);
  pe_chain *good = py_chain(e, sample);
  ck_assert(sample_works(e, good));
  pe_chain_free(good);
  pe_engine_free(e);
}
END_TEST

typedef struct build_arg {
  pe_engine *e;
  atomic_int done;
  int rc;
  char err[256];
} build_arg;

static void *build_slow(void *p) {
  build_arg *a = p;
  pe_chain *c = NULL;
  a->rc = pe_chain_new_from_json(
      &c, a->e,
      PE_LIT("[{\"name\":\"test-slow-init\",\"version\":\"1.0.0\",\"params\":{\"seconds\":1.5}}]"),
      a->err, sizeof a->err);
  pe_chain_free(c);
  atomic_store(&a->done, 1);
  return NULL;
}

/* Two workers; while an instance with a 1.5 s constructor is created on one
 * and then the other, blocking runs (1 s timeout) keep being served by the
 * worker not creating, and no worker is killed. */
START_TEST(runs_keep_flowing_while_an_instance_is_created) {
  py_config cfg = {.workers = 2};
  pe_engine *e = py_engine_with(NULL, cfg);
  pe_chain *good = py_chain(e, sample);
  build_arg a = {.e = e};
  pthread_t t;
  ck_assert_int_eq(pthread_create(&t, NULL, build_slow, &a), 0);
  int runs = 0, failed = 0;
  while (!atomic_load(&a.done)) {
    failed += !sample_works(e, good);
    runs++;
    py_sleep_ms(5);
  }
  pthread_join(t, NULL);
  ck_assert_msg(a.rc == PE_OK, "%s", a.err);
  ck_assert_int_gt(runs, 10);
  ck_assert_msg(failed == 0, "%d of %d runs failed", failed, runs);
  ck_assert_uint_eq(pe_engine_python_restarts(e), 0);
  pe_chain_free(good);
  pe_engine_free(e);
}
END_TEST

/* A replacement worker is slow to start (its policy module sleeps at import,
 * as a slow constructor would in a re-create) while the engine is freed: the
 * supervisor is in its handshake, and the engine does not wait for it
 * beyond the shutdown grace (1 s). */
START_TEST(shutdown_does_not_wait_for_a_start_up) {
  char flag[] = "/tmp/pe-slow-import-XXXXXX";
  int fd = mkstemp(flag);
  ck_assert_int_ge(fd, 0);
  close(fd);
  unlink(flag);
  setenv("PE_TEST_SLOW_IMPORT_FLAG", flag, 1);
  py_config cfg = {.workers = 2, .extra_module_path = PE_PY_SLOW_POLICIES};
  pe_engine *e = py_engine_with(NULL, cfg);
  int pid = py_worker_pid(e, 0);
  fd = open(flag, O_CREAT | O_WRONLY, 0600); /* from now on, imports sleep */
  ck_assert_int_ge(fd, 0);
  close(fd);
  kill(pid, SIGKILL);
  /* The ping notices the death (worker 1 answers); the supervisor starts
   * the replacement's handshake, which waits for the sleeping import. */
  size_t alive = 0;
  pe_engine_python_ping(e, &alive);
  ck_assert_uint_eq(alive, 1);
  py_sleep_ms(300);
  struct timespec t0;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  pe_engine_free(e);
  long ms = ms_since(&t0);
  unlink(flag);
  unsetenv("PE_TEST_SLOW_IMPORT_FLAG");
  ck_assert_msg(ms < 4000, "pe_engine_free took %ld ms", ms); /* the import sleeps 30 s */
}
END_TEST

int main(void) {
  Suite *s = suite_create("python_create");
  TCase *tc = tcase_create("create");
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, create_timeout_fails_the_build_naming_the_policy);
  tcase_add_test(tc, runs_keep_flowing_while_an_instance_is_created);
  tcase_add_test(tc, shutdown_does_not_wait_for_a_start_up);
  suite_add_tcase(s, tc);
  return pe_test_run_suite(s);
}
