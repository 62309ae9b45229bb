/* Coroutine steps (async def phase methods) with the real worker: many
 * batches awaiting at once on one worker, byte-identical results to the
 * synchronous policies, cancelling at the deadline without killing the
 * worker, exceptions, sync and async steps mixed in one chain, async
 * setup(), and the per-worker in-flight cap. */
#include "test_python_util.h"

#include <fcntl.h>

#define N_INTERLEAVE 200

static uint64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void count_any(pe_exchange *ex, int rc, void *ud) {
  (void)ex;
  ck_assert_int_eq(rc, PE_OK);
  atomic_fetch_add((atomic_int *)ud, 1);
}

/* Dispatches until *done reaches want or timeout_ms passes. */
static void drive_until(pe_dispatcher *d, atomic_int *done, int want, int timeout_ms) {
  uint64_t end = now_ms() + (uint64_t)timeout_ms;
  while (atomic_load(done) < want && now_ms() < end) {
    struct pollfd p = {.fd = pe_dispatcher_fd(d), .events = POLLIN};
    if (poll(&p, 1, 10) > 0)
      pe_dispatcher_dispatch(d);
  }
  ck_assert_msg(atomic_load(done) == want, "%d of %d runs completed in %d ms", atomic_load(done),
                want, timeout_ms);
}

static pe_exchange *copy_exchange(pe_engine *e, int i) {
  pe_exchange *ex = py_exchange(e);
  char v[32];
  int n = snprintf(v, sizeof v, "v\xc3\xa9-%d", i);
  ck_assert_int_eq(pe_exchange_header_add(ex, PE_REQUEST, PE_LIT("x-in"), pe_bytes(v, (size_t)n)),
                   PE_OK);
  ck_assert_int_eq(pe_exchange_body_set(ex, PE_REQUEST, pe_bytes(v, (size_t)n)), PE_OK);
  return ex;
}

/* The request as a string: every header and the body, for comparisons. */
static void dump(pe_exchange *ex, char *out, size_t cap) {
  size_t len = 0;
  pe_slice name, value;
  for (size_t i = 0; pe_exchange_header_at(ex, PE_REQUEST, i, &name, &value) == PE_OK; i++)
    len += (size_t)snprintf(out + len, cap - len, "%.*s: %.*s\n", (int)name.len, name.ptr,
                            (int)value.len, value.ptr);
  pe_slice body = pe_exchange_body(ex, PE_REQUEST);
  snprintf(out + len, cap - len, "[%d]%.*s", (int)pe_exchange_verdict(ex), (int)body.len, body.ptr);
}

/* 200 exchanges whose step awaits 50 ms, all in flight on one worker: they
 * wait together (far under 200 x 50 ms = 10 s), and each ends exactly as
 * with the synchronous test-copy. */
START_TEST(coroutines_interleave) {
  pe_engine *e = py_engine(1);
  pe_chain *async_chain = py_chain(e, "[{\"name\":\"test-async-copy\",\"version\":\"1.0.0\"}]");
  pe_chain *sync_chain = py_chain(e, "[{\"name\":\"test-copy\",\"version\":\"1.0.0\"}]");
  pe_dispatcher *d = NULL;
  ck_assert_int_eq(pe_dispatcher_new(&d, e), PE_OK);
  static pe_exchange *ex[N_INTERLEAVE];
  atomic_int done = 0;
  uint64_t t0 = now_ms();
  for (int i = 0; i < N_INTERLEAVE; i++) {
    ex[i] = copy_exchange(e, i);
    ck_assert_int_eq(pe_chain_run_phases_async(async_chain, ex[i], PE_PHASE_REQUEST_HEADERS,
                                               PE_PHASE_REQUEST_BODY, d, count_any, &done),
                     PE_PENDING);
  }
  drive_until(d, &done, N_INTERLEAVE, 9000);
  uint64_t ms = now_ms() - t0;
  /* Two awaits of 50 ms each per exchange: 20 s one at a time. */
  ck_assert_msg(ms < 5000, "200 coroutine batches took %llu ms", (unsigned long long)ms);
  for (int i = 0; i < N_INTERLEAVE; i++) {
    pe_exchange *ref = copy_exchange(e, i);
    ck_assert_int_eq(
        pe_chain_run_phases(sync_chain, ref, PE_PHASE_REQUEST_HEADERS, PE_PHASE_REQUEST_BODY),
        PE_OK);
    static char a[1024], b[1024];
    dump(ex[i], a, sizeof a);
    dump(ref, b, sizeof b);
    ck_assert_str_eq(a, b);
    ck_assert_ptr_nonnull(strstr(a, "x-out: v\xc3\xa9-"));
    pe_exchange_free(ref);
    pe_exchange_free(ex[i]);
  }
  ck_assert_uint_eq(pe_engine_python_restarts(e), 0);
  pe_dispatcher_free(d);
  pe_chain_free(async_chain);
  pe_chain_free(sync_chain);
  pe_engine_free(e);
}
END_TEST

