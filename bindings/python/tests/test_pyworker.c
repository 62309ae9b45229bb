/* The real policyexec-pyworker, spoken to over the executor protocol. */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <patchlevel.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "pw_client.h"

typedef Policyexec__V1__Header Header;
typedef Policyexec__V1__HttpData HttpData;
typedef Policyexec__V1__StepResult StepResult;

enum {
  RQ_HEADERS = POLICYEXEC__V1__PHASE__PHASE_REQUEST_HEADERS,
  RQ_BODY = POLICYEXEC__V1__PHASE__PHASE_REQUEST_BODY,
  RS_HEADERS = POLICYEXEC__V1__PHASE__PHASE_RESPONSE_HEADERS,
  RS_BODY = POLICYEXEC__V1__PHASE__PHASE_RESPONSE_BODY,
  OK = POLICYEXEC__V1__STEP_RESULT__OUTCOME__OUTCOME_OK,
  FAILED = POLICYEXEC__V1__STEP_RESULT__OUTCOME__OUTCOME_FAILED
};

/* One worker per test, started with the sample and test policies loaded. */
static pw_worker worker = {0, -1};
static pw_buf rbuf;
static uint64_t next_id = 1;

static void start_worker(const char *const *extra_args) {
  pw_spawn_options opt = {.extra_args = extra_args};
  ck_assert_int_eq(pw_worker_start(&worker, &opt), 0);
}

static void teardown(void) {
  pw_worker_kill(&worker);
  pw_buf_free(&rbuf);
}

static ProtobufCBinaryData bin(const char *s) {
  return (ProtobufCBinaryData){strlen(s), (uint8_t *)s};
}

static int bin_eq(ProtobufCBinaryData d, const char *s) {
  return d.len == strlen(s) && memcmp(d.data, s, d.len) == 0;
}

static pw_response *hello(int fd) {
  pw_response *r;
  ck_assert_int_eq(pw_hello(fd, &rbuf, next_id++, &r), 0);
  return r;
}

/* Creates name@1.0.0 as @p instance and expects it to succeed. */
static void create_ok(uint64_t instance, const char *name, const char *params) {
  pw_response *r;
  ck_assert_int_eq(pw_create(worker.fd, &rbuf, next_id++, instance, name, params, &r), 0);
  ck_assert_int_eq(r->body_case, POLICYEXEC__V1__RESPONSE__BODY_CREATE);
  ck_assert_msg(r->create->ok, "create %s: %s", name, r->create->error);
  pw_response_free(r);
}

static Policyexec__V1__RunPhase run_msg(int phase, const uint64_t *ids,
                                        const protobuf_c_boolean *fo, size_t n, HttpData *data) {
  Policyexec__V1__RunPhase run = POLICYEXEC__V1__RUN_PHASE__INIT;
  run.phase = phase;
  run.instance_ids = (uint64_t *)ids;
  run.n_instance_ids = n;
  run.fail_open = (protobuf_c_boolean *)fo;
  run.n_fail_open = fo ? n : 0;
  run.data = data;
  return run;
}

/* Sends @p run; returns the reply, whatever its kind. */
static pw_response *call_run(Policyexec__V1__RunPhase *run) {
  pw_request req = POLICYEXEC__V1__REQUEST__INIT;
  req.id = next_id++;
  req.body_case = POLICYEXEC__V1__REQUEST__BODY_RUN;
  req.run = run;
  pw_response *r;
  ck_assert_int_eq(pw_call(worker.fd, &rbuf, &req, &r), 0);
  ck_assert_uint_eq(r->id, req.id);
  return r;
}

static pw_response *expect_run_reply(pw_response *r) {
  ck_assert_msg(r->body_case == POLICYEXEC__V1__RESPONSE__BODY_RUN, "not a RunReply: %s",
                r->body_case == POLICYEXEC__V1__RESPONSE__BODY_ERROR ? r->error->message : "?");
  return r;
}

static pw_response *run(int phase, const uint64_t *ids, const protobuf_c_boolean *fo, size_t n,
                        HttpData *data) {
  Policyexec__V1__RunPhase m = run_msg(phase, ids, fo, n, data);
  return expect_run_reply(call_run(&m));
}

enum { MAX_STEPS = 8 };

/* Sets m->step_phases to @p n phases, kept in @p buf (the enum is int-sized
 * on the wire, so tests may give values no Phase names). */
static void set_step_phases(Policyexec__V1__RunPhase *m, Policyexec__V1__Phase *buf,
                            const int *phases, size_t n) {
  ck_assert_uint_le(n, MAX_STEPS);
  for (size_t i = 0; i < n; i++) {
    buf[i] = (Policyexec__V1__Phase)phases[i];
  }
  m->step_phases = buf;
  m->n_step_phases = n;
}

/* One batch whose step i runs in phases[i] (RunPhase.step_phases). */
static pw_response *run_phases(const int *phases, const uint64_t *ids, const protobuf_c_boolean *fo,
                               size_t n, HttpData *data) {
  Policyexec__V1__Phase buf[MAX_STEPS];
  Policyexec__V1__RunPhase m = run_msg(phases[0], ids, fo, n, data);
  set_step_phases(&m, buf, phases, n);
  return expect_run_reply(call_run(&m));
}

/* A request as the engine would send it in the request headers phase. */
static Header h_host = {PROTOBUF_C_MESSAGE_INIT(&policyexec__v1__header__descriptor),
                        {4, (uint8_t *)"Host"},
                        {11, (uint8_t *)"example.com"}};
static Header h_accept = {PROTOBUF_C_MESSAGE_INIT(&policyexec__v1__header__descriptor),
                          {6, (uint8_t *)"Accept"},
                          {3, (uint8_t *)"*/*"}};
