/* Chains: the builder API, the JSON chain format and every way it can be
 * wrong, phases / needs / run orders, disabled steps, reference counts, and
 * an allocation-failure loop over building. */
#include "pe_test_util.h"
#include "pe_internal.h"

#include <stdio.h>

static int noop(pe_exchange *ex, void *instance, void *user_data) {
  (void)ex;
  (void)instance;
  (void)user_data;
  return PE_OK;
}

static int created, destroyed; /* instances made and destroyed */

static int counting_create(void **instance, pe_params *params, void *user_data) {
  (void)params;
  (void)user_data;
  created++;
  *instance = &created;
  return PE_OK;
}

static void counting_destroy(void *instance, void *user_data) {
  (void)user_data;
  ck_assert_ptr_eq(instance, &created);
  destroyed++;
}

static int fail_create(void **instance, pe_params *params, void *user_data) {
  (void)instance;
  (void)user_data;
  pe_params_set_errmsg(params, "always refuses");
  return PE_ERR_PARAM;
}

static void add_policy(pe_engine *e, const char *name, pe_phase_fn on[PE_PHASE_COUNT],
                       unsigned flags) {
  pe_policy_def def = {.abi = PE_POLICY_ABI,
                       .name = name,
                       .version = "1",
                       .flags = flags,
                       .create = counting_create,
                       .destroy = counting_destroy,
                       .on_request_headers = on[0],
                       .on_request_body = on[1],
                       .on_response_headers = on[2],
                       .on_response_body = on[3]};
  ck_assert_int_eq(pe_engine_register_policy(e, &def), PE_OK);
}

/* reqh, reqb, resph, respb implement one phase each; flagged implements
 * request headers but asks for the response body by flag; refuser's create
 * always fails. */
static pe_engine *engine_with_policies(pe_test_alloc *a) {
  pe_engine *e = pe_test_engine(a);
  add_policy(e, "reqh", (pe_phase_fn[4]){noop, NULL, NULL, NULL}, 0);
  add_policy(e, "reqb", (pe_phase_fn[4]){NULL, noop, NULL, NULL}, 0);
  add_policy(e, "resph", (pe_phase_fn[4]){NULL, NULL, noop, NULL}, 0);
  add_policy(e, "respb", (pe_phase_fn[4]){NULL, NULL, NULL, noop}, 0);
  add_policy(e, "flagged", (pe_phase_fn[4]){noop, NULL, NULL, NULL}, PE_POLICY_NEEDS_RESPONSE_BODY);
  add_policy(e, "all", (pe_phase_fn[4]){noop, noop, noop, noop}, 0);
  pe_policy_def def = {.abi = PE_POLICY_ABI,
                       .name = "refuser",
                       .version = "1",
                       .create = fail_create,
                       .on_request_headers = noop};
  ck_assert_int_eq(pe_engine_register_policy(e, &def), PE_OK);
  return e;
}

static int add(pe_chain_builder *b, const char *name) {
  return pe_chain_builder_add_step(b, pe_str(name), pe_str("1"), pe_str(""));
}

