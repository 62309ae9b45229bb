/* pe_validate.c: the character rules for tokens, field values and request
 * targets, checked byte by byte over all 256 values. */
#include "pe_internal.h"
#include "pe_test_util.h"

static const char tchars[] = "!#$%&'*+-.^_`|~0123456789"
                             "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

START_TEST(token_accepts_exactly_tchar) {
  for (int c = 0; c < 256; c++) {
    char b = (char)c;
    bool expected = c != 0 && strchr(tchars, c) != NULL;
    ck_assert_msg(pe__is_token(pe_bytes(&b, 1)) == expected, "byte 0x%02x", c);
  }
}
END_TEST

/* The token check reads four bytes per step: every byte value at every
 * offset of names of 1-12 bytes. */
START_TEST(token_every_offset) {
  char name[12];
  for (size_t len = 1; len <= sizeof name; len++)
    for (size_t at = 0; at < len; at++)
      for (int c = 0; c < 256; c++) {
        memset(name, 'a', sizeof name);
        name[at] = (char)c;
        bool expected = c != 0 && strchr(tchars, c) != NULL;
        ck_assert_msg(pe__is_token(pe_bytes(name, len)) == expected, "byte 0x%02x at %zu of %zu", c,
                      at, len);
      }
}
END_TEST

START_TEST(token_rules) {
  ck_assert(pe__is_token(PE_LIT("Content-Type")));
  ck_assert(pe__is_token(PE_LIT("x-a.b_c~d|e`f^g")));
  ck_assert(!pe__is_token(PE_LIT("")));
  ck_assert(!pe__is_token(pe_bytes(NULL, 0)));
  ck_assert(!pe__is_token(PE_LIT("bad name")));
  ck_assert(!pe__is_token(PE_LIT("bad:name")));
  ck_assert(!pe__is_token(PE_LIT("x-foo\r\n")));
  ck_assert(!pe__is_token(PE_LIT("x\0y")));
  ck_assert(!pe__is_token(PE_LIT("caf\xc3\xa9")));
}
END_TEST

START_TEST(field_value_refuses_only_cr_lf_nul_del) {
  for (int c = 0; c < 256; c++) {
    char b[3] = {'a', (char)c, 'z'};
    bool expected = c != '\r' && c != '\n' && c != 0 && c != 0x7f;
    ck_assert_msg(pe__is_field_value(pe_bytes(b, 3)) == expected, "byte 0x%02x", c);
  }
}
END_TEST

/* The value check reads eight bytes at a time: each refused byte, and its
 * neighbours with the high bit set (which a word-wise test could confuse
 * with it), at every offset of values from 1 to 40 bytes. */
START_TEST(field_value_every_offset) {
  const unsigned char probes[] = {'\r', '\n', 0,    0x7f, 0x8d, 0x8a,
                                  0x80, 0xff, 0x0c, 0x0e, 0x7e, 0x01};
  char v[40];
  for (size_t len = 1; len <= sizeof v; len++)
    for (size_t at = 0; at < len; at++)
      for (size_t k = 0; k < sizeof probes; k++) {
        memset(v, 'a', sizeof v);
        v[at] = (char)probes[k];
        bool expected =
            probes[k] != '\r' && probes[k] != '\n' && probes[k] != 0 && probes[k] != 0x7f;
        ck_assert_msg(pe__is_field_value(pe_bytes(v, len)) == expected, "byte 0x%02x at %zu of %zu",
                      probes[k], at, len);
      }
}
END_TEST

START_TEST(field_value_rules) {
  ck_assert(pe__is_field_value(PE_LIT("")));
  ck_assert(pe__is_field_value(pe_bytes(NULL, 0)));
  ck_assert(!pe__is_field_value(pe_bytes(NULL, 3)));
  ck_assert(pe__is_field_value(PE_LIT("a\tb c")));
  ck_assert(pe__is_field_value(PE_LIT("\x80\xff\xfe")));
  ck_assert(!pe__is_field_value(PE_LIT("a\r\nX-Injected: 1")));
  ck_assert(!pe__is_field_value(PE_LIT("\n")));
  ck_assert(!pe__is_field_value(PE_LIT("end\0")));
}
END_TEST

START_TEST(request_target_accepts_visible_ascii) {
  for (int c = 0; c < 256; c++) {
    char b = (char)c;
    bool expected = c >= 0x21 && c <= 0x7e;
    ck_assert_msg(pe__is_request_target(pe_bytes(&b, 1), false) == expected, "byte 0x%02x", c);
  }
}
END_TEST

START_TEST(request_target_empty) {
  ck_assert(!pe__is_request_target(PE_LIT(""), false));
  ck_assert(pe__is_request_target(PE_LIT(""), true));
  ck_assert(pe__is_request_target(pe_bytes(NULL, 0), true));
  ck_assert(!pe__is_request_target(pe_bytes(NULL, 2), true));
  ck_assert(pe__is_request_target(PE_LIT("/v1/items?id=3&x=%20"), false));
  ck_assert(!pe__is_request_target(PE_LIT("/a b"), false));
  ck_assert(!pe__is_request_target(PE_LIT("/caf\xc3\xa9"), false));
}
END_TEST

static Suite *validate_suite(void) {
  Suite *s = suite_create("validate");
  TCase *tc = tcase_create("core");
  tcase_add_test(tc, token_accepts_exactly_tchar);
  tcase_add_test(tc, token_rules);
  tcase_add_test(tc, field_value_refuses_only_cr_lf_nul_del);
  tcase_add_test(tc, field_value_rules);
  tcase_add_test(tc, field_value_every_offset);
  tcase_add_test(tc, token_every_offset);
  tcase_add_test(tc, request_target_accepts_visible_ascii);
  tcase_add_test(tc, request_target_empty);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) {
  return pe_test_run_suite(validate_suite());
}
