/* Several executors in one engine (lib/core/pe_executor.c): two Python
 * pools under their own names, chains whose steps name the executor that
 * runs them, blocking and non-blocking runs across both, and the errors of
 * naming an executor that is not there. */
#include "test_python_util.h"

/* Starts a pool named name (NULL: the default "python") with one worker on
 * the sample policies and dir. */
static int start_pool(pe_engine *e, const char *name, const char *dir) {
  pe_python_options *po = NULL;
  ck_assert_int_eq(pe_python_options_new(&po), PE_OK);
  if (name)
    ck_assert_int_eq(pe_python_options_set_name(po, name), PE_OK);
  ck_assert_int_eq(pe_python_options_set_workers(po, 1), PE_OK);
  ck_assert_int_eq(pe_python_options_set_worker_path(po, PE_PYWORKER), PE_OK);
  ck_assert_int_eq(pe_python_options_add_module_path(po, PE_PY_SAMPLES), PE_OK);
  ck_assert_int_eq(pe_python_options_add_module_path(po, dir), PE_OK);
  int rc = pe_engine_start_python(e, po);
  pe_python_options_free(po);
  return rc;
}

static pe_engine *two_pools(void) {
  pe_engine *e = pe_test_engine(NULL);
  ck_assert_int_eq(pe_engine_load_plugin(e, PE_SAMPLE_PLUGIN), PE_OK);
  ck_assert_int_eq(start_pool(e, NULL, PE_PY_EXECUTOR_A), PE_OK);
  ck_assert_int_eq(start_pool(e, "pool-b", PE_PY_EXECUTOR_B), PE_OK);
  return e;
}

/* The values of header name on one side of ex, joined with commas. */
static void values_of(pe_exchange *ex, pe_dir dir, const char *name, char *out, size_t n) {
  out[0] = '\0';
  pe_slice v;
  for (size_t i = 0; pe_exchange_header_get_nth(ex, dir, pe_str(name), i, &v) == PE_OK; i++)
    snprintf(out + strlen(out), n - strlen(out), "%s%.*s", i ? "," : "", (int)v.len, v.ptr);
}

#define WHICH(extra) "{\"name\":\"test-which\",\"version\":\"1.0.0\"" extra "}"
#define NATIVE_HDR "{\"name\":\"sample-native-request-header\",\"version\":\"1.0.0\"}"

/* Default, pool-b, native, pool-b, default: four batches in request order,
 * the reverse in the response phase (onion). */
static const char *mixed_chain =
    "[" WHICH("") "," WHICH(",\"executor\":\"pool-b\"") "," NATIVE_HDR "," WHICH(
        ",\"executor\":\"pool-b\"") "," WHICH(",\"executor\":\"python\"") "]";

START_TEST(steps_run_on_the_executor_they_name) {
  pe_engine *e = two_pools();
  pe_chain *c = py_chain(e, mixed_chain);
  pe_exchange *ex = py_exchange(e);
  ck_assert_int_eq(pe_chain_run(c, ex, PE_PHASE_REQUEST_HEADERS), PE_OK);
  char got[128];
  values_of(ex, PE_REQUEST, "x-pool", got, sizeof got);
  ck_assert_str_eq(got, "a,b,b,a");
  values_of(ex, PE_REQUEST, "x-sample-policy-phase", got, sizeof got);
  ck_assert_str_eq(got, "request-header");
  ck_assert_int_eq(pe_chain_run(c, ex, PE_PHASE_RESPONSE_HEADERS), PE_OK);
  values_of(ex, PE_RESPONSE, "x-pool", got, sizeof got);
  ck_assert_str_eq(got, "a,b,b,a");
  ck_assert_int_eq(pe_exchange_verdict(ex), PE_VERDICT_CONTINUE);
  pe_exchange_free(ex);
  pe_chain_free(c);
  pe_engine_free(e);
}
END_TEST

static void on_done(pe_exchange *ex, int rc, void *ud) {
  (void)ex;
  ck_assert_int_eq(rc, PE_OK);
  atomic_fetch_add((atomic_int *)ud, 1);
}

/* One dispatcher fd completes runs whose batches go to both pools. */
START_TEST(one_dispatcher_covers_every_executor) {
  pe_engine *e = two_pools();
  pe_chain *c = py_chain(e, mixed_chain);
  pe_dispatcher *d = NULL;
  ck_assert_int_eq(pe_dispatcher_new(&d, e), PE_OK);
  enum { N = 8 };
  pe_exchange *ex[N];
  atomic_int done = 0;
  for (int i = 0; i < N; i++) {
    ex[i] = py_exchange(e);
    ck_assert_int_eq(pe_chain_run_phases_async(c, ex[i], PE_PHASE_REQUEST_HEADERS,
                                               PE_PHASE_RESPONSE_HEADERS, d, on_done, &done),
                     PE_PENDING);
  }
  ck_assert_uint_eq(pe_dispatcher_pending(d), N);
  for (int waited = 0; atomic_load(&done) < N && waited < 10000; waited += 10) {
    struct pollfd p = {.fd = pe_dispatcher_fd(d), .events = POLLIN};
    if (poll(&p, 1, 10) > 0)
      pe_dispatcher_dispatch(d);
  }
  ck_assert_int_eq(atomic_load(&done), N);
  ck_assert_uint_eq(pe_dispatcher_pending(d), 0);
  for (int i = 0; i < N; i++) {
    char got[128];
    values_of(ex[i], PE_REQUEST, "x-pool", got, sizeof got);
    ck_assert_str_eq(got, "a,b,b,a");
    values_of(ex[i], PE_RESPONSE, "x-pool", got, sizeof got);
    ck_assert_str_eq(got, "a,b,b,a");
    pe_exchange_free(ex[i]);
  }
  /* Freed while a batch of pool-b is in flight: forgotten, not leaked. */
  pe_exchange *late = py_exchange(e);
  pe_chain *b_only = py_chain(e, "[" WHICH(",\"executor\":\"pool-b\"") "]");
  ck_assert_int_eq(pe_chain_run_async(b_only, late, PE_PHASE_REQUEST_HEADERS, d, on_done, &done),
                   PE_PENDING);
  pe_exchange_free(late);
  ck_assert_uint_eq(pe_dispatcher_pending(d), 0);
  pe_dispatcher_free(d);
  pe_chain_free(b_only);
  pe_chain_free(c);
  pe_engine_free(e);
}
END_TEST