static Header *basic_headers[] = {&h_host, &h_accept};

static HttpData basic_request(void) {
  HttpData d = POLICYEXEC__V1__HTTP_DATA__INIT;
  d.method = bin("GET");
  d.path = bin("/items?id=3");
  d.authority = bin("example.com");
  d.request_headers = basic_headers;
  d.n_request_headers = 2;
  return d;
}

/* The whole exchange as the engine sends it once the response is buffered. */
static Header h_ctype = {PROTOBUF_C_MESSAGE_INIT(&policyexec__v1__header__descriptor),
                         {12, (uint8_t *)"Content-Type"},
                         {10, (uint8_t *)"text/plain"}};
static Header *response_headers[] = {&h_ctype};

static HttpData buffered_response(void) {
  HttpData d = basic_request();
  d.status = 200;
  d.response_headers = response_headers;
  d.n_response_headers = 1;
  d.has_response_body = 1;
  d.response_body = bin("payload");
  return d;
}

static const StepResult *only_step(const pw_response *r) {
  ck_assert_uint_eq(r->run->n_steps, 1);
  return r->run->steps[0];
}

/* ---- handshake ---- */

START_TEST(handshake_lists_the_samples) {
  start_worker(NULL);
  pw_response *r = hello(worker.fd);
  ck_assert_int_eq(r->body_case, POLICYEXEC__V1__RESPONSE__BODY_HELLO);
  const Policyexec__V1__HelloReply *h = r->hello;
  ck_assert_uint_eq(h->protocol_version, 1);
  ck_assert_uint_eq(h->pid, (uint32_t)worker.pid);
  ck_assert_str_eq(h->runtime, "CPython " PY_VERSION);
  static const struct {
    const char *name;
    unsigned phases;
    int rq, rs;
  } want[] = {{"sample-python-request-header", 1u << RQ_HEADERS, 0, 0},
              {"sample-python-response-header", 1u << RS_HEADERS, 0, 0},
              {"sample-python-request-body", 1u << RQ_BODY, 1, 0},
              {"sample-python-response-body", 1u << RS_BODY, 0, 1}};
  for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
    int found = 0;
    for (size_t j = 0; j < h->n_policies; j++) {
      const Policyexec__V1__PolicyInfo *p = h->policies[j];
      if (strcmp(p->name, want[i].name) == 0) {
        found = 1;
        ck_assert_str_eq(p->version, "1.0.0");
        ck_assert_uint_eq(p->phases, want[i].phases);
        ck_assert_int_eq(p->needs_request_body, want[i].rq);
        ck_assert_int_eq(p->needs_response_body, want[i].rs);
      }
    }
    ck_assert_msg(found, "%s not offered", want[i].name);
  }
  pw_response_free(r);
}
END_TEST

START_TEST(handshake_refuses_another_protocol_version) {
  start_worker(NULL);
  Policyexec__V1__Hello hello_msg = POLICYEXEC__V1__HELLO__INIT;
  hello_msg.protocol_version = 2;
  pw_request req = POLICYEXEC__V1__REQUEST__INIT;
  req.id = 77;
  req.body_case = POLICYEXEC__V1__REQUEST__BODY_HELLO;
  req.hello = &hello_msg;
  pw_response *r;
  ck_assert_int_eq(pw_call(worker.fd, &rbuf, &req, &r), 0);
  ck_assert_uint_eq(r->id, 77);
  ck_assert_int_eq(r->body_case, POLICYEXEC__V1__RESPONSE__BODY_ERROR);
  ck_assert_ptr_nonnull(strstr(r->error->message, "protocol version 2"));
  pw_response_free(r);
}
END_TEST

START_TEST(handshake_reports_a_broken_module_path) {
  start_worker(NULL);
  Policyexec__V1__Hello hello_msg = POLICYEXEC__V1__HELLO__INIT;
  char *paths[] = {"/nonexistent/policies"};
  hello_msg.protocol_version = 1;
  hello_msg.module_paths = paths;
  hello_msg.n_module_paths = 1;
  pw_request req = POLICYEXEC__V1__REQUEST__INIT;
  req.id = 5;
  req.body_case = POLICYEXEC__V1__REQUEST__BODY_HELLO;
  req.hello = &hello_msg;
  pw_response *r;
  ck_assert_int_eq(pw_call(worker.fd, &rbuf, &req, &r), 0);
  ck_assert_int_eq(r->body_case, POLICYEXEC__V1__RESPONSE__BODY_ERROR);
  ck_assert_ptr_nonnull(strstr(r->error->message, "/nonexistent/policies"));
  pw_response_free(r);
}
END_TEST

/* ---- instances ---- */

START_TEST(create_refuses_bad_params_with_a_message) {
  start_worker(NULL);
  static const struct {
    const char *name, *params, *expect;
  } cases[] = {
      {"test-params", "{}", "missing param 'header'"},
      {"test-params", "{\"header\": 3}", "param 'header' must be str"},
      {"test-params", "{\"header\": \"x\", \"colour\": 1}", "unknown param 'colour'"},
      {"test-params", "{\"header\": \"x\", \"count\": 0}", "count must be at least 1"},
      {"test-params", "{\"header\": ", "not valid JSON"},
      {"sample-python-request-header", "{\"x\": 1}", "unknown param 'x'"},
      {"no-such-policy", "{}", "unknown policy no-such-policy@1.0.0"},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    pw_response *r;
    ck_assert_int_eq(
        pw_create(worker.fd, &rbuf, next_id++, 10 + i, cases[i].name, cases[i].params, &r), 0);
    ck_assert_int_eq(r->body_case, POLICYEXEC__V1__RESPONSE__BODY_CREATE);
    ck_assert_msg(!r->create->ok, "case %zu accepted", i);
    ck_assert_msg(strstr(r->create->error, cases[i].expect) != NULL, "case %zu: '%s'", i,
                  r->create->error);
    pw_response_free(r);
  }
  create_ok(1, "test-params", "{\"header\": \"x-count\", \"count\": 2}");
}
END_TEST

