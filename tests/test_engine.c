/* Engine: options, limits, version, log levels, the last-error message,
 * registration (validation, duplicates, free_user_data exactly once) and
 * reference-counted lifetime. */
#include "pe_test_util.h"

#include <stdio.h>
#include <stdlib.h>

static int noop(pe_exchange *ex, void *instance, void *user_data) {
  (void)ex;
  (void)instance;
  (void)user_data;
  return PE_OK;
}

static int freed; /* free_user_data calls */
static void count_free(void *user_data) {
  (void)user_data;
  freed++;
}

static pe_policy_def noop_def(const char *name, const char *version) {
  pe_policy_def def = {.abi = PE_POLICY_ABI,
                       .name = name,
                       .version = version,
                       .on_request_headers = noop,
                       .free_user_data = count_free};
  return def;
}

static void *only_malloc(size_t size, void *user_data) {
  (void)user_data;
  return malloc(size);
}

START_TEST(version_matches_headers) {
  const char *s = NULL;
  ck_assert_int_eq(pe_version(&s), PE_VERSION_NUM);
  ck_assert_str_eq(s, PE_VERSION_STRING);
  ck_assert_int_eq(pe_version(NULL), PE_VERSION_NUM);
}
END_TEST

START_TEST(options_refuse_bad_values) {
  pe_engine_options *o = NULL;
  ck_assert_int_eq(pe_engine_options_new(NULL), PE_ERR_INVALID_ARGUMENT);
  ck_assert_int_eq(pe_engine_options_new(&o), PE_OK);
  pe_mem half = {.malloc = only_malloc};
  ck_assert_int_eq(pe_engine_options_set_mem(o, &half), PE_ERR_INVALID_ARGUMENT);
  ck_assert_int_eq(pe_engine_options_set_mem(o, NULL), PE_OK);
  ck_assert_int_eq(pe_engine_options_set_log_level(o, (pe_log_level)7), PE_ERR_INVALID_ARGUMENT);
  ck_assert_int_eq(pe_engine_options_set_log_level(o, (pe_log_level)-1), PE_ERR_INVALID_ARGUMENT);
  ck_assert_int_eq(pe_engine_options_set_limit(o, PE_LIMIT_BODY_BYTES, 0), PE_ERR_INVALID_ARGUMENT);
  ck_assert_int_eq(pe_engine_options_set_limit(o, (pe_limit)5, 10), PE_ERR_INVALID_ARGUMENT);
  ck_assert_int_eq(pe_engine_options_set_log(NULL, NULL, NULL), PE_ERR_INVALID_ARGUMENT);
  ck_assert_int_eq(pe_engine_options_set_metrics(NULL, NULL, NULL), PE_ERR_INVALID_ARGUMENT);
  ck_assert_int_eq(pe_engine_options_set_mem(NULL, NULL), PE_ERR_INVALID_ARGUMENT);
  ck_assert_int_eq(pe_engine_options_set_limit(NULL, PE_LIMIT_BODY_BYTES, 1),
                   PE_ERR_INVALID_ARGUMENT);
  pe_engine_options_free(o);
  pe_engine_options_free(NULL);
}
END_TEST

START_TEST(limits_default_and_configured) {
  pe_engine *e = NULL;
  ck_assert_int_eq(pe_engine_new(NULL, NULL), PE_ERR_INVALID_ARGUMENT);
  ck_assert_int_eq(pe_engine_new(&e, NULL), PE_OK);
  ck_assert_uint_eq(pe_engine_limit(e, PE_LIMIT_HEADER_COUNT), 100);
  ck_assert_uint_eq(pe_engine_limit(e, PE_LIMIT_HEADER_BYTES), 64 * 1024);
  ck_assert_uint_eq(pe_engine_limit(e, PE_LIMIT_BODY_BYTES), 16 * 1024 * 1024);
  ck_assert_uint_eq(pe_engine_limit(e, PE_LIMIT_META_COUNT), 100);
  ck_assert_uint_eq(pe_engine_limit(e, PE_LIMIT_META_BYTES), 64 * 1024);
  ck_assert_uint_eq(pe_engine_limit(e, (pe_limit)9), 0);
  ck_assert_uint_eq(pe_engine_limit(NULL, PE_LIMIT_BODY_BYTES), 0);
  ck_assert_str_eq(pe_engine_errmsg(e), "");
  pe_engine_free(e);

  pe_engine_options *o = NULL;
  ck_assert_int_eq(pe_engine_options_new(&o), PE_OK);
  ck_assert_int_eq(pe_engine_options_set_limit(o, PE_LIMIT_BODY_BYTES, 1234), PE_OK);
  ck_assert_int_eq(pe_engine_options_set_limit(o, PE_LIMIT_META_COUNT, 7), PE_OK);
  e = NULL;
  ck_assert_int_eq(pe_engine_new(&e, o), PE_OK);
  /* The engine copied the options: changing them now changes nothing. */
  ck_assert_int_eq(pe_engine_options_set_limit(o, PE_LIMIT_BODY_BYTES, 99), PE_OK);
  pe_engine_options_free(o);
  ck_assert_uint_eq(pe_engine_limit(e, PE_LIMIT_BODY_BYTES), 1234);
  ck_assert_uint_eq(pe_engine_limit(e, PE_LIMIT_META_COUNT), 7);
  ck_assert_uint_eq(pe_engine_limit(e, PE_LIMIT_HEADER_COUNT), 100);
  pe_engine_free(e);
  pe_engine_free(NULL);
}
END_TEST

