/* pe_txn.c: a fail-open step's partial effects are discarded exactly, part
 * by part; a committed step keeps them; snapshots reuse their memory. */
#include "pe_internal.h"
#include "pe_test_util.h"

#include <stdio.h>

static pe_test_alloc alloc;
static pe_engine *engine;
static pe_exchange *ex;

/* A request/response with something in every part. */
static void fill(pe_exchange *x) {
  ck_assert_int_eq(pe_exchange_set_method(x, PE_LIT("GET")), PE_OK);
  ck_assert_int_eq(pe_exchange_set_path(x, PE_LIT("/orig")), PE_OK);
  ck_assert_int_eq(pe_exchange_set_authority(x, PE_LIT("orig.example")), PE_OK);
  ck_assert_int_eq(pe_exchange_header_add(x, PE_REQUEST, PE_LIT("A"), PE_LIT("1")), PE_OK);
  ck_assert_int_eq(pe_exchange_header_add(x, PE_REQUEST, PE_LIT("b"), PE_LIT("2")), PE_OK);
  ck_assert_int_eq(pe_exchange_header_add(x, PE_REQUEST, PE_LIT("a"), PE_LIT("3")), PE_OK);
  ck_assert_int_eq(pe_exchange_header_add(x, PE_RESPONSE, PE_LIT("Server"), PE_LIT("up")), PE_OK);
  ck_assert_int_eq(pe_exchange_body_set(x, PE_REQUEST, PE_LIT("request-body")), PE_OK);
  ck_assert_int_eq(pe_exchange_body_set(x, PE_RESPONSE, PE_LIT("response-body")), PE_OK);
  ck_assert_int_eq(pe_exchange_meta_set(x, PE_LIT("k"), PE_LIT("v")), PE_OK);
  ck_assert_int_eq(pe_exchange_set_status(x, 200), PE_OK);
}

/* Every observable part of x as one string. */
static const char *describe(const pe_exchange *x) {
  static char out[2048];
  size_t at = 0;
  pe_slice n, v;
#define PUT(...) at += (size_t)snprintf(out + at, sizeof out - at, __VA_ARGS__)
  PUT("%.*s %.*s %.*s|", (int)pe_exchange_method(x).len, pe_exchange_method(x).ptr,
      (int)pe_exchange_path(x).len, pe_exchange_path(x).ptr, (int)pe_exchange_authority(x).len,
      pe_exchange_authority(x).ptr);
  for (int dir = PE_REQUEST; dir <= PE_RESPONSE; dir++) {
    for (size_t i = 0; pe_exchange_header_at(x, (pe_dir)dir, i, &n, &v) == PE_OK; i++)
      PUT("%.*s:%.*s,", (int)n.len, n.ptr, (int)v.len, v.ptr);
    v = pe_exchange_body(x, (pe_dir)dir);
    PUT("|%.*s|", (int)v.len, v.ptr);
  }
  for (size_t i = 0; pe_exchange_meta_at(x, i, &n, &v) == PE_OK; i++)
    PUT("%.*s=%.*s,", (int)n.len, n.ptr, (int)v.len, v.ptr);
  PUT("|%d|%d", pe_exchange_status(x), (int)pe_exchange_verdict(x));
#undef PUT
  return out;
}

static const char *const ORIGINAL = "GET /orig orig.example|A:1,b:2,a:3,|request-body|"
                                    "Server:up,|response-body|k=v,|200|0";

static void setup(void) {
  memset(&alloc, 0, sizeof alloc);
  engine = pe_test_engine(&alloc);
  ck_assert_int_eq(pe_exchange_new(&ex, engine), PE_OK);
  fill(ex);
  ck_assert_str_eq(describe(ex), ORIGINAL);
}

static void teardown(void) {
  pe_exchange_free(ex);
  pe_engine_free(engine);
  ck_assert_int_eq(atomic_load(&alloc.allocs), atomic_load(&alloc.frees));
}

/* One step's worth of changes to one part. */
typedef void (*change_fn)(pe_exchange *x);

static void change_request_line(pe_exchange *x) {
  ck_assert_int_eq(pe_exchange_set_method(x, PE_LIT("DELETE")), PE_OK);
  ck_assert_int_eq(pe_exchange_set_path(x, PE_LIT("/changed/and/longer")), PE_OK);
  ck_assert_int_eq(pe_exchange_set_authority(x, PE_LIT("")), PE_OK);
}