static int file_says(const char *path, const char *want) {
  char buf[64] = "";
  int fd = open(path, O_RDONLY);
  if (fd < 0)
    return 0;
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  return n > 0 && strncmp(buf, want, strlen(want)) == 0;
}

static void expect_serves(pe_engine *e, pe_dispatcher *d) {
  pe_chain *good = py_chain(e, "[{\"name\":\"sample-python-request-header\","
                               "\"version\":\"1.0.0\"}]");
  pe_exchange *ex = py_exchange(e);
  if (d) {
    atomic_int done = 0;
    ck_assert_int_eq(pe_chain_run_async(good, ex, PE_PHASE_REQUEST_HEADERS, d, count_any, &done),
                     PE_PENDING);
    drive_until(d, &done, 1, 5000);
  } else {
    ck_assert_int_eq(pe_chain_run(good, ex, PE_PHASE_REQUEST_HEADERS), PE_OK);
  }
  pe_slice v;
  ck_assert_int_eq(pe_exchange_header_get(ex, PE_REQUEST, PE_LIT("x-sample-policy-phase"), &v),
                   PE_OK);
  pe_exchange_free(ex);
  pe_chain_free(good);
}

/* A coroutine past its deadline: 504 at the deadline, the policy sees
 * CancelledError (and writes its file), the worker is neither killed nor
 * replaced and keeps serving; both for async and blocking runs. */
static void deadline_case(int blocking) {
  pe_engine *e = py_engine(1);
  char dir[] = "/tmp/pe-aio-XXXXXX";
  ck_assert_ptr_nonnull(mkdtemp(dir));
  char file[64], json[256];
  snprintf(file, sizeof file, "%s/cancelled", dir);
  snprintf(json, sizeof json,
           "[{\"name\":\"test-async-sleep\",\"version\":\"1.0.0\",\"timeout_ms\":200,"
           "\"params\":{\"cancel_file\":\"%s\"}}]",
           file);
  pe_chain *slow = py_chain(e, json);
  int pid = py_worker_pid(e, 0);
  pe_dispatcher *d = NULL;
  ck_assert_int_eq(pe_dispatcher_new(&d, e), PE_OK);
  pe_exchange *ex = py_exchange(e);
  uint64_t t0 = now_ms();
  if (blocking) {
    ck_assert_int_eq(pe_chain_run(slow, ex, PE_PHASE_REQUEST_HEADERS), PE_OK);
  } else {
    atomic_int done = 0;
    ck_assert_int_eq(pe_chain_run_async(slow, ex, PE_PHASE_REQUEST_HEADERS, d, count_any, &done),
                     PE_PENDING);
    drive_until(d, &done, 1, 5000);
  }
  uint64_t ms = now_ms() - t0;
  ck_assert_uint_ge(ms, 190);
  ck_assert_uint_lt(ms, 3000);
  ck_assert_int_eq(pe_exchange_status(ex), 504);
  ck_assert_int_eq(atomic_load(&py_outcomes[PE_STEP_TIMEOUT]), 1);
  for (int i = 0; i < 300 && !file_says(file, "cancelled"); i++)
    py_sleep_ms(10);
  ck_assert_msg(file_says(file, "cancelled"), "the coroutine never saw CancelledError");
  expect_serves(e, blocking ? NULL : d);
  expect_serves(e, blocking ? d : NULL);
  /* Past the grace period too: nobody killed the worker. */
  py_sleep_ms(700);
  if (!blocking)
    pe_dispatcher_dispatch(d);
  expect_serves(e, blocking ? NULL : d);
  ck_assert_uint_eq(pe_engine_python_restarts(e), 0);
  ck_assert_int_eq(py_worker_pid(e, 0), pid);
  unlink(file);
  rmdir(dir);
  pe_exchange_free(ex);
  pe_dispatcher_free(d);
  pe_chain_free(slow);
  pe_engine_free(e);
}

