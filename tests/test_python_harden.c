/* The Python backend's robustness fixes, with the real worker: framing
 * headers refused from a worker's reply; a process forked by a policy dies
 * with its worker; a SIGKILLed host leaves no socket directory behind. */
#include "test_python_util.h"

#include <dirent.h>
#include <sys/wait.h>

/* Runs test-forker and returns the pid of the child it started. */
static int start_forker_child(pe_engine *e, const pe_chain *forker) {
  pe_exchange *ex = py_exchange(e);
  ck_assert_int_eq(pe_chain_run(forker, ex, PE_PHASE_REQUEST_HEADERS), PE_OK);
  ck_assert_msg(pe_exchange_verdict(ex) == PE_VERDICT_CONTINUE, "%s", pe_exchange_errmsg(ex));
  pe_slice v;
  ck_assert_int_eq(pe_exchange_header_get(ex, PE_REQUEST, PE_LIT("x-child"), &v), PE_OK);
  char buf[32];
  snprintf(buf, sizeof buf, "%.*s", (int)v.len, v.ptr);
  pe_exchange_free(ex);
  int child = atoi(buf);
  ck_assert_int_gt(child, 1);
  ck_assert(py_process_exists(child));
  return child;
}

START_TEST(forked_child_dies_with_its_replaced_worker) {
  pe_engine *e = py_engine(1);
  pe_chain *forker = py_chain(e, "[{\"name\":\"test-forker\",\"version\":\"1.0.0\"}]");
  pe_chain *slow = py_chain(e, "[{\"name\":\"test-sleep-blocked\",\"version\":\"1.0.0\","
                               "\"timeout_ms\":200}]");
  int child = start_forker_child(e, forker);
  /* A step it cannot interrupt gets the worker killed and replaced. */
  pe_exchange *ex = py_exchange(e);
  ck_assert_int_eq(pe_chain_run(slow, ex, PE_PHASE_REQUEST_HEADERS), PE_OK);
  ck_assert_int_eq(pe_exchange_status(ex), 504);
  pe_exchange_free(ex);
  ck_assert_uint_eq(pe_engine_python_restarts(e), 1);
  ck_assert_msg(py_wait_dead(child, 5000), "child %d outlived its worker", child);
  /* And at shutdown. */
  child = start_forker_child(e, forker);
  pe_chain_free(forker);
  pe_chain_free(slow);
  pe_engine_free(e);
  ck_assert_msg(py_wait_dead(child, 5000), "child %d outlived the pool", child);
}
END_TEST

static int dir_is_empty(const char *path) {
  DIR *d = opendir(path);
  ck_assert_ptr_nonnull(d);
  int empty = 1;
  struct dirent *de;
  while ((de = readdir(d)))
    if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
      empty = 0;
  closedir(d);
  return empty;
}

/* The host is SIGKILLed: its workers exit (the lifeline) and the last one
 * removes the socket directory, which the engine had no chance to. */
START_TEST(sigkilled_host_leaves_no_socket_directory) {
  char tmp[] = "/tmp/pe-sigkill-XXXXXX";
  ck_assert_ptr_nonnull(mkdtemp(tmp));
  int ready[2];
  ck_assert_int_eq(pipe(ready), 0);
  pid_t host = fork();
  ck_assert_int_ge(host, 0);
  if (host == 0) {
    setenv("TMPDIR", tmp, 1);
    pe_engine *e = py_engine(2);
    (void)e;
    ck_assert_int_eq(write(ready[1], "r", 1), 1);
    for (;;)
      pause();
  }
  close(ready[1]);
  char byte;
  ck_assert_int_eq(read(ready[0], &byte, 1), 1);
  close(ready[0]);
  ck_assert(!dir_is_empty(tmp)); /* the pool's socket directory */
  kill(host, SIGKILL);
  int status;
  ck_assert_int_eq(waitpid(host, &status, 0), host);
  int empty = 0;
  for (int waited = 0; waited < 5000 && !(empty = dir_is_empty(tmp)); waited += 20)
    py_sleep_ms(20);
  ck_assert_msg(empty, "a socket directory was left in %s", tmp);
  rmdir(tmp);
}
END_TEST