START_TEST(builder_api) {
  pe_test_alloc a = {0};
  pe_engine *e = engine_with_policies(&a);
  pe_chain_builder *b = NULL;
  ck_assert_int_eq(pe_chain_builder_new(NULL, e), PE_ERR_INVALID_ARGUMENT);
  ck_assert_int_eq(pe_chain_builder_new(&b, NULL), PE_ERR_INVALID_ARGUMENT);
  ck_assert_int_eq(pe_chain_builder_new(&b, e), PE_OK);
  ck_assert_str_eq(pe_chain_builder_errmsg(b), "");
  ck_assert_str_eq(pe_chain_builder_errmsg(NULL), "");

  ck_assert_int_eq(add(b, "reqh"), 0);
  ck_assert_int_eq(pe_chain_builder_add_step(b, pe_str("resph"), pe_str("1"), pe_str(" { } ")), 1);
  ck_assert_int_eq(pe_chain_builder_add_step(b, pe_str(""), pe_str("1"), pe_str("")),
                   PE_ERR_INVALID_ARGUMENT);
  ck_assert_int_eq(pe_chain_builder_add_step(b, pe_str("x"), pe_str(""), pe_str("")),
                   PE_ERR_INVALID_ARGUMENT);
  ck_assert_int_eq(pe_chain_builder_add_step(b, pe_str("x"), pe_str("1"), pe_str("[]")),
                   PE_ERR_JSON);
  ck_assert_str_eq(pe_chain_builder_errmsg(b), "step 2: params must be a JSON object");
  ck_assert_int_eq(pe_chain_builder_add_step(b, pe_str("x"), pe_str("1"), pe_str("{\"a\":")),
                   PE_ERR_JSON);
  ck_assert_ptr_nonnull(strstr(pe_chain_builder_errmsg(b), "step 2: params: invalid JSON"));
  ck_assert_int_eq(pe_chain_builder_add_step(NULL, pe_str("x"), pe_str("1"), pe_str("")),
                   PE_ERR_INVALID_ARGUMENT);

  ck_assert_int_eq(pe_chain_builder_set_failure_mode(b, 1, PE_FAIL_OPEN), PE_OK);
  ck_assert_int_eq(pe_chain_builder_set_failure_mode(b, 2, PE_FAIL_OPEN), PE_ERR_INVALID_ARGUMENT);
  ck_assert_int_eq(pe_chain_builder_set_failure_mode(b, -1, PE_FAIL_OPEN), PE_ERR_INVALID_ARGUMENT);
  ck_assert_int_eq(pe_chain_builder_set_failure_mode(b, 0, (pe_failure_mode)5),
                   PE_ERR_INVALID_ARGUMENT);
  ck_assert_int_eq(pe_chain_builder_set_timeout(b, 1, 250), PE_OK);
  ck_assert_int_eq(pe_chain_builder_set_timeout(b, 1, 0), PE_ERR_INVALID_ARGUMENT);
  ck_assert_int_eq(pe_chain_builder_set_timeout(b, 1, 3600001), PE_ERR_INVALID_ARGUMENT);
  ck_assert_int_eq(pe_chain_builder_set_timeout(b, 1, 3600000), PE_OK);
  ck_assert_int_eq(pe_chain_builder_set_timeout(b, 7, 10), PE_ERR_INVALID_ARGUMENT);
  ck_assert_int_eq(pe_chain_builder_set_enabled(b, 0, 0), PE_OK);
  ck_assert_int_eq(pe_chain_builder_set_enabled(b, 2, 1), PE_ERR_INVALID_ARGUMENT);
  ck_assert_int_eq(pe_chain_builder_set_enabled(NULL, 0, 1), PE_ERR_INVALID_ARGUMENT);

  pe_chain *c = NULL;
  ck_assert_int_eq(pe_chain_builder_build(b, NULL), PE_ERR_INVALID_ARGUMENT);
  ck_assert_int_eq(pe_chain_builder_build(NULL, &c), PE_ERR_INVALID_ARGUMENT);
  ck_assert_int_eq(pe_chain_builder_build(b, &c), PE_OK);
  ck_assert_uint_eq(pe_chain_step_count(c), 2);
  ck_assert(!c->steps[0].enabled);
  ck_assert_int_eq(c->steps[0].mode, PE_FAIL_CLOSED);
  ck_assert_uint_eq(c->steps[0].timeout_ms, 0); /* not set: the backend's default */
  ck_assert_int_eq(c->steps[1].mode, PE_FAIL_OPEN);
  ck_assert_uint_eq(c->steps[1].timeout_ms, 3600000);
  ck_assert_str_eq(c->steps[1].params_json, "{}");
  ck_assert_uint_eq(c->steps[1].index, 1);

  /* The builder is reusable, and a chain outlives it. */
  pe_chain *c2 = NULL;
  ck_assert_int_eq(add(b, "reqb"), 2);
  ck_assert_int_eq(pe_chain_builder_build(b, &c2), PE_OK);
  ck_assert_uint_eq(pe_chain_step_count(c2), 3);
  pe_chain_builder_free(b);
  pe_chain_builder_free(NULL);
  pe_chain_free(c);
  pe_chain_free(c2);
  pe_engine_free(e);
  ck_assert_int_eq(a.allocs, a.frees);
}
END_TEST