START_TEST(deadline_cancels_coroutine_async) {
  deadline_case(0);
}
END_TEST

START_TEST(deadline_cancels_coroutine_blocking) {
  deadline_case(1);
}
END_TEST

/* An exception in a coroutine follows the failure mode, its edits undone. */
START_TEST(coroutine_exception_follows_failure_mode) {
  pe_engine *e = py_engine(1);
  pe_chain *closed = py_chain(e, "[{\"name\":\"test-async-raise\",\"version\":\"1.0.0\"}]");
  pe_chain *open =
      py_chain(e, "[{\"name\":\"test-async-raise\",\"version\":\"1.0.0\","
                  "\"failure_mode\":\"open\"},"
                  "{\"name\":\"sample-python-request-header\",\"version\":\"1.0.0\"}]");
  pe_dispatcher *d = NULL;
  ck_assert_int_eq(pe_dispatcher_new(&d, e), PE_OK);
  pe_exchange *ex = py_exchange(e);
  atomic_int done = 0;
  ck_assert_int_eq(pe_chain_run_async(closed, ex, PE_PHASE_REQUEST_HEADERS, d, count_any, &done),
                   PE_PENDING);
  drive_until(d, &done, 1, 5000);
  ck_assert_int_eq(pe_exchange_verdict(ex), PE_VERDICT_RESPOND);
  ck_assert_int_eq(pe_exchange_status(ex), 500);
  ck_assert_ptr_nonnull(strstr(pe_exchange_errmsg(ex), "boom from test-async-raise"));
  pe_exchange_free(ex);

  ex = py_exchange(e);
  ck_assert_int_eq(pe_chain_run(open, ex, PE_PHASE_REQUEST_HEADERS), PE_OK);
  ck_assert_int_eq(pe_exchange_verdict(ex), PE_VERDICT_CONTINUE);
  pe_slice v;
  ck_assert_int_eq(pe_exchange_header_get(ex, PE_REQUEST, PE_LIT("x-partial"), &v),
                   PE_ERR_NOT_FOUND);
  ck_assert_int_eq(pe_exchange_header_get(ex, PE_REQUEST, PE_LIT("x-sample-policy-phase"), &v),
                   PE_OK);
  ck_assert_uint_eq(pe_engine_python_restarts(e), 0);
  pe_exchange_free(ex);
  pe_dispatcher_free(d);
  pe_chain_free(closed);
  pe_chain_free(open);
  pe_engine_free(e);
}
END_TEST

static void order_of(pe_engine *e, pe_chain *c, pe_dispatcher *d, char *req, char *resp,
                     size_t cap) {
  pe_exchange *ex = py_exchange(e);
  atomic_int done = 0;
  int rc = pe_chain_run_async(c, ex, PE_PHASE_REQUEST_HEADERS, d, count_any, &done);
  if (rc == PE_PENDING)
    drive_until(d, &done, 1, 5000);
  ck_assert_int_eq(pe_exchange_set_status(ex, 200), PE_OK);
  done = 0;
  rc = pe_chain_run_async(c, ex, PE_PHASE_RESPONSE_HEADERS, d, count_any, &done);
  if (rc == PE_PENDING)
    drive_until(d, &done, 1, 5000);
  pe_slice name, value;
  size_t lr = 0, ls = 0;
  req[0] = resp[0] = '\0';
  for (size_t i = 0; pe_exchange_header_at(ex, PE_REQUEST, i, &name, &value) == PE_OK; i++)
    if (name.len == 7 && !memcmp(name.ptr, "x-order", 7))
      lr += (size_t)snprintf(req + lr, cap - lr, "%.*s,", (int)value.len, value.ptr);
  for (size_t i = 0; pe_exchange_header_at(ex, PE_RESPONSE, i, &name, &value) == PE_OK; i++)
    if (name.len == 7 && !memcmp(name.ptr, "x-order", 7))
      ls += (size_t)snprintf(resp + ls, cap - ls, "%.*s,", (int)value.len, value.ptr);
  pe_exchange_free(ex);
}

