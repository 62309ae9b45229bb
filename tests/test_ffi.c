/* pe_ffi.c and pe_api_table.c: the pointer + length twins behave as the
 * slice functions they mirror, refuse {NULL, n}, and the plugin API table
 * holds every function it names. */
#include "pe_internal.h"
#include "pe_test_util.h"

#include <policyexec/plugin_api.h>
#include <stdlib.h>

static pe_test_alloc alloc;
static pe_engine *engine;
static pe_exchange *ex;

static void setup(void) {
  memset(&alloc, 0, sizeof alloc);
  engine = pe_test_engine(&alloc);
  ck_assert_int_eq(pe_exchange_new(&ex, engine), PE_OK);
}

static void teardown(void) {
  pe_exchange_free(ex);
  pe_engine_free(engine);
  ex = NULL;
  engine = NULL;
  ck_assert_int_eq(atomic_load(&alloc.allocs), atomic_load(&alloc.frees));
}

static int slice_is(pe_slice s, const char *want) {
  return s.len == strlen(want) && memcmp(s.ptr, want, s.len) == 0;
}

static int bytes_are(const char *p, size_t n, const char *want) {
  return p && n == strlen(want) && memcmp(p, want, n) == 0;
}

START_TEST(request_line_twins) {
  size_t n = 99;
  ck_assert(bytes_are(pe_exchange_method_n(ex, &n), 0, ""));
  ck_assert_uint_eq(n, 0);
  ck_assert_int_eq(pe_exchange_set_method_n(ex, "POSTX", 4), PE_OK);
  ck_assert_int_eq(pe_exchange_set_path_n(ex, "/a b", 2), PE_OK);
  ck_assert_int_eq(pe_exchange_set_authority_n(ex, "h:1", 3), PE_OK);
  const char *p = pe_exchange_method_n(ex, &n);
  ck_assert(bytes_are(p, n, "POST"));
  p = pe_exchange_path_n(ex, &n);
  ck_assert(bytes_are(p, n, "/a"));
  p = pe_exchange_authority_n(ex, &n);
  ck_assert(bytes_are(p, n, "h:1"));
  ck_assert_ptr_nonnull(pe_exchange_path_n(ex, NULL)); /* len may be NULL */
  /* Same checks as the slice functions. */
  ck_assert_int_eq(pe_exchange_set_method_n(ex, "G T", 3), PE_ERR_INVALID_VALUE);
  ck_assert_int_eq(pe_exchange_set_path_n(ex, "/a b", 4), PE_ERR_INVALID_VALUE);
  ck_assert_int_eq(pe_exchange_set_method_n(ex, NULL, 3), PE_ERR_INVALID_ARGUMENT);
  ck_assert_int_eq(pe_exchange_set_path_n(ex, NULL, 1), PE_ERR_INVALID_ARGUMENT);
  ck_assert_int_eq(pe_exchange_set_authority_n(ex, NULL, 0), PE_OK); /* empty */
  ck_assert(slice_is(pe_exchange_authority(ex), ""));
  ck_assert_int_eq(pe_exchange_set_authority_n(NULL, "h", 1), PE_ERR_INVALID_ARGUMENT);
  p = pe_exchange_method_n(NULL, &n);
  ck_assert(bytes_are(p, n, ""));
}
END_TEST

START_TEST(header_twins) {
  pe_slice v;
  ck_assert_int_eq(pe_exchange_header_add_n(ex, PE_REQUEST, "Accept", 6, "a", 1), PE_OK);
  ck_assert_int_eq(pe_exchange_header_add_n(ex, PE_REQUEST, "accept", 6, "b", 1), PE_OK);
  ck_assert_int_eq(pe_exchange_header_get_n(ex, PE_REQUEST, "ACCEPT", 6, &v), PE_OK);
  ck_assert(slice_is(v, "a"));
  ck_assert_int_eq(pe_exchange_header_get_nth_n(ex, PE_REQUEST, "accept", 6, 1, &v), PE_OK);
  ck_assert(slice_is(v, "b"));
  ck_assert_int_eq(pe_exchange_header_get_nth_n(ex, PE_REQUEST, "accept", 6, 2, &v),
                   PE_ERR_NOT_FOUND);
  ck_assert_int_eq(pe_exchange_header_set_n(ex, PE_REQUEST, "accept", 6, "c", 1), PE_OK);
  ck_assert_uint_eq(pe_exchange_header_count(ex, PE_REQUEST), 1);
  ck_assert_int_eq(pe_exchange_header_set_n(ex, PE_REQUEST, "x", 1, "a\r\nb", 4),
                   PE_ERR_HEADER_VALUE);
  ck_assert_int_eq(pe_exchange_header_add_n(ex, PE_REQUEST, "a b", 3, "v", 1), PE_ERR_HEADER_NAME);
  ck_assert_int_eq(pe_exchange_header_add_n(ex, PE_REQUEST, "x", 1, "\0", 1), PE_ERR_HEADER_VALUE);
  ck_assert_int_eq(pe_exchange_header_set_n(ex, PE_REQUEST, NULL, 1, "v", 1),
                   PE_ERR_INVALID_ARGUMENT);
  ck_assert_int_eq(pe_exchange_header_set_n(ex, PE_REQUEST, "x", 1, NULL, 1),
                   PE_ERR_INVALID_ARGUMENT);
  ck_assert_int_eq(pe_exchange_header_get_n(ex, PE_REQUEST, NULL, 2, &v), PE_ERR_INVALID_ARGUMENT);
  ck_assert_int_eq(pe_exchange_header_get_nth_n(ex, PE_REQUEST, NULL, 2, 0, &v),
                   PE_ERR_INVALID_ARGUMENT);
  ck_assert_int_eq(pe_exchange_header_add_n(ex, PE_REQUEST, NULL, 2, "v", 1),
                   PE_ERR_INVALID_ARGUMENT);
  ck_assert_int_eq(pe_exchange_header_remove_n(ex, PE_REQUEST, NULL, 1), PE_ERR_INVALID_ARGUMENT);
  ck_assert_int_eq(pe_exchange_header_remove_n(ex, PE_REQUEST, "ACCEPT", 6), 1);
  ck_assert_uint_eq(pe_exchange_header_count(ex, PE_REQUEST), 0);
}
END_TEST

