/* Running phases: step order (request in order, response reversed), an
 * immediate response stopping the chain, failure modes (closed answers
 * 500/504, open discards the step's changes), header injection refused,
 * metrics events, zero allocations on the hot path, and the out-of-process
 * batch interface exercised with a fake backend. */
#include "pe_test_util.h"
#include "pe_backend.h"

#include <stdio.h>
#include <stdlib.h>

/* ---- test policies ---- */

/* "rec": appends its "tag" param to the metadata entry named after the
 * phase, so that the run order can be read back. */
static int rec_create(void **instance, pe_params *params, void *user_data) {
  (void)user_data;
  static const char letters[] = "abcdefghijklmnopqrstuvwxyz0123456789";
  pe_slice tag;
  if (pe_params_get_string(params, "tag", &tag) != PE_OK || tag.len != 1 ||
      !strchr(letters, tag.ptr[0]))
    return PE_ERR_PARAM;
  *instance = (void *)strchr(letters, tag.ptr[0]); /* points at a static letter */
  return PE_OK;
}

static int record(pe_exchange *ex, const char *tag, pe_phase phase) {
  pe_slice key = pe_str(pe_phase_name(phase)), old = {0};
  char now[64];
  (void)pe_exchange_meta_get(ex, key, &old);
  int n = snprintf(now, sizeof now, "%.*s%c", (int)old.len, old.ptr ? old.ptr : "", *tag);
  return pe_exchange_meta_set(ex, key, pe_bytes(now, (size_t)n));
}

#define REC_PHASE(fn, phase)                                                                       \
  static int fn(pe_exchange *ex, void *instance, void *user_data) {                                \
    (void)user_data;                                                                               \
    return record(ex, instance, phase);                                                            \
  }
REC_PHASE(rec_reqh, PE_PHASE_REQUEST_HEADERS)
REC_PHASE(rec_reqb, PE_PHASE_REQUEST_BODY)
REC_PHASE(rec_resph, PE_PHASE_RESPONSE_HEADERS)
REC_PHASE(rec_respb, PE_PHASE_RESPONSE_BODY)

static int responder(pe_exchange *ex, void *instance, void *user_data) {
  (void)instance;
  (void)user_data;
  int rc = pe_exchange_respond(ex, 403, PE_LIT("denied"));
  if (rc == PE_OK)
    rc = pe_exchange_header_add(ex, PE_RESPONSE, PE_LIT("x-why"), PE_LIT("policy"));
  return rc;
}

/* "mutator": changes every part of the exchange, then fails with the code
 * in its "rc" param (after explaining, unless "quiet"). */
typedef struct mutator {
  int rc;
  int quiet;
  int respond;
} mutator;

static int mutator_create(void **instance, pe_params *params, void *user_data) {
  (void)user_data;
  mutator *m = calloc(1, sizeof *m);
  int64_t rc = PE_ERR_POLICY;
  (void)pe_params_get_int(params, "rc", &rc);
  (void)pe_params_get_bool(params, "quiet", &m->quiet);
  (void)pe_params_get_bool(params, "respond", &m->respond);
  m->rc = (int)rc;
  *instance = m;
  return PE_OK;
}

static void mutator_destroy(void *instance, void *user_data) {
  (void)user_data;
  free(instance);
}

static int mutate_then_fail(pe_exchange *ex, void *instance, void *user_data) {
  (void)user_data;
  const mutator *m = instance;
  ck_assert_int_eq(pe_exchange_set_method(ex, PE_LIT("DELETE")), PE_OK);
  ck_assert_int_eq(pe_exchange_set_path(ex, PE_LIT("/changed")), PE_OK);
  ck_assert_int_eq(pe_exchange_header_set(ex, PE_REQUEST, PE_LIT("x-keep"), PE_LIT("changed")),
                   PE_OK);
  ck_assert_int_eq(pe_exchange_header_add(ex, PE_REQUEST, PE_LIT("x-new"), PE_LIT("1")), PE_OK);
  ck_assert_int_eq(pe_exchange_header_remove(ex, PE_REQUEST, PE_LIT("x-gone")), 1);
  ck_assert_int_eq(pe_exchange_header_set(ex, PE_RESPONSE, PE_LIT("x-resp"), PE_LIT("changed")),
                   PE_OK);
  ck_assert_int_eq(pe_exchange_body_prepend(ex, PE_REQUEST, PE_LIT("junk")), PE_OK);
  ck_assert_int_eq(pe_exchange_body_set(ex, PE_RESPONSE, PE_LIT("junk")), PE_OK);
  ck_assert_int_eq(pe_exchange_meta_set(ex, PE_LIT("k"), PE_LIT("changed")), PE_OK);
  ck_assert_int_eq(pe_exchange_set_status(ex, 299), PE_OK);
  if (m->respond)
    ck_assert_int_eq(pe_exchange_respond(ex, 401, PE_LIT("no")), PE_OK);
  if (!m->quiet)
    pe_exchange_set_errmsg(ex, "boom %d", 7);
  return m->rc;
}

/* "injector": tries to smuggle a header through a value; "ignore" says
 * whether it goes on as if nothing happened. */
static int inject(pe_exchange *ex, void *instance, void *user_data) {
  (void)instance;
  (void)user_data;
  return pe_exchange_header_set(ex, PE_REQUEST, PE_LIT("x-a"), PE_LIT("1\r\nx-injected: yes"));
}

static int inject_ignore(pe_exchange *ex, void *instance, void *user_data) {
  (void)inject(ex, instance, user_data);
  return PE_OK;
}

static const pe_param_spec rec_specs[] = {{"tag", PE_PARAM_STRING, 1}};
static const pe_param_spec mutator_specs[] = {
    {"rc", PE_PARAM_INT, 0}, {"quiet", PE_PARAM_BOOL, 0}, {"respond", PE_PARAM_BOOL, 0}};