START_TEST(destroy_ping_and_unknown_instances) {
  start_worker(NULL);
  create_ok(1, "sample-python-request-header", "{}");
  create_ok(2, "sample-python-response-header", "");

  pw_request req = POLICYEXEC__V1__REQUEST__INIT;
  Policyexec__V1__Ping ping = POLICYEXEC__V1__PING__INIT;
  req.id = 9;
  req.body_case = POLICYEXEC__V1__REQUEST__BODY_PING;
  req.ping = &ping;
  pw_response *r;
  ck_assert_int_eq(pw_call(worker.fd, &rbuf, &req, &r), 0);
  ck_assert_int_eq(r->body_case, POLICYEXEC__V1__RESPONSE__BODY_PONG);
  ck_assert_uint_eq(r->pong->instances, 2);
  ck_assert_uint_gt(r->pong->rss_bytes, 1024 * 1024);
  pw_response_free(r);

  Policyexec__V1__DestroyInstance d = POLICYEXEC__V1__DESTROY_INSTANCE__INIT;
  d.instance_id = 1;
  req.id = 10;
  req.body_case = POLICYEXEC__V1__REQUEST__BODY_DESTROY;
  req.destroy = &d;
  ck_assert_int_eq(pw_call(worker.fd, &rbuf, &req, &r), 0);
  ck_assert_int_eq(r->body_case, POLICYEXEC__V1__RESPONSE__BODY_DESTROY);
  pw_response_free(r);

  /* A run naming a destroyed instance runs nothing and says why. */
  Policyexec__V1__RunPhase rp = POLICYEXEC__V1__RUN_PHASE__INIT;
  uint64_t ids[] = {2, 1};
  HttpData data = basic_request();
  rp.instance_ids = ids;
  rp.n_instance_ids = 2;
  rp.data = &data;
  req.id = 11;
  req.body_case = POLICYEXEC__V1__REQUEST__BODY_RUN;
  req.run = &rp;
  ck_assert_int_eq(pw_call(worker.fd, &rbuf, &req, &r), 0);
  ck_assert_uint_eq(r->id, 11);
  ck_assert_int_eq(r->body_case, POLICYEXEC__V1__RESPONSE__BODY_ERROR);
  ck_assert_ptr_nonnull(strstr(r->error->message, "unknown instance 1"));
  pw_response_free(r);
}
END_TEST

/* ---- the samples ---- */

START_TEST(sample_header_policies_set_the_phase_header) {
  start_worker(NULL);
  create_ok(1, "sample-python-request-header", "{}");
  create_ok(2, "sample-python-response-header", "{}");
  uint64_t id = 1;
  HttpData d = basic_request();
  pw_response *r = run(RQ_HEADERS, &id, NULL, 1, &d);
  const StepResult *s = only_step(r);
  ck_assert_int_eq(s->outcome, OK);
  ck_assert_uint_eq(s->n_headers, 1);
  ck_assert_int_eq(s->headers[0]->side, POLICYEXEC__V1__SIDE__SIDE_REQUEST);
  ck_assert(bin_eq(s->headers[0]->name, "x-sample-policy-phase"));
  ck_assert_uint_eq(s->headers[0]->n_values, 1);
  ck_assert(bin_eq(s->headers[0]->values[0], "request-header"));
  ck_assert_uint_eq(s->n_bodies + s->n_metadata, 0);
  ck_assert_int_eq(s->status, 0);
  ck_assert_uint_eq(s->method.len + s->path.len, 0);
  ck_assert_ptr_null(s->respond);
  pw_response_free(r);

  id = 2;
  d.status = 200;
  Header ct = {PROTOBUF_C_MESSAGE_INIT(&policyexec__v1__header__descriptor), bin("content-type"),
               bin("text/plain")};
  Header *rs[] = {&ct};
  d.response_headers = rs;
  d.n_response_headers = 1;
  r = run(RS_HEADERS, &id, NULL, 1, &d);
  s = only_step(r);
  ck_assert_int_eq(s->outcome, OK);
  ck_assert_uint_eq(s->n_headers, 1);
  ck_assert_int_eq(s->headers[0]->side, POLICYEXEC__V1__SIDE__SIDE_RESPONSE);
  ck_assert(bin_eq(s->headers[0]->name, "x-sample-policy-phase"));
  ck_assert(bin_eq(s->headers[0]->values[0], "response-header"));
  pw_response_free(r);
}
END_TEST

START_TEST(sample_body_policies_send_a_prefix_edit) {
  start_worker(NULL);
  create_ok(1, "sample-python-request-body", "{}");
  create_ok(2, "sample-python-response-body", "{}");
  HttpData d = basic_request();
  d.has_request_body = 1;
  d.request_body = bin("payload");
  uint64_t id = 1;
  pw_response *r = run(RQ_BODY, &id, NULL, 1, &d);
  const StepResult *s = only_step(r);
  ck_assert_int_eq(s->outcome, OK);
  ck_assert_uint_eq(s->n_bodies, 1);
  ck_assert_int_eq(s->bodies[0]->side, POLICYEXEC__V1__SIDE__SIDE_REQUEST);
  ck_assert(!s->bodies[0]->replace);
  ck_assert(bin_eq(s->bodies[0]->prefix, "[sample-request-body]"));
  ck_assert_uint_eq(s->bodies[0]->suffix.len + s->bodies[0]->replacement.len, 0);
  ck_assert_uint_eq(s->n_headers, 0);
  pw_response_free(r);

  d.has_request_body = 0;
  d.request_body = bin("");
  d.status = 200;
  d.has_response_body = 1;
  d.response_body = bin("[sample-request-body]payload");
  id = 2;
  r = run(RS_BODY, &id, NULL, 1, &d);
  s = only_step(r);
  ck_assert_uint_eq(s->n_bodies, 1);
  ck_assert_int_eq(s->bodies[0]->side, POLICYEXEC__V1__SIDE__SIDE_RESPONSE);
  ck_assert(bin_eq(s->bodies[0]->prefix, "[sample-response-body]"));
  pw_response_free(r);
}
END_TEST

