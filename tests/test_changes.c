/* pe_exchange_changes(): which parts of an exchange policies changed, so
 * that a host rebuilds only those. Bits come from every edit path (native
 * buffered and streamed callbacks, an immediate answer, a closed failure),
 * never from the host's own calls, and a rolled-back step takes its bits
 * with it. (The Python reply goes through the same setters with in_step
 * set: test_python_run covers that path's edits.) */
#include "pe_internal.h"
#include "pe_test_util.h"

#include <policyexec/plugin_api.h>
#include <stdio.h>

static pe_test_alloc alloc;
static pe_engine *engine;
static pe_exchange *ex;

/* What a policy does is chosen by its "op" param. */
typedef enum op {
  OP_NOTHING,
  OP_METHOD,
  OP_PATH,
  OP_AUTHORITY,
  OP_REQ_HEADER,
  OP_REQ_HEADER_REMOVE,
  OP_REQ_HEADER_REMOVE_MISSING,
  OP_REQ_BODY,
  OP_STATUS,
  OP_RESP_HEADER,
  OP_RESP_BODY,
  OP_META,
  OP_RESPOND,
  OP_HEADER_THEN_FAIL,
  OP_BAD_HEADER
} op;

static const char *const OP_NAMES[] = {"nothing",
                                       "method",
                                       "path",
                                       "authority",
                                       "req-header",
                                       "req-header-remove",
                                       "req-header-remove-missing",
                                       "req-body",
                                       "status",
                                       "resp-header",
                                       "resp-body",
                                       "meta",
                                       "respond",
                                       "header-then-fail",
                                       "bad-header"};

static const pe_param_spec op_specs[] = {{.name = "op", .type = PE_PARAM_STRING, .required = 1}};

static int op_create(void **instance, pe_params *params, void *user_data) {
  (void)user_data;
  pe_slice name = {0};
  if (pe_params_get_string(params, "op", &name) != PE_OK)
    return PE_ERR_PARAM;
  for (size_t i = 0; i < sizeof OP_NAMES / sizeof OP_NAMES[0]; i++) {
    if (strlen(OP_NAMES[i]) == name.len && memcmp(OP_NAMES[i], name.ptr, name.len) == 0) {
      *instance = (void *)(uintptr_t)(i + 1); /* never NULL */
      return PE_OK;
    }
  }
  return PE_ERR_PARAM;
}

static int do_op(pe_exchange *x, void *instance, void *user_data) {
  (void)user_data;
  switch ((op)((uintptr_t)instance - 1)) {
  case OP_NOTHING:
    return PE_OK;
  case OP_METHOD:
    return pe_exchange_set_method(x, PE_LIT("PUT"));
  case OP_PATH:
    return pe_exchange_set_path(x, PE_LIT("/new"));
  case OP_AUTHORITY:
    return pe_exchange_set_authority(x, PE_LIT("new.example"));
  case OP_REQ_HEADER:
    return pe_exchange_header_set(x, PE_REQUEST, PE_LIT("x-new"), PE_LIT("1"));
  case OP_REQ_HEADER_REMOVE:
    return pe_exchange_header_remove(x, PE_REQUEST, PE_LIT("a")) == 1 ? PE_OK : -1;
  case OP_REQ_HEADER_REMOVE_MISSING:
    return pe_exchange_header_remove(x, PE_REQUEST, PE_LIT("absent")) == 0 ? PE_OK : -1;
  case OP_REQ_BODY:
    return pe_exchange_body_append(x, PE_REQUEST, PE_LIT("+"));
  case OP_STATUS:
    return pe_exchange_set_status(x, 201);
  case OP_RESP_HEADER:
    return pe_exchange_header_add(x, PE_RESPONSE, PE_LIT("x-resp"), PE_LIT("1"));
  case OP_RESP_BODY:
    return pe_exchange_body_prepend(x, PE_RESPONSE, PE_LIT("["));
  case OP_META:
    return pe_exchange_meta_set(x, PE_LIT("k"), PE_LIT("v"));
  case OP_RESPOND:
    return pe_exchange_respond(x, 403, PE_LIT("no\n"));
  case OP_HEADER_THEN_FAIL:
    pe_exchange_header_set(x, PE_REQUEST, PE_LIT("x-partial"), PE_LIT("1"));
    return -1;
  case OP_BAD_HEADER: /* refused: nothing changes, so no bit */
    return pe_exchange_header_set(x, PE_REQUEST, PE_LIT("bad name"), PE_LIT("1")) ==
                   PE_ERR_HEADER_NAME
               ? PE_OK
               : -1;
  }
  return -1;
}

/* Streamed: passes the chunk on and sets a request header (a streamed step
 * may change headers; the bytes it hands out are not a body edit). */
static int stream_op(pe_exchange *x, pe_body_chunk *chunk, void *instance, void *user_data) {
  (void)instance;
  (void)user_data;
  int rc = pe_body_chunk_write(chunk, pe_body_chunk_data(chunk));
  if (rc == PE_OK)
    rc = pe_exchange_meta_set(x, PE_LIT("seen"), PE_LIT("1"));
  return rc;
}