static void register_all(pe_engine *e) {
  pe_policy_def rec = {.abi = PE_POLICY_ABI,
                       .name = "rec",
                       .version = "1",
                       .params = rec_specs,
                       .param_count = 1,
                       .create = rec_create,
                       .on_request_headers = rec_reqh,
                       .on_request_body = rec_reqb,
                       .on_response_headers = rec_resph,
                       .on_response_body = rec_respb};
  ck_assert_int_eq(pe_engine_register_policy(e, &rec), PE_OK);
  pe_policy_def d = {.abi = PE_POLICY_ABI, .version = "1"};
  d.name = "responder";
  d.on_request_headers = responder;
  ck_assert_int_eq(pe_engine_register_policy(e, &d), PE_OK);
  d.name = "injector";
  d.on_request_headers = inject;
  ck_assert_int_eq(pe_engine_register_policy(e, &d), PE_OK);
  d.name = "injector-ignores";
  d.on_request_headers = inject_ignore;
  ck_assert_int_eq(pe_engine_register_policy(e, &d), PE_OK);
  pe_policy_def m = {.abi = PE_POLICY_ABI,
                     .name = "mutator",
                     .version = "1",
                     .params = mutator_specs,
                     .param_count = 3,
                     .create = mutator_create,
                     .destroy = mutator_destroy,
                     .on_request_headers = mutate_then_fail};
  ck_assert_int_eq(pe_engine_register_policy(e, &m), PE_OK);
}

static pe_chain *chain_of(pe_engine *e, const char *json) {
  pe_chain *c = NULL;
  char msg[256];
  int rc = pe_chain_new_from_json(&c, e, pe_str(json), msg, sizeof msg);
  ck_assert_msg(rc == PE_OK, "%s", msg);
  return c;
}

#define REC(tag) "{\"name\":\"rec\",\"version\":\"1\",\"params\":{\"tag\":\"" tag "\"}}"

static void assert_meta(pe_exchange *ex, pe_phase phase, const char *want) {
  pe_slice v = {0};
  int rc = pe_exchange_meta_get(ex, pe_str(pe_phase_name(phase)), &v);
  if (!want[0]) {
    ck_assert_int_eq(rc, PE_ERR_NOT_FOUND);
    return;
  }
  ck_assert_int_eq(rc, PE_OK);
  ck_assert_slice_eq(v, want);
}

/* ---- order ---- */

START_TEST(request_in_order_response_reversed) {
  pe_test_alloc a = {0};
  pe_engine *e = pe_test_engine(&a);
  register_all(e);
  pe_chain *c = chain_of(e, "[" REC("a") "," REC("b") "," REC("c") "]");
  pe_exchange *ex = NULL;
  ck_assert_int_eq(pe_exchange_new(&ex, e), PE_OK);
  for (int ph = 0; ph < PE_PHASE_COUNT; ph++)
    ck_assert_int_eq(pe_chain_run(c, ex, (pe_phase)ph), PE_OK);
  assert_meta(ex, PE_PHASE_REQUEST_HEADERS, "abc");
  assert_meta(ex, PE_PHASE_REQUEST_BODY, "abc");
  assert_meta(ex, PE_PHASE_RESPONSE_HEADERS, "cba");
  assert_meta(ex, PE_PHASE_RESPONSE_BODY, "cba");
  ck_assert_int_eq(pe_exchange_verdict(ex), PE_VERDICT_CONTINUE);
  ck_assert_str_eq(pe_exchange_errmsg(ex), "");
  pe_exchange_free(ex);
  pe_chain_free(c);
  pe_engine_free(e);
  ck_assert_int_eq(a.allocs, a.frees);
}
END_TEST

START_TEST(run_refuses_bad_arguments) {
  pe_engine *e = pe_test_engine(NULL), *other = pe_test_engine(NULL);
  register_all(e);
  pe_chain *c = chain_of(e, "[" REC("a") "]");
  pe_exchange *ex = NULL, *foreign = NULL;
  ck_assert_int_eq(pe_exchange_new(&ex, e), PE_OK);
  ck_assert_int_eq(pe_exchange_new(&foreign, other), PE_OK);
  ck_assert_int_eq(pe_chain_run(NULL, ex, PE_PHASE_REQUEST_HEADERS), PE_ERR_INVALID_ARGUMENT);
  ck_assert_int_eq(pe_chain_run(c, NULL, PE_PHASE_REQUEST_HEADERS), PE_ERR_INVALID_ARGUMENT);
  ck_assert_int_eq(pe_chain_run(c, ex, (pe_phase)4), PE_ERR_INVALID_ARGUMENT);
  ck_assert_int_eq(pe_chain_run(c, ex, (pe_phase)-1), PE_ERR_INVALID_ARGUMENT);
  ck_assert_int_eq(pe_chain_run(c, foreign, PE_PHASE_REQUEST_HEADERS), PE_ERR_INVALID_ARGUMENT);
  ck_assert_uint_eq(pe_exchange_meta_count(foreign), 0);
  pe_exchange_free(foreign);
  pe_exchange_free(ex);
  pe_chain_free(c);
  pe_engine_free(other);
  pe_engine_free(e);
}
END_TEST

/* ---- immediate response ---- */

START_TEST(immediate_response_stops_the_chain) {
  pe_engine *e = pe_test_engine(NULL);
  register_all(e);
  pe_chain *c =
      chain_of(e, "[" REC("a") ",{\"name\":\"responder\",\"version\":\"1\"}," REC("c") "]");
  pe_exchange *ex = NULL;
  ck_assert_int_eq(pe_exchange_new(&ex, e), PE_OK);
  ck_assert_int_eq(pe_chain_run(c, ex, PE_PHASE_REQUEST_HEADERS), PE_OK);
  assert_meta(ex, PE_PHASE_REQUEST_HEADERS, "a");
  ck_assert_int_eq(pe_exchange_verdict(ex), PE_VERDICT_RESPOND);
  ck_assert_int_eq(pe_exchange_status(ex), 403);
  ck_assert_slice_eq(pe_exchange_body(ex, PE_RESPONSE), "denied");
  /* Later phases do nothing once the verdict is respond. */
  for (int ph = 1; ph < PE_PHASE_COUNT; ph++) {
    ck_assert_int_eq(pe_chain_run(c, ex, (pe_phase)ph), PE_OK);
    assert_meta(ex, (pe_phase)ph, "");
  }
  pe_slice v;
  ck_assert_int_eq(pe_exchange_header_get(ex, PE_RESPONSE, PE_LIT("x-why"), &v), PE_OK);
  ck_assert_slice_eq(v, "policy");
  /* A reset exchange runs again. */
  ck_assert_int_eq(pe_exchange_reset(ex), PE_OK);
  ck_assert_int_eq(pe_chain_run(c, ex, PE_PHASE_RESPONSE_HEADERS), PE_OK);
  assert_meta(ex, PE_PHASE_RESPONSE_HEADERS, "ca");
  pe_exchange_free(ex);
  pe_chain_free(c);
  pe_engine_free(e);
}
END_TEST