START_TEST(json_format_accepted) {
  pe_test_alloc a = {0};
  pe_engine *e = engine_with_policies(&a);
  const char *doc = "{\"name\":\"my chain\", \"policies\": ["
                    " {\"name\":\"reqh\",\"version\":\"1\"},"
                    " {\"name\":\"resph\",\"version\":\"1\",\"params\":{},"
                    "  \"failure_mode\":\"open\",\"timeout_ms\":5,\"enabled\":true},"
                    " {\"name\":\"reqb\",\"version\":\"1\",\"failure_mode\":\"closed\","
                    "  \"enabled\":false}]}";
  pe_chain *c = NULL;
  char msg[64] = "untouched";
  ck_assert_int_eq(pe_chain_new_from_json(&c, e, pe_str(doc), msg, sizeof msg), PE_OK);
  ck_assert_str_eq(msg, "");
  ck_assert_uint_eq(pe_chain_step_count(c), 3);
  ck_assert_int_eq(c->steps[1].mode, PE_FAIL_OPEN);
  ck_assert_uint_eq(c->steps[1].timeout_ms, 5);
  ck_assert_int_eq(c->steps[2].mode, PE_FAIL_CLOSED);
  ck_assert(!c->steps[2].enabled);
  pe_chain_free(c);

  /* The bare array form, and the empty chain. */
  c = NULL;
  ck_assert_int_eq(
      pe_chain_new_from_json(&c, e, pe_str("[{\"name\":\"reqh\",\"version\":\"1\"}]"), NULL, 0),
      PE_OK);
  ck_assert_uint_eq(pe_chain_step_count(c), 1);
  pe_chain_free(c);
  c = NULL;
  ck_assert_int_eq(pe_chain_new_from_json(&c, e, pe_str("[]"), NULL, 0), PE_OK);
  ck_assert_uint_eq(pe_chain_step_count(c), 0);
  ck_assert_uint_eq(pe_chain_phases(c), 0);
  pe_exchange *ex = NULL;
  ck_assert_int_eq(pe_exchange_new(&ex, e), PE_OK);
  ck_assert_int_eq(pe_chain_run(c, ex, PE_PHASE_RESPONSE_BODY), PE_OK);
  pe_exchange_free(ex);
  pe_chain_free(c);
  pe_engine_free(e);
  ck_assert_int_eq(a.allocs, a.frees);
}
END_TEST