static void setup(void) {
  memset(&alloc, 0, sizeof alloc);
  engine = pe_test_engine(&alloc);
  pe_policy_def d = {.abi = PE_POLICY_ABI,
                     .name = "op",
                     .version = "1",
                     .params = op_specs,
                     .param_count = 1,
                     .create = op_create,
                     .on_request_headers = do_op,
                     .on_request_body = do_op,
                     .on_response_headers = do_op,
                     .on_response_body = do_op};
  ck_assert_int_eq(pe_engine_register_policy(engine, &d), PE_OK);
  pe_policy_def s = {
      .abi = PE_POLICY_ABI, .name = "streamed", .version = "1", .on_request_body_chunk = stream_op};
  ck_assert_int_eq(pe_engine_register_policy(engine, &s), PE_OK);
  ck_assert_int_eq(pe_exchange_new(&ex, engine), PE_OK);
  /* The host's own edits: no bit. */
  ck_assert_int_eq(pe_exchange_set_method(ex, PE_LIT("GET")), PE_OK);
  ck_assert_int_eq(pe_exchange_set_path(ex, PE_LIT("/")), PE_OK);
  ck_assert_int_eq(pe_exchange_header_add(ex, PE_REQUEST, PE_LIT("a"), PE_LIT("1")), PE_OK);
  ck_assert_int_eq(pe_exchange_body_set(ex, PE_REQUEST, PE_LIT("body")), PE_OK);
  ck_assert_int_eq(pe_exchange_body_set(ex, PE_RESPONSE, PE_LIT("body")), PE_OK);
  ck_assert_int_eq(pe_exchange_set_status(ex, 200), PE_OK);
  ck_assert_int_eq(pe_exchange_meta_set(ex, PE_LIT("m"), PE_LIT("1")), PE_OK);
  ck_assert_int_eq(pe_exchange_header_remove(ex, PE_REQUEST, PE_LIT("none")), 0);
  ck_assert_uint_eq(pe_exchange_changes(ex), 0);
}

static void teardown(void) {
  pe_exchange_free(ex);
  pe_engine_free(engine);
  ck_assert_int_eq(atomic_load(&alloc.allocs), atomic_load(&alloc.frees));
}

static pe_chain *chain_of(const char *json) {
  pe_chain *c = NULL;
  char msg[256];
  int rc = pe_chain_new_from_json(&c, engine, pe_str(json), msg, sizeof msg);
  ck_assert_msg(rc == PE_OK, "%s", msg);
  return c;
}

/* Runs one step doing `op_name` (fail mode `mode`) in `phase` and returns
 * the bits. */
static unsigned bits_of(const char *op_name, const char *mode, pe_phase phase) {
  char json[256];
  snprintf(json, sizeof json,
           "[{\"name\":\"op\",\"version\":\"1\",\"failure_mode\":\"%s\","
           "\"params\":{\"op\":\"%s\"}}]",
           mode, op_name);
  pe_chain *c = chain_of(json);
  ck_assert_int_eq(pe_chain_run(c, ex, phase), PE_OK);
  pe_chain_free(c);
  return pe_exchange_changes(ex);
}

static const struct {
  const char *op;
  unsigned want;
} EACH[] = {{"nothing", 0},
            {"method", PE_CHANGE_METHOD},
            {"path", PE_CHANGE_PATH},
            {"authority", PE_CHANGE_AUTHORITY},
            {"req-header", PE_CHANGE_REQUEST_HEADERS},
            {"req-header-remove", PE_CHANGE_REQUEST_HEADERS},
            {"req-header-remove-missing", 0},
            {"req-body", PE_CHANGE_REQUEST_BODY},
            {"status", PE_CHANGE_STATUS},
            {"resp-header", PE_CHANGE_RESPONSE_HEADERS},
            {"resp-body", PE_CHANGE_RESPONSE_BODY},
            {"meta", PE_CHANGE_METADATA},
            {"respond", PE_CHANGE_STATUS | PE_CHANGE_RESPONSE_HEADERS | PE_CHANGE_RESPONSE_BODY},
            {"bad-header", 0}};

START_TEST(each_part_sets_its_bit) {
  unsigned want = EACH[_i].want;
  ck_assert_uint_eq(bits_of(EACH[_i].op, "closed", PE_PHASE_REQUEST_BODY), want);
  ck_assert_uint_eq(want & ~(unsigned)PE_CHANGE_ALL, 0);
  /* The same edit from a fail-open step that succeeds keeps its bit. */
  ck_assert_int_eq(pe_exchange_reset(ex), PE_OK);
  ck_assert_uint_eq(pe_exchange_changes(ex), 0);
  ck_assert_int_eq(pe_exchange_header_add(ex, PE_REQUEST, PE_LIT("a"), PE_LIT("1")), PE_OK);
  ck_assert_uint_eq(bits_of(EACH[_i].op, "open", PE_PHASE_RESPONSE_HEADERS), want);
}
END_TEST