static int log_calls[4];
static char last_log[256];
static void level_log(pe_log_level level, const char *message, void *user_data) {
  ck_assert_ptr_eq(user_data, log_calls);
  log_calls[level]++;
  snprintf(last_log, sizeof last_log, "%s", message);
}

START_TEST(log_respects_level) {
  pe_engine_options *o = NULL;
  pe_engine *e = NULL;
  ck_assert_int_eq(pe_engine_options_new(&o), PE_OK);
  ck_assert_int_eq(pe_engine_options_set_log(o, level_log, log_calls), PE_OK);
  ck_assert_int_eq(pe_engine_options_set_log_level(o, PE_LOG_WARN), PE_OK);
  ck_assert_int_eq(pe_engine_new(&e, o), PE_OK);
  pe_engine_options_free(o);
  memset(log_calls, 0, sizeof log_calls);
  pe_engine_log(e, PE_LOG_DEBUG, "debug %d", 1);
  pe_engine_log(e, PE_LOG_INFO, "info %d", 2);
  pe_engine_log(e, PE_LOG_WARN, "warn %d", 3);
  pe_engine_log(e, PE_LOG_ERROR, "error %s", "four");
  ck_assert_int_eq(log_calls[PE_LOG_DEBUG], 0);
  ck_assert_int_eq(log_calls[PE_LOG_INFO], 0);
  ck_assert_int_eq(log_calls[PE_LOG_WARN], 1);
  ck_assert_int_eq(log_calls[PE_LOG_ERROR], 1);
  ck_assert_str_eq(last_log, "error four");
  pe_engine_log(NULL, PE_LOG_ERROR, "ignored");
  pe_engine_free(e);

  /* Default level is INFO; without a callback nothing happens at all. */
  ck_assert_int_eq(pe_engine_options_new(&o), PE_OK);
  ck_assert_int_eq(pe_engine_options_set_log(o, level_log, log_calls), PE_OK);
  ck_assert_int_eq(pe_engine_new(&e, o), PE_OK);
  pe_engine_options_free(o);
  memset(log_calls, 0, sizeof log_calls);
  pe_engine_log(e, PE_LOG_DEBUG, "debug");
  pe_engine_log(e, PE_LOG_INFO, "info");
  ck_assert_int_eq(log_calls[PE_LOG_DEBUG], 0);
  ck_assert_int_eq(log_calls[PE_LOG_INFO], 1);
  pe_engine_free(e);
  ck_assert_int_eq(pe_engine_new(&e, NULL), PE_OK);
  pe_engine_log(e, PE_LOG_ERROR, "nobody listens");
  pe_engine_free(e);
}
END_TEST

static const pe_param_spec two_specs_same_name[] = {{"a", PE_PARAM_STRING, 0},
                                                    {"a", PE_PARAM_INT, 0}};
static const pe_param_spec nameless_spec[] = {{NULL, PE_PARAM_STRING, 0}};
static const pe_param_spec empty_name_spec[] = {{"", PE_PARAM_STRING, 0}};
static const pe_param_spec bad_type_spec[] = {{"a", (pe_param_type)42, 0}};