START_TEST(json_format_refused) {
  pe_test_alloc a = {0};
  pe_engine *e = engine_with_policies(&a);
  static const struct {
    const char *doc;
    const char *msg; /* a part of the message */
  } cases[] = {
      {"[{\"name\":\"reqh\",", "invalid JSON at line 1"},
      {"", "invalid JSON"},
      {"42", "invalid JSON"}, /* jansson wants an array or object at the top */
      {"{\"steps\":[]}", "expected an array of steps"},
      {"{\"policies\":{}}", "expected an array of steps"},
      {"[\"reqh\"]", "step 1: expected an object"},
      {"[{\"version\":\"1\"}]", "step 1: member 'name' must be a non-empty string"},
      {"[{\"name\":7,\"version\":\"1\"}]", "step 1: member 'name' must be a non-empty string"},
      {"[{\"name\":\"\",\"version\":\"1\"}]", "step 1: member 'name' must be a non-empty string"},
      {"[{\"name\":\"reqh\"}]", "step 1: member 'version' must be a non-empty string"},
      {"[{\"name\":\"reqh\",\"version\":1}]", "step 1: member 'version' must be"},
      {"[{\"name\":\"reqh\",\"version\":\"1\",\"params\":[]}]",
       "step 1: member 'params' must be an object"},
      {"[{\"name\":\"reqh\",\"version\":\"1\",\"params\":\"{}\"}]", "member 'params'"},
      {"[{\"name\":\"reqh\",\"version\":\"1\",\"failure_mode\":\"maybe\"}]",
       "step 1: member 'failure_mode' must be \"open\" or \"closed\""},
      {"[{\"name\":\"reqh\",\"version\":\"1\",\"failure_mode\":1}]", "member 'failure_mode'"},
      {"[{\"name\":\"reqh\",\"version\":\"1\",\"timeout_ms\":0}]",
       "step 1: member 'timeout_ms' must be an integer from 1 to 3600000"},
      {"[{\"name\":\"reqh\",\"version\":\"1\",\"timeout_ms\":3600001}]", "member 'timeout_ms'"},
      {"[{\"name\":\"reqh\",\"version\":\"1\",\"timeout_ms\":-5}]", "member 'timeout_ms'"},
      {"[{\"name\":\"reqh\",\"version\":\"1\",\"timeout_ms\":\"5\"}]", "member 'timeout_ms'"},
      {"[{\"name\":\"reqh\",\"version\":\"1\",\"timeout_ms\":1.5}]", "member 'timeout_ms'"},
      {"[{\"name\":\"reqh\",\"version\":\"1\",\"enabled\":\"yes\"}]",
       "step 1: member 'enabled' must be true or false"},
      {"[{\"name\":\"reqh\",\"version\":\"1\",\"enabled\":1}]", "member 'enabled'"},
      {"[{\"name\":\"reqh\",\"version\":\"1\",\"param\":{}}]", "step 1: unknown member 'param'"},
      {"[{\"name\":\"reqh\",\"version\":\"1\",\"name\":\"x\"}]", "duplicate"},
  };
  pe_chain_builder *b = NULL;
  ck_assert_int_eq(pe_chain_builder_new(&b, e), PE_OK);
  ck_assert_int_eq(add(b, "reqh"), 0); /* so that JSON steps start at index 1 */
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    ck_assert_int_eq(pe_chain_builder_add_json(b, pe_str(cases[i].doc)), PE_ERR_JSON);
    ck_assert_msg(strstr(pe_chain_builder_errmsg(b), cases[i].msg), "case %zu: '%s'", i,
                  pe_chain_builder_errmsg(b));
    /* Nothing was added: the next step still gets index 1. */
    ck_assert_int_eq(add(b, "reqh"), 1);
    pe_chain_builder_free(b); /* a fresh builder with one step for the next case */
    ck_assert_int_eq(pe_chain_builder_new(&b, e), PE_OK);
    ck_assert_int_eq(add(b, "reqh"), 0);
  }
  /* A later bad step undoes the good ones before it. */
  ck_assert_int_eq(pe_chain_builder_add_json(b, pe_str("[{\"name\":\"reqh\",\"version\":\"1\"},"
                                                       "{\"name\":\"reqh\",\"version\":\"1\"},"
                                                       "{\"name\":\"reqh\",\"version\":2}]")),
                   PE_ERR_JSON);
  ck_assert_str_eq(pe_chain_builder_errmsg(b),
                   "step 3: member 'version' must be a non-empty string");
  ck_assert_int_eq(add(b, "reqh"), 1);
  ck_assert_int_eq(pe_chain_builder_add_json(NULL, pe_str("[]")), PE_ERR_INVALID_ARGUMENT);
  pe_chain_builder_free(b);

  /* pe_chain_new_from_json copies (and truncates) the message. */
  pe_chain *c = (pe_chain *)&a;
  char small[12];
  ck_assert_int_eq(
      pe_chain_new_from_json(&c, e, pe_str("[{\"name\":\"reqh\"}]"), small, sizeof small),
      PE_ERR_JSON);
  ck_assert_ptr_eq(c, (pe_chain *)&a);
  ck_assert_str_eq(small, "step 0: mem");
  ck_assert_int_eq(pe_chain_new_from_json(NULL, e, pe_str("[]"), small, sizeof small),
                   PE_ERR_INVALID_ARGUMENT);
  ck_assert_str_eq(small, "invalid arg");
  pe_engine_free(e);
  ck_assert_int_eq(a.allocs, a.frees);
}
END_TEST

START_TEST(build_errors_name_the_step) {
  pe_test_alloc a = {0};
  pe_engine *e = engine_with_policies(&a);
  created = destroyed = 0;
  pe_chain *c = (pe_chain *)&a;
  char msg[128];
  ck_assert_int_eq(pe_chain_new_from_json(&c, e,
                                          pe_str("[{\"name\":\"reqh\",\"version\":\"1\"},"
                                                 "{\"name\":\"nope\",\"version\":\"1.0\"}]"),
                                          msg, sizeof msg),
                   PE_ERR_UNKNOWN_POLICY);
  ck_assert_str_eq(msg, "step 1: unknown policy 'nope@1.0'");
  ck_assert_int_eq(created, 0); /* resolved before any instance is made */

  /* A refused create destroys the instances made before it. */
  created = destroyed = 0;
  ck_assert_int_eq(pe_chain_new_from_json(&c, e,
                                          pe_str("[{\"name\":\"reqh\",\"version\":\"1\"},"
                                                 "{\"name\":\"resph\",\"version\":\"1\"},"
                                                 "{\"name\":\"refuser\",\"version\":\"1\"}]"),
                                          msg, sizeof msg),
                   PE_ERR_PARAM);
  ck_assert_str_eq(msg, "step 2 (refuser@1): always refuses");
  ck_assert_int_eq(created, 2);
  ck_assert_int_eq(destroyed, 2);
  ck_assert_ptr_eq(c, (pe_chain *)&a);

  /* Params of a disabled step are still checked. */
  ck_assert_int_eq(pe_chain_new_from_json(&c, e,
                                          pe_str("[{\"name\":\"reqh\",\"version\":\"1\","
                                                 "\"enabled\":false,\"params\":{\"x\":1}}]"),
                                          msg, sizeof msg),
                   PE_ERR_PARAM);
  ck_assert_str_eq(msg, "step 0 (reqh@1): unknown param 'x'");
  pe_engine_free(e);
  ck_assert_int_eq(a.allocs, a.frees);
}
END_TEST