/* Sync and async steps in one chain keep their order and their edits, in
 * both directions of the onion, exactly as an all-sync chain. */
START_TEST(sync_and_async_mixed) {
  pe_engine *e = py_engine(2);
  pe_chain *mixed = py_chain(
      e, "[{\"name\":\"test-order\",\"version\":\"1.0.0\",\"params\":{\"tag\":\"a\"}},"
         " {\"name\":\"test-async-order\",\"version\":\"1.0.0\",\"params\":{\"tag\":\"b\"}},"
         " {\"name\":\"test-order\",\"version\":\"1.0.0\",\"params\":{\"tag\":\"c\"}},"
         " {\"name\":\"test-async-order\",\"version\":\"1.0.0\",\"params\":{\"tag\":\"d\"}},"
         " {\"name\":\"test-order\",\"version\":\"1.0.0\",\"params\":{\"tag\":\"e\"}}]");
  pe_chain *sync =
      py_chain(e, "[{\"name\":\"test-order\",\"version\":\"1.0.0\",\"params\":{\"tag\":\"a\"}},"
                  " {\"name\":\"test-order\",\"version\":\"1.0.0\",\"params\":{\"tag\":\"b\"}},"
                  " {\"name\":\"test-order\",\"version\":\"1.0.0\",\"params\":{\"tag\":\"c\"}},"
                  " {\"name\":\"test-order\",\"version\":\"1.0.0\",\"params\":{\"tag\":\"d\"}},"
                  " {\"name\":\"test-order\",\"version\":\"1.0.0\",\"params\":{\"tag\":\"e\"}}]");
  pe_dispatcher *d = NULL;
  ck_assert_int_eq(pe_dispatcher_new(&d, e), PE_OK);
  char rq1[128], rs1[128], rq2[128], rs2[128];
  order_of(e, mixed, d, rq1, rs1, sizeof rq1);
  order_of(e, sync, d, rq2, rs2, sizeof rq2);
  ck_assert_str_eq(rq1, "a,b,c,d,e,");
  ck_assert_str_eq(rs1, "e,d,c,b,a,");
  ck_assert_str_eq(rq1, rq2);
  ck_assert_str_eq(rs1, rs2);
  /* The blocking run gives the same. */
  pe_exchange *ex = py_exchange(e);
  ck_assert_int_eq(pe_chain_run(mixed, ex, PE_PHASE_REQUEST_HEADERS), PE_OK);
  pe_slice v;
  ck_assert_int_eq(pe_exchange_header_get(ex, PE_REQUEST, PE_LIT("x-order"), &v), PE_OK);
  ck_assert_slice_eq(v, "a");
  pe_exchange_free(ex);
  pe_dispatcher_free(d);
  pe_chain_free(mixed);
  pe_chain_free(sync);
  pe_engine_free(e);
}
END_TEST

/* setup() may be async: it ran before the first request; one that raises
 * refuses the step with its message. */
START_TEST(async_setup) {
  pe_engine *e = py_engine(1);
  char dir[] = "/tmp/pe-aio-XXXXXX";
  ck_assert_ptr_nonnull(mkdtemp(dir));
  char file[64], json[256];
  snprintf(file, sizeof file, "%s/torn-down", dir);
  snprintf(json, sizeof json,
           "[{\"name\":\"test-async-setup\",\"version\":\"1.0.0\","
           "\"params\":{\"teardown_file\":\"%s\"}}]",
           file);
  pe_chain *c = py_chain(e, json);
  pe_exchange *ex = py_exchange(e);
  ck_assert_int_eq(pe_chain_run(c, ex, PE_PHASE_REQUEST_HEADERS), PE_OK);
  pe_slice v;
  ck_assert_int_eq(pe_exchange_header_get(ex, PE_REQUEST, PE_LIT("x-resource"), &v), PE_OK);
  ck_assert_slice_eq(v, "open");
  pe_exchange_free(ex);
  pe_chain *bad = NULL;
  char err[256] = "";
  ck_assert_int_eq(pe_chain_new_from_json(&bad, e,
                                          pe_str("[{\"name\":\"test-async-setup-fails\","
                                                 "\"version\":\"1.0.0\"}]"),
                                          err, sizeof err),
                   PE_ERR_PARAM);
  ck_assert_msg(strstr(err, "cannot reach the pretend service") != NULL, "err: %s", err);
  /* Freeing the chain destroys the instance: its async teardown runs. */
  ck_assert(!file_says(file, "closed"));
  pe_chain_free(c);
  for (int i = 0; i < 300 && !file_says(file, "closed"); i++)
    py_sleep_ms(10);
  ck_assert_msg(file_says(file, "closed"), "teardown() did not run");
  unlink(file);
  rmdir(dir);
  pe_engine_free(e);
}
END_TEST