START_TEST(body_twins) {
  size_t n = 7;
  const char *p = pe_exchange_body_n(ex, PE_RESPONSE, &n);
  ck_assert(bytes_are(p, n, ""));
  ck_assert_int_eq(pe_exchange_body_set_n(ex, PE_RESPONSE, "b\0c", 3), PE_OK);
  ck_assert_int_eq(pe_exchange_body_prepend_n(ex, PE_RESPONSE, "a", 1), PE_OK);
  ck_assert_int_eq(pe_exchange_body_append_n(ex, PE_RESPONSE, "d", 1), PE_OK);
  p = pe_exchange_body_n(ex, PE_RESPONSE, &n);
  ck_assert_uint_eq(n, 5);
  ck_assert_mem_eq(p, "ab\0cd", 5);
  ck_assert_int_eq(pe_exchange_body_set_n(ex, PE_RESPONSE, NULL, 0), PE_OK);
  ck_assert_uint_eq(pe_exchange_body(ex, PE_RESPONSE).len, 0);
  ck_assert_int_eq(pe_exchange_body_set_n(ex, PE_RESPONSE, NULL, 1), PE_ERR_INVALID_ARGUMENT);
  ck_assert_int_eq(pe_exchange_body_prepend_n(ex, PE_RESPONSE, NULL, 1), PE_ERR_INVALID_ARGUMENT);
  ck_assert_int_eq(pe_exchange_body_append_n(ex, PE_RESPONSE, NULL, 1), PE_ERR_INVALID_ARGUMENT);
}
END_TEST

START_TEST(meta_and_respond_twins) {
  pe_slice v;
  ck_assert_int_eq(pe_exchange_meta_set_n(ex, "k", 1, "v\0w", 3), PE_OK);
  ck_assert_int_eq(pe_exchange_meta_get_n(ex, "k", 1, &v), PE_OK);
  ck_assert_uint_eq(v.len, 3);
  ck_assert_int_eq(pe_exchange_meta_get_n(ex, "K", 1, &v), PE_ERR_NOT_FOUND);
  ck_assert_int_eq(pe_exchange_meta_set_n(ex, "", 0, "v", 1), PE_ERR_INVALID_ARGUMENT);
  ck_assert_int_eq(pe_exchange_meta_set_n(ex, NULL, 1, "v", 1), PE_ERR_INVALID_ARGUMENT);
  ck_assert_int_eq(pe_exchange_meta_get_n(ex, NULL, 1, &v), PE_ERR_INVALID_ARGUMENT);
  ck_assert_int_eq(pe_exchange_meta_remove_n(ex, NULL, 1), PE_ERR_INVALID_ARGUMENT);
  ck_assert_int_eq(pe_exchange_meta_remove_n(ex, "k", 1), 1);
  ck_assert_int_eq(pe_exchange_meta_remove_n(ex, "k", 1), 0);
  ck_assert_int_eq(pe_exchange_respond_n(ex, 99, "x", 1), PE_ERR_INVALID_VALUE);
  ck_assert_int_eq(pe_exchange_respond_n(ex, 403, NULL, 1), PE_ERR_INVALID_ARGUMENT);
  ck_assert_int_eq(pe_exchange_respond_n(ex, 403, "no", 2), PE_OK);
  ck_assert_int_eq(pe_exchange_verdict(ex), PE_VERDICT_RESPOND);
  ck_assert_int_eq(pe_exchange_status(ex), 403);
  ck_assert(slice_is(pe_exchange_body(ex, PE_RESPONSE), "no"));
}
END_TEST

