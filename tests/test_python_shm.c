/* Bodies in shared memory (pe_py_shm.c, bindings/python/worker/pw_shm.c):
 * byte-exact bodies on both sides of the threshold through the real worker,
 * on the blocking and the non-blocking path; a fake worker that lies about
 * its shared bodies is refused (the step fails by its failure mode, the
 * body is untouched, the worker replaced); no fd is leaked. */
#include "test_python_util.h"

#include <dirent.h>
#include <stdbool.h>

#define THRESHOLD ((size_t)64 * 1024) /* the library's default */
#define BIG ((size_t)64 << 20)

static pe_engine *shm_engine(const char *worker) {
  pe_engine_options *opts = NULL;
  pe_engine *e = NULL;
  ck_assert_int_eq(pe_engine_options_new(&opts), PE_OK);
  ck_assert_int_eq(pe_engine_options_set_log(opts, py_log, NULL), PE_OK);
  ck_assert_int_eq(pe_engine_options_set_metrics(opts, py_metrics, NULL), PE_OK);
  ck_assert_int_eq(pe_engine_options_set_limit(opts, PE_LIMIT_BODY_BYTES, BIG + 4096), PE_OK);
  ck_assert_int_eq(pe_engine_new(&e, opts), PE_OK);
  pe_engine_options_free(opts);
  pe_python_options *po = NULL;
  ck_assert_int_eq(pe_python_options_new(&po), PE_OK);
  ck_assert_int_eq(pe_python_options_set_workers(po, 1), PE_OK);
  ck_assert_int_eq(pe_python_options_set_worker_path(po, worker), PE_OK);
  ck_assert_int_eq(pe_python_options_add_module_path(po, PE_PY_SAMPLES), PE_OK);
  ck_assert_int_eq(pe_python_options_add_module_path(po, PE_PY_TEST_POLICIES), PE_OK);
  /* 64 MiB bodies through Python (an upper-cased copy of the whole body)
   * take seconds under ASan on a loaded machine: the 1 s default timeout
   * would fail them as timed out, which this suite is not about. */
  ck_assert_int_eq(pe_python_options_set_default_timeout(po, 60000), PE_OK);
  ck_assert_int_eq(pe_python_options_set_restart_backoff(po, 0, 2000), PE_OK);
  ck_assert_int_eq(pe_engine_start_python(e, po), PE_OK);
  pe_python_options_free(po);
  py_outcomes_clear();
  return e;
}

static size_t open_fds(void) {
  DIR *d = opendir("/proc/self/fd");
  ck_assert_ptr_nonnull(d);
  size_t n = 0;
  while (readdir(d))
    n++;
  closedir(d);
  return n;
}

/* Bytes of every value, ASCII letters of both cases included. */
static char *payload(size_t len) {
  char *p = malloc(len ? len : 1);
  ck_assert_ptr_nonnull(p);
  for (size_t i = 0; i < len; i++)
    p[i] = (char)(i * 7 + 3);
  return p;
}

static void ck_body(pe_exchange *ex, pe_dir dir, const char *prefix, const char *body, size_t len,
                    bool upper) {
  pe_slice got = pe_exchange_body(ex, dir);
  size_t plen = strlen(prefix);
  ck_assert_uint_eq(got.len, plen + len);
  ck_assert(memcmp(got.ptr, prefix, plen) == 0);
  if (!upper) {
    ck_assert_msg(memcmp(got.ptr + plen, body, len) == 0, "body of %zu bytes differs", len);
    return;
  }
  size_t bad = len;
  for (size_t i = 0; i < len && bad == len; i++) {
    char c = body[i] >= 'a' && body[i] <= 'z' ? (char)(body[i] - 32) : body[i];
    if (got.ptr[plen + i] != c)
      bad = i;
  }
  ck_assert_msg(bad == len, "byte %zu of %zu differs", bad, len);
}

static atomic_int done_flag;

static void on_done(pe_exchange *ex, int rc, void *ud) {
  (void)ex;
  (void)ud;
  ck_assert_int_eq(rc, PE_OK);
  atomic_store(&done_flag, 1);
}