/* ---- failure modes ---- */

/* An exchange with something in every part the mutator changes. */
static pe_exchange *prepared_exchange(pe_engine *e) {
  pe_exchange *ex = NULL;
  ck_assert_int_eq(pe_exchange_new(&ex, e), PE_OK);
  ck_assert_int_eq(pe_exchange_set_method(ex, PE_LIT("GET")), PE_OK);
  ck_assert_int_eq(pe_exchange_set_path(ex, PE_LIT("/orig")), PE_OK);
  ck_assert_int_eq(pe_exchange_header_add(ex, PE_REQUEST, PE_LIT("x-keep"), PE_LIT("orig")), PE_OK);
  ck_assert_int_eq(pe_exchange_header_add(ex, PE_REQUEST, PE_LIT("x-gone"), PE_LIT("orig")), PE_OK);
  ck_assert_int_eq(pe_exchange_header_add(ex, PE_RESPONSE, PE_LIT("x-resp"), PE_LIT("orig")),
                   PE_OK);
  ck_assert_int_eq(pe_exchange_body_set(ex, PE_REQUEST, PE_LIT("body")), PE_OK);
  ck_assert_int_eq(pe_exchange_body_set(ex, PE_RESPONSE, PE_LIT("resp")), PE_OK);
  ck_assert_int_eq(pe_exchange_meta_set(ex, PE_LIT("k"), PE_LIT("orig")), PE_OK);
  ck_assert_int_eq(pe_exchange_set_status(ex, 200), PE_OK);
  return ex;
}

static void assert_unchanged(pe_exchange *ex) {
  pe_slice v;
  ck_assert_slice_eq(pe_exchange_method(ex), "GET");
  ck_assert_slice_eq(pe_exchange_path(ex), "/orig");
  ck_assert_int_eq(pe_exchange_header_get(ex, PE_REQUEST, PE_LIT("x-keep"), &v), PE_OK);
  ck_assert_slice_eq(v, "orig");
  ck_assert_int_eq(pe_exchange_header_get(ex, PE_REQUEST, PE_LIT("x-gone"), &v), PE_OK);
  ck_assert_int_eq(pe_exchange_header_get(ex, PE_REQUEST, PE_LIT("x-new"), &v), PE_ERR_NOT_FOUND);
  ck_assert_uint_eq(pe_exchange_header_count(ex, PE_REQUEST), 2);
  ck_assert_int_eq(pe_exchange_header_get(ex, PE_RESPONSE, PE_LIT("x-resp"), &v), PE_OK);
  ck_assert_slice_eq(v, "orig");
  ck_assert_slice_eq(pe_exchange_body(ex, PE_REQUEST), "body");
  ck_assert_slice_eq(pe_exchange_body(ex, PE_RESPONSE), "resp");
  ck_assert_int_eq(pe_exchange_meta_get(ex, PE_LIT("k"), &v), PE_OK);
  ck_assert_slice_eq(v, "orig");
  ck_assert_int_eq(pe_exchange_status(ex), 200);
  ck_assert_int_eq(pe_exchange_verdict(ex), PE_VERDICT_CONTINUE);
}

START_TEST(failure_closed_answers_500) {
  pe_engine *e = pe_test_engine(NULL);
  register_all(e);
  pe_chain *c = chain_of(e, "[" REC("a") ",{\"name\":\"mutator\",\"version\":\"1\"}," REC("c") "]");
  pe_exchange *ex = prepared_exchange(e);
  pe_test_log_clear();
  ck_assert_int_eq(pe_chain_run(c, ex, PE_PHASE_REQUEST_HEADERS), PE_OK);
  assert_meta(ex, PE_PHASE_REQUEST_HEADERS, "a");
  ck_assert_int_eq(pe_exchange_verdict(ex), PE_VERDICT_RESPOND);
  ck_assert_int_eq(pe_exchange_status(ex), 500);
  ck_assert_uint_eq(pe_exchange_body(ex, PE_RESPONSE).len, 0);
  ck_assert_uint_eq(pe_exchange_header_count(ex, PE_RESPONSE), 0);
  ck_assert_str_eq(pe_exchange_errmsg(ex), "step 1 (mutator@1) failed in request_headers: boom 7");
  ck_assert(pe_test_log_contains("step 1 (mutator@1) failed in request_headers: boom 7"));
  ck_assert(pe_test_log_contains("failure mode closed: answering 500"));
  pe_exchange_free(ex);
  pe_chain_free(c);

  /* A timeout answers 504; a policy that says nothing gets the value it
   * returned named. */
  c = chain_of(e, "[{\"name\":\"mutator\",\"version\":\"1\",\"params\":{\"rc\":-15,"
                  "\"quiet\":true}}]");
  ex = prepared_exchange(e);
  ck_assert_int_eq(pe_chain_run(c, ex, PE_PHASE_REQUEST_HEADERS), PE_OK);
  ck_assert_int_eq(pe_exchange_status(ex), 504);
  ck_assert_str_eq(pe_exchange_errmsg(ex), "step 0 (mutator@1) failed in request_headers: "
                                           "policy returned -15 (PE_ERR_TIMEOUT: timed out)");
  pe_exchange_free(ex);
  pe_chain_free(c);

  /* -1 is the policy's failure, not an invalid argument of the library's;
   * any other negative value too. */
  c = chain_of(e, "[{\"name\":\"mutator\",\"version\":\"1\",\"params\":{\"rc\":-1,"
                  "\"quiet\":true}}]");
  ex = prepared_exchange(e);
  pe_test_log_clear();
  ck_assert_int_eq(pe_chain_run(c, ex, PE_PHASE_REQUEST_HEADERS), PE_OK);
  ck_assert_int_eq(pe_exchange_status(ex), 500);
  ck_assert_str_eq(pe_exchange_errmsg(ex),
                   "step 0 (mutator@1) failed in request_headers: policy returned -1 "
                   "(PE_ERR_INVALID_ARGUMENT: invalid argument)");
  ck_assert(pe_test_log_contains("[PE_ERR_POLICY; failure mode closed: answering 500]"));
  pe_exchange_free(ex);
  pe_chain_free(c);
  c = chain_of(e, "[{\"name\":\"mutator\",\"version\":\"1\",\"params\":{\"rc\":-4242,"
                  "\"quiet\":true}}]");
  ex = prepared_exchange(e);
  ck_assert_int_eq(pe_chain_run(c, ex, PE_PHASE_REQUEST_HEADERS), PE_OK);
  ck_assert_str_eq(pe_exchange_errmsg(ex),
                   "step 0 (mutator@1) failed in request_headers: policy returned -4242");
  pe_exchange_free(ex);
  pe_chain_free(c);
  pe_engine_free(e);
}
END_TEST

