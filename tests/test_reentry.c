/* What a policy may not do from inside a run (issue items 11, 13, 15):
 * restart or re-enter the run of its own exchange (pe_exchange_reset,
 * pe_chain_run* on it: PE_ERR_STATE), or touch the headers that frame the
 * message or the hop (PE_ERR_FRAMING_HEADER), while the host keeps both
 * outside a run; and DEL is refused in header values like CR, LF and NUL. */
#include "pe_test_util.h"
#include "pe_internal.h"

#include <stdio.h>
#include <stdlib.h>

/* What the callbacks saw, read back by the tests. */
static int seen_rc, calls, depth;
static const pe_chain *inner_chain; /* the chain a callback runs */
static pe_exchange *other_ex;       /* an exchange a callback may run */

static int resetter(pe_exchange *ex, void *instance, void *user_data) {
  (void)instance;
  (void)user_data;
  if (++calls > 1) /* without the guard the run restarts: stop it */
    return PE_ERR_POLICY;
  seen_rc = pe_exchange_reset(ex);
  return PE_OK;
}

/* Runs inner_chain on its own exchange (or on other_ex if set). */
static int rerunner(pe_exchange *ex, void *instance, void *user_data) {
  (void)instance;
  (void)user_data;
  calls++;
  if (++depth > 3) { /* without the guard this recursed until the stack ended */
    depth--;
    return PE_ERR_POLICY;
  }
  int rc = pe_chain_run(inner_chain, other_ex ? other_ex : ex, PE_PHASE_REQUEST_HEADERS);
  if (depth == 1)
    seen_rc = rc;
  depth--;
  return PE_OK;
}

static int tagger(pe_exchange *ex, void *instance, void *user_data) {
  (void)instance;
  (void)user_data;
  return pe_exchange_meta_set(ex, PE_LIT("tag"), PE_LIT("inner"));
}

/* "framer": sets (or, with user_data, removes) the header named in its
 * "name" param; fails with the refusal. */
static int framer_create(void **instance, pe_params *params, void *user_data) {
  (void)user_data;
  pe_slice name;
  if (pe_params_get_string(params, "name", &name) != PE_OK)
    return PE_ERR_PARAM;
  char *copy = calloc(1, name.len + 1);
  if (!copy)
    return PE_ERR_NOMEM;
  memcpy(copy, name.ptr, name.len);
  *instance = copy;
  return PE_OK;
}

static void framer_destroy(void *instance, void *user_data) {
  (void)user_data;
  free(instance);
}

static int framer(pe_exchange *ex, void *instance, void *user_data) {
  int rc = user_data ? pe_exchange_header_remove(ex, PE_RESPONSE, pe_str(instance))
                     : pe_exchange_header_set(ex, PE_RESPONSE, pe_str(instance), PE_LIT("5"));
  seen_rc = rc;
  return rc < 0 ? rc : PE_OK;
}

static int del_setter(pe_exchange *ex, void *instance, void *user_data) {
  (void)instance;
  (void)user_data;
  seen_rc = pe_exchange_header_set(ex, PE_RESPONSE, PE_LIT("x-a"),
                                   PE_LIT("a\x7f"
                                          "b"));
  return seen_rc;
}

static const pe_param_spec framer_specs[] = {{.name = "name", .type = PE_PARAM_STRING}};