/* Past the worker's in-flight cap the engine answers busy at once. */
START_TEST(worker_in_flight_cap) {
  py_config cfg = {.workers = 1, .worker_max_in_flight = 3};
  pe_engine *e = py_engine_with(NULL, cfg);
  pe_chain *c = py_chain(e, "[{\"name\":\"test-async-copy\",\"version\":\"1.0.0\","
                            "\"params\":{\"delay\":0.3}}]");
  pe_dispatcher *d = NULL;
  ck_assert_int_eq(pe_dispatcher_new(&d, e), PE_OK);
  pe_exchange *ex[4];
  atomic_int done = 0;
  for (int i = 0; i < 4; i++) {
    ex[i] = copy_exchange(e, i);
    int rc = pe_chain_run_async(c, ex[i], PE_PHASE_REQUEST_HEADERS, d, count_any, &done);
    ck_assert_int_eq(rc, i < 3 ? PE_PENDING : PE_ERR_BUSY);
  }
  drive_until(d, &done, 3, 5000);
  /* Room again. */
  done = 0;
  ck_assert_int_eq(pe_chain_run_async(c, ex[3], PE_PHASE_REQUEST_HEADERS, d, count_any, &done),
                   PE_PENDING);
  drive_until(d, &done, 1, 5000);
  for (int i = 0; i < 4; i++)
    pe_exchange_free(ex[i]);
  pe_dispatcher_free(d);
  pe_chain_free(c);
  pe_engine_free(e);
}
END_TEST

/* Freeing exchanges (and the dispatcher) while their coroutines wait. */
START_TEST(free_while_awaiting) {
  pe_engine *e = py_engine(1);
  pe_chain *c = py_chain(e, "[{\"name\":\"test-async-copy\",\"version\":\"1.0.0\","
                            "\"params\":{\"delay\":0.2}}]");
  pe_dispatcher *d = NULL;
  ck_assert_int_eq(pe_dispatcher_new(&d, e), PE_OK);
  atomic_int done = 0;
  for (int i = 0; i < 10; i++) {
    pe_exchange *ex = copy_exchange(e, i);
    ck_assert_int_eq(pe_chain_run_async(c, ex, PE_PHASE_REQUEST_HEADERS, d, count_any, &done),
                     PE_PENDING);
    pe_exchange_free(ex);
  }
  py_sleep_ms(300);
  pe_dispatcher_dispatch(d);
  ck_assert_int_eq(atomic_load(&done), 0);
  expect_serves(e, d);
  pe_dispatcher_free(d);
  ck_assert_uint_eq(pe_engine_python_restarts(e), 0);
  pe_chain_free(c);
  pe_engine_free(e);
}
END_TEST

/* A virtualenv named in the pool options: its packages are importable (after
 * Debian's, which are always there), the interpreter stays the system one. */
