/* Threads: several threads run exchanges on one shared chain at once (the
 * chain is immutable, each exchange has one user), and several threads
 * register policies and build chains on one engine at once. */
#include "pe_test_util.h"

#include <pthread.h>
#include <stdio.h>

#define THREADS 4
#define ITERATIONS 20000

/* Appends its tag to the metadata entry "order:<phase>". */
static int tag_create(void **instance, pe_params *params, void *user_data) {
  (void)user_data;
  pe_slice tag;
  if (pe_params_get_string(params, "tag", &tag) != PE_OK || tag.len != 1)
    return PE_ERR_PARAM;
  *instance = (void *)(tag.ptr[0] == 'a' ? "a" : "b"); /* static: outlives params */
  return PE_OK;
}

static int append_tag(pe_exchange *ex, void *instance, pe_slice key) {
  pe_slice old = {0};
  char now[32];
  (void)pe_exchange_meta_get(ex, key, &old);
  int n = snprintf(now, sizeof now, "%.*s%s", (int)old.len, old.ptr ? old.ptr : "",
                   (const char *)instance);
  return pe_exchange_meta_set(ex, key, pe_bytes(now, (size_t)n));
}

static int tag_request(pe_exchange *ex, void *instance, void *user_data) {
  (void)user_data;
  return append_tag(ex, instance, PE_LIT("order:request"));
}

static int tag_response(pe_exchange *ex, void *instance, void *user_data) {
  (void)user_data;
  return append_tag(ex, instance, PE_LIT("order:response"));
}

/* Changes the request, then fails: as an open step its change must vanish. */
static int fail_after_change(pe_exchange *ex, void *instance, void *user_data) {
  (void)instance;
  (void)user_data;
  (void)pe_exchange_header_set(ex, PE_REQUEST, PE_LIT("x-thread"), PE_LIT("clobbered"));
  return PE_ERR_POLICY;
}

/* What the sample-native-*-header policies do, inline so that this test
 * does not depend on how plugins are built. */
static int set_request_phase(pe_exchange *ex, void *instance, void *user_data) {
  (void)instance;
  (void)user_data;
  return pe_exchange_header_set(ex, PE_REQUEST, PE_LIT("x-sample-policy-phase"),
                                PE_LIT("request-header"));
}

static int set_response_phase(pe_exchange *ex, void *instance, void *user_data) {
  (void)instance;
  (void)user_data;
  return pe_exchange_header_set(ex, PE_RESPONSE, PE_LIT("x-sample-policy-phase"),
                                PE_LIT("response-header"));
}

static atomic_long metric_events;
static void count_event(const pe_step_event *ev, void *user_data) {
  (void)ev;
  (void)user_data;
  atomic_fetch_add(&metric_events, 1);
}

static const pe_param_spec tag_specs[] = {{"tag", PE_PARAM_STRING, 1}};

static pe_engine *threaded_engine(pe_test_alloc *a) {
  pe_engine_options *o = NULL;
  pe_engine *e = NULL;
  ck_assert_int_eq(pe_engine_options_new(&o), PE_OK);
  pe_mem m = pe_test_mem(a);
  ck_assert_int_eq(pe_engine_options_set_mem(o, &m), PE_OK);
  ck_assert_int_eq(pe_engine_options_set_log(o, pe_test_log_fn, NULL), PE_OK);
  ck_assert_int_eq(pe_engine_options_set_log_level(o, PE_LOG_WARN), PE_OK);
  ck_assert_int_eq(pe_engine_options_set_metrics(o, count_event, NULL), PE_OK);
  ck_assert_int_eq(pe_engine_new(&e, o), PE_OK);
  pe_engine_options_free(o);
  pe_policy_def phase_header = {.abi = PE_POLICY_ABI,
                                .name = "phase-header",
                                .version = "1",
                                .on_request_headers = set_request_phase,
                                .on_response_headers = set_response_phase};
  ck_assert_int_eq(pe_engine_register_policy(e, &phase_header), PE_OK);
  pe_policy_def tag = {.abi = PE_POLICY_ABI,
                       .name = "tag",
                       .version = "1",
                       .params = tag_specs,
                       .param_count = 1,
                       .create = tag_create,
                       .on_request_headers = tag_request,
                       .on_response_headers = tag_response};
  ck_assert_int_eq(pe_engine_register_policy(e, &tag), PE_OK);
  pe_policy_def fail = {.abi = PE_POLICY_ABI,
                        .name = "fail",
                        .version = "1",
                        .on_request_headers = fail_after_change};
  ck_assert_int_eq(pe_engine_register_policy(e, &fail), PE_OK);
  return e;
}

typedef struct worker {
  pthread_t thread;
  int id;
  pe_engine *engine;
  pe_chain *chain;
  int failures; /* read on the main thread: Check asserts are not thread-safe */
} worker;

static void expect(worker *w, int cond) {
  if (!cond)
    w->failures++;
}

static int meta_is(pe_exchange *ex, const char *key, const char *want) {
  pe_slice v;
  return pe_exchange_meta_get(ex, pe_str(key), &v) == PE_OK && v.len == strlen(want) &&
         memcmp(v.ptr, want, v.len) == 0;
}

static int header_is(pe_exchange *ex, pe_dir dir, const char *name, const char *want) {
  pe_slice v;
  return pe_exchange_header_get(ex, dir, pe_str(name), &v) == PE_OK && v.len == strlen(want) &&
         memcmp(v.ptr, want, v.len) == 0;
}