static void register_all(pe_engine *e) {
  pe_policy_def d = {.abi = PE_POLICY_ABI, .version = "1"};
  d.name = "resetter";
  d.on_request_headers = resetter;
  ck_assert_int_eq(pe_engine_register_policy(e, &d), PE_OK);
  d.name = "rerunner";
  d.on_request_headers = rerunner;
  ck_assert_int_eq(pe_engine_register_policy(e, &d), PE_OK);
  d.name = "tagger";
  d.on_request_headers = tagger;
  ck_assert_int_eq(pe_engine_register_policy(e, &d), PE_OK);
  d.name = "del-setter";
  d.on_response_headers = del_setter;
  d.on_request_headers = NULL;
  ck_assert_int_eq(pe_engine_register_policy(e, &d), PE_OK);
  pe_policy_def f = {.abi = PE_POLICY_ABI,
                     .name = "framer",
                     .version = "1",
                     .params = framer_specs,
                     .param_count = 1,
                     .create = framer_create,
                     .destroy = framer_destroy,
                     .on_response_headers = framer};
  ck_assert_int_eq(pe_engine_register_policy(e, &f), PE_OK);
  f.name = "unframer";
  f.user_data = &f; /* any non-NULL: remove instead of set */
  ck_assert_int_eq(pe_engine_register_policy(e, &f), PE_OK);
}

static pe_chain *chain_of(pe_engine *e, const char *json) {
  pe_chain *c = NULL;
  char msg[256];
  int rc = pe_chain_new_from_json(&c, e, pe_str(json), msg, sizeof msg);
  ck_assert_msg(rc == PE_OK, "%s", msg);
  return c;
}

static void reset_state(void) {
  seen_rc = 12345;
  calls = depth = 0;
  inner_chain = NULL;
  other_ex = NULL;
}

START_TEST(reset_from_a_callback_is_refused) {
  reset_state();
  pe_engine *e = pe_test_engine(NULL);
  register_all(e);
  pe_chain *c = chain_of(e, "[{\"name\":\"resetter\",\"version\":\"1\"}]");
  pe_exchange *ex = NULL;
  ck_assert_int_eq(pe_exchange_new(&ex, e), PE_OK);
  ck_assert_int_eq(pe_exchange_meta_set(ex, PE_LIT("kept"), PE_LIT("yes")), PE_OK);
  ck_assert_int_eq(pe_chain_run(c, ex, PE_PHASE_REQUEST_HEADERS), PE_OK);
  ck_assert_int_eq(seen_rc, PE_ERR_STATE);
  ck_assert_int_eq(calls, 1);
  ck_assert_int_eq(pe_exchange_verdict(ex), PE_VERDICT_CONTINUE);
  ck_assert_uint_eq(pe_exchange_meta_count(ex), 1); /* nothing was emptied */
  /* The host may reset it after the run. */
  ck_assert_int_eq(pe_exchange_reset(ex), PE_OK);
  ck_assert_uint_eq(pe_exchange_meta_count(ex), 0);
  pe_exchange_free(ex);
  pe_chain_free(c);
  pe_engine_free(e);
}
END_TEST

START_TEST(running_its_own_exchange_from_a_callback_is_refused) {
  reset_state();
  pe_engine *e = pe_test_engine(NULL);
  register_all(e);
  pe_chain *c = chain_of(e, "[{\"name\":\"rerunner\",\"version\":\"1\"}]");
  pe_chain *tag = chain_of(e, "[{\"name\":\"tagger\",\"version\":\"1\"}]");
  pe_exchange *ex = NULL;
  ck_assert_int_eq(pe_exchange_new(&ex, e), PE_OK);
  /* The same chain: would recurse without end. */
  inner_chain = c;
  ck_assert_int_eq(pe_chain_run(c, ex, PE_PHASE_REQUEST_HEADERS), PE_OK);
  ck_assert_int_eq(seen_rc, PE_ERR_STATE);
  ck_assert_int_eq(calls, 1);
  ck_assert_int_eq(pe_exchange_verdict(ex), PE_VERDICT_CONTINUE);
  ck_assert_ptr_nonnull(strstr(pe_exchange_errmsg(ex), "policy running on this exchange"));
  /* Another chain on the same exchange: would take over the outer run. */
  reset_state();
  inner_chain = tag;
  ck_assert_int_eq(pe_exchange_reset(ex), PE_OK);
  ck_assert_int_eq(pe_chain_run(c, ex, PE_PHASE_REQUEST_HEADERS), PE_OK);
  ck_assert_int_eq(seen_rc, PE_ERR_STATE);
  pe_slice v;
  ck_assert_int_eq(pe_exchange_meta_get(ex, PE_LIT("tag"), &v), PE_ERR_NOT_FOUND);
  pe_exchange_free(ex);
  pe_chain_free(tag);
  pe_chain_free(c);
  pe_engine_free(e);
}
END_TEST