START_TEST(bits_accumulate_until_cleared) {
  bits_of("req-header", "closed", PE_PHASE_REQUEST_HEADERS);
  bits_of("resp-body", "closed", PE_PHASE_RESPONSE_BODY);
  ck_assert_uint_eq(pe_exchange_changes(ex), PE_CHANGE_REQUEST_HEADERS | PE_CHANGE_RESPONSE_BODY);
  ck_assert_int_eq(pe_exchange_changes_clear(ex, PE_CHANGE_REQUEST_HEADERS), PE_OK);
  ck_assert_uint_eq(pe_exchange_changes(ex), PE_CHANGE_RESPONSE_BODY);
  ck_assert_int_eq(pe_exchange_changes_clear(ex, PE_CHANGE_ALL), PE_OK);
  ck_assert_uint_eq(pe_exchange_changes(ex), 0);
  /* The host editing afterwards still sets nothing. */
  ck_assert_int_eq(pe_exchange_header_set(ex, PE_REQUEST, PE_LIT("h"), PE_LIT("v")), PE_OK);
  ck_assert_uint_eq(pe_exchange_changes(ex), 0);
  bits_of("path", "closed", PE_PHASE_REQUEST_HEADERS);
  ck_assert_int_eq(pe_exchange_reset(ex), PE_OK);
  ck_assert_uint_eq(pe_exchange_changes(ex), 0);
}
END_TEST

START_TEST(rolled_back_step_takes_its_bits) {
  bits_of("meta", "closed", PE_PHASE_REQUEST_HEADERS);
  /* Fail open: the partial header goes, and so does its bit; the earlier
   * step's bit stays. */
  ck_assert_uint_eq(bits_of("header-then-fail", "open", PE_PHASE_REQUEST_HEADERS),
                    PE_CHANGE_METADATA);
  pe_slice v;
  ck_assert_int_eq(pe_exchange_header_get(ex, PE_REQUEST, PE_LIT("x-partial"), &v),
                   PE_ERR_NOT_FOUND);
}
END_TEST

START_TEST(closed_failure_is_an_answer) {
  unsigned bits = bits_of("header-then-fail", "closed", PE_PHASE_REQUEST_HEADERS);
  ck_assert_int_eq(pe_exchange_verdict(ex), PE_VERDICT_RESPOND);
  ck_assert_int_eq(pe_exchange_status(ex), 500);
  ck_assert_uint_eq(bits, PE_CHANGE_REQUEST_HEADERS | PE_CHANGE_STATUS |
                              PE_CHANGE_RESPONSE_HEADERS | PE_CHANGE_RESPONSE_BODY);
}
END_TEST

START_TEST(streamed_step_edits_count_its_output_does_not) {
  pe_chain *c = chain_of("[{\"name\":\"streamed\",\"version\":\"1\"}]");
  ck_assert_int_eq(pe_chain_body_plan(c, PE_REQUEST), PE_BODY_STREAM);
  pe_slice out;
  ck_assert_int_eq(pe_chain_stream_body(c, ex, PE_REQUEST, PE_LIT("abc"), 1, &out), PE_OK);
  ck_assert_slice_eq(out, "abc");
  ck_assert_uint_eq(pe_exchange_changes(ex), PE_CHANGE_METADATA);
  /* The same step run over a buffered body replaces it: a body edit. */
  ck_assert_int_eq(pe_exchange_reset(ex), PE_OK);
  ck_assert_int_eq(pe_exchange_body_set(ex, PE_REQUEST, PE_LIT("whole")), PE_OK);
  ck_assert_int_eq(pe_chain_run(c, ex, PE_PHASE_REQUEST_BODY), PE_OK);
  ck_assert_uint_eq(pe_exchange_changes(ex), PE_CHANGE_METADATA | PE_CHANGE_REQUEST_BODY);
  ck_assert_slice_eq(pe_exchange_body(ex, PE_REQUEST), "whole");
  pe_chain_free(c);
}
END_TEST

START_TEST(null_and_table) {
  ck_assert_uint_eq(pe_exchange_changes(NULL), 0);
  ck_assert_int_eq(pe_exchange_changes_clear(NULL, PE_CHANGE_ALL), PE_ERR_INVALID_ARGUMENT);
  const pe_api_routines *api = pe_api_table();
  ck_assert_ptr_eq(api->exchange_changes, pe_exchange_changes);
  ck_assert_ptr_eq(api->exchange_changes_clear, pe_exchange_changes_clear);
}
END_TEST

static Suite *changes_suite(void) {
  Suite *s = suite_create("changes");
  TCase *tc = tcase_create("changes");
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_add_loop_test(tc, each_part_sets_its_bit, 0, (int)(sizeof EACH / sizeof EACH[0]));
  tcase_add_test(tc, bits_accumulate_until_cleared);
  tcase_add_test(tc, rolled_back_step_takes_its_bits);
  tcase_add_test(tc, closed_failure_is_an_answer);
  tcase_add_test(tc, streamed_step_edits_count_its_output_does_not);
  tcase_add_test(tc, null_and_table);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) {
  return pe_test_run_suite(changes_suite());
}