/* A Python policy's framing-header edits are refused like a native one's. */
START_TEST(framing_headers_from_python_are_refused) {
  pe_engine *e = py_engine(1);
  static const char *const cases[] = {
      "{\"name\":\"content-length\"}", "{\"name\":\"Transfer-Encoding\"}",
      "{\"name\":\"connection\"}", "{\"name\":\"content-length\",\"remove\":true}"};
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char json[256];
    snprintf(json, sizeof json, "[{\"name\":\"test-framing\",\"version\":\"1.0.0\",\"params\":%s}]",
             cases[i]);
    pe_chain *c = py_chain(e, json);
    pe_exchange *ex = py_exchange(e);
    ck_assert_int_eq(pe_exchange_set_status(ex, 200), PE_OK);
    ck_assert_int_eq(
        pe_exchange_header_set(ex, PE_RESPONSE, PE_LIT("content-length"), PE_LIT("12")), PE_OK);
    ck_assert_int_eq(pe_chain_run(c, ex, PE_PHASE_RESPONSE_HEADERS), PE_OK);
    ck_assert_msg(pe_exchange_status(ex) == 500, "%s: %d", cases[i], pe_exchange_status(ex));
    ck_assert_msg(strstr(pe_exchange_errmsg(ex), "belong to the proxy"), "%s: %s", cases[i],
                  pe_exchange_errmsg(ex));
    pe_exchange_free(ex);
    pe_chain_free(c);
  }
  pe_engine_free(e);
}
END_TEST

static long ms_since(const struct timespec *t0) {
  struct timespec t1;
  clock_gettime(CLOCK_MONOTONIC, &t1);
  return (t1.tv_sec - t0->tv_sec) * 1000 + (t1.tv_nsec - t0->tv_nsec) / 1000000;
}

static atomic_int async_done;
static void on_done(pe_exchange *ex, int rc, void *ud) {
  (void)ex;
  (void)ud;
  ck_assert_int_eq(rc, PE_OK);
  atomic_store(&async_done, 1);
}

/* Runs phases first..last of c on ex, blocking or through a dispatcher. */
static void run_mode(pe_engine *e, const pe_chain *c, pe_exchange *ex, pe_phase first,
                     pe_phase last, int async) {
  if (!async) {
    ck_assert_int_eq(pe_chain_run_phases(c, ex, first, last), PE_OK);
    return;
  }
  pe_dispatcher *d = NULL;
  ck_assert_int_eq(pe_dispatcher_new(&d, e), PE_OK);
  atomic_store(&async_done, 0);
  int rc = pe_chain_run_phases_async(c, ex, first, last, d, on_done, NULL);
  if (rc == PE_PENDING)
    py_drive(d, &async_done, 10000);
  else
    ck_assert_int_eq(rc, PE_OK);
  pe_dispatcher_free(d);
}

/* [ok (closed), hang (open)]: the hanging step is interrupted by the worker
 * at its own timeout and skipped; the first keeps its effect: 200. */
static void fail_open_hang_case(int async) {
  pe_engine *e = py_engine(1);
  pe_chain *c = py_chain(e, "[{\"name\":\"test-tag\",\"version\":\"1.0.0\"},"
                            "{\"name\":\"test-sleep\",\"version\":\"1.0.0\","
                            "\"failure_mode\":\"open\",\"timeout_ms\":200}]");
  pe_exchange *ex = py_exchange(e);
  pe_test_log_clear();
  run_mode(e, c, ex, PE_PHASE_REQUEST_HEADERS, PE_PHASE_REQUEST_HEADERS, async);
  ck_assert_msg(pe_exchange_verdict(ex) == PE_VERDICT_CONTINUE, "%d: %s", pe_exchange_status(ex),
                pe_exchange_errmsg(ex));
  pe_slice v;
  ck_assert_int_eq(pe_exchange_header_get(ex, PE_REQUEST, PE_LIT("x-tag"), &v), PE_OK);
  ck_assert_int_eq(pe_exchange_header_get(ex, PE_REQUEST, PE_LIT("x-slept"), &v), PE_ERR_NOT_FOUND);
  ck_assert(pe_test_log_contains("step 1 (test-sleep@1.0.0) failed in request_headers"));
  ck_assert(!pe_test_log_contains("step 0 (test-tag"));
  ck_assert_int_eq(atomic_load(&py_outcomes[PE_STEP_TIMEOUT]), 1);
  /* Interrupted, not killed. */
  ck_assert_uint_eq(pe_engine_python_restarts(e), 0);
  pe_exchange_free(ex);
  pe_chain_free(c);
  pe_engine_free(e);
}

