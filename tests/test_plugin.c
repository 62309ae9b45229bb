/* Plugins: the sample plugin loads and runs; a missing file, a plugin with no
 * pe_plugin_init, one whose init fails, and ones that register a duplicate
 * are refused, unloaded, and leave no policy behind. */
#include "pe_test_util.h"

#define PLUGIN(name) PE_TEST_PLUGIN_DIR "/" name ".so"

static const char *const sample_policies[] = {
    "sample-native-request-header", "sample-native-response-header", "sample-native-request-body",
    "sample-native-response-body"};

static int has(pe_engine *e, const char *name, const char *version) {
  return pe_engine_has_policy(e, pe_str(name), pe_str(version));
}

START_TEST(sample_plugin_loads_and_runs) {
  pe_test_alloc a = {0};
  pe_engine *e = pe_test_engine(&a);
  ck_assert_int_eq(pe_engine_load_plugin(e, PE_SAMPLE_PLUGIN), PE_OK);
  for (int i = 0; i < 4; i++)
    ck_assert(has(e, sample_policies[i], "1.0.0"));
  ck_assert(pe_test_log_contains("loaded plugin"));

  pe_chain *c = NULL;
  char msg[256];
  ck_assert_int_eq(
      pe_chain_new_from_json(&c, e,
                             pe_str("[{\"name\":\"sample-native-response-header\",\"version\":"
                                    "\"1.0.0\"},{\"name\":\"sample-native-request-body\","
                                    "\"version\":\"1.0.0\"},{\"name\":\"sample-native-response-"
                                    "body\",\"version\":\"1.0.0\"}]"),
                             msg, sizeof msg),
      PE_OK);
  ck_assert_uint_eq(pe_chain_needs(c), PE_NEEDS_REQUEST_BODY | PE_NEEDS_RESPONSE_BODY);
  pe_exchange *ex = NULL;
  ck_assert_int_eq(pe_exchange_new(&ex, e), PE_OK);
  ck_assert_int_eq(pe_exchange_body_set(ex, PE_REQUEST, PE_LIT("hello")), PE_OK);
  ck_assert_int_eq(pe_chain_run(c, ex, PE_PHASE_REQUEST_BODY), PE_OK);
  ck_assert_int_eq(pe_exchange_body_set(ex, PE_RESPONSE, pe_exchange_body(ex, PE_REQUEST)), PE_OK);
  ck_assert_int_eq(pe_exchange_set_status(ex, 200), PE_OK);
  ck_assert_int_eq(pe_chain_run(c, ex, PE_PHASE_RESPONSE_HEADERS), PE_OK);
  ck_assert_int_eq(pe_chain_run(c, ex, PE_PHASE_RESPONSE_BODY), PE_OK);
  pe_slice v;
  ck_assert_int_eq(pe_exchange_header_get(ex, PE_RESPONSE, PE_LIT("x-sample-policy-phase"), &v),
                   PE_OK);
  ck_assert_slice_eq(v, "response-header");
  ck_assert_slice_eq(pe_exchange_body(ex, PE_RESPONSE),
                     "[sample-response-body][sample-request-body]hello");
  pe_exchange_free(ex);
  pe_chain_free(c);
  pe_engine_free(e);
  ck_assert_int_eq(a.allocs, a.frees);
}
END_TEST

START_TEST(missing_file_is_refused) {
  pe_test_alloc a = {0};
  pe_engine *e = pe_test_engine(&a);
  ck_assert_int_eq(pe_engine_load_plugin(e, "/nonexistent/plugin.so"), PE_ERR_PLUGIN);
  ck_assert_ptr_nonnull(strstr(pe_engine_errmsg(e), "plugin /nonexistent/plugin.so: "));
  ck_assert(pe_test_log_contains("/nonexistent/plugin.so"));
  ck_assert_int_eq(pe_engine_load_plugin(e, NULL), PE_ERR_INVALID_ARGUMENT);
  ck_assert_int_eq(pe_engine_load_plugin(e, ""), PE_ERR_INVALID_ARGUMENT);
  ck_assert_int_eq(pe_engine_load_plugin(NULL, PE_SAMPLE_PLUGIN), PE_ERR_INVALID_ARGUMENT);
  pe_engine_free(e);
  ck_assert_int_eq(a.allocs, a.frees);
}
END_TEST

START_TEST(plugin_without_init_is_refused) {
  pe_test_alloc a = {0};
  pe_engine *e = pe_test_engine(&a);
  ck_assert_int_eq(pe_engine_load_plugin(e, PLUGIN("plugin_no_init")), PE_ERR_PLUGIN);
  ck_assert_str_eq(pe_engine_errmsg(e),
                   "plugin " PLUGIN("plugin_no_init") ": no symbol pe_plugin_init");
  pe_engine_free(e);
  ck_assert_int_eq(a.allocs, a.frees);
}
END_TEST