START_TEST(steps_of_a_phase_share_one_context) {
  start_worker(NULL);
  /* Two body steps: the second sees the first's result, edits are per step. */
  create_ok(1, "sample-python-request-body", "{}");
  create_ok(2, "test-swap-halves", "{}");
  HttpData d = basic_request();
  d.has_request_body = 1;
  d.request_body = bin("abcd");
  uint64_t ids[] = {1, 2};
  pw_response *r = run(RQ_BODY, ids, NULL, 2, &d);
  ck_assert_uint_eq(r->run->n_steps, 2);
  ck_assert(bin_eq(r->run->steps[0]->bodies[0]->prefix, "[sample-request-body]"));
  /* "[sample-request-body]abcd" is 25 bytes: swapped at 12. */
  ck_assert(r->run->steps[1]->bodies[0]->replace);
  ck_assert(bin_eq(r->run->steps[1]->bodies[0]->replacement, "est-body]abcd[sample-requ"));
  pw_response_free(r);
}
END_TEST

START_TEST(rewrites_report_only_net_changes) {
  start_worker(NULL);
  create_ok(1, "test-rewrite", "{}");
  Header hs[] = {
      {PROTOBUF_C_MESSAGE_INIT(&policyexec__v1__header__descriptor), bin("X-Remove"), bin("a")},
      {PROTOBUF_C_MESSAGE_INIT(&policyexec__v1__header__descriptor), bin("x-multi"), bin("one")},
      {PROTOBUF_C_MESSAGE_INIT(&policyexec__v1__header__descriptor), bin("x-same"), bin("s")},
  };
  Header *hp[] = {&hs[0], &hs[1], &hs[2]};
  Policyexec__V1__MetaEntry drop = {
      PROTOBUF_C_MESSAGE_INIT(&policyexec__v1__meta_entry__descriptor), bin("drop"), bin("me")};
  Policyexec__V1__MetaEntry *meta[] = {&drop};
  HttpData d = basic_request();
  d.request_headers = hp;
  d.n_request_headers = 3;
  d.metadata = meta;
  d.n_metadata = 1;
  uint64_t id = 1;
  pw_response *r = run(RQ_HEADERS, &id, NULL, 1, &d);
  const StepResult *s = only_step(r);
  ck_assert_int_eq(s->outcome, OK);
  ck_assert(bin_eq(s->method, "POST"));
  ck_assert(bin_eq(s->path, "/rewritten"));
  ck_assert_uint_eq(s->n_headers, 2); /* x-same set to its own value: no edit */
  int saw_remove = 0, saw_multi = 0;
  for (size_t i = 0; i < s->n_headers; i++) {
    const Policyexec__V1__HeaderEdit *e = s->headers[i];
    if (bin_eq(e->name, "X-Remove")) {
      saw_remove = 1;
      ck_assert_uint_eq(e->n_values, 0);
    } else if (bin_eq(e->name, "x-multi")) {
      saw_multi = 1;
      ck_assert_uint_eq(e->n_values, 2);
      ck_assert(bin_eq(e->values[0], "one"));
      ck_assert(bin_eq(e->values[1], "two"));
    }
  }
  ck_assert(saw_remove && saw_multi);
  ck_assert_uint_eq(s->n_metadata, 2);
  for (size_t i = 0; i < s->n_metadata; i++) {
    const Policyexec__V1__MetaEdit *m = s->metadata[i];
    if (bin_eq(m->key, "drop")) {
      ck_assert(m->remove);
    } else {
      ck_assert(bin_eq(m->key, "seen") && bin_eq(m->value, "yes") && !m->remove);
    }
  }
  pw_response_free(r);
}
END_TEST

/* ---- batches spanning phases ---- */

/* The one body edit of @p s (a failed check, not a crash, if there is none). */
static const Policyexec__V1__BodyEdit *only_body_edit(const StepResult *s) {
  ck_assert_uint_eq(s->n_bodies, 1);
  return s->bodies[0];
}

/* The one header edit of @p s, with one value. */
static const Policyexec__V1__HeaderEdit *only_header_edit(const StepResult *s) {
  ck_assert_uint_eq(s->n_headers, 1);
  ck_assert_uint_eq(s->headers[0]->n_values, 1);
  return s->headers[0];
}