START_TEST(chain_twins) {
  ck_assert_int_eq(pe_engine_load_plugin(engine, PE_SAMPLE_PLUGIN), PE_OK);
  ck_assert_int_eq(pe_engine_has_policy_n(engine, "sample-native-request-header", 28, "1.0.0", 5),
                   1);
  ck_assert_int_eq(pe_engine_has_policy_n(engine, "sample-native-request-header", 28, "1.0", 3), 0);
  ck_assert_int_eq(pe_engine_has_policy_n(engine, NULL, 28, "1.0.0", 5), 0);

  const char *json = "[{\"name\":\"sample-native-request-header\",\"version\":\"1.0.0\"}]";
  pe_chain *chain = NULL;
  char err[256] = "";
  ck_assert_int_eq(pe_chain_new_from_json_n(&chain, engine, json, strlen(json), err, sizeof err),
                   PE_OK);
  ck_assert_uint_eq(pe_chain_step_count(chain), 1);
  pe_chain_free(chain);
  chain = NULL;
  ck_assert_int_eq(pe_chain_new_from_json_n(&chain, engine, json, 5, err, sizeof err), PE_ERR_JSON);
  ck_assert_ptr_null(chain);
  ck_assert_int_eq(pe_chain_new_from_json_n(&chain, engine, NULL, 5, err, sizeof err),
                   PE_ERR_INVALID_ARGUMENT);
  ck_assert_str_ne(err, "");

  pe_chain_builder *b = NULL;
  ck_assert_int_eq(pe_chain_builder_new(&b, engine), PE_OK);
  ck_assert_int_eq(
      pe_chain_builder_add_step_n(b, "sample-native-response-body", 27, "1.0.0", 5, NULL, 0),
      PE_OK);
  ck_assert_int_eq(pe_chain_builder_add_step_n(b, NULL, 3, "1.0.0", 5, NULL, 0),
                   PE_ERR_INVALID_ARGUMENT);
  ck_assert_int_eq(pe_chain_builder_add_json_n(b, NULL, 3), PE_ERR_INVALID_ARGUMENT);
  ck_assert_int_eq(pe_chain_builder_set_executor_n(b, 0, NULL, 3), PE_ERR_INVALID_ARGUMENT);
  ck_assert_int_eq(pe_chain_builder_set_executor_n(b, 9, "python", 6), PE_ERR_INVALID_ARGUMENT);
  pe_chain_builder *named = NULL;
  ck_assert_int_eq(pe_chain_builder_new(&named, engine), PE_OK);
  ck_assert_int_eq(
      pe_chain_builder_add_step_n(named, "sample-native-response-body", 27, "1.0.0", 5, NULL, 0),
      PE_OK);
  ck_assert_int_eq(pe_chain_builder_set_executor_n(named, 0, "python", 6), PE_OK);
  /* Taken: the build then refuses an executor on a native step. */
  ck_assert_int_eq(pe_chain_builder_build(named, &chain), PE_ERR_INVALID_ARGUMENT);
  pe_chain_builder_free(named);
  ck_assert_int_eq(pe_chain_builder_add_json_n(b, "{", 1), PE_ERR_JSON);
  ck_assert_int_eq(pe_chain_builder_build(b, &chain), PE_OK);
  ck_assert_uint_eq(pe_chain_needs(chain), PE_NEEDS_RESPONSE_BODY);
  pe_chain_free(chain);
  pe_chain_builder_free(b);
}
END_TEST

/* Every entry of the table is the function it is named after. */
START_TEST(api_table_is_complete) {
  const pe_api_routines *t = pe_api_table();
  ck_assert_ptr_nonnull(t);
  ck_assert_uint_eq(t->api_size, sizeof *t);
  ck_assert_int_eq(t->api_version, PE_API_ROUTINES_VERSION);
  int entries = 0;
#define CHECK_ENTRY(name)                                                                          \
  ck_assert_msg((void (*)(void))t->name == (void (*)(void))pe_##name, "entry %s", #name);          \
  entries++;
  PE_API_ROUTINES(CHECK_ENTRY)
#undef CHECK_ENTRY
  /* Nothing in the struct but the header and the entries. */
  ck_assert_uint_eq(sizeof *t, offsetof(pe_api_routines, chain_builder_add_json) +
                                   (size_t)entries * sizeof(void (*)(void)));
}
END_TEST

static Suite *ffi_suite(void) {
  Suite *s = suite_create("ffi");
  TCase *tc = tcase_create("twins");
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_add_test(tc, request_line_twins);
  tcase_add_test(tc, header_twins);
  tcase_add_test(tc, body_twins);
  tcase_add_test(tc, meta_and_respond_twins);
  tcase_add_test(tc, chain_twins);
  tcase_add_test(tc, api_table_is_complete);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) {
  return pe_test_run_suite(ffi_suite());
}
