/* The Python backend against tests/fake_worker.c, a worker that breaks the
 * protocol on purpose: the engine must re-check every edit, treat malformed
 * or oversized replies as a dead worker, replace it and go on. Also: start
 * failures, and the in-flight cap. */
#include "test_python_util.h"

static pe_engine *fake_engine(size_t max_in_flight) {
  py_config cfg = {.worker = PE_FAKE_WORKER, .max_in_flight = max_in_flight};
  return py_engine_with(NULL, cfg);
}

static pe_chain *one_step(pe_engine *e, const char *policy, const char *mode) {
  char json[256];
  snprintf(json, sizeof json, "[{\"name\":\"%s\",\"version\":\"1.0.0\",\"failure_mode\":\"%s\"}]",
           policy, mode);
  return py_chain(e, json);
}

START_TEST(start_fails_with_missing_binary) {
  pe_engine *e = pe_test_engine(NULL);
  pe_python_options *po = NULL;
  ck_assert_int_eq(pe_python_options_new(&po), PE_OK);
  ck_assert_int_eq(pe_python_options_set_workers(po, 2), PE_OK);
  ck_assert_int_eq(pe_python_options_set_worker_path(po, "/nonexistent/policyexec-pyworker"),
                   PE_OK);
  ck_assert_int_eq(pe_engine_start_python(e, po), PE_ERR_WORKER);
  ck_assert_ptr_nonnull(strstr(pe_engine_errmsg(e), "/nonexistent/policyexec-pyworker"));
  ck_assert_uint_eq(pe_engine_python_worker_pids(e, NULL, 0), 0);
  ck_assert_int_eq(pe_engine_python_ping(e, NULL), PE_ERR_STATE);
  pe_python_options_free(po);
  pe_engine_free(e);
}
END_TEST

START_TEST(options_are_checked) {
  pe_python_options *po = NULL;
  ck_assert_int_eq(pe_python_options_new(NULL), PE_ERR_INVALID_ARGUMENT);
  ck_assert_int_eq(pe_python_options_new(&po), PE_OK);
  ck_assert_int_eq(pe_python_options_set_workers(po, 1000), PE_ERR_INVALID_ARGUMENT);
  ck_assert_int_eq(pe_python_options_set_worker_path(po, ""), PE_ERR_INVALID_ARGUMENT);
  ck_assert_int_eq(pe_python_options_add_module_path(po, NULL), PE_ERR_INVALID_ARGUMENT);
  ck_assert_int_eq(pe_python_options_set_default_timeout(po, 0), PE_ERR_INVALID_ARGUMENT);
  ck_assert_int_eq(pe_python_options_set_max_in_flight(po, 0), PE_ERR_INVALID_ARGUMENT);
  ck_assert_int_eq(pe_python_options_set_restart_backoff(po, 10, 5), PE_ERR_INVALID_ARGUMENT);
  ck_assert_int_eq(pe_python_options_set_max_message(po, 100), PE_ERR_INVALID_ARGUMENT);
  ck_assert_int_eq(pe_python_options_set_worker_path(po, NULL), PE_OK);
  pe_python_options_free(po);
  pe_python_options_free(NULL);
}
END_TEST

START_TEST(second_start_is_refused) {
  pe_engine *e = fake_engine(0);
  ck_assert_int_eq(pe_engine_start_python(e, NULL), PE_ERR_STATE);
  ck_assert_int_eq(pe_engine_has_policy(e, PE_LIT("fake-ok"), PE_LIT("1.0.0")), 1);
  pe_engine_free(e);
}
END_TEST

START_TEST(valid_edit_is_applied) {
  pe_engine *e = fake_engine(0);
  pe_chain *c = one_step(e, "fake-ok", "closed");
  pe_exchange *ex = py_exchange(e);
  ck_assert_int_eq(pe_chain_run(c, ex, PE_PHASE_REQUEST_HEADERS), PE_OK);
  ck_assert_int_eq(pe_exchange_verdict(ex), PE_VERDICT_CONTINUE);
  pe_slice v;
  ck_assert_int_eq(pe_exchange_header_get(ex, PE_REQUEST, PE_LIT("x-fake"), &v), PE_OK);
  ck_assert_slice_eq(v, "ok");
  ck_assert_int_eq(atomic_load(&py_outcomes[PE_STEP_OK]), 1);
  pe_exchange_free(ex);
  pe_chain_free(c);
  pe_engine_free(e);
}
END_TEST

/* The engine re-checks what the worker sends: a refused edit fails the
 * step, closed -> 500 with nothing injected, open -> skipped. */