/* Runs phase of c on ex, blocking or through d. */
static void run_phase(const pe_chain *c, pe_exchange *ex, pe_phase phase, pe_dispatcher *d) {
  if (!d) {
    ck_assert_int_eq(pe_chain_run(c, ex, phase), PE_OK);
    return;
  }
  atomic_store(&done_flag, 0);
  int rc = pe_chain_run_async(c, ex, phase, d, on_done, NULL);
  if (rc == PE_PENDING)
    py_drive(d, &done_flag, 60000);
  else
    ck_assert_int_eq(rc, PE_OK);
}

static void meta_is(pe_exchange *ex, const char *key, const char *want) {
  pe_slice v;
  ck_assert_int_eq(pe_exchange_meta_get(ex, pe_str(key), &v), PE_OK);
  ck_assert_slice_eq(v, want);
}

static const size_t sizes[] = {0, 1, THRESHOLD - 1, THRESHOLD, THRESHOLD + 1, (size_t)1 << 20, BIG};
#define NSIZES (sizeof sizes / sizeof sizes[0])

/* Each size through a prepend (the sample policies), an unchanged body and
 * a replaced one, request and response side; on the blocking path (d NULL)
 * or the non-blocking one. */
static void sizes_round_trip(bool async, size_t nsizes) {
  pe_engine *e = shm_engine(PE_PYWORKER);
  pe_dispatcher *d = NULL;
  if (async)
    ck_assert_int_eq(pe_dispatcher_new(&d, e), PE_OK);
  pe_chain *prepend =
      py_chain(e, "[{\"name\":\"sample-python-request-body\",\"version\":\"1.0.0\"},"
                  " {\"name\":\"sample-python-response-body\",\"version\":\"1.0.0\"}]");
  pe_chain *echo = py_chain(e, "[{\"name\":\"test-echo-body\",\"version\":\"1.0.0\"}]");
  pe_chain *upper = py_chain(e, "[{\"name\":\"test-upper-body\",\"version\":\"1.0.0\"}]");
  /* Warm: the connections the runs use are open before counting fds. */
  pe_exchange *ex = py_exchange(e);
  run_phase(echo, ex, PE_PHASE_REQUEST_HEADERS, d);
  pe_exchange_free(ex);
  size_t fds = open_fds();
  for (size_t i = 0; i < nsizes; i++) {
    size_t len = sizes[i];
    char *body = payload(len);
    pe_slice b = {body, len};
    char num[32];
    snprintf(num, sizeof num, "%zu", len);
    const char *type = len >= THRESHOLD ? "Body" : "bytes";

    ex = py_exchange(e);
    ck_assert_int_eq(pe_exchange_body_set(ex, PE_REQUEST, b), PE_OK);
    run_phase(prepend, ex, PE_PHASE_REQUEST_BODY, d);
    ck_body(ex, PE_REQUEST, "[sample-request-body]", body, len, false);
    ck_assert_int_eq(pe_exchange_body_set(ex, PE_RESPONSE, b), PE_OK);
    run_phase(prepend, ex, PE_PHASE_RESPONSE_BODY, d);
    ck_body(ex, PE_RESPONSE, "[sample-response-body]", body, len, false);
    pe_exchange_free(ex);

    ex = py_exchange(e);
    ck_assert_int_eq(pe_exchange_body_set(ex, PE_REQUEST, b), PE_OK);
    run_phase(echo, ex, PE_PHASE_REQUEST_BODY, d);
    ck_body(ex, PE_REQUEST, "", body, len, false);
    meta_is(ex, "body-length", num);
    pe_exchange_free(ex);

    ex = py_exchange(e);
    ck_assert_int_eq(pe_exchange_body_set(ex, PE_REQUEST, b), PE_OK);
    run_phase(upper, ex, PE_PHASE_REQUEST_BODY, d);
    ck_body(ex, PE_REQUEST, "", body, len, true);
    meta_is(ex, "request-body-type", type);
    ck_assert_int_eq(pe_exchange_body_set(ex, PE_RESPONSE, b), PE_OK);
    run_phase(upper, ex, PE_PHASE_RESPONSE_BODY, d);
    ck_body(ex, PE_RESPONSE, "", body, len, true);
    meta_is(ex, "response-body-type", type);
    pe_exchange_free(ex);
    free(body);
  }
  ck_assert_int_eq(atomic_load(&py_outcomes[PE_STEP_OK]), (int)(nsizes * 5));
  ck_assert_uint_eq(pe_engine_python_restarts(e), 0);
  /* Every memfd sent or received was closed (the pools keep theirs). */
  ck_assert_uint_le(open_fds(), fds + 4);
  pe_chain_free(prepend);
  pe_chain_free(echo);
  pe_chain_free(upper);
  pe_dispatcher_free(d);
  pe_engine_free(e);
}