START_TEST(a_batch_runs_each_step_in_its_own_phase) {
  start_worker(NULL);
  create_ok(1, "test-phases", "{}");
  create_ok(2, "sample-python-response-header", "{}");
  create_ok(3, "sample-python-request-header", "{}"); /* nothing in response phases */
  create_ok(4, "sample-python-response-body", "{}");
  create_ok(5, "test-phases", "{}");
  uint64_t ids[] = {1, 2, 3, 4, 5};
  static const int phases[] = {RS_HEADERS, RS_HEADERS, RS_HEADERS, RS_BODY, RS_BODY};
  HttpData d = buffered_response();
  pw_response *r = run_phases(phases, ids, NULL, 5, &d);
  ck_assert_uint_eq(r->run->n_steps, 5);
  for (size_t i = 0; i < 5; i++) {
    ck_assert_msg((int)r->run->steps[i]->outcome == OK, "step %zu: %s", i, r->run->steps[i]->error);
  }
  /* Headers steps: the body, although carried, is not theirs to see. */
  const StepResult *s = r->run->steps[0];
  const Policyexec__V1__HeaderEdit *h = only_header_edit(s);
  ck_assert_int_eq(h->side, POLICYEXEC__V1__SIDE__SIDE_RESPONSE);
  ck_assert(bin_eq(h->name, "x-phases"));
  ck_assert(bin_eq(h->values[0], "2:no-body"));
  ck_assert_int_eq(s->status, 203);
  ck_assert_uint_eq(s->n_bodies, 0);
  ck_assert(bin_eq(only_header_edit(r->run->steps[1])->values[0], "response-header"));
  s = r->run->steps[2];
  ck_assert_uint_eq(s->n_headers + s->n_bodies + s->n_metadata, 0);
  /* Body steps: each sees the body as the steps before it left it, and the
   * headers and status set in the headers phase. */
  ck_assert(bin_eq(only_body_edit(r->run->steps[3])->prefix, "[sample-response-body]"));
  s = r->run->steps[4];
  ck_assert_uint_eq(s->n_headers, 0);
  const Policyexec__V1__BodyEdit *b = only_body_edit(s);
  ck_assert(!b->replace);
  ck_assert_msg(bin_eq(b->suffix, "|3:2:no-body:response-header:203"), "%.*s", (int)b->suffix.len,
                (const char *)b->suffix.data);
  pw_response_free(r);
}
END_TEST

START_TEST(respond_or_a_closed_failure_stops_the_later_phases) {
  start_worker(NULL);
  create_ok(1, "test-respond", "{}");
  create_ok(2, "test-raise", "{}");
  create_ok(3, "sample-python-request-body", "{}");
  static const int phases[] = {RQ_HEADERS, RQ_BODY};
  HttpData d = basic_request();
  d.has_request_body = 1;
  d.request_body = bin("payload");

  uint64_t ids[] = {1, 3};
  pw_response *r = run_phases(phases, ids, NULL, 2, &d);
  ck_assert_uint_eq(r->run->n_steps, 1);
  ck_assert_ptr_nonnull(r->run->steps[0]->respond);
  pw_response_free(r);

  ids[0] = 2;
  protobuf_c_boolean fail_open[] = {0, 0};
  r = run_phases(phases, ids, fail_open, 2, &d);
  ck_assert_uint_eq(r->run->n_steps, 1);
  ck_assert_int_eq(r->run->steps[0]->outcome, FAILED);
  pw_response_free(r);

  /* Fail open: the body step runs after all. */
  fail_open[0] = 1;
  r = run_phases(phases, ids, fail_open, 2, &d);
  ck_assert_uint_eq(r->run->n_steps, 2);
  ck_assert_int_eq(r->run->steps[0]->outcome, FAILED);
  ck_assert_int_eq(r->run->steps[1]->outcome, OK);
  ck_assert(bin_eq(only_body_edit(r->run->steps[1])->prefix, "[sample-request-body]"));
  pw_response_free(r);
}
END_TEST

START_TEST(malformed_step_phases_get_an_error_and_the_worker_goes_on) {
  start_worker(NULL);
  create_ok(1, "sample-python-response-header", "{}");
  create_ok(2, "sample-python-response-body", "{}");
  uint64_t ids[] = {1, 2};
  HttpData d = buffered_response();
  static const struct {
    int phases[3];
    size_t n;
    const char *expect;
  } cases[] = {
      {{RS_HEADERS}, 1, "1 step_phases for 2 steps"},
      {{RS_HEADERS, RS_BODY, RS_BODY}, 3, "3 step_phases for 2 steps"},
      {{RS_HEADERS, 4}, 2, "unknown phase 4 in step_phases[1]"},
      {{-1, RS_BODY}, 2, "unknown phase -1 in step_phases[0]"},
      {{RS_BODY, RS_HEADERS}, 2, "step_phases decrease at step 1 (2 after 3)"},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    Policyexec__V1__RunPhase m = run_msg(RS_HEADERS, ids, NULL, 2, &d);
    Policyexec__V1__Phase buf[MAX_STEPS];
    set_step_phases(&m, buf, cases[i].phases, cases[i].n);
    pw_response *r = call_run(&m);
    ck_assert_msg(r->body_case == POLICYEXEC__V1__RESPONSE__BODY_ERROR, "case %zu ran", i);
    ck_assert_msg(strstr(r->error->message, cases[i].expect) != NULL, "case %zu: '%s'", i,
                  r->error->message);
    pw_response_free(r);
  }
  static const int good[] = {RS_HEADERS, RS_BODY};
  pw_response *r = run_phases(good, ids, NULL, 2, &d);
  ck_assert_uint_eq(r->run->n_steps, 2);
  ck_assert(bin_eq(only_body_edit(r->run->steps[1])->prefix, "[sample-response-body]"));
  pw_response_free(r);
}
END_TEST

/* ---- bytes ---- */

START_TEST(an_8_mib_body_comes_back_byte_for_byte) {
  start_worker(NULL);
  create_ok(1, "test-swap-halves", "{}");
  size_t n = 8u * 1024 * 1024;
  uint8_t *body = malloc(n);
  ck_assert_ptr_nonnull(body);
  uint64_t x = 88172645463325252u; /* xorshift: every byte value, not UTF-8, no period */
  for (size_t i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    body[i] = (uint8_t)x;
  }
  HttpData d = basic_request();
  d.has_request_body = 1;
  d.request_body = (ProtobufCBinaryData){n, body};
  uint64_t id = 1;
  pw_response *r = run(RQ_BODY, &id, NULL, 1, &d);
  const StepResult *s = only_step(r);
  ck_assert_int_eq(s->outcome, OK);
  ck_assert(s->bodies[0]->replace);
  ck_assert_uint_eq(s->bodies[0]->replacement.len, n);
  const uint8_t *got = s->bodies[0]->replacement.data;
  ck_assert(memcmp(got, body + n / 2, n / 2) == 0);
  ck_assert(memcmp(got + n / 2, body, n / 2) == 0);
  pw_response_free(r);
  free(body);
}
END_TEST

