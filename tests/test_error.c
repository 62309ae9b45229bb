/* pe_error.c and pe_escape.c: every code has a name and a text, phase
 * names, message buffers truncate, escaping keeps messages printable. */
#include "pe_internal.h"
#include "pe_escape.h"
#include "pe_test_util.h"

START_TEST(every_code_named) {
  static const struct {
    int code;
    const char *name;
  } codes[] = {
      {PE_OK, "PE_OK"},
      {PE_PENDING, "PE_PENDING"},
      {PE_ERR_INVALID_ARGUMENT, "PE_ERR_INVALID_ARGUMENT"},
      {PE_ERR_NOMEM, "PE_ERR_NOMEM"},
      {PE_ERR_NOT_FOUND, "PE_ERR_NOT_FOUND"},
      {PE_ERR_EXISTS, "PE_ERR_EXISTS"},
      {PE_ERR_JSON, "PE_ERR_JSON"},
      {PE_ERR_PARAM, "PE_ERR_PARAM"},
      {PE_ERR_UNKNOWN_POLICY, "PE_ERR_UNKNOWN_POLICY"},
      {PE_ERR_PLUGIN, "PE_ERR_PLUGIN"},
      {PE_ERR_HEADER_NAME, "PE_ERR_HEADER_NAME"},
      {PE_ERR_HEADER_VALUE, "PE_ERR_HEADER_VALUE"},
      {PE_ERR_TOO_MANY_HEADERS, "PE_ERR_TOO_MANY_HEADERS"},
      {PE_ERR_HEADERS_TOO_LARGE, "PE_ERR_HEADERS_TOO_LARGE"},
      {PE_ERR_BODY_TOO_LARGE, "PE_ERR_BODY_TOO_LARGE"},
      {PE_ERR_POLICY, "PE_ERR_POLICY"},
      {PE_ERR_TIMEOUT, "PE_ERR_TIMEOUT"},
      {PE_ERR_WORKER, "PE_ERR_WORKER"},
      {PE_ERR_BUSY, "PE_ERR_BUSY"},
      {PE_ERR_STATE, "PE_ERR_STATE"},
      {PE_ERR_UNSUPPORTED, "PE_ERR_UNSUPPORTED"},
      {PE_ERR_IO, "PE_ERR_IO"},
      {PE_ERR_INVALID_VALUE, "PE_ERR_INVALID_VALUE"},
      {PE_ERR_FRAMING_HEADER, "PE_ERR_FRAMING_HEADER"},
  };
  for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
    ck_assert_str_eq(pe_errname(codes[i].code), codes[i].name);
    const char *text = pe_strerror(codes[i].code);
    ck_assert_ptr_nonnull(text);
    ck_assert_str_ne(text, "unknown error code");
    for (size_t j = 0; j < i; j++)
      ck_assert_str_ne(text, pe_strerror(codes[j].code));
  }
  ck_assert_str_eq(pe_strerror(PE_ERR_HEADER_VALUE), "header value contains CR, LF, NUL or DEL");
  ck_assert_str_eq(pe_strerror(-999), "unknown error code");
  ck_assert_str_eq(pe_strerror(42), "unknown error code");
  ck_assert_str_eq(pe_errname(-999), "PE_ERR_UNKNOWN");
}
END_TEST

START_TEST(phase_names) {
  ck_assert_str_eq(pe_phase_name(PE_PHASE_REQUEST_HEADERS), "request_headers");
  ck_assert_str_eq(pe_phase_name(PE_PHASE_REQUEST_BODY), "request_body");
  ck_assert_str_eq(pe_phase_name(PE_PHASE_RESPONSE_HEADERS), "response_headers");
  ck_assert_str_eq(pe_phase_name(PE_PHASE_RESPONSE_BODY), "response_body");
  ck_assert_str_eq(pe_phase_name((pe_phase)7), "unknown");
  ck_assert_str_eq(pe_phase_name((pe_phase)-1), "unknown");
}
END_TEST

START_TEST(errmsg_truncates) {
  char buf[PE__ERRMSG_SIZE];
  pe__errmsg_set(buf, "step %d of '%s'", 3, "auth");
  ck_assert_str_eq(buf, "step 3 of 'auth'");
  char big[1000];
  memset(big, 'x', sizeof big - 1);
  big[sizeof big - 1] = '\0';
  pe__errmsg_set(buf, "%s", big);
  ck_assert_uint_eq(strlen(buf), PE__ERRMSG_SIZE - 1);
}
END_TEST

START_TEST(escape_bytes) {
  char out[PE__ESCAPE_SIZE];
  ck_assert_str_eq(pe__escape(out, sizeof out, PE_LIT("x-ok")), "x-ok");
  ck_assert_str_eq(pe__escape(out, sizeof out, PE_LIT("a\r\nb\0c\\\xff")),
                   "a\\x0d\\x0ab\\x00c\\\\\\xff");
  ck_assert_str_eq(pe__escape(out, sizeof out, pe_bytes(NULL, 0)), "");
  char small[8];
  ck_assert_str_eq(pe__escape(small, sizeof small, PE_LIT("abcdefg")), "abcdefg");
  ck_assert_str_eq(pe__escape(small, sizeof small, PE_LIT("abcdefgh")), "abcd...");
  ck_assert_str_eq(pe__escape(small, sizeof small, PE_LIT("\x01\x02")), "\\x01...");
  char name[500];
  memset(name, 'n', sizeof name);
  pe__escape(out, sizeof out, pe_bytes(name, sizeof name));
  ck_assert_uint_eq(strlen(out), sizeof out - 1);
  ck_assert_str_eq(out + strlen(out) - 3, "...");
}
END_TEST

static Suite *error_suite(void) {
  Suite *s = suite_create("error");
  TCase *tc = tcase_create("core");
  tcase_add_test(tc, every_code_named);
  tcase_add_test(tc, phase_names);
  tcase_add_test(tc, errmsg_truncates);
  tcase_add_test(tc, escape_bytes);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) {
  return pe_test_run_suite(error_suite());
}