START_TEST(failure_open_discards_the_step) {
  pe_engine *e = pe_test_engine(NULL);
  register_all(e);
  pe_chain *c = chain_of(e, "[" REC("a") ",{\"name\":\"mutator\",\"version\":\"1\","
                                         "\"failure_mode\":\"open\"}," REC("c") "]");
  pe_exchange *ex = prepared_exchange(e);
  ck_assert_int_eq(pe_chain_run(c, ex, PE_PHASE_REQUEST_HEADERS), PE_OK);
  /* The steps around it ran and kept their changes; its own are gone. */
  assert_meta(ex, PE_PHASE_REQUEST_HEADERS, "ac");
  assert_unchanged(ex);
  ck_assert_str_eq(pe_exchange_errmsg(ex), "step 1 (mutator@1) failed in request_headers: boom 7");
  pe_exchange_free(ex);
  pe_chain_free(c);

  /* Even an immediate response it made before failing is discarded. */
  c = chain_of(e, "[{\"name\":\"mutator\",\"version\":\"1\",\"failure_mode\":\"open\","
                  "\"params\":{\"respond\":true}}," REC("b") "]");
  ex = prepared_exchange(e);
  ck_assert_int_eq(pe_chain_run(c, ex, PE_PHASE_REQUEST_HEADERS), PE_OK);
  assert_meta(ex, PE_PHASE_REQUEST_HEADERS, "b");
  assert_unchanged(ex);
  pe_exchange_free(ex);
  pe_chain_free(c);

  /* A step that succeeds in open mode keeps its changes, and an earlier
   * failure's message survives a later quiet success. */
  c = chain_of(e, "[{\"name\":\"mutator\",\"version\":\"1\",\"failure_mode\":\"open\","
                  "\"params\":{\"rc\":0}}]");
  ex = prepared_exchange(e);
  pe_exchange_set_errmsg(ex, "earlier");
  ck_assert_int_eq(pe_chain_run(c, ex, PE_PHASE_REQUEST_HEADERS), PE_OK);
  ck_assert_slice_eq(pe_exchange_method(ex), "DELETE");
  ck_assert_int_eq(pe_exchange_status(ex), 299);
  ck_assert_str_eq(pe_exchange_errmsg(ex), "boom 7"); /* it did say something */
  pe_exchange_free(ex);
  pe_chain_free(c);
  c = chain_of(e, "[" REC("a") "]");
  ex = prepared_exchange(e);
  pe_exchange_set_errmsg(ex, "earlier");
  ck_assert_int_eq(pe_chain_run(c, ex, PE_PHASE_REQUEST_HEADERS), PE_OK);
  ck_assert_str_eq(pe_exchange_errmsg(ex), "earlier");
  pe_exchange_free(ex);
  pe_chain_free(c);
  pe_engine_free(e);
}
END_TEST

START_TEST(header_injection_is_refused) {
  pe_engine *e = pe_test_engine(NULL);
  register_all(e);
  /* Closed: the refused call fails the step, which answers 500. */
  pe_chain *c = chain_of(e, "[{\"name\":\"injector\",\"version\":\"1\"}]");
  pe_exchange *ex = prepared_exchange(e);
  ck_assert_int_eq(pe_chain_run(c, ex, PE_PHASE_REQUEST_HEADERS), PE_OK);
  ck_assert_int_eq(pe_exchange_status(ex), 500);
  ck_assert_ptr_nonnull(strstr(pe_exchange_errmsg(ex), "step 0 (injector@1) failed in "
                                                       "request_headers: "));
  ck_assert_ptr_nonnull(strstr(pe_exchange_errmsg(ex), "CR"));
  pe_exchange_free(ex);
  pe_chain_free(c);

  /* Open: skipped, nothing injected, the chain goes on. */
  c = chain_of(
      e, "[{\"name\":\"injector\",\"version\":\"1\",\"failure_mode\":\"open\"}," REC("z") "]");
  ex = prepared_exchange(e);
  ck_assert_int_eq(pe_chain_run(c, ex, PE_PHASE_REQUEST_HEADERS), PE_OK);
  assert_meta(ex, PE_PHASE_REQUEST_HEADERS, "z");
  ck_assert_uint_eq(pe_exchange_header_count(ex, PE_REQUEST), 2);
  ck_assert_int_eq(pe_exchange_verdict(ex), PE_VERDICT_CONTINUE);
  pe_exchange_free(ex);
  pe_chain_free(c);

  /* Ignoring the refusal gets the policy nothing either. */
  c = chain_of(e, "[{\"name\":\"injector-ignores\",\"version\":\"1\"}]");
  ex = prepared_exchange(e);
  ck_assert_int_eq(pe_chain_run(c, ex, PE_PHASE_REQUEST_HEADERS), PE_OK);
  ck_assert_int_eq(pe_exchange_verdict(ex), PE_VERDICT_CONTINUE);
  pe_slice v;
  ck_assert_int_eq(pe_exchange_header_get(ex, PE_REQUEST, PE_LIT("x-a"), &v), PE_ERR_NOT_FOUND);
  ck_assert_int_eq(pe_exchange_header_get(ex, PE_REQUEST, PE_LIT("x-injected"), &v),
                   PE_ERR_NOT_FOUND);
  pe_exchange_free(ex);
  pe_chain_free(c);
  pe_engine_free(e);
}
END_TEST