START_TEST(bodies_are_exact_blocking) {
  size_t before = open_fds();
  sizes_round_trip(false, NSIZES);
  ck_assert_uint_eq(open_fds(), before);
}
END_TEST

START_TEST(bodies_are_exact_async) {
  size_t before = open_fds();
  sizes_round_trip(true, NSIZES);
  ck_assert_uint_eq(open_fds(), before);
}
END_TEST

/* Threshold 0: every body inline, Python sees bytes. */
START_TEST(threshold_zero_keeps_bodies_inline) {
  pe_engine_options *opts = NULL;
  pe_engine *e = NULL;
  ck_assert_int_eq(pe_engine_options_new(&opts), PE_OK);
  ck_assert_int_eq(pe_engine_new(&e, opts), PE_OK);
  pe_engine_options_free(opts);
  pe_python_options *po = NULL;
  ck_assert_int_eq(pe_python_options_new(&po), PE_OK);
  ck_assert_int_eq(pe_python_options_set_shm_threshold(NULL, 1), PE_ERR_INVALID_ARGUMENT);
  ck_assert_int_eq(pe_python_options_set_shm_threshold(po, 0), PE_OK);
  ck_assert_int_eq(pe_python_options_set_workers(po, 1), PE_OK);
  ck_assert_int_eq(pe_python_options_set_worker_path(po, PE_PYWORKER), PE_OK);
  ck_assert_int_eq(pe_python_options_add_module_path(po, PE_PY_TEST_POLICIES), PE_OK);
  ck_assert_int_eq(pe_engine_start_python(e, po), PE_OK);
  pe_python_options_free(po);
  pe_chain *upper = py_chain(e, "[{\"name\":\"test-upper-body\",\"version\":\"1.0.0\"}]");
  size_t len = (size_t)1 << 20;
  char *body = payload(len);
  pe_exchange *ex = py_exchange(e);
  ck_assert_int_eq(pe_exchange_body_set(ex, PE_REQUEST, (pe_slice){body, len}), PE_OK);
  ck_assert_int_eq(pe_chain_run(upper, ex, PE_PHASE_REQUEST_BODY), PE_OK);
  ck_body(ex, PE_REQUEST, "", body, len, true);
  meta_is(ex, "request-body-type", "bytes");
  free(body);
  pe_exchange_free(ex);
  pe_chain_free(upper);
  pe_engine_free(e);
}
END_TEST

/* A policy that keeps a shared body past its batch finds it released, not
 * showing the next request's bytes from the reused memfd. */
START_TEST(kept_body_is_released) {
  pe_engine *e = shm_engine(PE_PYWORKER);
  pe_chain *keep = py_chain(e, "[{\"name\":\"test-keep-body\",\"version\":\"1.0.0\"}]");
  char *body = payload(THRESHOLD);
  for (int i = 0; i < 2; i++) {
    pe_exchange *ex = py_exchange(e);
    ck_assert_int_eq(pe_exchange_body_set(ex, PE_REQUEST, (pe_slice){body, THRESHOLD}), PE_OK);
    ck_assert_int_eq(pe_chain_run(keep, ex, PE_PHASE_REQUEST_BODY), PE_OK);
    if (i == 1)
      meta_is(ex, "kept-body", "released");
    pe_exchange_free(ex);
  }
  free(body);
  pe_chain_free(keep);
  pe_engine_free(e);
}
END_TEST

/* A fake worker's shared replacement: honest (applied) or a lie (refused:
 * the step fails by its mode, the body stays as it was, the worker is
 * replaced), on the blocking or the non-blocking path. */