static void check_refused(const char *policy, const char *errmsg_part) {
  pe_engine *e = fake_engine(0);
  pe_chain *closed = one_step(e, policy, "closed");
  pe_chain *open = one_step(e, policy, "open");
  pe_exchange *ex = py_exchange(e);
  pe_test_log_clear();
  ck_assert_int_eq(pe_chain_run(closed, ex, PE_PHASE_REQUEST_HEADERS), PE_OK);
  ck_assert_int_eq(pe_exchange_verdict(ex), PE_VERDICT_RESPOND);
  ck_assert_int_eq(pe_exchange_status(ex), 500);
  ck_assert_int_eq(atomic_load(&py_outcomes[PE_STEP_FAILED]), 1);
  ck_assert_msg(strstr(pe_exchange_errmsg(ex), errmsg_part), "errmsg: %s", pe_exchange_errmsg(ex));
  ck_assert_int_eq(pe_test_log_contains(policy), 1);
  for (size_t i = 0; i < pe_exchange_header_count(ex, PE_REQUEST); i++) {
    pe_slice n, v;
    ck_assert_int_eq(pe_exchange_header_at(ex, PE_REQUEST, i, &n, &v), PE_OK);
    ck_assert_ptr_null(memchr(v.ptr, '\n', v.len));
    ck_assert_ptr_null(memchr(v.ptr, '\r', v.len));
  }
  ck_assert_int_eq(pe_exchange_reset(ex), PE_OK);
  ck_assert_int_eq(pe_exchange_set_method(ex, PE_LIT("GET")), PE_OK);
  ck_assert_int_eq(pe_chain_run(open, ex, PE_PHASE_REQUEST_HEADERS), PE_OK);
  ck_assert_int_eq(pe_exchange_verdict(ex), PE_VERDICT_CONTINUE);
  ck_assert_uint_eq(pe_exchange_header_count(ex, PE_REQUEST), 0);
  ck_assert_int_eq(pe_exchange_status(ex), 0);
  /* A refused edit is the worker's fault, not a crash: it keeps serving. */
  ck_assert_uint_eq(pe_engine_python_restarts(e), 0);
  pe_exchange_free(ex);
  pe_chain_free(closed);
  pe_chain_free(open);
  pe_engine_free(e);
}

START_TEST(crlf_in_header_value_is_refused) {
  check_refused("fake-crlf", "contains CR");
}
END_TEST

START_TEST(bad_header_name_is_refused) {
  check_refused("fake-badname", "token");
}
END_TEST

START_TEST(bad_status_is_refused) {
  check_refused("fake-bigstatus", "refused");
}
END_TEST

/* Only a body step may edit its body, even when a batch spanning phases
 * carries the body for later steps. */
START_TEST(body_edit_outside_its_phase_is_refused) {
  check_refused("fake-body", "a request body edit in the request_headers phase");
}
END_TEST

/* A reply that breaks the protocol kills the worker: the step crashes,
 * the worker is replaced, and the next request is served. */
static void check_broken_reply(const char *policy) {
  pe_engine *e = fake_engine(0);
  pe_chain *bad = one_step(e, policy, "closed");
  pe_chain *good = one_step(e, "fake-ok", "closed");
  pe_exchange *ex = py_exchange(e);
  int pid = py_worker_pid(e, 0);
  pe_test_log_clear();
  ck_assert_int_eq(pe_chain_run(bad, ex, PE_PHASE_REQUEST_HEADERS), PE_OK);
  ck_assert_int_eq(pe_exchange_status(ex), 500);
  ck_assert_int_eq(atomic_load(&py_outcomes[PE_STEP_CRASHED]), 1);
  ck_assert_uint_eq(pe_engine_python_restarts(e), 1);
  ck_assert_int_ne(py_worker_pid(e, 0), pid);
  ck_assert_int_eq(py_process_exists(pid), 0); /* killed and reaped */
  ck_assert_int_eq(pe_test_log_contains(policy), 1);
  pe_exchange_free(ex);
  ex = py_exchange(e);
  ck_assert_int_eq(pe_chain_run(good, ex, PE_PHASE_REQUEST_HEADERS), PE_OK);
  ck_assert_int_eq(pe_exchange_verdict(ex), PE_VERDICT_CONTINUE);
  pe_exchange_free(ex);
  pe_chain_free(bad);
  pe_chain_free(good);
  pe_engine_free(e);
}

START_TEST(malformed_reply_kills_worker) {
  check_broken_reply("fake-malformed");
}
END_TEST

START_TEST(oversized_reply_kills_worker) {
  check_broken_reply("fake-oversized");
}
END_TEST

START_TEST(extra_results_kill_worker) {
  check_broken_reply("fake-extra");
}
END_TEST

static void on_done(pe_exchange *ex, int rc, void *ud) {
  (void)ex;
  ck_assert_int_eq(rc, PE_OK);
  atomic_fetch_add((atomic_int *)ud, 1);
}

