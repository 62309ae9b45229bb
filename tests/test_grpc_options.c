/* The gRPC executor's options and its start without the module: built and
 * run whether or not the library was built with gRPC (tests/grpc/ has the
 * suite that talks to executors). */
#include "pe_test_util.h"

#include <string.h>

START_TEST(options_refuse_bad_values) {
  ck_assert_int_eq(pe_grpc_options_new(NULL), PE_ERR_INVALID_ARGUMENT);
  pe_grpc_options *o = NULL;
  ck_assert_int_eq(pe_grpc_options_new(&o), PE_OK);
  ck_assert_int_eq(pe_grpc_options_set_name(o, ""), PE_ERR_INVALID_ARGUMENT);
  char long_name[80];
  memset(long_name, 'x', sizeof long_name - 1);
  long_name[sizeof long_name - 1] = '\0';
  ck_assert_int_eq(pe_grpc_options_set_name(o, long_name), PE_ERR_INVALID_ARGUMENT);
  ck_assert_int_eq(pe_grpc_options_set_name(o, "remote"), PE_OK);
  ck_assert_int_eq(pe_grpc_options_set_target(o, NULL), PE_ERR_INVALID_ARGUMENT);
  ck_assert_int_eq(pe_grpc_options_set_target(o, ""), PE_ERR_INVALID_ARGUMENT);
  ck_assert_int_eq(pe_grpc_options_set_target(o, "dns:///a:1"), PE_OK);
  ck_assert_int_eq(pe_grpc_options_set_target(o, "grpc://b:2"), PE_OK); /* replaces */
  ck_assert_int_eq(pe_grpc_options_set_default_timeout(o, 0), PE_ERR_INVALID_ARGUMENT);
  ck_assert_int_eq(pe_grpc_options_set_default_timeout(o, 3600001), PE_ERR_INVALID_ARGUMENT);
  ck_assert_int_eq(pe_grpc_options_set_default_timeout(o, 250), PE_OK);
  ck_assert_int_eq(pe_grpc_options_set_max_in_flight(o, 0), PE_ERR_INVALID_ARGUMENT);
  ck_assert_int_eq(pe_grpc_options_set_keepalive(o, 1000, 0), PE_ERR_INVALID_ARGUMENT);
  ck_assert_int_eq(pe_grpc_options_set_keepalive(o, 0, 0), PE_OK); /* off */
  ck_assert_int_eq(pe_grpc_options_set_reconnect_backoff(o, 0, 10), PE_ERR_INVALID_ARGUMENT);
  ck_assert_int_eq(pe_grpc_options_set_reconnect_backoff(o, 20, 10), PE_ERR_INVALID_ARGUMENT);
  ck_assert_int_eq(pe_grpc_options_set_max_message(o, 4095), PE_ERR_INVALID_ARGUMENT);
  ck_assert_int_eq(pe_grpc_options_set_max_message(o, 0), PE_OK);
  ck_assert_int_eq(pe_grpc_options_set_tls(o, "ca.pem", "cert.pem", NULL), PE_ERR_INVALID_ARGUMENT);
  ck_assert_int_eq(pe_grpc_options_set_tls(o, "ca.pem", "cert.pem", "key.pem"), PE_OK);
  ck_assert_int_eq(pe_grpc_options_set_tls(o, NULL, NULL, NULL), PE_OK); /* back to plaintext */
  ck_assert_int_eq(pe_grpc_options_set_startup_timeout(o, 0), PE_ERR_INVALID_ARGUMENT);
  ck_assert_int_eq(pe_grpc_options_set_module_path(o, ""), PE_ERR_INVALID_ARGUMENT);
  ck_assert_int_eq(pe_grpc_options_set_module_path(o, NULL), PE_OK);
  ck_assert_int_eq(pe_grpc_options_set_retries(NULL, 0), PE_ERR_INVALID_ARGUMENT);
  ck_assert_int_eq(pe_grpc_options_set_retries(o, 0), PE_OK);
  pe_grpc_options_free(o);
  pe_grpc_options_free(NULL);
}
END_TEST

/* No module: a clear PE_ERR_UNSUPPORTED, nothing registered. */
START_TEST(start_without_the_module_is_unsupported) {
  pe_engine *e = pe_test_engine(NULL);
  pe_grpc_options *o = NULL;
  ck_assert_int_eq(pe_grpc_options_new(&o), PE_OK);
  ck_assert_int_eq(pe_engine_start_grpc(e, o), PE_ERR_INVALID_ARGUMENT); /* no target */
  ck_assert_int_eq(pe_engine_start_grpc(NULL, o), PE_ERR_INVALID_ARGUMENT);
  ck_assert_int_eq(pe_grpc_options_set_target(o, "grpc://127.0.0.1:1"), PE_OK);
  ck_assert_int_eq(pe_grpc_options_set_module_path(o, "/nonexistent/libpolicyexec-grpc.so.0"),
                   PE_OK);
  ck_assert_int_eq(pe_engine_start_grpc(e, o), PE_ERR_UNSUPPORTED);
  ck_assert_ptr_nonnull(strstr(pe_engine_errmsg(e), "cannot load the gRPC module"));
  size_t alive = 7;
  ck_assert_int_eq(pe_engine_grpc_ping(e, "grpc", &alive), PE_ERR_STATE);
  ck_assert_uint_eq(alive, 7);
  ck_assert_int_eq(pe_engine_grpc_ping(e, NULL, &alive), PE_ERR_INVALID_ARGUMENT);
  pe_grpc_options_free(o);
  pe_engine_free(e);
}
END_TEST

int main(void) {
  Suite *s = suite_create("grpc_options");
  TCase *tc = tcase_create("grpc_options");
  tcase_add_test(tc, options_refuse_bad_values);
  tcase_add_test(tc, start_without_the_module_is_unsupported);
  suite_add_tcase(s, tc);
  return pe_test_run_suite(s);
}