static pe_chain *chain_of(pe_engine *e, const char *json) {
  pe_chain *c = NULL;
  char msg[256];
  int rc = pe_chain_new_from_json(&c, e, pe_str(json), msg, sizeof msg);
  ck_assert_msg(rc == PE_OK, "%s", msg);
  return c;
}

START_TEST(phases_needs_and_order) {
  pe_test_alloc a = {0};
  pe_engine *e = engine_with_policies(&a);
  pe_chain *c = chain_of(e, "[{\"name\":\"reqh\",\"version\":\"1\"}]");
  ck_assert_uint_eq(pe_chain_phases(c), PE_PHASE_BIT(PE_PHASE_REQUEST_HEADERS));
  ck_assert_uint_eq(pe_chain_needs(c), 0);
  pe_chain_free(c);

  c = chain_of(e, "[{\"name\":\"reqb\",\"version\":\"1\"},{\"name\":\"respb\",\"version\":\"1\"}]");
  ck_assert_uint_eq(pe_chain_phases(c),
                    PE_PHASE_BIT(PE_PHASE_REQUEST_BODY) | PE_PHASE_BIT(PE_PHASE_RESPONSE_BODY));
  ck_assert_uint_eq(pe_chain_needs(c), PE_NEEDS_REQUEST_BODY | PE_NEEDS_RESPONSE_BODY);
  pe_chain_free(c);

  /* A flag asks for a body without a body callback. */
  c = chain_of(e, "[{\"name\":\"flagged\",\"version\":\"1\"}]");
  ck_assert_uint_eq(pe_chain_phases(c), PE_PHASE_BIT(PE_PHASE_REQUEST_HEADERS));
  ck_assert_uint_eq(pe_chain_needs(c), PE_NEEDS_RESPONSE_BODY);
  pe_chain_free(c);

  /* Disabled steps run nowhere, need nothing, and get no instance. */
  created = destroyed = 0;
  c = chain_of(e, "[{\"name\":\"reqh\",\"version\":\"1\"},"
                  "{\"name\":\"all\",\"version\":\"1\",\"enabled\":false},"
                  "{\"name\":\"flagged\",\"version\":\"1\",\"enabled\":false},"
                  "{\"name\":\"resph\",\"version\":\"1\"}]");
  ck_assert_uint_eq(pe_chain_step_count(c), 4);
  ck_assert_uint_eq(pe_chain_phases(c), PE_PHASE_BIT(PE_PHASE_REQUEST_HEADERS) |
                                            PE_PHASE_BIT(PE_PHASE_RESPONSE_HEADERS));
  ck_assert_uint_eq(pe_chain_needs(c), 0);
  ck_assert_int_eq(created, 2);
  pe_chain_free(c);
  ck_assert_int_eq(destroyed, 2);

  /* Request phases in chain order, response phases reversed. */
  c = chain_of(e, "[{\"name\":\"all\",\"version\":\"1\"},{\"name\":\"reqh\",\"version\":\"1\"},"
                  "{\"name\":\"all\",\"version\":\"1\"},{\"name\":\"resph\",\"version\":\"1\"},"
                  "{\"name\":\"all\",\"version\":\"1\"}]");
  ck_assert_uint_eq(pe_chain_phases(c), 0xf);
  ck_assert_uint_eq(c->order_len[PE_PHASE_REQUEST_HEADERS], 4);
  size_t want_reqh[] = {0, 1, 2, 4}, want_resph[] = {4, 3, 2, 0};
  for (int i = 0; i < 4; i++) {
    ck_assert_uint_eq(c->order[PE_PHASE_REQUEST_HEADERS][i], want_reqh[i]);
    ck_assert_uint_eq(c->order[PE_PHASE_RESPONSE_HEADERS][i], want_resph[i]);
  }
  size_t want_respb[] = {4, 2, 0};
  ck_assert_uint_eq(c->order_len[PE_PHASE_RESPONSE_BODY], 3);
  ck_assert_uint_eq(c->order_len[PE_PHASE_REQUEST_BODY], 3);
  for (int i = 0; i < 3; i++) {
    ck_assert_uint_eq(c->order[PE_PHASE_RESPONSE_BODY][i], want_respb[i]);
    ck_assert_uint_eq(c->order[PE_PHASE_REQUEST_BODY][i], want_respb[2 - i]);
  }
  pe_chain_free(c);
  ck_assert_uint_eq(pe_chain_phases(NULL), 0);
  ck_assert_uint_eq(pe_chain_needs(NULL), 0);
  ck_assert_uint_eq(pe_chain_step_count(NULL), 0);
  pe_engine_free(e);
  ck_assert_int_eq(a.allocs, a.frees);
}
END_TEST