START_TEST(naming_errors) {
  pe_engine *e = two_pools();
  char msg[256];
  pe_chain *c = NULL;
  ck_assert_int_eq(pe_chain_new_from_json(&c, e, pe_str("[" WHICH(",\"executor\":\"nope\"") "]"),
                                          msg, sizeof msg),
                   PE_ERR_NOT_FOUND);
  ck_assert_str_eq(msg, "step 0 (test-which@1.0.0): no executor named 'nope'");
  ck_assert_int_eq(pe_chain_new_from_json(
                       &c, e,
                       pe_str("[{\"name\":\"sample-native-request-header\",\"version\":\"1.0.0\","
                              "\"executor\":\"python\"}]"),
                       msg, sizeof msg),
                   PE_ERR_INVALID_ARGUMENT);
  ck_assert_str_eq(msg, "step 0 (sample-native-request-header@1.0.0): a native policy runs in "
                        "process: it takes no executor");
  ck_assert_int_eq(
      pe_chain_new_from_json(&c, e, pe_str("[" WHICH(",\"executor\":\"\"") "]"), msg, sizeof msg),
      PE_ERR_JSON);
  ck_assert_int_eq(
      pe_chain_new_from_json(&c, e, pe_str("[" WHICH(",\"executor\":7") "]"), msg, sizeof msg),
      PE_ERR_JSON);
  ck_assert_str_eq(msg, "step 0: member 'executor' must be an executor name of 1 to 63 characters");
  ck_assert_ptr_null(c);

  pe_chain_builder *b = NULL;
  ck_assert_int_eq(pe_chain_builder_new(&b, e), PE_OK);
  ck_assert_int_eq(pe_chain_builder_add_step(b, PE_LIT("test-which"), PE_LIT("1.0.0"), PE_LIT("")),
                   0);
  ck_assert_int_eq(pe_chain_builder_set_executor(b, 0, PE_LIT("")), PE_ERR_INVALID_ARGUMENT);
  ck_assert_int_eq(pe_chain_builder_set_executor(b, 1, PE_LIT("pool-b")), PE_ERR_INVALID_ARGUMENT);
  ck_assert_int_eq(pe_chain_builder_set_executor(b, 0, pe_bytes("po\0l", 4)),
                   PE_ERR_INVALID_ARGUMENT);
  ck_assert_int_eq(pe_chain_builder_set_executor(b, 0, PE_LIT("pool-b")), PE_OK);
  ck_assert_int_eq(pe_chain_builder_build(b, &c), PE_OK);
  pe_exchange *ex = py_exchange(e);
  ck_assert_int_eq(pe_chain_run(c, ex, PE_PHASE_REQUEST_HEADERS), PE_OK);
  char got[32];
  values_of(ex, PE_REQUEST, "x-pool", got, sizeof got);
  ck_assert_str_eq(got, "b");
  pe_exchange_free(ex);
  pe_chain_free(c);
  pe_chain_builder_free(b);

  /* A second pool under a name in use is refused before any worker starts. */
  ck_assert_int_eq(start_pool(e, "pool-b", PE_PY_EXECUTOR_B), PE_ERR_STATE);
  ck_assert_str_eq(pe_engine_errmsg(e), "an executor named 'pool-b' is already running");
  pe_python_options *po = NULL;
  ck_assert_int_eq(pe_python_options_new(&po), PE_OK);
  ck_assert_int_eq(pe_python_options_set_name(po, ""), PE_ERR_INVALID_ARGUMENT);
  char long_name[80];
  memset(long_name, 'x', sizeof long_name - 1);
  long_name[sizeof long_name - 1] = '\0';
  ck_assert_int_eq(pe_python_options_set_name(po, long_name), PE_ERR_INVALID_ARGUMENT);
  ck_assert_int_eq(pe_python_options_set_name(NULL, "x"), PE_ERR_INVALID_ARGUMENT);
  pe_python_options_free(po);
  pe_engine_free(e);
}
END_TEST

int main(void) {
  Suite *s = suite_create("executors");
  TCase *tc = tcase_create("executors");
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, steps_run_on_the_executor_they_name);
  tcase_add_test(tc, one_dispatcher_covers_every_executor);
  tcase_add_test(tc, naming_errors);
  suite_add_tcase(s, tc);
  return pe_test_run_suite(s);
}
