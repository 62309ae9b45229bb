/* Python steps through the blocking pe_chain_run with the real worker: the
 * sample policies, every phase, failures (exception, CR/LF, refused
 * params), immediate answers, order when native and Python steps mix, an
 * 8 MiB body byte for byte, and bytes that are not UTF-8. */
#include "test_python_util.h"

#include <pthread.h>
#include <sched.h>

static const char python4[] = "[{\"name\":\"sample-python-response-header\",\"version\":\"1.0.0\"},"
                              " {\"name\":\"sample-python-request-body\",\"version\":\"1.0.0\"},"
                              " {\"name\":\"sample-python-response-header\",\"version\":\"1.0.0\"},"
                              " {\"name\":\"sample-python-response-body\",\"version\":\"1.0.0\"}]";

static void run_all_phases(const pe_chain *c, pe_exchange *ex, const char *payload) {
  ck_assert_int_eq(pe_chain_run(c, ex, PE_PHASE_REQUEST_HEADERS), PE_OK);
  ck_assert_int_eq(pe_exchange_body_set(ex, PE_REQUEST, pe_str(payload)), PE_OK);
  ck_assert_int_eq(pe_chain_run(c, ex, PE_PHASE_REQUEST_BODY), PE_OK);
  /* The echo backend answers with the (rewritten) request body. */
  ck_assert_int_eq(pe_exchange_set_status(ex, 200), PE_OK);
  ck_assert_int_eq(pe_exchange_body_set(ex, PE_RESPONSE, pe_exchange_body(ex, PE_REQUEST)), PE_OK);
  ck_assert_int_eq(pe_chain_run(c, ex, PE_PHASE_RESPONSE_HEADERS), PE_OK);
  ck_assert_int_eq(pe_chain_run(c, ex, PE_PHASE_RESPONSE_BODY), PE_OK);
}

START_TEST(python4_profile) {
  pe_engine *e = py_engine(1);
  pe_chain *c = py_chain(e, python4);
  ck_assert_uint_eq(pe_chain_needs(c), PE_NEEDS_REQUEST_BODY | PE_NEEDS_RESPONSE_BODY);
  pe_exchange *ex = py_exchange(e);
  for (int round = 0; round < 3; round++) {
    run_all_phases(c, ex, "hello");
    ck_assert_int_eq(pe_exchange_verdict(ex), PE_VERDICT_CONTINUE);
    pe_slice v;
    ck_assert_int_eq(pe_exchange_header_get(ex, PE_RESPONSE, PE_LIT("x-sample-policy-phase"), &v),
                     PE_OK);
    ck_assert_slice_eq(v, "response-header");
    ck_assert_slice_eq(pe_exchange_body(ex, PE_RESPONSE),
                       "[sample-response-body][sample-request-body]hello");
    ck_assert_int_eq(pe_exchange_reset(ex), PE_OK);
    ck_assert_int_eq(pe_exchange_set_method(ex, PE_LIT("GET")), PE_OK);
  }
  ck_assert_int_eq(atomic_load(&py_outcomes[PE_STEP_OK]), 12);
  size_t alive = 0;
  ck_assert_int_eq(pe_engine_python_ping(e, &alive), PE_OK);
  ck_assert_uint_eq(alive, 1);
  pe_exchange_free(ex);
  pe_chain_free(c);
  pe_engine_free(e);
}
END_TEST

START_TEST(request_header_sample) {
  pe_engine *e = py_engine(2);
  ck_assert_int_eq(pe_engine_has_policy(e, PE_LIT("sample-python-request-header"), PE_LIT("1.0.0")),
                   1);
  pe_chain *c = py_chain(e, "[{\"name\":\"sample-python-request-header\",\"version\":\"1.0.0\"}]");
  ck_assert_uint_eq(pe_chain_phases(c), PE_PHASE_BIT(PE_PHASE_REQUEST_HEADERS));
  ck_assert_uint_eq(pe_chain_needs(c), 0);
  pe_exchange *ex = py_exchange(e);
  ck_assert_int_eq(pe_chain_run(c, ex, PE_PHASE_REQUEST_HEADERS), PE_OK);
  pe_slice v;
  ck_assert_int_eq(pe_exchange_header_get(ex, PE_REQUEST, PE_LIT("x-sample-policy-phase"), &v),
                   PE_OK);
  ck_assert_slice_eq(v, "request-header");
  /* Phases the chain does not implement do nothing. */
  ck_assert_int_eq(pe_chain_run(c, ex, PE_PHASE_RESPONSE_BODY), PE_OK);
  pe_exchange_free(ex);
  pe_chain_free(c);
  pe_engine_free(e);
}
END_TEST