START_TEST(refcounts) {
  pe_test_alloc a = {0};
  pe_engine *e = engine_with_policies(&a);
  created = destroyed = 0;
  pe_chain *c = chain_of(e, "[{\"name\":\"reqh\",\"version\":\"1\"}]");
  ck_assert_ptr_eq(pe_chain_ref(c), c);
  ck_assert_ptr_null(pe_chain_ref(NULL));
  pe_chain_free(c);
  ck_assert_int_eq(destroyed, 0);
  pe_engine_free(e); /* the chain keeps the engine */
  pe_chain_free(c);
  ck_assert_int_eq(destroyed, 1);
  pe_chain_free(NULL);
  ck_assert_int_eq(a.allocs, a.frees);
}
END_TEST

/* Fails each allocation of a build in turn: every failure reports
 * PE_ERR_NOMEM, leaves *out alone, and frees everything it took. */
START_TEST(build_survives_allocation_failures) {
  pe_test_alloc a = {0};
  pe_engine *e = engine_with_policies(&a);
  const char *doc = "{\"policies\":[{\"name\":\"all\",\"version\":\"1\",\"params\":{}},"
                    "{\"name\":\"reqh\",\"version\":\"1\",\"failure_mode\":\"open\"},"
                    "{\"name\":\"resph\",\"version\":\"1\",\"enabled\":false},"
                    "{\"name\":\"respb\",\"version\":\"1\"},"
                    "{\"name\":\"reqb\",\"version\":\"1\"}]}";
  int rc = PE_ERR_NOMEM;
  long k;
  for (k = 1; rc == PE_ERR_NOMEM; k++) {
    created = destroyed = 0;
    long allocs = atomic_load(&a.allocs), frees = atomic_load(&a.frees);
    pe_chain *c = NULL;
    atomic_store(&a.fail_at, atomic_load(&a.attempts) + k);
    rc = pe_chain_new_from_json(&c, e, pe_str(doc), NULL, 0);
    atomic_store(&a.fail_at, 0);
    ck_assert_msg(rc == PE_OK || rc == PE_ERR_NOMEM, "k=%ld rc=%d", k, rc);
    if (rc == PE_OK) {
      ck_assert_ptr_nonnull(c);
      ck_assert_uint_eq(pe_chain_step_count(c), 5);
      pe_chain_free(c);
    } else {
      ck_assert_ptr_null(c);
    }
    ck_assert_int_eq(created, destroyed);
    ck_assert_int_eq(atomic_load(&a.allocs) - allocs, atomic_load(&a.frees) - frees);
  }
  ck_assert_int_gt(k, 5); /* the loop did go through several failure points */
  pe_engine_free(e);
  ck_assert_int_eq(a.allocs, a.frees);
}
END_TEST

static Suite *chain_suite(void) {
  Suite *s = suite_create("chain");
  TCase *tc = tcase_create("chain");
  tcase_add_test(tc, builder_api);
  tcase_add_test(tc, json_format_accepted);
  tcase_add_test(tc, json_format_refused);
  tcase_add_test(tc, build_errors_name_the_step);
  tcase_add_test(tc, phases_needs_and_order);
  tcase_add_test(tc, refcounts);
  tcase_add_test(tc, build_survives_allocation_failures);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) {
  return pe_test_run_suite(chain_suite());
}