/* ---- metrics ---- */

#define MAX_EVENTS 16
static pe_step_event events[MAX_EVENTS];
static int event_count;
static void record_event(const pe_step_event *ev, void *user_data) {
  ck_assert_ptr_eq(user_data, events);
  ck_assert_int_lt(event_count, MAX_EVENTS);
  events[event_count++] = *ev;
}

static pe_engine *engine_with_metrics(pe_test_alloc *a) {
  pe_engine_options *o = NULL;
  pe_engine *e = NULL;
  ck_assert_int_eq(pe_engine_options_new(&o), PE_OK);
  if (a) {
    pe_mem m = pe_test_mem(a);
    ck_assert_int_eq(pe_engine_options_set_mem(o, &m), PE_OK);
  }
  ck_assert_int_eq(pe_engine_options_set_log(o, pe_test_log_fn, NULL), PE_OK);
  ck_assert_int_eq(pe_engine_options_set_metrics(o, record_event, events), PE_OK);
  ck_assert_int_eq(pe_engine_new(&e, o), PE_OK);
  pe_engine_options_free(o);
  register_all(e);
  return e;
}

START_TEST(metrics_events) {
  pe_engine *e = engine_with_metrics(NULL);
  pe_chain *c =
      chain_of(e, "[" REC("a") ",{\"name\":\"mutator\",\"version\":\"1\","
                               "\"failure_mode\":\"open\"},"
                               "{\"name\":\"responder\",\"version\":\"1\"}," REC("d") "]");
  pe_exchange *ex = NULL;
  ck_assert_int_eq(pe_exchange_new(&ex, e), PE_OK);
  ck_assert_int_eq(pe_exchange_header_add(ex, PE_REQUEST, PE_LIT("x-gone"), PE_LIT("1")), PE_OK);
  event_count = 0;
  ck_assert_int_eq(pe_chain_run(c, ex, PE_PHASE_REQUEST_HEADERS), PE_OK);
  ck_assert_int_eq(event_count, 3);
  static const pe_step_outcome want[] = {PE_STEP_OK, PE_STEP_FAILED, PE_STEP_RESPONDED};
  static const char *const names[] = {"rec", "mutator", "responder"};
  for (int i = 0; i < 3; i++) {
    ck_assert_uint_eq(events[i].step_index, (size_t)i);
    ck_assert_int_eq(events[i].outcome, want[i]);
    ck_assert_int_eq(events[i].phase, PE_PHASE_REQUEST_HEADERS);
    ck_assert_int_eq(events[i].failure_open, i == 1);
    ck_assert_slice_eq(events[i].policy_name, names[i]);
    ck_assert_slice_eq(events[i].policy_version, "1");
    ck_assert_uint_lt(events[i].duration_ns, 10ull * 1000 * 1000 * 1000);
  }
  /* Response phases report their steps in run order (reversed). */
  ck_assert_int_eq(pe_exchange_reset(ex), PE_OK);
  event_count = 0;
  ck_assert_int_eq(pe_chain_run(c, ex, PE_PHASE_RESPONSE_BODY), PE_OK);
  ck_assert_int_eq(event_count, 2);
  ck_assert_uint_eq(events[0].step_index, 3);
  ck_assert_uint_eq(events[1].step_index, 0);
  pe_exchange_free(ex);
  pe_chain_free(c);
  pe_engine_free(e);
}
END_TEST

/* ---- the hot path allocates nothing ---- */

static void one_request(pe_chain *c, pe_exchange *ex) {
  ck_assert_int_eq(pe_exchange_reset(ex), PE_OK);
  ck_assert_int_eq(pe_exchange_set_method(ex, PE_LIT("GET")), PE_OK);
  ck_assert_int_eq(pe_exchange_set_path(ex, PE_LIT("/items?id=3")), PE_OK);
  ck_assert_int_eq(pe_exchange_header_add(ex, PE_REQUEST, PE_LIT("host"), PE_LIT("example")),
                   PE_OK);
  ck_assert_int_eq(pe_exchange_header_add(ex, PE_REQUEST, PE_LIT("accept"), PE_LIT("*/*")), PE_OK);
  ck_assert_int_eq(pe_chain_run(c, ex, PE_PHASE_REQUEST_HEADERS), PE_OK);
  ck_assert_int_eq(pe_exchange_set_status(ex, 200), PE_OK);
  ck_assert_int_eq(pe_exchange_header_add(ex, PE_RESPONSE, PE_LIT("server"), PE_LIT("x")), PE_OK);
  ck_assert_int_eq(pe_chain_run(c, ex, PE_PHASE_RESPONSE_HEADERS), PE_OK);
  pe_slice v;
  ck_assert_int_eq(pe_exchange_header_get(ex, PE_RESPONSE, PE_LIT("x-sample-policy-phase"), &v),
                   PE_OK);
  ck_assert_slice_eq(v, "response-header");
}