START_TEST(running_another_exchange_from_a_callback_works) {
  reset_state();
  pe_engine *e = pe_test_engine(NULL);
  register_all(e);
  pe_chain *c = chain_of(e, "[{\"name\":\"rerunner\",\"version\":\"1\"}]");
  pe_chain *tag = chain_of(e, "[{\"name\":\"tagger\",\"version\":\"1\"}]");
  pe_exchange *ex = NULL, *other = NULL;
  ck_assert_int_eq(pe_exchange_new(&ex, e), PE_OK);
  ck_assert_int_eq(pe_exchange_new(&other, e), PE_OK);
  inner_chain = tag;
  other_ex = other;
  ck_assert_int_eq(pe_chain_run(c, ex, PE_PHASE_REQUEST_HEADERS), PE_OK);
  ck_assert_int_eq(seen_rc, PE_OK);
  pe_slice v;
  ck_assert_int_eq(pe_exchange_meta_get(other, PE_LIT("tag"), &v), PE_OK);
  ck_assert_slice_eq(v, "inner");
  pe_exchange_free(other);
  pe_exchange_free(ex);
  pe_chain_free(tag);
  pe_chain_free(c);
  pe_engine_free(e);
}
END_TEST

/* One framing header: a policy setting (or removing) it is refused, in any
 * case, and the step fails by its mode; the host may still set it. */
static void check_framing(pe_engine *e, const char *policy, const char *name) {
  char json[256];
  snprintf(json, sizeof json, "[{\"name\":\"%s\",\"version\":\"1\",\"params\":{\"name\":\"%s\"}}]",
           policy, name);
  pe_chain *c = chain_of(e, json);
  pe_exchange *ex = NULL;
  ck_assert_int_eq(pe_exchange_new(&ex, e), PE_OK);
  /* The host sets its framing outside the run: allowed. */
  ck_assert_int_eq(pe_exchange_header_set(ex, PE_RESPONSE, pe_str(name), PE_LIT("9")), PE_OK);
  seen_rc = 12345;
  ck_assert_int_eq(pe_chain_run(c, ex, PE_PHASE_RESPONSE_HEADERS), PE_OK);
  ck_assert_msg(seen_rc == PE_ERR_FRAMING_HEADER, "%s %s: %d", policy, name, seen_rc);
  ck_assert_int_eq(pe_exchange_status(ex), 500);
  ck_assert_ptr_nonnull(strstr(pe_exchange_errmsg(ex), "belong to the proxy"));
  pe_exchange_free(ex);

  /* Fail-open: skipped; the host's value stays. */
  snprintf(json, sizeof json,
           "[{\"name\":\"%s\",\"version\":\"1\",\"failure_mode\":\"open\","
           "\"params\":{\"name\":\"%s\"}}]",
           policy, name);
  pe_chain_free(c);
  c = chain_of(e, json);
  ck_assert_int_eq(pe_exchange_new(&ex, e), PE_OK);
  ck_assert_int_eq(pe_exchange_header_set(ex, PE_RESPONSE, pe_str(name), PE_LIT("9")), PE_OK);
  ck_assert_int_eq(pe_chain_run(c, ex, PE_PHASE_RESPONSE_HEADERS), PE_OK);
  ck_assert_int_eq(pe_exchange_verdict(ex), PE_VERDICT_CONTINUE);
  pe_slice v;
  ck_assert_int_eq(pe_exchange_header_get(ex, PE_RESPONSE, pe_str(name), &v), PE_OK);
  ck_assert_slice_eq(v, "9");
  /* ... and may change or remove it after the run. */
  ck_assert_int_eq(pe_exchange_header_set(ex, PE_RESPONSE, pe_str(name), PE_LIT("7")), PE_OK);
  ck_assert_int_eq(pe_exchange_header_remove(ex, PE_RESPONSE, pe_str(name)), 1);
  pe_exchange_free(ex);
  pe_chain_free(c);
}