static void change_req_headers(pe_exchange *x) {
  ck_assert_int_eq(pe_exchange_header_set(x, PE_REQUEST, PE_LIT("a"), PE_LIT("replaced")), PE_OK);
  ck_assert_int_eq(pe_exchange_header_add(x, PE_REQUEST, PE_LIT("new"), PE_LIT("x")), PE_OK);
  ck_assert_int_eq(pe_exchange_header_remove(x, PE_REQUEST, PE_LIT("B")), 1);
}

static void change_resp_headers(pe_exchange *x) {
  ck_assert_int_eq(pe_exchange_header_remove(x, PE_RESPONSE, PE_LIT("server")), 1);
  ck_assert_int_eq(pe_exchange_header_add(x, PE_RESPONSE, PE_LIT("x-p"), PE_LIT("y")), PE_OK);
}

static void change_req_body(pe_exchange *x) {
  ck_assert_int_eq(pe_exchange_body_prepend(x, PE_REQUEST, PE_LIT("[pre]")), PE_OK);
  ck_assert_int_eq(pe_exchange_body_append(x, PE_REQUEST, PE_LIT("[post]")), PE_OK);
}

static void change_resp_body(pe_exchange *x) {
  ck_assert_int_eq(pe_exchange_body_set(x, PE_RESPONSE, PE_LIT("")), PE_OK);
}

static void change_meta(pe_exchange *x) {
  ck_assert_int_eq(pe_exchange_meta_set(x, PE_LIT("k"), PE_LIT("changed")), PE_OK);
  ck_assert_int_eq(pe_exchange_meta_set(x, PE_LIT("k2"), PE_LIT("v2")), PE_OK);
  ck_assert_int_eq(pe_exchange_meta_remove(x, PE_LIT("k")), 1);
}

static void change_status(pe_exchange *x) {
  ck_assert_int_eq(pe_exchange_set_status(x, 502), PE_OK);
}

static void change_respond(pe_exchange *x) {
  ck_assert_int_eq(pe_exchange_respond(x, 403, PE_LIT("denied")), PE_OK);
  ck_assert_int_eq(pe_exchange_header_add(x, PE_RESPONSE, PE_LIT("x-why"), PE_LIT("no")), PE_OK);
}

static const struct {
  change_fn change;
  unsigned parts; /* what the change must have saved */
  const char *after;
} changes[] = {
    {change_request_line, PE__PART_REQUEST_LINE,
     "DELETE /changed/and/longer |A:1,b:2,a:3,|request-body|Server:up,|response-body|k=v,|200|0"},
    {change_req_headers, PE__PART_REQ_HEADERS,
     "GET /orig orig.example|a:replaced,new:x,|request-body|Server:up,|response-body|k=v,|200|0"},
    {change_resp_headers, PE__PART_RESP_HEADERS,
     "GET /orig orig.example|A:1,b:2,a:3,|request-body|x-p:y,|response-body|k=v,|200|0"},
    {change_req_body, PE__PART_REQ_BODY,
     "GET /orig orig.example|A:1,b:2,a:3,|[pre]request-body[post]|Server:up,|response-body|k=v,"
     "|200|0"},
    {change_resp_body, PE__PART_RESP_BODY,
     "GET /orig orig.example|A:1,b:2,a:3,|request-body|Server:up,||k=v,|200|0"},
    {change_meta, PE__PART_META,
     "GET /orig orig.example|A:1,b:2,a:3,|request-body|Server:up,|response-body|k2=v2,|200|0"},
    {change_status, 0,
     "GET /orig orig.example|A:1,b:2,a:3,|request-body|Server:up,|response-body|k=v,|502|0"},
    {change_respond, PE__PART_RESP_HEADERS | PE__PART_RESP_BODY,
     "GET /orig orig.example|A:1,b:2,a:3,|request-body|x-why:no,|denied|k=v,|403|1"},
};