START_TEST(header_chain_allocates_nothing_per_request) {
  pe_test_alloc a = {0};
  pe_engine *e = pe_test_engine(&a);
  ck_assert_int_eq(pe_engine_load_plugin(e, PE_SAMPLE_PLUGIN), PE_OK);
  /* One closed and one open step: the open one exercises the snapshot. */
  pe_chain *c = chain_of(e, "[{\"name\":\"sample-native-request-header\",\"version\":\"1.0.0\"},"
                            "{\"name\":\"sample-native-response-header\",\"version\":\"1.0.0\","
                            "\"failure_mode\":\"open\"}]");
  pe_exchange *ex = NULL;
  ck_assert_int_eq(pe_exchange_new(&ex, e), PE_OK);
  for (int i = 0; i < 3; i++)
    one_request(c, ex); /* warm-up: buffers grow to their working size */
  long before = atomic_load(&a.attempts);
  for (int i = 0; i < 1000; i++)
    one_request(c, ex);
  ck_assert_int_eq(atomic_load(&a.attempts), before);
  pe_exchange_free(ex);
  pe_chain_free(c);
  pe_engine_free(e);
  ck_assert_int_eq(a.allocs, a.frees);
}
END_TEST

/* ---- out-of-process steps, through a fake backend ---- */

typedef struct fake_backend {
  int created, destroyed, shutdowns;
  int batches;
  size_t batch_sizes[8];
  int next_rc; /* what run_batch returns (PE_OK, PE_PENDING or an error) */
} fake_backend;

static int fake_create(pe__backend *be, pe__step *step, char *err) {
  fake_backend *fb = (fake_backend *)be;
  if (strstr(step->params_json, "\"refuse\"")) {
    pe__errmsg_set(err, "worker refused: %s", step->params_json);
    return PE_ERR_PARAM;
  }
  fb->created++;
  step->instance = fb;
  return PE_OK;
}

static void fake_destroy(pe__backend *be, pe__step *step) {
  ck_assert_ptr_eq(step->instance, be);
  ((fake_backend *)be)->destroyed++;
}

/* Applies each step: records its index (as a digit) like "rec" does. */
static int fake_run_batch(pe__backend *be, pe_exchange *ex, const pe__batch *b) {
  fake_backend *fb = (fake_backend *)be;
  ck_assert_ptr_null(ex->run.dispatcher);
  fb->batch_sizes[fb->batches++ % 8] = b->n;
  int rc = fb->next_rc;
  fb->next_rc = PE_OK;
  if (rc != PE_OK)
    return rc;
  for (size_t i = 0; i < b->n; i++) {
    char tag = (char)('0' + b->step[i]->index);
    ck_assert_int_eq(record(ex, &tag, b->phase[i]), PE_OK);
  }
  return PE_OK;
}

static void fake_shutdown(pe__backend *be) {
  ((fake_backend *)be)->shutdowns++;
}

static const pe__backend_ops fake_ops = {.kind = "fake",
                                         .create_instance = fake_create,
                                         .destroy_instance = fake_destroy,
                                         .run_batch = fake_run_batch,
                                         .shutdown = fake_shutdown};

/* Installs the fake backend as the engine's default executor. */
static void use_fake_backend(pe_engine *e, fake_backend *fb) {
  char err[PE__ERRMSG_SIZE];
  ck_assert_int_eq(
      pe__engine_add_executor(e, "python", &fake_ops, (pe__backend *)(void *)fb, NULL, err), PE_OK);
}

/* Hides the executors (as if none had been started), or shows them again. */
static void hide_executors(pe_engine *e, bool hidden) {
  atomic_store(&e->executor_count, hidden ? 0 : 1);
}

static void add_python_policy_in(pe_engine *e, const char *name, unsigned phases) {
  const pe_mem *mem = pe__engine_mem(e);
  pe__policy *p = pe__calloc(mem, 1, sizeof *p);
  p->kind = PE__KIND_EXECUTOR;
  p->name = pe__strndup(mem, name, strlen(name));
  p->version = pe__strndup(mem, "1", 1);
  p->phases = phases;
  pthread_mutex_lock(&e->lock);
  ck_assert_int_eq(pe__registry_add(e, p), PE_OK);
  pthread_mutex_unlock(&e->lock);
}

static void add_python_policy(pe_engine *e, const char *name) {
  add_python_policy_in(
      e, name, PE_PHASE_BIT(PE_PHASE_REQUEST_HEADERS) | PE_PHASE_BIT(PE_PHASE_RESPONSE_HEADERS));
}

#define PY(name, extra) "{\"name\":\"" name "\",\"version\":\"1\"" extra "}"

START_TEST(python_steps_go_in_batches) {
  fake_backend fb = {0};
  pe_test_alloc a = {0};
  pe_engine *e = pe_test_engine(&a);
  register_all(e);
  add_python_policy(e, "py");
  use_fake_backend(e, &fb);
  pe_chain *c = chain_of(e, "[" REC("a") "," PY("py", "") "," PY("py", "") "," REC("b") "," PY(
                                "py", "") "," PY("py", ",\"enabled\":false") "]");
  ck_assert_int_eq(fb.created, 3); /* not for the disabled step */
  pe_exchange *ex = NULL;
  ck_assert_int_eq(pe_exchange_new(&ex, e), PE_OK);
  ck_assert_int_eq(pe_chain_run(c, ex, PE_PHASE_REQUEST_HEADERS), PE_OK);
  assert_meta(ex, PE_PHASE_REQUEST_HEADERS, "a12b4");
  ck_assert_int_eq(fb.batches, 2);
  ck_assert_uint_eq(fb.batch_sizes[0], 2);
  ck_assert_uint_eq(fb.batch_sizes[1], 1);
  ck_assert_int_eq(pe_chain_run(c, ex, PE_PHASE_RESPONSE_HEADERS), PE_OK);
  assert_meta(ex, PE_PHASE_RESPONSE_HEADERS, "4b21a");
  ck_assert_uint_eq(fb.batch_sizes[2], 1);
  ck_assert_uint_eq(fb.batch_sizes[3], 2);

  /* A batch the backend could not run fails each of its steps. */
  ck_assert_int_eq(pe_exchange_reset(ex), PE_OK);
  fb.next_rc = PE_ERR_WORKER;
  ck_assert_int_eq(pe_chain_run(c, ex, PE_PHASE_REQUEST_HEADERS), PE_OK);
  assert_meta(ex, PE_PHASE_REQUEST_HEADERS, "a");
  ck_assert_int_eq(pe_exchange_status(ex), 500);
  ck_assert_str_eq(pe_exchange_errmsg(ex), "step 1 (py@1) failed in request_headers: worker "
                                           "died or broke the protocol");
  pe_exchange_free(ex);
  pe_chain_free(c);
  ck_assert_int_eq(fb.destroyed, 3);

  /* Open steps of a failed batch are skipped one by one. */
  c = chain_of(e, "[" PY("py", ",\"failure_mode\":\"open\"") "," PY(
                      "py", ",\"failure_mode\":\"open\"") "," REC("c") "]");
  ck_assert_int_eq(pe_exchange_new(&ex, e), PE_OK);
  fb.next_rc = PE_ERR_TIMEOUT;
  ck_assert_int_eq(pe_chain_run(c, ex, PE_PHASE_REQUEST_HEADERS), PE_OK);
  assert_meta(ex, PE_PHASE_REQUEST_HEADERS, "c");
  ck_assert_int_eq(pe_exchange_verdict(ex), PE_VERDICT_CONTINUE);
  ck_assert_str_eq(pe_exchange_errmsg(ex), "step 1 (py@1) failed in request_headers: timed out");
  pe_exchange_free(ex);
  pe_chain_free(c);

  /* Create errors from the backend name the step. */
  pe_chain *bad = (pe_chain *)&fb;
  char msg[256];
  ck_assert_int_eq(pe_chain_new_from_json(&bad, e,
                                          pe_str("[" PY("py", ",\"params\":{\"refuse\":1}") "]"),
                                          msg, sizeof msg),
                   PE_ERR_PARAM);
  ck_assert_str_eq(msg, "step 0 (py@1): worker refused: {\"refuse\":1}");
  ck_assert_ptr_eq(bad, (pe_chain *)&fb);
  pe_engine_free(e);
  ck_assert_int_eq(fb.shutdowns, 1);
  ck_assert_int_eq(fb.created, fb.destroyed);
  ck_assert_int_eq(a.allocs, a.frees);
}
END_TEST