START_TEST(register_refuses_bad_definitions) {
  pe_test_alloc a = {0};
  pe_engine *e = pe_test_engine(&a);
  struct {
    pe_policy_def def;
    const char *why;
  } cases[10];
  size_t n = 0;
  cases[n].def = noop_def("p", "1"), cases[n].def.abi = 99, cases[n++].why = "abi";
  cases[n].def = noop_def(NULL, "1"), cases[n++].why = "empty name";
  cases[n].def = noop_def("", "1"), cases[n++].why = "empty name";
  cases[n].def = noop_def("p", NULL), cases[n++].why = "empty version";
  cases[n].def = noop_def("p", ""), cases[n++].why = "empty version";
  cases[n].def = noop_def("p", "1"), cases[n].def.on_request_headers = NULL,
  cases[n++].why = "no phase callback";
  cases[n].def = noop_def("p", "1"), cases[n].def.params = two_specs_same_name,
  cases[n].def.param_count = 2, cases[n++].why = "share a name";
  cases[n].def = noop_def("p", "1"), cases[n].def.params = nameless_spec,
  cases[n].def.param_count = 1, cases[n++].why = "no name";
  cases[n].def = noop_def("p", "1"), cases[n].def.params = empty_name_spec,
  cases[n].def.param_count = 1, cases[n++].why = "no name";
  cases[n].def = noop_def("p", "1"), cases[n].def.params = bad_type_spec,
  cases[n].def.param_count = 1, cases[n++].why = "unknown type";
  for (size_t i = 0; i < n; i++) {
    freed = 0;
    ck_assert_int_eq(pe_engine_register_policy(e, &cases[i].def), PE_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(freed, 1);
    ck_assert_msg(strstr(pe_engine_errmsg(e), cases[i].why), "case %zu: '%s'", i,
                  pe_engine_errmsg(e));
    ck_assert(pe_test_log_contains(cases[i].why));
  }
  pe_policy_def no_specs = noop_def("p", "1");
  no_specs.param_count = 3;
  freed = 0;
  ck_assert_int_eq(pe_engine_register_policy(e, &no_specs), PE_ERR_INVALID_ARGUMENT);
  ck_assert_int_eq(freed, 1);
  ck_assert_int_eq(pe_engine_register_policy(e, NULL), PE_ERR_INVALID_ARGUMENT);
  freed = 0;
  ck_assert_int_eq(pe_engine_register_policy(NULL, &no_specs), PE_ERR_INVALID_ARGUMENT);
  ck_assert_int_eq(freed, 1);
  ck_assert_int_eq(pe_engine_has_policy(e, pe_str("p"), pe_str("1")), 0);
  pe_engine_free(e);
  ck_assert_int_eq(a.allocs, a.frees);
}
END_TEST

START_TEST(register_duplicate_and_free_once) {
  pe_test_alloc a = {0};
  pe_engine *e = pe_test_engine(&a);
  freed = 0;
  /* Deep copy: the definition's strings may go away after the call. */
  char name[16] = "dup", version[16] = "1.0";
  pe_policy_def def = noop_def(name, version);
  ck_assert_int_eq(pe_engine_register_policy(e, &def), PE_OK);
  strcpy(name, "xxx");
  strcpy(version, "9");
  ck_assert_int_eq(pe_engine_has_policy(e, pe_str("dup"), pe_str("1.0")), 1);
  ck_assert_int_eq(pe_engine_has_policy(e, pe_str("dup"), pe_str("1.0.0")), 0);
  ck_assert_int_eq(pe_engine_has_policy(e, pe_str("du"), pe_str("1.0")), 0);
  ck_assert_int_eq(pe_engine_has_policy(NULL, pe_str("dup"), pe_str("1.0")), 0);

  pe_policy_def again = noop_def("dup", "1.0");
  ck_assert_int_eq(pe_engine_register_policy(e, &again), PE_ERR_EXISTS);
  ck_assert_int_eq(freed, 1); /* the refused one's, right away */
  ck_assert_str_eq(pe_engine_errmsg(e), "policy 'dup@1.0' is already registered");
  /* Another version of the same name is another policy. */
  pe_policy_def v2 = noop_def("dup", "2.0");
  ck_assert_int_eq(pe_engine_register_policy(e, &v2), PE_OK);
  ck_assert_int_eq(freed, 1);
  pe_engine_free(e);
  ck_assert_int_eq(freed, 3); /* the two registered ones, at teardown */
  ck_assert_int_eq(a.allocs, a.frees);
}
END_TEST

/* Every allocation of a registration may fail: each failure frees what it
 * took and runs free_user_data exactly once. */
START_TEST(register_survives_allocation_failures) {
  static const pe_param_spec specs[] = {{"a", PE_PARAM_STRING, 1}, {"b", PE_PARAM_INT, 0}};
  pe_test_alloc a = {0};
  pe_engine *e = pe_test_engine(&a);
  int rc = PE_ERR_NOMEM;
  for (long k = 1; rc == PE_ERR_NOMEM; k++) {
    pe_policy_def def = noop_def("fragile", "1");
    def.params = specs;
    def.param_count = 2;
    freed = 0;
    atomic_store(&a.fail_at, atomic_load(&a.attempts) + k);
    rc = pe_engine_register_policy(e, &def);
    atomic_store(&a.fail_at, 0);
    ck_assert(rc == PE_OK || rc == PE_ERR_NOMEM);
    ck_assert_int_eq(freed, rc == PE_OK ? 0 : 1);
    ck_assert_int_eq(pe_engine_has_policy(e, pe_str("fragile"), pe_str("1")), rc == PE_OK);
  }
  pe_engine_free(e);
  ck_assert_int_eq(freed, 1);
  ck_assert_int_eq(a.allocs, a.frees);
}
END_TEST

START_TEST(engine_outlives_its_chains_and_exchanges) {
  pe_test_alloc a = {0};
  pe_engine *e = pe_test_engine(&a);
  freed = 0;
  pe_policy_def def = noop_def("keep", "1");
  ck_assert_int_eq(pe_engine_register_policy(e, &def), PE_OK);
  pe_chain *c = NULL;
  pe_exchange *ex = NULL;
  ck_assert_int_eq(
      pe_chain_new_from_json(&c, e, pe_str("[{\"name\":\"keep\",\"version\":\"1\"}]"), NULL, 0),
      PE_OK);
  ck_assert_int_eq(pe_exchange_new(&ex, e), PE_OK);
  pe_engine_free(e); /* the host's reference goes first */
  ck_assert_int_eq(freed, 0);
  ck_assert_int_eq(pe_chain_run(c, ex, PE_PHASE_REQUEST_HEADERS), PE_OK);
  ck_assert_ptr_eq(pe_exchange_engine(ex), e);
  pe_chain_free(c);
  ck_assert_int_eq(freed, 0);
  pe_exchange_free(ex); /* the last reference */
  ck_assert_int_eq(freed, 1);
  ck_assert_int_eq(a.allocs, a.frees);
}
END_TEST

START_TEST(engine_new_survives_allocation_failure) {
  pe_test_alloc a = {0};
  pe_engine_options *o = NULL;
  pe_engine *e = (pe_engine *)&a; /* must stay untouched */
  ck_assert_int_eq(pe_engine_options_new(&o), PE_OK);
  pe_mem m = pe_test_mem(&a);
  ck_assert_int_eq(pe_engine_options_set_mem(o, &m), PE_OK);
  atomic_store(&a.fail_at, 1);
  ck_assert_int_eq(pe_engine_new(&e, o), PE_ERR_NOMEM);
  ck_assert_ptr_eq(e, (pe_engine *)&a);
  atomic_store(&a.fail_at, 0);
  ck_assert_int_eq(pe_engine_new(&e, o), PE_OK);
  pe_engine_options_free(o);
  pe_engine_free(e);
  ck_assert_int_eq(a.allocs, 1);
  ck_assert_int_eq(a.frees, 1);
}
END_TEST

static Suite *engine_suite(void) {
  Suite *s = suite_create("engine");
  TCase *tc = tcase_create("engine");
  tcase_add_test(tc, version_matches_headers);
  tcase_add_test(tc, options_refuse_bad_values);
  tcase_add_test(tc, limits_default_and_configured);
  tcase_add_test(tc, log_respects_level);
  tcase_add_test(tc, register_refuses_bad_definitions);
  tcase_add_test(tc, register_duplicate_and_free_once);
  tcase_add_test(tc, register_survives_allocation_failures);
  tcase_add_test(tc, engine_outlives_its_chains_and_exchanges);
  tcase_add_test(tc, engine_new_survives_allocation_failure);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) {
  return pe_test_run_suite(engine_suite());
}