START_TEST(failing_init_is_undone) {
  pe_test_alloc a = {0};
  pe_engine *e = pe_test_engine(&a);
  pe_test_log_clear();
  ck_assert_int_eq(pe_engine_load_plugin(e, PLUGIN("plugin_init_fails")), PE_ERR_PLUGIN);
  ck_assert_str_eq(
      pe_engine_errmsg(e),
      "plugin " PLUGIN(
          "plugin_init_fails") ": pe_plugin_init failed: policy failed (PE_ERR_POLICY)");
  ck_assert(!has(e, "plugin-init-fails", "1.0"));
  /* Its registration was undone (free_user_data ran) while the code was
   * still loaded; and it was never visible to lookups. */
  ck_assert(pe_test_log_contains("plugin_init_fails: user data freed"));
  ck_assert(!pe_test_log_contains("policy visible during init"));
  /* The engine stays usable: the name is free again. */
  ck_assert_int_eq(pe_engine_load_plugin(e, PE_SAMPLE_PLUGIN), PE_OK);
  pe_engine_free(e);
  ck_assert_int_eq(a.allocs, a.frees);
}
END_TEST

START_TEST(duplicates_are_refused) {
  pe_test_alloc a = {0};
  pe_engine *e = pe_test_engine(&a);
  ck_assert_int_eq(pe_engine_load_plugin(e, PLUGIN("plugin_duplicate")), PE_ERR_EXISTS);
  ck_assert_str_eq(
      pe_engine_errmsg(e),
      "plugin " PLUGIN("plugin_duplicate") ": policy 'plugin-duplicate@1.0' is already registered");
  ck_assert(!has(e, "plugin-duplicate", "1.0"));

  /* Ignoring the refusal does not help: the plugin is refused as a whole. */
  ck_assert_int_eq(pe_engine_load_plugin(e, PLUGIN("plugin_ignores_refusal")), PE_ERR_EXISTS);
  ck_assert(!has(e, "plugin-ignores-refusal", "1.0"));

  /* Loading the sample twice: the second load fails, the first one's
   * policies stay and still run. */
  ck_assert_int_eq(pe_engine_load_plugin(e, PE_SAMPLE_PLUGIN), PE_OK);
  ck_assert_int_eq(pe_engine_load_plugin(e, PE_SAMPLE_PLUGIN), PE_ERR_EXISTS);
  ck_assert_ptr_nonnull(strstr(pe_engine_errmsg(e), "sample-native-request-header@1.0.0"));
  for (int i = 0; i < 4; i++)
    ck_assert(has(e, sample_policies[i], "1.0.0"));
  pe_chain *c = NULL;
  ck_assert_int_eq(pe_chain_new_from_json(&c, e,
                                          pe_str("[{\"name\":\"sample-native-request-header\","
                                                 "\"version\":\"1.0.0\"}]"),
                                          NULL, 0),
                   PE_OK);
  pe_exchange *ex = NULL;
  ck_assert_int_eq(pe_exchange_new(&ex, e), PE_OK);
  ck_assert_int_eq(pe_chain_run(c, ex, PE_PHASE_REQUEST_HEADERS), PE_OK);
  pe_slice v;
  ck_assert_int_eq(pe_exchange_header_get(ex, PE_REQUEST, PE_LIT("x-sample-policy-phase"), &v),
                   PE_OK);
  ck_assert_slice_eq(v, "request-header");
  pe_exchange_free(ex);
  pe_chain_free(c);
  pe_engine_free(e);
  ck_assert_int_eq(a.allocs, a.frees);
}
END_TEST

/* A native policy registered by the host clashes with a plugin's. */
static int noop(pe_exchange *ex, void *instance, void *user_data) {
  (void)ex;
  (void)instance;
  (void)user_data;
  return PE_OK;
}

START_TEST(plugin_clashing_with_host_policy) {
  pe_test_alloc a = {0};
  pe_engine *e = pe_test_engine(&a);
  pe_policy_def def = {.abi = PE_POLICY_ABI,
                       .name = "sample-native-response-body",
                       .version = "1.0.0",
                       .on_response_body = noop};
  ck_assert_int_eq(pe_engine_register_policy(e, &def), PE_OK);
  ck_assert_int_eq(pe_engine_load_plugin(e, PE_SAMPLE_PLUGIN), PE_ERR_EXISTS);
  /* The three it had registered before the clash are gone again. */
  for (int i = 0; i < 3; i++)
    ck_assert(!has(e, sample_policies[i], "1.0.0"));
  ck_assert(has(e, "sample-native-response-body", "1.0.0"));
  pe_engine_free(e);
  ck_assert_int_eq(a.allocs, a.frees);
}
END_TEST

static Suite *plugin_suite(void) {
  Suite *s = suite_create("plugin");
  TCase *tc = tcase_create("plugin");
  tcase_add_test(tc, sample_plugin_loads_and_runs);
  tcase_add_test(tc, missing_file_is_refused);
  tcase_add_test(tc, plugin_without_init_is_refused);
  tcase_add_test(tc, failing_init_is_undone);
  tcase_add_test(tc, duplicates_are_refused);
  tcase_add_test(tc, plugin_clashing_with_host_policy);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) {
  return pe_test_run_suite(plugin_suite());
}