START_TEST(malformed_reply_async) {
  pe_engine *e = fake_engine(0);
  pe_chain *bad = one_step(e, "fake-malformed", "closed");
  pe_chain *good = one_step(e, "fake-ok", "closed");
  pe_dispatcher *d = NULL;
  ck_assert_int_eq(pe_dispatcher_new(&d, e), PE_OK);
  pe_exchange *ex = py_exchange(e);
  atomic_int done = 0;
  ck_assert_int_eq(pe_chain_run_async(bad, ex, PE_PHASE_REQUEST_HEADERS, d, on_done, &done),
                   PE_PENDING);
  py_drive(d, &done, 5000);
  ck_assert_int_eq(pe_exchange_status(ex), 500);
  ck_assert_int_eq(atomic_load(&py_outcomes[PE_STEP_CRASHED]), 1);
  ck_assert_uint_eq(pe_engine_python_restarts(e), 1);
  /* The dispatcher reconnects to the replacement by itself. */
  pe_exchange_free(ex);
  ex = py_exchange(e);
  atomic_store(&done, 0);
  ck_assert_int_eq(pe_chain_run_async(good, ex, PE_PHASE_REQUEST_HEADERS, d, on_done, &done),
                   PE_PENDING);
  py_drive(d, &done, 5000);
  ck_assert_int_eq(pe_exchange_verdict(ex), PE_VERDICT_CONTINUE);
  pe_slice v;
  ck_assert_int_eq(pe_exchange_header_get(ex, PE_REQUEST, PE_LIT("x-fake"), &v), PE_OK);
  pe_exchange_free(ex);
  pe_dispatcher_free(d);
  pe_chain_free(bad);
  pe_chain_free(good);
  pe_engine_free(e);
}
END_TEST

/* Past the in-flight cap: a clear PE_ERR_BUSY, nothing runs. */
START_TEST(busy_past_in_flight_cap) {
  pe_engine *e = fake_engine(1);
  pe_chain *c = one_step(e, "fake-ok", "closed");
  pe_dispatcher *d = NULL;
  ck_assert_int_eq(pe_dispatcher_new(&d, e), PE_OK);
  pe_exchange *a = py_exchange(e), *b = py_exchange(e), *blocking = py_exchange(e);
  atomic_int done = 0;
  ck_assert_int_eq(pe_chain_run_async(c, a, PE_PHASE_REQUEST_HEADERS, d, on_done, &done),
                   PE_PENDING);
  ck_assert_uint_eq(pe_dispatcher_pending(d), 1);
  ck_assert_int_eq(pe_chain_run_async(c, b, PE_PHASE_REQUEST_HEADERS, d, on_done, &done),
                   PE_ERR_BUSY);
  ck_assert_int_eq(pe_exchange_verdict(b), PE_VERDICT_CONTINUE);
  /* A blocking run cannot return BUSY itself: its step fails with it. */
  ck_assert_int_eq(pe_chain_run(c, blocking, PE_PHASE_REQUEST_HEADERS), PE_OK);
  ck_assert_int_eq(pe_exchange_status(blocking), 500);
  ck_assert_ptr_nonnull(strstr(pe_exchange_errmsg(blocking), "in flight"));
  py_drive(d, &done, 5000);
  ck_assert_uint_eq(pe_dispatcher_pending(d), 0);
  atomic_store(&done, 0);
  ck_assert_int_eq(pe_chain_run_async(c, b, PE_PHASE_REQUEST_HEADERS, d, on_done, &done),
                   PE_PENDING);
  py_drive(d, &done, 5000);
  ck_assert_int_eq(pe_exchange_verdict(b), PE_VERDICT_CONTINUE);
  pe_exchange_free(a);
  pe_exchange_free(b);
  pe_exchange_free(blocking);
  pe_dispatcher_free(d);
  pe_chain_free(c);
  pe_engine_free(e);
}
END_TEST

int main(void) {
  Suite *s = suite_create("python_fake");
  TCase *tc = tcase_create("fake_worker");
  tcase_set_timeout(tc, 30);
  tcase_add_test(tc, start_fails_with_missing_binary);
  tcase_add_test(tc, options_are_checked);
  tcase_add_test(tc, second_start_is_refused);
  tcase_add_test(tc, valid_edit_is_applied);
  tcase_add_test(tc, crlf_in_header_value_is_refused);
  tcase_add_test(tc, bad_header_name_is_refused);
  tcase_add_test(tc, bad_status_is_refused);
  tcase_add_test(tc, body_edit_outside_its_phase_is_refused);
  tcase_add_test(tc, malformed_reply_kills_worker);
  tcase_add_test(tc, oversized_reply_kills_worker);
  tcase_add_test(tc, extra_results_kill_worker);
  tcase_add_test(tc, malformed_reply_async);
  tcase_add_test(tc, busy_past_in_flight_cap);
  suite_add_tcase(s, tc);
  return pe_test_run_suite(s);
}