START_TEST(non_utf8_bytes_survive) {
  start_worker(NULL);
  create_ok(1, "test-echo-bytes", "{}");
  static const char raw[] = "\xff\xfe\x80 caf\xc3\xa9 \xe9t\xe9";
  Header in = {PROTOBUF_C_MESSAGE_INIT(&policyexec__v1__header__descriptor),
               bin("x-in"),
               {sizeof(raw) - 1, (uint8_t *)raw}};
  Header *hp[] = {&in};
  HttpData d = basic_request();
  d.request_headers = hp;
  d.n_request_headers = 1;
  uint64_t id = 1;
  pw_response *r = run(RQ_HEADERS, &id, NULL, 1, &d);
  const StepResult *s = only_step(r);
  ck_assert_msg((int)s->outcome == OK, "%s", s->error);
  ck_assert_uint_eq(s->n_headers, 1);
  ck_assert(bin_eq(s->headers[0]->name, "x-out"));
  ck_assert_uint_eq(s->headers[0]->values[0].len, sizeof(raw) - 1);
  ck_assert(memcmp(s->headers[0]->values[0].data, raw, sizeof(raw) - 1) == 0);
  pw_response_free(r);

  d.has_response_body = 1;
  d.response_body = (ProtobufCBinaryData){sizeof(raw) - 1, (uint8_t *)raw};
  r = run(RS_BODY, &id, NULL, 1, &d);
  s = only_step(r);
  ck_assert_uint_eq(s->n_bodies, 1);
  ck_assert_uint_eq(s->bodies[0]->suffix.len, 3);
  ck_assert(memcmp(s->bodies[0]->suffix.data, "\xff\xfe\x00", 3) == 0);
  pw_response_free(r);
}
END_TEST

/* ---- failures ---- */

START_TEST(an_exception_fails_the_step_and_discards_its_edits) {
  start_worker(NULL);
  create_ok(1, "test-raise", "{}");
  create_ok(2, "test-observe", "{}");
  uint64_t ids[] = {1, 2};
  protobuf_c_boolean fail_open[] = {1, 0};
  HttpData d = basic_request();
  pw_response *r = run(RQ_HEADERS, ids, fail_open, 2, &d);
  ck_assert_uint_eq(r->run->n_steps, 2);
  const StepResult *failed = r->run->steps[0];
  ck_assert_int_eq(failed->outcome, FAILED);
  ck_assert_msg(strncmp(failed->error, "test-raise@1.0.0: RuntimeError: boom", 36) == 0, "%s",
                failed->error);
  ck_assert_ptr_nonnull(strstr(failed->error, "test_policies.py")); /* traceback tail */
  ck_assert_uint_eq(failed->n_headers + failed->n_metadata, 0);
  ck_assert_uint_eq(failed->path.len, 0);
  /* fail open: the next step ran, on the context as it was before the failure */
  const StepResult *next = r->run->steps[1];
  ck_assert_int_eq(next->outcome, OK);
  ck_assert(bin_eq(next->headers[0]->name, "x-saw-partial"));
  ck_assert(bin_eq(next->headers[0]->values[0], "no"));
  pw_response_free(r);
}
END_TEST

START_TEST(a_closed_failure_stops_the_phase) {
  start_worker(NULL);
  create_ok(1, "test-raise", "{}");
  create_ok(2, "test-observe", "{}");
  uint64_t ids[] = {1, 2};
  protobuf_c_boolean fail_open[] = {0, 0};
  HttpData d = basic_request();
  pw_response *r = run(RQ_HEADERS, ids, fail_open, 2, &d);
  ck_assert_uint_eq(r->run->n_steps, 1);
  ck_assert_int_eq(r->run->steps[0]->outcome, FAILED);
  pw_response_free(r);
}
END_TEST

START_TEST(respond_stops_the_phase) {
  start_worker(NULL);
  create_ok(1, "sample-python-request-header", "{}");
  create_ok(2, "test-respond", "{\"status\": 429}");
  create_ok(3, "test-observe", "{}");
  uint64_t ids[] = {1, 2, 3};
  HttpData d = basic_request();
  pw_response *r = run(RQ_HEADERS, ids, NULL, 3, &d);
  ck_assert_uint_eq(r->run->n_steps, 2);
  ck_assert_int_eq(r->run->steps[0]->outcome, OK);
  const Policyexec__V1__ImmediateResponse *resp = r->run->steps[1]->respond;
  ck_assert_ptr_nonnull(resp);
  ck_assert_int_eq(resp->status, 429);
  ck_assert(bin_eq(resp->body, "denied\n"));
  ck_assert_uint_eq(resp->n_headers, 1);
  ck_assert(bin_eq(resp->headers[0]->name, "x-why"));
  ck_assert(bin_eq(resp->headers[0]->value, "test"));
  pw_response_free(r);
}
END_TEST

/* ---- the connection and the process ---- */

static char socket_path[108];

static void make_socket_path(void) {
  snprintf(socket_path, sizeof(socket_path), "/tmp/pw-test-%d.sock", (int)getpid());
}