/* The i-th CPU this process may use, wrapping around. */
static int nth_cpu(int i) {
  cpu_set_t allowed;
  ck_assert_int_eq(sched_getaffinity(0, sizeof allowed, &allowed), 0);
  i %= CPU_COUNT(&allowed);
  for (int c = 0, n = 0; c < CPU_SETSIZE; c++)
    if (CPU_ISSET(c, &allowed) && n++ == i)
      return c;
  return -1;
}

static void *run_sample_on_cpu(void *arg) {
  pe_engine *e = arg;
  pe_chain *c = py_chain(e, "[{\"name\":\"sample-python-request-header\",\"version\":\"1.0.0\"}]");
  pe_exchange *ex = py_exchange(e);
  for (int i = 0; i < 50; i++) {
    ck_assert_int_eq(pe_exchange_reset(ex), PE_OK);
    ck_assert_int_eq(pe_chain_run(c, ex, PE_PHASE_REQUEST_HEADERS), PE_OK);
    pe_slice v;
    ck_assert_int_eq(pe_exchange_header_get(ex, PE_REQUEST, PE_LIT("x-sample-policy-phase"), &v),
                     PE_OK);
  }
  pe_exchange_free(ex);
  pe_chain_free(c);
  return NULL;
}

START_TEST(cpu_affinity_pins_workers) {
  py_config cfg = {.workers = 2, .cpu_affinity = 1};
  pe_engine *e = py_engine_with(NULL, cfg);
  for (int i = 0; i < 2; i++) {
    int pid = py_worker_pid(e, (size_t)i);
    cpu_set_t set;
    ck_assert_int_eq(sched_getaffinity(pid, sizeof set, &set), 0);
    ck_assert_int_eq(CPU_COUNT(&set), 1);
    ck_assert_int_eq(CPU_ISSET(nth_cpu(i), &set) != 0, 1);
  }
  /* Callers pinned to each CPU are served (by the worker on their CPU). */
  for (int i = 0; i < 2; i++) {
    pthread_t t;
    pthread_attr_t attr;
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(nth_cpu(i), &one);
    pthread_attr_init(&attr);
    pthread_attr_setaffinity_np(&attr, sizeof one, &one);
    ck_assert_int_eq(pthread_create(&t, &attr, run_sample_on_cpu, e), 0);
    pthread_attr_destroy(&attr);
    ck_assert_int_eq(pthread_join(t, NULL), 0);
  }
  ck_assert_uint_eq(pe_engine_python_restarts(e), 0);
  pe_engine_free(e);
}
END_TEST

static void exception_case(const char *mode, pe_verdict want) {
  pe_engine *e = py_engine(1);
  char json[160];
  snprintf(json, sizeof json,
           "[{\"name\":\"test-raise\",\"version\":\"1.0.0\",\"failure_mode\":\"%s\"}]", mode);
  pe_chain *c = py_chain(e, json);
  pe_exchange *ex = py_exchange(e);
  pe_test_log_clear();
  ck_assert_int_eq(pe_chain_run(c, ex, PE_PHASE_REQUEST_HEADERS), PE_OK);
  ck_assert_int_eq(pe_exchange_verdict(ex), want);
  ck_assert_int_eq(pe_test_log_contains("boom from test-raise"), 1);
  ck_assert_int_eq(pe_test_log_contains("test-raise@1.0.0"), 1);
  ck_assert_ptr_nonnull(strstr(pe_exchange_errmsg(ex), "boom from test-raise"));
  pe_slice v;
  ck_assert_int_eq(pe_exchange_header_get(ex, PE_REQUEST, PE_LIT("x-partial"), &v),
                   PE_ERR_NOT_FOUND);
  ck_assert_int_eq(atomic_load(&py_outcomes[PE_STEP_FAILED]), 1);
  ck_assert_uint_eq(pe_engine_python_restarts(e), 0); /* an exception is not a crash */
  pe_exchange_free(ex);
  pe_chain_free(c);
  pe_engine_free(e);
}