static void *run_requests(void *arg) {
  worker *w = arg;
  pe_exchange *ex = NULL;
  expect(w, pe_exchange_new(&ex, w->engine) == PE_OK);
  for (int i = 0; ex && i < ITERATIONS; i++) {
    char id[32];
    snprintf(id, sizeof id, "%d-%d", w->id, i);
    expect(w, pe_exchange_reset(ex) == PE_OK);
    expect(w, pe_exchange_header_add(ex, PE_REQUEST, PE_LIT("x-thread"), pe_str(id)) == PE_OK);
    expect(w, pe_chain_run(w->chain, ex, PE_PHASE_REQUEST_HEADERS) == PE_OK);
    expect(w, meta_is(ex, "order:request", "ab"));
    expect(w, header_is(ex, PE_REQUEST, "x-thread", id)); /* the failed step's change is gone */
    expect(w, header_is(ex, PE_REQUEST, "x-sample-policy-phase", "request-header"));
    expect(w, pe_exchange_set_status(ex, 200) == PE_OK);
    expect(w, pe_chain_run(w->chain, ex, PE_PHASE_RESPONSE_HEADERS) == PE_OK);
    expect(w, meta_is(ex, "order:response", "ba"));
    expect(w, header_is(ex, PE_RESPONSE, "x-sample-policy-phase", "response-header"));
    expect(w, pe_exchange_verdict(ex) == PE_VERDICT_CONTINUE);
  }
  pe_exchange_free(ex);
  return NULL;
}

START_TEST(threads_share_one_chain) {
  pe_test_alloc a = {0};
  pe_engine *e = threaded_engine(&a);
  pe_chain *c = NULL;
  char msg[256];
  ck_assert_int_eq(pe_chain_new_from_json(
                       &c, e,
                       pe_str("[{\"name\":\"phase-header\",\"version\":\"1\"},"
                              "{\"name\":\"tag\",\"version\":\"1\",\"params\":{\"tag\":\"a\"}},"
                              "{\"name\":\"fail\",\"version\":\"1\",\"failure_mode\":\"open\"},"
                              "{\"name\":\"tag\",\"version\":\"1\",\"params\":{\"tag\":\"b\"}},"
                              "{\"name\":\"phase-header\",\"version\":\"1\"}]"),
                       msg, sizeof msg),
                   PE_OK);
  atomic_store(&metric_events, 0);
  worker w[THREADS];
  for (int i = 0; i < THREADS; i++) {
    w[i] = (worker){.id = i, .engine = e, .chain = pe_chain_ref(c)};
    ck_assert_int_eq(pthread_create(&w[i].thread, NULL, run_requests, &w[i]), 0);
  }
  pe_chain_free(c); /* the workers' references keep it */
  for (int i = 0; i < THREADS; i++) {
    ck_assert_int_eq(pthread_join(w[i].thread, NULL), 0);
    ck_assert_int_eq(w[i].failures, 0);
    pe_chain_free(w[i].chain);
  }
  /* Per request: 5 request-header steps and 4 response-header steps. */
  ck_assert_int_eq(atomic_load(&metric_events), (long)THREADS * ITERATIONS * 9);
  pe_engine_free(e);
  ck_assert_int_eq(a.allocs, a.frees);
}
END_TEST

/* Registering and building at once: the registry lock keeps both right. */
static int noop(pe_exchange *ex, void *instance, void *user_data) {
  (void)ex;
  (void)instance;
  (void)user_data;
  return PE_OK;
}

static void *register_and_build(void *arg) {
  worker *w = arg;
  for (int i = 0; i < 200; i++) {
    char name[32];
    snprintf(name, sizeof name, "p%d-%d", w->id, i);
    pe_policy_def def = {
        .abi = PE_POLICY_ABI, .name = name, .version = "1", .on_request_headers = noop};
    expect(w, pe_engine_register_policy(w->engine, &def) == PE_OK);
    /* Everyone also tries the same shared name: exactly one wins. */
    snprintf(name, sizeof name, "shared-%d", i);
    int rc = pe_engine_register_policy(w->engine, &def);
    expect(w, rc == PE_OK || rc == PE_ERR_EXISTS);
    char json[128];
    snprintf(json, sizeof json, "[{\"name\":\"p%d-%d\",\"version\":\"1\"}]", w->id, i);
    pe_chain *c = NULL;
    expect(w, pe_chain_new_from_json(&c, w->engine, pe_str(json), NULL, 0) == PE_OK);
    expect(w, pe_chain_step_count(c) == 1);
    pe_chain_free(c);
  }
  return NULL;
}

START_TEST(threads_register_and_build_at_once) {
  pe_test_alloc a = {0};
  pe_engine *e = threaded_engine(&a);
  worker w[THREADS];
  for (int i = 0; i < THREADS; i++) {
    w[i] = (worker){.id = i, .engine = e};
    ck_assert_int_eq(pthread_create(&w[i].thread, NULL, register_and_build, &w[i]), 0);
  }
  for (int i = 0; i < THREADS; i++) {
    ck_assert_int_eq(pthread_join(w[i].thread, NULL), 0);
    ck_assert_int_eq(w[i].failures, 0);
  }
  for (int i = 0; i < 200; i++) {
    char name[32];
    snprintf(name, sizeof name, "shared-%d", i);
    ck_assert(pe_engine_has_policy(e, pe_str(name), pe_str("1")));
  }
  pe_engine_free(e);
  ck_assert_int_eq(a.allocs, a.frees);
}
END_TEST

static Suite *threads_suite(void) {
  Suite *s = suite_create("threads");
  TCase *tc = tcase_create("threads");
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, threads_share_one_chain);
  tcase_add_test(tc, threads_register_and_build_at_once);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) {
  return pe_test_run_suite(threads_suite());
}