/* Bad input on one connection closes it; the worker serves the others. */
static void bad_frame_closes_only_its_connection(const uint8_t *frame, size_t len) {
  make_socket_path();
  const char *args[] = {"--max-message", "1024", NULL};
  pw_spawn_options opt = {.socket_path = socket_path, .extra_args = args};
  ck_assert_int_eq(pw_worker_start(&worker, &opt), 0);
  int other = pw_connect(socket_path);
  ck_assert_int_ge(other, 0);
  pw_response *r = hello(other);
  pw_response_free(r);

  ck_assert_int_eq(write(worker.fd, frame, len), (ssize_t)len);
  ck_assert_int_eq(pw_receive(worker.fd, &rbuf, 5000, &r), 1); /* closed, no reply */

  r = hello(other);
  ck_assert_int_eq(r->body_case, POLICYEXEC__V1__RESPONSE__BODY_HELLO);
  pw_response_free(r);
  close(other);
  close(worker.fd);
  worker.fd = -1;
  /* The last connection closed: the worker leaves cleanly, socket removed. */
  int status;
  ck_assert_int_eq(pw_worker_wait(&worker, 5000, &status), 1);
  ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  ck_assert_int_ne(access(socket_path, F_OK), 0);
}

START_TEST(an_oversized_frame_closes_the_connection) {
  static const uint8_t frame[] = {0, 0, 0x08, 0x00, 1, 2, 3}; /* 2048 > 1024 */
  bad_frame_closes_only_its_connection(frame, sizeof(frame));
}
END_TEST

START_TEST(a_malformed_frame_closes_the_connection) {
  static const uint8_t frame[] = {0, 0, 0, 6, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
  bad_frame_closes_only_its_connection(frame, sizeof(frame));
}
END_TEST

START_TEST(os_exit_in_a_policy_ends_the_worker) {
  start_worker(NULL);
  create_ok(1, "test-exit", "{}");
  uint64_t id = 1;
  HttpData d = basic_request();
  Policyexec__V1__RunPhase rp = POLICYEXEC__V1__RUN_PHASE__INIT;
  rp.instance_ids = &id;
  rp.n_instance_ids = 1;
  rp.data = &d;
  pw_request req = POLICYEXEC__V1__REQUEST__INIT;
  req.id = 1;
  req.body_case = POLICYEXEC__V1__REQUEST__BODY_RUN;
  req.run = &rp;
  pw_response *r;
  ck_assert_int_eq(pw_call(worker.fd, &rbuf, &req, &r), 1); /* end of stream */
  int status;
  ck_assert_int_eq(pw_worker_wait(&worker, 5000, &status), 1);
  ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 3);
}
END_TEST

START_TEST(an_endless_policy_keeps_the_worker_busy_until_killed) {
  start_worker(NULL);
  create_ok(1, "test-loop", "{}");
  uint64_t id = 1;
  HttpData d = basic_request();
  Policyexec__V1__RunPhase rp = POLICYEXEC__V1__RUN_PHASE__INIT;
  rp.instance_ids = &id;
  rp.n_instance_ids = 1;
  rp.data = &d;
  pw_request req = POLICYEXEC__V1__REQUEST__INIT;
  req.id = 1;
  req.body_case = POLICYEXEC__V1__REQUEST__BODY_RUN;
  req.run = &rp;
  ck_assert_int_eq(pw_send(worker.fd, &req), 0);
  pw_response *r;
  ck_assert_int_eq(pw_receive(worker.fd, &rbuf, 300, &r), -2); /* no reply */
  int status;
  ck_assert_int_eq(pw_worker_wait(&worker, 0, &status), 0); /* still running */
  /* What the engine does on a timeout: SIGKILL. SIGTERM works as well. */
  ck_assert_int_eq(kill(worker.pid, SIGTERM), 0);
  ck_assert_int_eq(pw_worker_wait(&worker, 5000, &status), 1);
  ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}
END_TEST

START_TEST(sigterm_removes_the_socket) {
  make_socket_path();
  pw_spawn_options opt = {.socket_path = socket_path};
  ck_assert_int_eq(pw_worker_start(&worker, &opt), 0);
  pw_response *r = hello(worker.fd);
  pw_response_free(r);
  ck_assert_int_eq(access(socket_path, F_OK), 0);
  ck_assert_int_eq(kill(worker.pid, SIGTERM), 0);
  int status;
  ck_assert_int_eq(pw_worker_wait(&worker, 5000, &status), 1);
  ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  ck_assert_int_ne(access(socket_path, F_OK), 0);
}
END_TEST

START_TEST(the_worker_ignores_pyenv_and_python_variables) {
  pw_spawn_options opt = {.hostile_env = 1};
  ck_assert_int_eq(pw_worker_start(&worker, &opt), 0);
  pw_response *r = hello(worker.fd);
  ck_assert_int_eq(r->body_case, POLICYEXEC__V1__RESPONSE__BODY_HELLO);
  ck_assert_str_eq(r->hello->runtime, "CPython " PY_VERSION);
  ck_assert_uint_ge(r->hello->n_policies, 4);
  pw_response_free(r);
}
END_TEST

/* Workers share the engine's stderr: each log line must leave in one write,
 * or lines of workers failing at the same time interleave (they did). */