START_TEST(exception_fail_closed) {
  exception_case("closed", PE_VERDICT_RESPOND);
}
END_TEST

START_TEST(exception_fail_open) {
  exception_case("open", PE_VERDICT_CONTINUE);
}
END_TEST

START_TEST(crlf_from_python_is_refused) {
  pe_engine *e = py_engine(1);
  pe_chain *c = py_chain(e, "[{\"name\":\"test-crlf\",\"version\":\"1.0.0\"}]");
  pe_exchange *ex = py_exchange(e);
  ck_assert_int_eq(pe_chain_run(c, ex, PE_PHASE_REQUEST_HEADERS), PE_OK);
  ck_assert_int_eq(pe_exchange_status(ex), 500);
  pe_slice v;
  ck_assert_int_eq(pe_exchange_header_get(ex, PE_REQUEST, PE_LIT("x-evil"), &v), PE_ERR_NOT_FOUND);
  ck_assert_int_eq(pe_exchange_header_get(ex, PE_REQUEST, PE_LIT("injected"), &v),
                   PE_ERR_NOT_FOUND);
  pe_exchange_free(ex);
  pe_chain_free(c);
  pe_engine_free(e);
}
END_TEST

START_TEST(refused_params_fail_the_build) {
  pe_engine *e = py_engine(2);
  pe_chain *c = NULL;
  char err[256] = "";
  ck_assert_int_eq(pe_chain_new_from_json(&c, e,
                                          PE_LIT("[{\"name\":\"test-order\",\"version\":\"1.0.0\","
                                                 "\"params\":{\"tag\":3}}]"),
                                          err, sizeof err),
                   PE_ERR_PARAM);
  ck_assert_ptr_null(c);
  ck_assert_msg(strstr(err, "tag"), "message: %s", err);
  ck_assert_int_eq(
      pe_chain_new_from_json(&c, e, PE_LIT("[{\"name\":\"test-nothing\",\"version\":\"1.0.0\"}]"),
                             err, sizeof err),
      PE_ERR_UNKNOWN_POLICY);
  pe_engine_free(e);
}
END_TEST

START_TEST(immediate_response) {
  pe_engine *e = py_engine(1);
  pe_chain *c = py_chain(e, "[{\"name\":\"test-respond\",\"version\":\"1.0.0\"},"
                            " {\"name\":\"sample-python-request-header\",\"version\":\"1.0.0\"}]");
  pe_exchange *ex = py_exchange(e);
  ck_assert_int_eq(pe_chain_run(c, ex, PE_PHASE_REQUEST_HEADERS), PE_OK);
  ck_assert_int_eq(pe_exchange_verdict(ex), PE_VERDICT_RESPOND);
  ck_assert_int_eq(pe_exchange_status(ex), 403);
  ck_assert_slice_eq(pe_exchange_body(ex, PE_RESPONSE), "denied by test-respond");
  pe_slice v;
  ck_assert_int_eq(pe_exchange_header_get(ex, PE_RESPONSE, PE_LIT("x-denied-by"), &v), PE_OK);
  ck_assert_slice_eq(v, "test-respond");
  /* The chain stopped: the second step did not run. */
  ck_assert_int_eq(pe_exchange_header_get(ex, PE_REQUEST, PE_LIT("x-sample-policy-phase"), &v),
                   PE_ERR_NOT_FOUND);
  ck_assert_int_eq(atomic_load(&py_outcomes[PE_STEP_RESPONDED]), 1);
  pe_exchange_free(ex);
  pe_chain_free(c);
  pe_engine_free(e);
}
END_TEST

