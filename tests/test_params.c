/* Params: validation against a policy's specs (missing, unknown, ill-typed),
 * the pe_params getters a create callback uses, and create refusing. */
#include "pe_test_util.h"
#include "pe_internal.h"

#include <stdio.h>

static int noop(pe_exchange *ex, void *instance, void *user_data) {
  (void)ex;
  (void)instance;
  (void)user_data;
  return PE_OK;
}

/* What the create callback read, for the test to check. */
static struct {
  int calls;
  char value[64];
  int64_t count;
  int count_rc;
  double ratio;
  int flag;
  char json[256];
  int wrong_type_rc, absent_rc, null_rc;
} seen;

static int reading_create(void **instance, pe_params *params, void *user_data) {
  (void)user_data;
  seen.calls++;
  pe_slice v;
  ck_assert_int_eq(pe_params_get_string(params, "value", &v), PE_OK);
  snprintf(seen.value, sizeof seen.value, "%.*s", (int)v.len, v.ptr);
  seen.count_rc = pe_params_get_int(params, "count", &seen.count);
  seen.ratio = -1;
  (void)pe_params_get_number(params, "ratio", &seen.ratio);
  seen.flag = -1;
  (void)pe_params_get_bool(params, "flag", &seen.flag);
  pe_slice json = pe_params_json(params);
  snprintf(seen.json, sizeof seen.json, "%.*s", (int)json.len, json.ptr);
  int64_t i;
  double d;
  int b;
  seen.wrong_type_rc = pe_params_get_int(params, "value", &i);
  ck_assert_int_eq(pe_params_get_bool(params, "value", &b), PE_ERR_PARAM);
  ck_assert_int_eq(pe_params_get_number(params, "value", &d), PE_ERR_PARAM);
  ck_assert_int_eq(pe_params_get_string(params, "flag", &v) == PE_OK,
                   0 /* absent (NOT_FOUND) or a bool (PARAM) */);
  seen.absent_rc = pe_params_get_string(params, "nothing", &v);
  seen.null_rc = pe_params_get_string(params, "value", NULL);
  ck_assert_int_eq(pe_params_get_string(NULL, "value", &v), PE_ERR_INVALID_ARGUMENT);
  ck_assert_int_eq(pe_params_get_string(params, NULL, &v), PE_ERR_INVALID_ARGUMENT);
  *instance = NULL;
  return PE_OK;
}

static int refusing_create(void **instance, pe_params *params, void *user_data) {
  (void)instance;
  (void)user_data;
  pe_slice v = {0};
  (void)pe_params_get_string(params, "value", &v);
  if (v.len == 3 && memcmp(v.ptr, "oom", 3) == 0)
    return PE_ERR_NOMEM;
  if (v.len == 6 && memcmp(v.ptr, "silent", 6) == 0)
    return PE_ERR_POLICY;
  ck_assert_int_eq(pe_params_set_errmsg(params, "value '%.*s' is not allowed", (int)v.len, v.ptr),
                   PE_OK);
  ck_assert_int_eq(pe_params_set_errmsg(NULL, "x"), PE_ERR_INVALID_ARGUMENT);
  return PE_ERR_PARAM;
}

static const pe_param_spec specs[] = {
    {"value", PE_PARAM_STRING, 1}, {"count", PE_PARAM_INT, 0}, {"ratio", PE_PARAM_NUMBER, 0},
    {"flag", PE_PARAM_BOOL, 0},    {"extra", PE_PARAM_ANY, 0},
};

static pe_engine *engine_with_policies(pe_test_alloc *a) {
  pe_engine *e = pe_test_engine(a);
  pe_policy_def def = {.abi = PE_POLICY_ABI,
                       .name = "typed",
                       .version = "1.0",
                       .params = specs,
                       .param_count = sizeof specs / sizeof specs[0],
                       .create = reading_create,
                       .on_request_headers = noop};
  ck_assert_int_eq(pe_engine_register_policy(e, &def), PE_OK);
  def.name = "refuses";
  def.create = refusing_create;
  ck_assert_int_eq(pe_engine_register_policy(e, &def), PE_OK);
  return e;
}

