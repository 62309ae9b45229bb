/* A worker that cannot start because of its policy modules (issue item 14):
 * pe_engine_start_python's error carries the worker's reason, not only
 * "handshake failed: ... Connection reset by peer". */
#include "test_python_util.h"

/* Starts a one-worker pool with module directory dir; returns the start's
 * return code and copies the engine's message into msg. */
static int start_with(const char *dir, char *msg, size_t size) {
  pe_engine *e = NULL;
  ck_assert_int_eq(pe_engine_new(&e, NULL), PE_OK);
  pe_python_options *po = NULL;
  ck_assert_int_eq(pe_python_options_new(&po), PE_OK);
  ck_assert_int_eq(pe_python_options_set_workers(po, 1), PE_OK);
  ck_assert_int_eq(pe_python_options_set_worker_path(po, PE_PYWORKER), PE_OK);
  ck_assert_int_eq(pe_python_options_add_module_path(po, dir), PE_OK);
  int rc = pe_engine_start_python(e, po);
  snprintf(msg, size, "%s", pe_engine_errmsg(e));
  pe_python_options_free(po);
  pe_engine_free(e);
  return rc;
}

static void expect_reason(const char *sub, const char *const *needles) {
  char dir[512], msg[512];
  snprintf(dir, sizeof dir, "%s/%s", PE_PY_BAD_POLICIES, sub);
  ck_assert_int_eq(start_with(dir, msg, sizeof msg), PE_ERR_WORKER);
  for (; *needles; needles++)
    ck_assert_msg(strstr(msg, *needles), "'%s' not in: %s", *needles, msg);
}

START_TEST(syntax_error_is_reported) {
  static const char *const n[] = {"broken_syntax.py", "SyntaxError", NULL};
  expect_reason("syntax", n);
}
END_TEST

START_TEST(exit_at_import_is_reported) {
  static const char *const n[] = {"exits.py", "SystemExit", "leaving at import on purpose", NULL};
  expect_reason("sysexit", n);
}
END_TEST

START_TEST(os_exit_at_import_is_reported) {
  static const char *const n[] = {"exited with status 7", NULL};
  expect_reason("osexit", n);
}
END_TEST

START_TEST(duplicate_policy_is_reported) {
  static const char *const n[] = {"b_second.py", "test-duplicate@1.0.0 is defined twice", NULL};
  expect_reason("duplicate", n);
}
END_TEST

int main(void) {
  Suite *s = suite_create("python_startup");
  TCase *tc = tcase_create("startup");
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, syntax_error_is_reported);
  tcase_add_test(tc, exit_at_import_is_reported);
  tcase_add_test(tc, os_exit_at_import_is_reported);
  tcase_add_test(tc, duplicate_policy_is_reported);
  suite_add_tcase(s, tc);
  return pe_test_run_suite(s);
}