START_TEST(virtualenv_packages) {
  char dir[] = "/tmp/pe-venv-XXXXXX";
  ck_assert_ptr_nonnull(mkdtemp(dir));
  char cmd[512], path[256];
  snprintf(cmd, sizeof cmd, "/usr/bin/python3 -I -m venv --without-pip '%s/venv'", dir);
  ck_assert_int_eq(system(cmd), 0);
  snprintf(cmd, sizeof cmd,
           "mkdir -p '%s/policies' && /usr/bin/python3 -I -c 'import sys; "
           "print(\"python%%d.%%d\" %% sys.version_info[:2])' > '%s/ver'",
           dir, dir);
  ck_assert_int_eq(system(cmd), 0);
  char ver[32] = "";
  snprintf(path, sizeof path, "%s/ver", dir);
  FILE *f = fopen(path, "r");
  ck_assert_ptr_nonnull(f);
  ck_assert_int_eq(fscanf(f, "%31s", ver), 1);
  fclose(f);
  snprintf(path, sizeof path, "%s/venv/lib/%s/site-packages/pe_venv_probe.py", dir, ver);
  f = fopen(path, "w");
  ck_assert_ptr_nonnull(f);
  fputs("ANSWER = 'from-the-venv'\n", f);
  fclose(f);
  snprintf(path, sizeof path, "%s/policies/venv_policy.py", dir);
  f = fopen(path, "w");
  ck_assert_ptr_nonnull(f);
  fputs("import policyexec, pe_venv_probe, redis\n"
        "class P(policyexec.Policy):\n"
        "    name = 'test-venv-probe'\n"
        "    version = '1.0.0'\n"
        "    def on_request_headers(self, ctx):\n"
        "        ctx.request_headers['x-venv'] = pe_venv_probe.ANSWER\n"
        "        ctx.request_headers['x-redis'] = redis.__version__\n",
        f);
  fclose(f);

  pe_engine *e = NULL;
  ck_assert_int_eq(pe_engine_new(&e, NULL), PE_OK);
  pe_python_options *po = NULL;
  ck_assert_int_eq(pe_python_options_new(&po), PE_OK);
  ck_assert_int_eq(pe_python_options_set_workers(po, 1), PE_OK);
  ck_assert_int_eq(pe_python_options_set_worker_path(po, PE_PYWORKER), PE_OK);
  snprintf(path, sizeof path, "%s/policies", dir);
  ck_assert_int_eq(pe_python_options_add_module_path(po, path), PE_OK);
  ck_assert_int_eq(pe_python_options_set_virtualenv(po, ""), PE_ERR_INVALID_ARGUMENT);
  snprintf(path, sizeof path, "%s/venv", dir);
  ck_assert_int_eq(pe_python_options_set_virtualenv(po, path), PE_OK);
  ck_assert_int_eq(pe_engine_start_python(e, po), PE_OK);
  pe_python_options_free(po);
  pe_chain *c = py_chain(e, "[{\"name\":\"test-venv-probe\",\"version\":\"1.0.0\"}]");
  pe_exchange *ex = py_exchange(e);
  ck_assert_int_eq(pe_chain_run(c, ex, PE_PHASE_REQUEST_HEADERS), PE_OK);
  pe_slice v;
  ck_assert_int_eq(pe_exchange_header_get(ex, PE_REQUEST, PE_LIT("x-venv"), &v), PE_OK);
  ck_assert_slice_eq(v, "from-the-venv");
  ck_assert_int_eq(pe_exchange_header_get(ex, PE_REQUEST, PE_LIT("x-redis"), &v), PE_OK);
  pe_exchange_free(ex);
  pe_chain_free(c);
  pe_engine_free(e);

  /* Not a virtualenv of this interpreter: the pool does not start. */
  ck_assert_int_eq(pe_engine_new(&e, NULL), PE_OK);
  ck_assert_int_eq(pe_python_options_new(&po), PE_OK);
  ck_assert_int_eq(pe_python_options_set_workers(po, 1), PE_OK);
  ck_assert_int_eq(pe_python_options_set_worker_path(po, PE_PYWORKER), PE_OK);
  ck_assert_int_eq(pe_python_options_set_startup_timeout(po, 5000), PE_OK);
  ck_assert_int_eq(pe_python_options_set_virtualenv(po, dir), PE_OK);
  ck_assert_int_eq(pe_engine_start_python(e, po), PE_ERR_WORKER);
  pe_python_options_free(po);
  pe_engine_free(e);
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  ck_assert_int_eq(system(cmd), 0);
}
END_TEST

static Suite *suite(void) {
  Suite *s = suite_create("python_aio");
  TCase *tc = tcase_create("aio");
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, coroutines_interleave);
  tcase_add_test(tc, deadline_cancels_coroutine_async);
  tcase_add_test(tc, deadline_cancels_coroutine_blocking);
  tcase_add_test(tc, coroutine_exception_follows_failure_mode);
  tcase_add_test(tc, sync_and_async_mixed);
  tcase_add_test(tc, async_setup);
  tcase_add_test(tc, worker_in_flight_cap);
  tcase_add_test(tc, free_while_awaiting);
  tcase_add_test(tc, virtualenv_packages);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) {
  return pe_test_run_suite(suite());
}