/* A native policy that adds its tag to x-order, like test-order. */
static int native_tag(pe_exchange *ex, pe_dir dir, void *instance) {
  const char *tag = instance;
  return pe_exchange_header_add(ex, dir, PE_LIT("x-order"), pe_str(tag));
}
static int native_req(pe_exchange *ex, void *instance, void *ud) {
  (void)ud;
  return native_tag(ex, PE_REQUEST, instance);
}
static int native_resp(pe_exchange *ex, void *instance, void *ud) {
  (void)ud;
  return native_tag(ex, PE_RESPONSE, instance);
}
static int native_create(void **instance, pe_params *params, void *ud) {
  (void)ud;
  pe_slice tag;
  int rc = pe_params_get_string(params, "tag", &tag);
  if (rc != PE_OK)
    return rc;
  *instance = strndup(tag.ptr, tag.len);
  return *instance ? PE_OK : PE_ERR_NOMEM;
}
static void native_destroy(void *instance, void *ud) {
  (void)ud;
  free(instance);
}

static void register_native_order(pe_engine *e) {
  static const pe_param_spec specs[] = {{"tag", PE_PARAM_STRING, 1}};
  pe_policy_def def = {.abi = PE_POLICY_ABI,
                       .name = "test-native-order",
                       .version = "1.0.0",
                       .params = specs,
                       .param_count = 1,
                       .create = native_create,
                       .destroy = native_destroy,
                       .on_request_headers = native_req,
                       .on_response_headers = native_resp};
  ck_assert_int_eq(pe_engine_register_policy(e, &def), PE_OK);
}

static void check_order(const pe_exchange *ex, pe_dir dir, const char *const *want, size_t n) {
  for (size_t i = 0; i < n; i++) {
    pe_slice v;
    ck_assert_int_eq(pe_exchange_header_get_nth(ex, dir, PE_LIT("x-order"), i, &v), PE_OK);
    ck_assert_slice_eq(v, want[i]);
  }
  pe_slice v;
  ck_assert_int_eq(pe_exchange_header_get_nth(ex, dir, PE_LIT("x-order"), n, &v), PE_ERR_NOT_FOUND);
}

static const char mixed_chain[] =
    "[{\"name\":\"test-native-order\",\"version\":\"1.0.0\",\"params\":{\"tag\":\"n1\"}},"
    " {\"name\":\"test-order\",\"version\":\"1.0.0\",\"params\":{\"tag\":\"p2\"}},"
    " {\"name\":\"test-order\",\"version\":\"1.0.0\",\"params\":{\"tag\":\"p3\"}},"
    " {\"name\":\"test-native-order\",\"version\":\"1.0.0\",\"params\":{\"tag\":\"n4\"}},"
    " {\"name\":\"test-order\",\"version\":\"1.0.0\",\"params\":{\"tag\":\"p5\"}}]";

START_TEST(native_and_python_in_order) {
  pe_engine *e = py_engine(2);
  register_native_order(e);
  pe_chain *c = py_chain(e, mixed_chain);
  pe_exchange *ex = py_exchange(e);
  ck_assert_int_eq(pe_chain_run(c, ex, PE_PHASE_REQUEST_HEADERS), PE_OK);
  static const char *const forward[] = {"n1", "p2", "p3", "n4", "p5"};
  check_order(ex, PE_REQUEST, forward, 5);
  ck_assert_int_eq(pe_exchange_set_status(ex, 200), PE_OK);
  ck_assert_int_eq(pe_chain_run(c, ex, PE_PHASE_RESPONSE_HEADERS), PE_OK);
  static const char *const reverse[] = {"p5", "n4", "p3", "p2", "n1"};
  check_order(ex, PE_RESPONSE, reverse, 5);
  ck_assert_int_eq(atomic_load(&py_outcomes[PE_STEP_OK]), 10);
  pe_exchange_free(ex);
  pe_chain_free(c);
  pe_engine_free(e);
}
END_TEST