/* Builds a one-step chain of policy@1.0 with params; returns the code and
 * copies the builder's message into msg. */
static int build_one(pe_engine *e, const char *policy, const char *params, char *msg, size_t size) {
  pe_chain_builder *b = NULL;
  pe_chain *c = NULL;
  ck_assert_int_eq(pe_chain_builder_new(&b, e), PE_OK);
  int rc = pe_chain_builder_add_step(b, pe_str(policy), pe_str("1.0"), pe_str(params));
  if (rc >= 0)
    rc = pe_chain_builder_build(b, &c);
  snprintf(msg, size, "%s", pe_chain_builder_errmsg(b));
  pe_chain_builder_free(b);
  pe_chain_free(c);
  return rc;
}

START_TEST(getters_read_validated_params) {
  pe_test_alloc a = {0};
  pe_engine *e = engine_with_policies(&a);
  char msg[256];
  memset(&seen, 0, sizeof seen);
  ck_assert_int_eq(build_one(e, "typed",
                             "{ \"value\": \"hi\", \"count\": 42, \"ratio\": 2.5, \"flag\": true, "
                             "\"extra\": {\"nested\": [1, 2]} }",
                             msg, sizeof msg),
                   PE_OK);
  ck_assert_int_eq(seen.calls, 1);
  ck_assert_str_eq(seen.value, "hi");
  ck_assert_int_eq(seen.count_rc, PE_OK);
  ck_assert_int_eq(seen.count, 42);
  ck_assert(seen.ratio == 2.5);
  ck_assert_int_eq(seen.flag, 1);
  ck_assert_str_eq(seen.json, "{\"value\":\"hi\",\"count\":42,\"ratio\":2.5,\"flag\":true,"
                              "\"extra\":{\"nested\":[1,2]}}");
  ck_assert_int_eq(seen.wrong_type_rc, PE_ERR_PARAM);
  ck_assert_int_eq(seen.absent_rc, PE_ERR_NOT_FOUND);
  ck_assert_int_eq(seen.null_rc, PE_ERR_INVALID_ARGUMENT);

  /* A number param takes an integer too; optional params may be absent. */
  memset(&seen, 0, sizeof seen);
  ck_assert_int_eq(
      build_one(e, "typed", "{\"value\":\"x\",\"ratio\":3,\"flag\":false}", msg, sizeof msg),
      PE_OK);
  ck_assert(seen.ratio == 3.0);
  ck_assert_int_eq(seen.flag, 0);
  ck_assert_int_eq(seen.count_rc, PE_ERR_NOT_FOUND);
  pe_engine_free(e);
  ck_assert_int_eq(a.allocs, a.frees);
}
END_TEST