START_TEST(log_lines_of_concurrent_workers_stay_whole) {
  enum { N = 64 };
  int p[2];
  ck_assert_int_eq(pipe(p), 0);
  pid_t pids[N];
  char bad[N][16];
  for (int i = 0; i < N; i++) {
    snprintf(bad[i], sizeof bad[i], "x%d", i);
    pids[i] = fork();
    ck_assert_int_ge(pids[i], 0);
    if (pids[i] == 0) {
      dup2(p[1], 2);
      int devnull = open("/dev/null", O_WRONLY);
      dup2(devnull, 1);
      execl(PW_WORKER_PATH, PW_WORKER_PATH, "--max-message", bad[i], (char *)NULL);
      _exit(127);
    }
  }
  close(p[1]);
  static char out[256 * 1024];
  size_t len = 0;
  for (ssize_t n; (n = read(p[0], out + len, sizeof out - 1 - len)) > 0;)
    len += (size_t)n;
  close(p[0]);
  out[len] = '\0';
  for (int i = 0; i < N; i++) {
    int status;
    ck_assert_int_eq(waitpid(pids[i], &status, 0), pids[i]);
    ck_assert(WIFEXITED(status) && WEXITSTATUS(status) != 0);
    char line[64];
    snprintf(line, sizeof line, "policyexec-pyworker: bad option --max-message %.15s\n", bad[i]);
    ck_assert_msg(strstr(out, line), "not one whole line in the output: %s", line);
  }
}
END_TEST

START_TEST(the_worker_exits_with_its_parent) {
  /* A middle process starts the worker with a lifeline (the read end of a
   * pipe whose write end only the middle holds) and dies while we still
   * hold a connection: the lifeline's EOF must end the worker. */
  make_socket_path();
  int to_middle[2], from_middle[2];
  ck_assert_int_eq(pipe(to_middle), 0);
  ck_assert_int_eq(pipe(from_middle), 0);
  pid_t middle = fork();
  ck_assert_int_ge(middle, 0);
  if (middle == 0) {
    pw_worker w;
    int lifeline[2];
    char fdarg[16], go;
    if (pipe(lifeline) != 0 || fcntl(lifeline[1], F_SETFD, FD_CLOEXEC) != 0) {
      _exit(1);
    }
    snprintf(fdarg, sizeof(fdarg), "%d", lifeline[0]);
    const char *extra[] = {"--parent-fd", fdarg, NULL};
    pw_spawn_options opt = {.socket_path = socket_path, .extra_args = extra};
    if (pw_worker_start(&w, &opt) != 0 ||
        write(from_middle[1], &w.pid, sizeof(w.pid)) != sizeof(w.pid) ||
        read(to_middle[0], &go, 1) != 1) {
      _exit(1);
    }
    _exit(0);
  }
  pid_t wpid = 0;
  ck_assert_int_eq(read(from_middle[0], &wpid, sizeof(wpid)), sizeof(wpid));
  worker.fd = pw_connect(socket_path);
  ck_assert_int_ge(worker.fd, 0);
  pw_response *r = hello(worker.fd);
  pw_response_free(r);
  ck_assert_int_eq(write(to_middle[1], "x", 1), 1);
  ck_assert_int_eq(waitpid(middle, NULL, 0), middle);
  /* The worker's end of our connection closes when it dies. */
  ck_assert_int_eq(pw_receive(worker.fd, &rbuf, 5000, &r), 1);
  int gone = 0;
  for (int i = 0; i < 500 && !gone; i++) {
    /* The orphan is reaped by init or a subreaper: gone, or a zombie until then. */
    char path[64], state = 0;
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)wpid);
    FILE *f = fopen(path, "r");
    if (f == NULL) {
      gone = 1;
      break;
    }
    if (fscanf(f, "%*d (%*[^)]) %c", &state) == 1 && (state == 'Z' || state == 'X')) {
      gone = 1;
    }
    fclose(f);
    usleep(10000);
  }
  ck_assert_msg(gone, "worker %d outlived its parent", (int)wpid);
  ck_assert_int_ne(access(socket_path, F_OK), 0); /* the worker removed its socket */
}
END_TEST

static Suite *pyworker_suite(void) {
  Suite *s = suite_create("pyworker");
  TCase *t = tcase_create("protocol");
  tcase_add_checked_fixture(t, NULL, teardown);
  tcase_set_timeout(t, 30);
  tcase_add_test(t, handshake_lists_the_samples);
  tcase_add_test(t, handshake_refuses_another_protocol_version);
  tcase_add_test(t, handshake_reports_a_broken_module_path);
  tcase_add_test(t, create_refuses_bad_params_with_a_message);
  tcase_add_test(t, destroy_ping_and_unknown_instances);
  tcase_add_test(t, sample_header_policies_set_the_phase_header);
  tcase_add_test(t, sample_body_policies_send_a_prefix_edit);
  tcase_add_test(t, steps_of_a_phase_share_one_context);
  tcase_add_test(t, rewrites_report_only_net_changes);
  tcase_add_test(t, a_batch_runs_each_step_in_its_own_phase);
  tcase_add_test(t, respond_or_a_closed_failure_stops_the_later_phases);
  tcase_add_test(t, malformed_step_phases_get_an_error_and_the_worker_goes_on);
  tcase_add_test(t, an_8_mib_body_comes_back_byte_for_byte);
  tcase_add_test(t, non_utf8_bytes_survive);
  tcase_add_test(t, an_exception_fails_the_step_and_discards_its_edits);
  tcase_add_test(t, a_closed_failure_stops_the_phase);
  tcase_add_test(t, respond_stops_the_phase);
  tcase_add_test(t, an_oversized_frame_closes_the_connection);
  tcase_add_test(t, a_malformed_frame_closes_the_connection);
  tcase_add_test(t, os_exit_in_a_policy_ends_the_worker);
  tcase_add_test(t, an_endless_policy_keeps_the_worker_busy_until_killed);
  tcase_add_test(t, sigterm_removes_the_socket);
  tcase_add_test(t, the_worker_ignores_pyenv_and_python_variables);
  tcase_add_test(t, log_lines_of_concurrent_workers_stay_whole);
  tcase_add_test(t, the_worker_exits_with_its_parent);
  suite_add_tcase(s, t);
  return s;
}

int main(void) {
  SRunner *sr = srunner_create(pyworker_suite());
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