START_TEST(eight_mib_body_byte_for_byte) {
  pe_engine *e = py_engine(1);
  pe_chain *c = py_chain(e, "[{\"name\":\"test-copy\",\"version\":\"1.0.0\"},"
                            " {\"name\":\"test-echo-body\",\"version\":\"1.0.0\"}]");
  size_t len = 8u << 20;
  char *body = malloc(len);
  ck_assert_ptr_nonnull(body);
  uint32_t x = 2463534242u; /* xorshift: every byte value, NULs included */
  for (size_t i = 0; i < len; i++) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    body[i] = (char)x;
  }
  pe_exchange *ex = py_exchange(e);
  ck_assert_int_eq(pe_exchange_header_add(ex, PE_REQUEST, PE_LIT("x-in"), PE_LIT("v")), PE_OK);
  ck_assert_int_eq(pe_exchange_body_set(ex, PE_REQUEST, pe_bytes(body, len)), PE_OK);
  ck_assert_int_eq(pe_chain_run(c, ex, PE_PHASE_REQUEST_BODY), PE_OK);
  ck_assert_int_eq(pe_exchange_verdict(ex), PE_VERDICT_CONTINUE);
  pe_slice out = pe_exchange_body(ex, PE_REQUEST);
  static const char tail[] = "\xff\x00\xfe-tail";
  ck_assert_uint_eq(out.len, len + sizeof tail - 1);
  ck_assert_int_eq(memcmp(out.ptr, body, len), 0);
  ck_assert_int_eq(memcmp(out.ptr + len, tail, sizeof tail - 1), 0);
  /* The second step saw the first one's result: the length, in metadata. */
  char want[32];
  snprintf(want, sizeof want, "%zu", len + sizeof tail - 1);
  pe_slice v;
  ck_assert_int_eq(pe_exchange_meta_get(ex, PE_LIT("body-length"), &v), PE_OK);
  ck_assert_slice_eq(v, want);
  free(body);
  pe_exchange_free(ex);
  pe_chain_free(c);
  pe_engine_free(e);
}
END_TEST

START_TEST(non_utf8_header_bytes_pass_unchanged) {
  pe_engine *e = py_engine(1);
  pe_chain *c = py_chain(e, "[{\"name\":\"test-copy\",\"version\":\"1.0.0\"}]");
  pe_exchange *ex = py_exchange(e);
  static const char value[] = "\xff\xfe caf\xc3\xa9 \x80\x81 \xed\xa0\x80 end";
  ck_assert_int_eq(
      pe_exchange_header_add(ex, PE_REQUEST, PE_LIT("x-in"), pe_bytes(value, sizeof value - 1)),
      PE_OK);
  ck_assert_int_eq(pe_chain_run(c, ex, PE_PHASE_REQUEST_HEADERS), PE_OK);
  ck_assert_int_eq(pe_exchange_verdict(ex), PE_VERDICT_CONTINUE);
  pe_slice v;
  ck_assert_int_eq(pe_exchange_header_get(ex, PE_REQUEST, PE_LIT("x-out"), &v), PE_OK);
  ck_assert_uint_eq(v.len, sizeof value - 1);
  ck_assert_int_eq(memcmp(v.ptr, value, v.len), 0);
  pe_exchange_free(ex);
  pe_chain_free(c);
  pe_engine_free(e);
}
END_TEST

/* Every allocation of the backend goes through the engine's allocator and
 * is given back by the time the engine is gone. */
START_TEST(memory_is_returned) {
  pe_test_alloc a = {0};
  py_config cfg = {.workers = 2};
  pe_engine *e = py_engine_with(&a, cfg);
  pe_chain *c = py_chain(e, python4);
  pe_exchange *ex = py_exchange(e);
  run_all_phases(c, ex, "hello");
  pe_exchange_free(ex);
  pe_chain_free(c);
  pe_engine_free(e);
  ck_assert_int_eq(atomic_load(&a.allocs), atomic_load(&a.frees));
}
END_TEST

int main(void) {
  Suite *s = suite_create("python_run");
  TCase *tc = tcase_create("blocking");
  tcase_set_timeout(tc, 30);
  tcase_add_test(tc, python4_profile);
  tcase_add_test(tc, request_header_sample);
  tcase_add_test(tc, cpu_affinity_pins_workers);
  tcase_add_test(tc, exception_fail_closed);
  tcase_add_test(tc, exception_fail_open);
  tcase_add_test(tc, crlf_from_python_is_refused);
  tcase_add_test(tc, refused_params_fail_the_build);
  tcase_add_test(tc, immediate_response);
  tcase_add_test(tc, native_and_python_in_order);
  tcase_add_test(tc, eight_mib_body_byte_for_byte);
  tcase_add_test(tc, non_utf8_header_bytes_pass_unchanged);
  tcase_add_test(tc, memory_is_returned);
  suite_add_tcase(s, tc);
  return pe_test_run_suite(s);
}