START_TEST(rollback_restores_each_part) {
  pe__txn_begin(ex);
  changes[_i].change(ex);
  ck_assert_str_eq(describe(ex), changes[_i].after);
  ck_assert_uint_eq(ex->snap.saved, changes[_i].parts); /* only what was touched */
  pe__txn_rollback(ex);
  ck_assert_str_eq(describe(ex), ORIGINAL);
  ck_assert(!ex->txn_active);
  ck_assert_uint_eq(ex->snap.saved, 0);
  /* The restored exchange keeps working normally. */
  changes[_i].change(ex);
  ck_assert_str_eq(describe(ex), changes[_i].after);
}
END_TEST

START_TEST(commit_keeps_each_part) {
  pe__txn_begin(ex);
  changes[_i].change(ex);
  pe__txn_commit(ex);
  ck_assert(!ex->txn_active);
  ck_assert_str_eq(describe(ex), changes[_i].after);
  pe__txn_rollback(ex); /* no transaction: nothing to undo */
  ck_assert_str_eq(describe(ex), changes[_i].after);
}
END_TEST

START_TEST(rollback_restores_all_parts_at_once) {
  pe__txn_begin(ex);
  for (size_t i = 0; i < sizeof changes / sizeof changes[0]; i++)
    changes[i].change(ex);
  pe__txn_rollback(ex);
  ck_assert_str_eq(describe(ex), ORIGINAL);
}
END_TEST

START_TEST(snapshot_is_taken_before_the_first_change) {
  pe__txn_begin(ex);
  pe_exchange_header_set(ex, PE_REQUEST, PE_LIT("a"), PE_LIT("first"));
  pe_exchange_header_set(ex, PE_REQUEST, PE_LIT("a"), PE_LIT("second"));
  pe_exchange_header_remove(ex, PE_REQUEST, PE_LIT("a"));
  pe__txn_rollback(ex);
  ck_assert_str_eq(describe(ex), ORIGINAL);
  /* A committed step's result is the base of the next step's snapshot. */
  pe__txn_begin(ex);
  change_req_body(ex);
  pe__txn_commit(ex);
  pe__txn_begin(ex);
  change_resp_body(ex);
  change_req_body(ex);
  pe__txn_rollback(ex);
  ck_assert_slice_eq(pe_exchange_body(ex, PE_REQUEST), "[pre]request-body[post]");
  ck_assert_slice_eq(pe_exchange_body(ex, PE_RESPONSE), "response-body");
}
END_TEST

START_TEST(refused_calls_save_nothing) {
  pe__txn_begin(ex);
  ck_assert_int_eq(pe_exchange_header_set(ex, PE_REQUEST, PE_LIT("a b"), PE_LIT("x")),
                   PE_ERR_HEADER_NAME);
  ck_assert_int_eq(pe_exchange_header_add(ex, PE_RESPONSE, PE_LIT("a"), PE_LIT("\n")),
                   PE_ERR_HEADER_VALUE);
  ck_assert_int_eq(pe_exchange_header_remove(ex, PE_REQUEST, PE_LIT("absent")), 0);
  ck_assert_int_eq(pe_exchange_meta_remove(ex, PE_LIT("absent")), 0);
  ck_assert_int_eq(pe_exchange_set_method(ex, PE_LIT("")), PE_ERR_INVALID_VALUE);
  ck_assert_int_eq(pe_exchange_respond(ex, 42, PE_LIT("")), PE_ERR_INVALID_VALUE);
  ck_assert_uint_eq(ex->snap.saved, 0);
  pe__txn_commit(ex);
}
END_TEST

START_TEST(no_transaction_no_snapshot) {
  long before = atomic_load(&alloc.attempts);
  change_meta(ex);
  change_status(ex);
  ck_assert_uint_eq(ex->snap.saved, 0);
  ck_assert_int_eq(pe__txn_save(ex, PE__PART_META), PE_OK); /* no-op outside a txn */
  ck_assert_uint_eq(ex->snap.saved, 0);
  ck_assert_ptr_null(ex->snap.meta.items);
  ck_assert_int_le(atomic_load(&alloc.attempts) - before, 2); /* only the map's own growth */
}
END_TEST

START_TEST(save_several_parts_at_once) {
  pe__txn_begin(ex);
  ck_assert_int_eq(pe__txn_save(ex, PE__PART_REQ_BODY | PE__PART_META), PE_OK);
  ck_assert_uint_eq(ex->snap.saved, PE__PART_REQ_BODY | PE__PART_META);
  ck_assert_int_eq(pe__txn_save(ex, PE__PART_META | PE__PART_REQUEST_LINE), PE_OK);
  ck_assert_uint_eq(ex->snap.saved, PE__PART_REQ_BODY | PE__PART_META | PE__PART_REQUEST_LINE);
  pe__txn_rollback(ex);
  ck_assert_str_eq(describe(ex), ORIGINAL);
}
END_TEST