#define RESPONSE_PHASES                                                                            \
  (PE_PHASE_BIT(PE_PHASE_RESPONSE_HEADERS) | PE_PHASE_BIT(PE_PHASE_RESPONSE_BODY))

START_TEST(run_phases_sends_one_batch_across_phases) {
  fake_backend fb = {0};
  pe_test_alloc a = {0};
  pe_engine *e = pe_test_engine(&a);
  register_all(e);
  add_python_policy_in(e, "pyr", RESPONSE_PHASES);
  use_fake_backend(e, &fb);
  pe_exchange *ex = NULL;
  ck_assert_int_eq(pe_exchange_new(&ex, e), PE_OK);

  /* Python steps ending one phase and starting the next: one batch. */
  pe_chain *c = chain_of(e, "[" PY("pyr", "") "," PY("pyr", "") "]");
  ck_assert_int_eq(pe_chain_run_phases(c, ex, PE_PHASE_RESPONSE_HEADERS, PE_PHASE_RESPONSE_BODY),
                   PE_OK);
  assert_meta(ex, PE_PHASE_RESPONSE_HEADERS, "10");
  assert_meta(ex, PE_PHASE_RESPONSE_BODY, "10");
  ck_assert_int_eq(fb.batches, 1);
  ck_assert_uint_eq(fb.batch_sizes[0], 4);
  /* The same phases one by one: one batch each, same effect. */
  ck_assert_int_eq(pe_exchange_reset(ex), PE_OK);
  ck_assert_int_eq(pe_chain_run(c, ex, PE_PHASE_RESPONSE_HEADERS), PE_OK);
  ck_assert_int_eq(pe_chain_run(c, ex, PE_PHASE_RESPONSE_BODY), PE_OK);
  assert_meta(ex, PE_PHASE_RESPONSE_HEADERS, "10");
  assert_meta(ex, PE_PHASE_RESPONSE_BODY, "10");
  ck_assert_int_eq(fb.batches, 3);
  pe_chain_free(c);

  /* A native step at the boundary keeps the batches apart, in order. */
  c = chain_of(e, "[" PY("pyr", "") "," REC("a") "]");
  ck_assert_int_eq(pe_exchange_reset(ex), PE_OK);
  fb.batches = 0;
  ck_assert_int_eq(pe_chain_run_phases(c, ex, PE_PHASE_REQUEST_HEADERS, PE_PHASE_RESPONSE_BODY),
                   PE_OK);
  assert_meta(ex, PE_PHASE_REQUEST_HEADERS, "a");
  assert_meta(ex, PE_PHASE_REQUEST_BODY, "a");
  assert_meta(ex, PE_PHASE_RESPONSE_HEADERS, "a0");
  assert_meta(ex, PE_PHASE_RESPONSE_BODY, "a0");
  ck_assert_int_eq(fb.batches, 2);
  ck_assert_uint_eq(fb.batch_sizes[0], 1);
  ck_assert_uint_eq(fb.batch_sizes[1], 1);
  pe_chain_free(c);

  /* An answer in an early phase ends the whole run. */
  c = chain_of(e, "[" PY("pyr", "") ",{\"name\":\"responder\",\"version\":\"1\"}]");
  ck_assert_int_eq(pe_exchange_reset(ex), PE_OK);
  fb.batches = 0;
  ck_assert_int_eq(pe_chain_run_phases(c, ex, PE_PHASE_REQUEST_HEADERS, PE_PHASE_RESPONSE_BODY),
                   PE_OK);
  ck_assert_int_eq(pe_exchange_status(ex), 403);
  ck_assert_int_eq(fb.batches, 0);
  assert_meta(ex, PE_PHASE_RESPONSE_BODY, "");

  ck_assert_int_eq(pe_chain_run_phases(c, ex, PE_PHASE_RESPONSE_BODY, PE_PHASE_RESPONSE_HEADERS),
                   PE_ERR_INVALID_ARGUMENT);
  ck_assert_int_eq(pe_chain_run_phases(c, ex, PE_PHASE_REQUEST_HEADERS, (pe_phase)4),
                   PE_ERR_INVALID_ARGUMENT);
  ck_assert_int_eq(
      pe_chain_run_phases(NULL, ex, PE_PHASE_REQUEST_HEADERS, PE_PHASE_REQUEST_HEADERS),
      PE_ERR_INVALID_ARGUMENT);
  pe_exchange_free(ex);
  pe_chain_free(c);
  pe_engine_free(e);
  ck_assert_int_eq(a.allocs, a.frees);
}
END_TEST