START_TEST(bad_params_are_refused_with_a_message) {
  pe_test_alloc a = {0};
  pe_engine *e = engine_with_policies(&a);
  static const struct {
    const char *params;
    int rc;
    const char *msg;
  } cases[] = {
      {"{}", PE_ERR_PARAM, "step 0 (typed@1.0): missing required param 'value'"},
      {"{\"value\":\"x\",\"bogus\":1}", PE_ERR_PARAM, "step 0 (typed@1.0): unknown param 'bogus'"},
      {"{\"value\":5}", PE_ERR_PARAM,
       "step 0 (typed@1.0): param 'value': expected string, got integer"},
      {"{\"value\":\"x\",\"count\":1.5}", PE_ERR_PARAM,
       "step 0 (typed@1.0): param 'count': expected integer, got number"},
      {"{\"value\":\"x\",\"count\":\"1\"}", PE_ERR_PARAM,
       "step 0 (typed@1.0): param 'count': expected integer, got string"},
      {"{\"value\":\"x\",\"ratio\":true}", PE_ERR_PARAM,
       "step 0 (typed@1.0): param 'ratio': expected number, got boolean"},
      {"{\"value\":\"x\",\"flag\":\"yes\"}", PE_ERR_PARAM,
       "step 0 (typed@1.0): param 'flag': expected boolean, got string"},
      {"{\"value\":null}", PE_ERR_PARAM,
       "step 0 (typed@1.0): param 'value': expected string, got null"},
      {"{\"value\":[\"a\"]}", PE_ERR_PARAM,
       "step 0 (typed@1.0): param 'value': expected string, got array"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char msg[256];
    memset(&seen, 0, sizeof seen);
    ck_assert_int_eq(build_one(e, "typed", cases[i].params, msg, sizeof msg), cases[i].rc);
    ck_assert_str_eq(msg, cases[i].msg);
    ck_assert_int_eq(seen.calls, 0); /* create never sees bad params */
  }
  pe_engine_free(e);
  ck_assert_int_eq(a.allocs, a.frees);
}
END_TEST

START_TEST(create_refusing_explains_why) {
  pe_test_alloc a = {0};
  pe_engine *e = engine_with_policies(&a);
  char msg[256];
  ck_assert_int_eq(build_one(e, "refuses", "{\"value\":\"bad\"}", msg, sizeof msg), PE_ERR_PARAM);
  ck_assert_str_eq(msg, "step 0 (refuses@1.0): value 'bad' is not allowed");
  ck_assert_int_eq(build_one(e, "refuses", "{\"value\":\"silent\"}", msg, sizeof msg),
                   PE_ERR_PARAM);
  ck_assert_str_eq(msg, "step 0 (refuses@1.0): create failed: policy failed");
  ck_assert_int_eq(build_one(e, "refuses", "{\"value\":\"oom\"}", msg, sizeof msg), PE_ERR_NOMEM);
  pe_engine_free(e);
  ck_assert_int_eq(a.allocs, a.frees);
}
END_TEST

/* The internal entry points, as the Python backend and builder use them. */
START_TEST(validate_directly) {
  pe_test_alloc a = {0};
  pe_engine *e = engine_with_policies(&a);
  pthread_mutex_lock(&e->lock);
  pe__policy *p = pe__registry_find(e, pe_str("typed"), pe_str("1.0"));
  pthread_mutex_unlock(&e->lock);
  ck_assert_ptr_nonnull(p);
  char err[PE__ERRMSG_SIZE];
  ck_assert_int_eq(pe__params_validate(p, pe_str("{\"value\":\"v\"}"), err), PE_OK);
  ck_assert_int_eq(pe__params_validate(p, pe_str("{\"value\":"), err), PE_ERR_JSON);
  ck_assert_ptr_nonnull(strstr(err, "invalid JSON"));
  ck_assert_int_eq(pe__params_validate(p, pe_str("[1]"), err), PE_ERR_JSON);
  ck_assert_str_eq(err, "params: expected an object, got array");
  ck_assert_int_eq(pe__params_validate(p, pe_str("{\"value\":\"a\",\"value\":\"b\"}"), err),
                   PE_ERR_JSON);
  /* The empty slice stands for {}, which lacks the required param. */
  ck_assert_int_eq(pe__params_validate(p, pe_str(""), err), PE_ERR_PARAM);
  ck_assert_str_eq(err, "missing required param 'value'");
  void *instance = (void *)&a;
  ck_assert_int_eq(pe__params_create_instance(p, pe_str("{}"), &instance, err), PE_ERR_PARAM);
  ck_assert_ptr_eq(instance, (void *)&a); /* untouched on failure */
  pe_engine_free(e);
}
END_TEST

static Suite *params_suite(void) {
  Suite *s = suite_create("params");
  TCase *tc = tcase_create("params");
  tcase_add_test(tc, getters_read_validated_params);
  tcase_add_test(tc, bad_params_are_refused_with_a_message);
  tcase_add_test(tc, create_refusing_explains_why);
  tcase_add_test(tc, validate_directly);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) {
  return pe_test_run_suite(params_suite());
}