START_TEST(snapshots_reuse_memory) {
  /* Warm-up: one step that touches every part, rolled back. */
  pe__txn_begin(ex);
  for (size_t i = 0; i < sizeof changes / sizeof changes[0]; i++)
    changes[i].change(ex);
  pe__txn_rollback(ex);
  ck_assert_int_eq(pe_exchange_reset(ex), PE_OK);
  fill(ex);
  pe__txn_begin(ex);
  for (size_t i = 0; i < sizeof changes / sizeof changes[0]; i++)
    changes[i].change(ex);
  pe__txn_commit(ex);
  long before = atomic_load(&alloc.attempts);
  for (int round = 0; round < 200; round++) {
    ck_assert_int_eq(pe_exchange_reset(ex), PE_OK);
    fill(ex);
    for (size_t i = 0; i < sizeof changes / sizeof changes[0]; i++) {
      pe__txn_begin(ex);
      changes[i].change(ex);
      if ((round + (int)i) % 2)
        pe__txn_rollback(ex);
      else
        pe__txn_commit(ex);
    }
  }
  ck_assert_int_eq(atomic_load(&alloc.attempts), before);
}
END_TEST

START_TEST(failed_save_changes_nothing) {
  /* Fail the Nth allocation of a step touching every part, for each N:
   * the failing call must change nothing, and rollback must restore all. */
  for (long n = 1;; n++) {
    pe__txn_begin(ex);
    atomic_store(&alloc.fail_at, atomic_load(&alloc.attempts) + n);
    int failed = 0;
    const char *before_call;
    char copy[2048];
#define STEP(call)                                                                                 \
  do {                                                                                             \
    before_call = describe(ex);                                                                    \
    snprintf(copy, sizeof copy, "%s", before_call);                                                \
    int rc_ = (call);                                                                              \
    if (rc_ < 0) {                                                                                 \
      ck_assert_int_eq(rc_, PE_ERR_NOMEM);                                                         \
      ck_assert_str_eq(describe(ex), copy);                                                        \
      failed = 1;                                                                                  \
    }                                                                                              \
  } while (0)
    STEP(pe_exchange_set_path(ex, PE_LIT("/a-much-longer-path-than-before-to-force-growth")));
    STEP(pe_exchange_header_add(ex, PE_REQUEST, PE_LIT("x"), PE_LIT("y")));
    STEP(pe_exchange_header_set(ex, PE_RESPONSE, PE_LIT("server"), PE_LIT("policy")));
    STEP(pe_exchange_body_append(ex, PE_REQUEST, PE_LIT("more")));
    STEP(pe_exchange_respond(ex, 401, PE_LIT("who are you")));
    STEP(pe_exchange_meta_set(ex, PE_LIT("m"), PE_LIT("n")));
#undef STEP
    atomic_store(&alloc.fail_at, 0);
    pe__txn_rollback(ex);
    ck_assert_str_eq(describe(ex), ORIGINAL);
    if (!failed)
      break;
    ck_assert_int_lt(n, 200);
  }
}
END_TEST

static Suite *txn_suite(void) {
  Suite *s = suite_create("txn");
  TCase *tc = tcase_create("core");
  tcase_add_checked_fixture(tc, setup, teardown);
  const int n = (int)(sizeof changes / sizeof changes[0]);
  tcase_add_loop_test(tc, rollback_restores_each_part, 0, n);
  tcase_add_loop_test(tc, commit_keeps_each_part, 0, n);
  tcase_add_test(tc, rollback_restores_all_parts_at_once);
  tcase_add_test(tc, snapshot_is_taken_before_the_first_change);
  tcase_add_test(tc, refused_calls_save_nothing);
  tcase_add_test(tc, no_transaction_no_snapshot);
  tcase_add_test(tc, save_several_parts_at_once);
  tcase_add_test(tc, snapshots_reuse_memory);
  tcase_add_test(tc, failed_save_changes_nothing);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) {
  return pe_test_run_suite(txn_suite());
}