/* A batch left pending at the end of one phase resumes into the next. */
START_TEST(pending_batch_resumes_into_the_next_phase) {
  fake_backend fb = {0};
  pe_engine *e = pe_test_engine(NULL);
  register_all(e);
  add_python_policy_in(e, "pyr", RESPONSE_PHASES);
  use_fake_backend(e, &fb);
  pe_chain *c = chain_of(e, "[" REC("a") "," PY("pyr", "") "]");
  pe_exchange *ex = NULL;
  ck_assert_int_eq(pe_exchange_new(&ex, e), PE_OK);
  fb.next_rc = PE_PENDING;
  ck_assert_int_eq(pe_chain_run_phases(c, ex, PE_PHASE_RESPONSE_HEADERS, PE_PHASE_RESPONSE_BODY),
                   PE_PENDING);
  ck_assert_int_eq(ex->run.phase, PE_PHASE_RESPONSE_HEADERS);
  ck_assert_uint_eq(ex->run.pos, 1);
  char tag = '1';
  ck_assert_int_eq(record(ex, &tag, PE_PHASE_RESPONSE_HEADERS), PE_OK);
  ex->run.pending = false;
  ck_assert_int_eq(pe__run_continue(ex), PE_OK);
  assert_meta(ex, PE_PHASE_RESPONSE_HEADERS, "1a");
  assert_meta(ex, PE_PHASE_RESPONSE_BODY, "1a");
  pe_exchange_free(ex);
  pe_chain_free(c);
  pe_engine_free(e);
}
END_TEST

START_TEST(pending_batch_resumes) {
  fake_backend fb = {0};
  pe_engine *e = pe_test_engine(NULL);
  register_all(e);
  add_python_policy(e, "py");
  use_fake_backend(e, &fb);
  pe_chain *c = chain_of(e, "[" REC("a") "," PY("py", "") "," REC("c") "]");
  pe_exchange *ex = NULL;
  ck_assert_int_eq(pe_exchange_new(&ex, e), PE_OK);
  fb.next_rc = PE_PENDING;
  ck_assert_int_eq(pe_chain_run(c, ex, PE_PHASE_REQUEST_HEADERS), PE_PENDING);
  ck_assert(ex->run.pending);
  ck_assert_uint_eq(ex->run.pos, 2); /* past the batch */
  assert_meta(ex, PE_PHASE_REQUEST_HEADERS, "a");
  ck_assert_int_eq(pe_chain_run(c, ex, PE_PHASE_REQUEST_HEADERS), PE_ERR_STATE);
  /* The backend's completion: apply, clear pending, continue. */
  char tag = '1';
  ck_assert_int_eq(record(ex, &tag, PE_PHASE_REQUEST_HEADERS), PE_OK);
  ex->run.pending = false;
  ck_assert_int_eq(pe__run_continue(ex), PE_OK);
  assert_meta(ex, PE_PHASE_REQUEST_HEADERS, "a1c");
  pe_exchange_free(ex);
  pe_chain_free(c);
  pe_engine_free(e);
}
END_TEST

START_TEST(python_steps_without_backend) {
  fake_backend fb = {0};
  pe_engine *e = pe_test_engine(NULL);
  register_all(e);
  add_python_policy(e, "py");
  pe_chain *c = (pe_chain *)&fb;
  char msg[256];
  ck_assert_int_eq(pe_chain_new_from_json(&c, e, pe_str("[" PY("py", "") "]"), msg, sizeof msg),
                   PE_ERR_UNSUPPORTED);
  ck_assert_str_eq(msg, "step 0 (py@1): no backend for out-of-process policies is running");
  /* A backend that went away after the build: the steps fail per mode. */
  use_fake_backend(e, &fb);
  c = chain_of(e, "[" PY("py", ",\"failure_mode\":\"open\"") "," REC("b") "," PY("py", "") "]");
  hide_executors(e, true);
  pe_exchange *ex = NULL;
  ck_assert_int_eq(pe_exchange_new(&ex, e), PE_OK);
  ck_assert_int_eq(pe_chain_run(c, ex, PE_PHASE_REQUEST_HEADERS), PE_OK);
  assert_meta(ex, PE_PHASE_REQUEST_HEADERS, "b");
  ck_assert_int_eq(pe_exchange_status(ex), 500);
  ck_assert_str_eq(pe_exchange_errmsg(ex), "step 2 (py@1) failed in request_headers: no backend "
                                           "for out-of-process policies is running");
  pe_exchange_free(ex);
  hide_executors(e, false);
  pe_chain_free(c);
  ck_assert_int_eq(fb.created, fb.destroyed);
  pe_engine_free(e);
  ck_assert_int_eq(fb.shutdowns, 1);
}
END_TEST

static Suite *run_suite(void) {
  Suite *s = suite_create("run");
  TCase *tc = tcase_create("run");
  tcase_add_test(tc, request_in_order_response_reversed);
  tcase_add_test(tc, run_refuses_bad_arguments);
  tcase_add_test(tc, immediate_response_stops_the_chain);
  tcase_add_test(tc, failure_closed_answers_500);
  tcase_add_test(tc, failure_open_discards_the_step);
  tcase_add_test(tc, header_injection_is_refused);
  tcase_add_test(tc, metrics_events);
  tcase_add_test(tc, header_chain_allocates_nothing_per_request);
  tcase_add_test(tc, python_steps_go_in_batches);
  tcase_add_test(tc, pending_batch_resumes);
  tcase_add_test(tc, run_phases_sends_one_batch_across_phases);
  tcase_add_test(tc, pending_batch_resumes_into_the_next_phase);
  tcase_add_test(tc, python_steps_without_backend);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) {
  return pe_test_run_suite(run_suite());
}