START_TEST(fail_open_hang_in_a_batch_is_skipped) {
  fail_open_hang_case(0);
}
END_TEST

START_TEST(fail_open_hang_in_a_batch_is_skipped_async) {
  fail_open_hang_case(1);
}
END_TEST

/* [ok (closed), os._exit (open)]: the worker reported step 0 before running
 * step 1, so only step 1 fails (skipped): 200 with step 0's edit. */
static void fail_open_exit_case(int async) {
  pe_engine *e = py_engine(1);
  pe_chain *c = py_chain(e, "[{\"name\":\"test-tag\",\"version\":\"1.0.0\"},"
                            "{\"name\":\"test-exit\",\"version\":\"1.0.0\","
                            "\"failure_mode\":\"open\"}]");
  pe_exchange *ex = py_exchange(e);
  pe_test_log_clear();
  run_mode(e, c, ex, PE_PHASE_REQUEST_HEADERS, PE_PHASE_REQUEST_HEADERS, async);
  ck_assert_msg(pe_exchange_verdict(ex) == PE_VERDICT_CONTINUE, "%d: %s", pe_exchange_status(ex),
                pe_exchange_errmsg(ex));
  pe_slice v;
  ck_assert_int_eq(pe_exchange_header_get(ex, PE_REQUEST, PE_LIT("x-tag"), &v), PE_OK);
  ck_assert(pe_test_log_contains("step 1 (test-exit@1.0.0) failed in request_headers"));
  ck_assert(!pe_test_log_contains("step 0 (test-tag"));
  ck_assert_int_eq(atomic_load(&py_outcomes[PE_STEP_CRASHED]), 1);
  ck_assert_int_eq(atomic_load(&py_outcomes[PE_STEP_OK]), 1);
  pe_exchange_free(ex);
  pe_chain_free(c);
  pe_engine_free(e);
}

START_TEST(fail_open_exit_in_a_batch_is_skipped) {
  fail_open_exit_case(0);
}
END_TEST

START_TEST(fail_open_exit_in_a_batch_is_skipped_async) {
  fail_open_exit_case(1);
}
END_TEST

/* Ten steps of which the last hangs: its own 200 ms hold, not the sum of
 * the others' timeouts (9 x 1000 ms + 200 ms before). */
START_TEST(last_of_ten_steps_times_out_on_its_own) {
  pe_engine *e = py_engine(1);
  char json[2048] = "[";
  for (int i = 0; i < 9; i++)
    strcat(json, "{\"name\":\"test-tag\",\"version\":\"1.0.0\",\"timeout_ms\":1000},");
  strcat(json, "{\"name\":\"test-sleep\",\"version\":\"1.0.0\",\"timeout_ms\":200}]");
  pe_chain *c = py_chain(e, json);
  pe_exchange *ex = py_exchange(e);
  pe_test_log_clear();
  struct timespec t0;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  ck_assert_int_eq(pe_chain_run(c, ex, PE_PHASE_REQUEST_HEADERS), PE_OK);
  long ms = ms_since(&t0);
  ck_assert_int_eq(pe_exchange_status(ex), 504);
  ck_assert_msg(ms < 3000, "took %ld ms", ms); /* generous for a loaded machine */
  ck_assert(pe_test_log_contains("step 9 (test-sleep@1.0.0) failed in request_headers"));
  ck_assert(!pe_test_log_contains("step 0 (test-tag"));
  pe_exchange_free(ex);
  pe_chain_free(c);
  pe_engine_free(e);
}
END_TEST