static void check_shm_reply(const char *policy, bool honest, bool async) {
  pe_engine *e = shm_engine(PE_FAKE_WORKER);
  pe_dispatcher *d = NULL;
  if (async)
    ck_assert_int_eq(pe_dispatcher_new(&d, e), PE_OK);
  char json[256];
  snprintf(json, sizeof json, "[{\"name\":\"%s\",\"version\":\"1.0.0\",\"failure_mode\":\"%s\"}]",
           policy, "closed");
  pe_chain *closed = py_chain(e, json);
  snprintf(json, sizeof json, "[{\"name\":\"%s\",\"version\":\"1.0.0\",\"failure_mode\":\"%s\"}]",
           policy, "open");
  pe_chain *open = py_chain(e, json);
  size_t fds = open_fds();
  pe_test_log_clear();

  pe_exchange *ex = py_exchange(e);
  ck_assert_int_eq(pe_exchange_body_set(ex, PE_REQUEST, PE_LIT("original")), PE_OK);
  run_phase(closed, ex, PE_PHASE_REQUEST_BODY, d);
  if (honest) {
    ck_assert_int_eq(pe_exchange_verdict(ex), PE_VERDICT_CONTINUE);
    ck_assert_slice_eq(pe_exchange_body(ex, PE_REQUEST), "shared-ok");
    ck_assert_uint_eq(pe_engine_python_restarts(e), 0);
    fds = open_fds(); /* the connection the run opened stays */
  } else {
    ck_assert_int_eq(pe_exchange_verdict(ex), PE_VERDICT_RESPOND);
    ck_assert_int_eq(pe_exchange_status(ex), 500);
    ck_assert_int_eq(atomic_load(&py_outcomes[PE_STEP_CRASHED]), 1);
    ck_assert_uint_eq(pe_engine_python_restarts(e), 1);
  }
  pe_exchange_free(ex);

  ex = py_exchange(e);
  ck_assert_int_eq(pe_exchange_body_set(ex, PE_REQUEST, PE_LIT("original")), PE_OK);
  run_phase(open, ex, PE_PHASE_REQUEST_BODY, d);
  ck_assert_int_eq(pe_exchange_verdict(ex), PE_VERDICT_CONTINUE);
  ck_assert_slice_eq(pe_exchange_body(ex, PE_REQUEST), honest ? "shared-ok" : "original");
  ck_assert_uint_eq(pe_engine_python_restarts(e), honest ? 0 : 2);
  pe_exchange_free(ex);
  /* Whatever the worker sent, the engine holds none of it. */
  ck_assert_uint_le(open_fds(), fds);
  pe_chain_free(closed);
  pe_chain_free(open);
  pe_dispatcher_free(d);
  pe_engine_free(e);
}

static const char *const lies[] = {"fake-shm-nofd",    "fake-shm-pipe",     "fake-shm-unsealed",
                                   "fake-shm-beyond",  "fake-shm-overflow", "fake-shm-flood",
                                   "fake-shm-midframe"};

START_TEST(honest_shared_reply_is_applied) {
  check_shm_reply("fake-shm-ok", true, false);
  check_shm_reply("fake-shm-ok", true, true);
}
END_TEST

START_TEST(lying_worker_is_refused_blocking) {
  check_shm_reply(lies[_i], false, false);
}
END_TEST

START_TEST(lying_worker_is_refused_async) {
  check_shm_reply(lies[_i], false, true);
}
END_TEST

static Suite *suite(void) {
  Suite *s = suite_create("python_shm");
  TCase *tc = tcase_create("shm");
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, bodies_are_exact_blocking);
  tcase_add_test(tc, bodies_are_exact_async);
  tcase_add_test(tc, threshold_zero_keeps_bodies_inline);
  tcase_add_test(tc, kept_body_is_released);
  tcase_add_test(tc, honest_shared_reply_is_applied);
  tcase_add_loop_test(tc, lying_worker_is_refused_blocking, 0, sizeof lies / sizeof lies[0]);
  tcase_add_loop_test(tc, lying_worker_is_refused_async, 0, sizeof lies / sizeof lies[0]);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) {
  return pe_test_run_suite(suite());
}