START_TEST(policies_may_not_touch_framing_headers) {
  pe_engine *e = pe_test_engine(NULL);
  register_all(e);
  static const char *const names[] = {"content-length",
                                      "Content-Length",
                                      "TRANSFER-ENCODING",
                                      "connection",
                                      "keep-alive",
                                      "proxy-connection",
                                      "te",
                                      "trailer",
                                      "upgrade"};
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
    check_framing(e, "framer", names[i]);
    check_framing(e, "unframer", names[i]);
  }
  /* Other headers, even close ones, are a policy's to change. */
  pe_chain *c = chain_of(e, "[{\"name\":\"framer\",\"version\":\"1\","
                            "\"params\":{\"name\":\"content-type\"}}]");
  pe_exchange *ex = NULL;
  ck_assert_int_eq(pe_exchange_new(&ex, e), PE_OK);
  ck_assert_int_eq(pe_chain_run(c, ex, PE_PHASE_RESPONSE_HEADERS), PE_OK);
  ck_assert_int_eq(seen_rc, PE_OK);
  ck_assert_int_eq(pe_exchange_verdict(ex), PE_VERDICT_CONTINUE);
  pe_exchange_free(ex);
  pe_chain_free(c);
  pe_engine_free(e);
}
END_TEST

START_TEST(del_is_refused_in_header_values) {
  pe_engine *e = pe_test_engine(NULL);
  register_all(e);
  pe_exchange *ex = NULL;
  ck_assert_int_eq(pe_exchange_new(&ex, e), PE_OK);
  ck_assert_int_eq(pe_exchange_header_set(ex, PE_REQUEST, PE_LIT("x-a"), PE_LIT("\x7f")),
                   PE_ERR_HEADER_VALUE);
  ck_assert_ptr_nonnull(strstr(pe_exchange_errmsg(ex), "DEL at byte 0"));
  ck_assert_int_eq(pe_exchange_header_add(ex, PE_REQUEST, PE_LIT("x-a"), PE_LIT("ok\x7f")),
                   PE_ERR_HEADER_VALUE);
  ck_assert_uint_eq(pe_exchange_header_count(ex, PE_REQUEST), 0);
  /* Tabs and obs-text still pass, as before. */
  ck_assert_int_eq(pe_exchange_header_set(ex, PE_REQUEST, PE_LIT("x-a"), PE_LIT("a\tb\x80")),
                   PE_OK);
  pe_chain *c = chain_of(e, "[{\"name\":\"del-setter\",\"version\":\"1\"}]");
  seen_rc = 12345;
  ck_assert_int_eq(pe_chain_run(c, ex, PE_PHASE_RESPONSE_HEADERS), PE_OK);
  ck_assert_int_eq(seen_rc, PE_ERR_HEADER_VALUE);
  ck_assert_int_eq(pe_exchange_status(ex), 500);
  pe_exchange_free(ex);
  pe_chain_free(c);
  pe_engine_free(e);
}
END_TEST

static Suite *reentry_suite(void) {
  Suite *s = suite_create("reentry");
  TCase *tc = tcase_create("core");
  tcase_add_test(tc, reset_from_a_callback_is_refused);
  tcase_add_test(tc, running_its_own_exchange_from_a_callback_is_refused);
  tcase_add_test(tc, running_another_exchange_from_a_callback_works);
  tcase_add_test(tc, policies_may_not_touch_framing_headers);
  tcase_add_test(tc, del_is_refused_in_header_values);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) {
  return pe_test_run_suite(reentry_suite());
}