/* A response-body hang in a batch spanning both response phases: its own
 * timeout holds, and the failure is logged in its own phase. */
START_TEST(response_body_hang_is_its_own_timeout_and_phase) {
  pe_engine *e = py_engine(1);
  pe_chain *c = py_chain(e, "[{\"name\":\"test-sleep-response-body\",\"version\":\"1.0.0\","
                            "\"timeout_ms\":300},"
                            "{\"name\":\"test-tag\",\"version\":\"1.0.0\",\"timeout_ms\":5000}]");
  pe_exchange *ex = py_exchange(e);
  ck_assert_int_eq(pe_exchange_set_status(ex, 200), PE_OK);
  pe_test_log_clear();
  struct timespec t0;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  ck_assert_int_eq(pe_chain_run_phases(c, ex, PE_PHASE_RESPONSE_HEADERS, PE_PHASE_RESPONSE_BODY),
                   PE_OK);
  long ms = ms_since(&t0);
  ck_assert_int_eq(pe_exchange_status(ex), 504);
  ck_assert_msg(ms < 2500, "took %ld ms", ms); /* the sum of the timeouts was 5300 ms */
  ck_assert(
      pe_test_log_contains("step 0 (test-sleep-response-body@1.0.0) failed in response_body"));
  ck_assert(!pe_test_log_contains("failed in response_headers"));
  pe_exchange_free(ex);
  pe_chain_free(c);
  pe_engine_free(e);
}
END_TEST

/* A shorter timeout before a longer one: the later step still gets its own
 * whole timeout (the worker's timer, started for the first step, fires
 * during the second and is started again for what is left of its time). */
START_TEST(a_step_gets_its_whole_timeout_after_a_shorter_one) {
  pe_engine *e = py_engine(1);
  pe_chain *c = py_chain(e, "[{\"name\":\"test-tag\",\"version\":\"1.0.0\",\"timeout_ms\":100},"
                            "{\"name\":\"test-sleep\",\"version\":\"1.0.0\","
                            "\"failure_mode\":\"open\",\"timeout_ms\":700}]");
  pe_exchange *ex = py_exchange(e);
  struct timespec t0;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  ck_assert_int_eq(pe_chain_run(c, ex, PE_PHASE_REQUEST_HEADERS), PE_OK);
  long ms = ms_since(&t0);
  ck_assert_int_eq(pe_exchange_verdict(ex), PE_VERDICT_CONTINUE);
  ck_assert_msg(ms >= 650, "interrupted after %ld ms, before its 700 ms", ms);
  ck_assert_int_eq(atomic_load(&py_outcomes[PE_STEP_TIMEOUT]), 1);
  ck_assert_uint_eq(pe_engine_python_restarts(e), 0);
  pe_exchange_free(ex);
  pe_chain_free(c);
  pe_engine_free(e);
}
END_TEST

int main(void) {
  Suite *s = suite_create("python_harden");
  TCase *tc = tcase_create("harden");
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, framing_headers_from_python_are_refused);
  tcase_add_test(tc, forked_child_dies_with_its_replaced_worker);
  tcase_add_test(tc, sigkilled_host_leaves_no_socket_directory);
  tcase_add_test(tc, fail_open_hang_in_a_batch_is_skipped);
  tcase_add_test(tc, fail_open_hang_in_a_batch_is_skipped_async);
  tcase_add_test(tc, fail_open_exit_in_a_batch_is_skipped);
  tcase_add_test(tc, fail_open_exit_in_a_batch_is_skipped_async);
  tcase_add_test(tc, last_of_ten_steps_times_out_on_its_own);
  tcase_add_test(tc, response_body_hang_is_its_own_timeout_and_phase);
  tcase_add_test(tc, a_step_gets_its_whole_timeout_after_a_shorter_one);
  suite_add_tcase(s, tc);
  return pe_test_run_suite(s);
}
