/* The worker's side of coroutine steps, on the wire: replies in completion
 * order on one connection, Cancel, the async phases of CreateReply, and a
 * connection closed while its batches await. */
#include <check.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "pw_client.h"

typedef Policyexec__V1__HttpData HttpData;

static pw_worker worker = {0, -1};
static pw_buf rbuf;
static uint64_t next_id = 1;

static void setup(void) {
  pw_spawn_options opt = {0};
  ck_assert_int_eq(pw_worker_start(&worker, &opt), 0);
  pw_response *r;
  ck_assert_int_eq(pw_hello(worker.fd, &rbuf, next_id++, &r), 0);
  pw_response_free(r);
}

static void teardown(void) {
  pw_worker_kill(&worker);
  pw_buf_free(&rbuf);
}

/* Creates name@1.0.0; returns its CreateReply.async_phases. */
static uint32_t create(uint64_t instance, const char *name, const char *params) {
  pw_response *r;
  ck_assert_int_eq(pw_create(worker.fd, &rbuf, next_id++, instance, name, params, &r), 0);
  ck_assert_int_eq(r->body_case, POLICYEXEC__V1__RESPONSE__BODY_CREATE);
  ck_assert_msg(r->create->ok, "create %s: %s", name, r->create->error);
  uint32_t phases = r->create->async_phases;
  pw_response_free(r);
  return phases;
}

/* Sends a RunPhase of one step (request headers); returns its id. */
static uint64_t send_run(uint64_t *instance) {
  HttpData d = POLICYEXEC__V1__HTTP_DATA__INIT;
  d.method = (ProtobufCBinaryData){3, (uint8_t *)"GET"};
  d.path = (ProtobufCBinaryData){1, (uint8_t *)"/"};
  Policyexec__V1__RunPhase run = POLICYEXEC__V1__RUN_PHASE__INIT;
  run.instance_ids = instance;
  run.n_instance_ids = 1;
  run.data = &d;
  pw_request req = POLICYEXEC__V1__REQUEST__INIT;
  req.id = next_id++;
  req.body_case = POLICYEXEC__V1__REQUEST__BODY_RUN;
  req.run = &run;
  ck_assert_int_eq(pw_send(worker.fd, &req), 0);
  return req.id;
}

static pw_response *receive(int timeout_ms) {
  pw_response *r = NULL;
  ck_assert_int_eq(pw_receive(worker.fd, &rbuf, timeout_ms, &r), 0);
  ck_assert_int_eq(r->body_case, POLICYEXEC__V1__RESPONSE__BODY_RUN);
  ck_assert_uint_eq(r->run->n_steps, 1);
  return r;
}

static long now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

START_TEST(async_phases_are_reported) {
  ck_assert_uint_eq(create(1, "sample-python-io-wait", "{\"ms\": 1}"), 1u << 0);
  ck_assert_uint_eq(create(2, "sample-python-request-header", "{}"), 0);
}
END_TEST

/* A slow coroutine batch sent first is answered after a quick synchronous
 * one and after a quick coroutine one sent later on the same connection. */
START_TEST(replies_go_out_in_completion_order) {
  uint64_t slow = 1, quick_async = 2, sync = 3;
  create(slow, "sample-python-io-wait", "{\"ms\": 400}");
  create(quick_async, "sample-python-io-wait", "{\"ms\": 20}");
  create(sync, "sample-python-request-header", "{}");
  long t0 = now_ms();
  uint64_t id_slow = send_run(&slow);
  uint64_t id_quick = send_run(&quick_async);
  uint64_t id_sync = send_run(&sync);
  pw_response *a = receive(5000), *b = receive(5000), *c = receive(5000);
  ck_assert_uint_eq(a->id, id_sync);
  ck_assert_uint_eq(b->id, id_quick);
  ck_assert_uint_eq(c->id, id_slow);
  ck_assert_int_ge(now_ms() - t0, 390);
  ck_assert_uint_eq(c->run->steps[0]->n_headers, 1);
  pw_response_free(a);
  pw_response_free(b);
  pw_response_free(c);
}
END_TEST

/* 300 batches awaiting 100 ms each are all in flight at once. */
START_TEST(many_batches_wait_together) {
  uint64_t inst = 1;
  create(inst, "sample-python-io-wait", "{\"ms\": 100}");
  long t0 = now_ms();
  for (int i = 0; i < 300; i++)
    send_run(&inst);
  for (int i = 0; i < 300; i++)
    pw_response_free(receive(5000));
  long ms = now_ms() - t0;
  ck_assert_msg(ms < 3000, "300 waits of 100 ms took %ld ms", ms);
}
END_TEST

/* Cancel ends an awaiting batch with a failed step (its reply still comes);
 * a Cancel of nothing pending is ignored; the worker goes on. */
START_TEST(cancel_ends_a_waiting_batch) {
  uint64_t inst = 1, sync = 2;
  create(inst, "sample-python-io-wait", "{\"ms\": 3600000}");
  create(sync, "sample-python-request-header", "{}");
  uint64_t id = send_run(&inst);
  Policyexec__V1__Cancel cancel = POLICYEXEC__V1__CANCEL__INIT;
  pw_request req = POLICYEXEC__V1__REQUEST__INIT;
  req.id = next_id++;
  req.body_case = POLICYEXEC__V1__REQUEST__BODY_CANCEL;
  req.cancel = &cancel;
  cancel.request_id = 987654; /* nothing: ignored, no reply */
  ck_assert_int_eq(pw_send(worker.fd, &req), 0);
  cancel.request_id = id;
  req.id = next_id++;
  ck_assert_int_eq(pw_send(worker.fd, &req), 0);
  pw_response *r = receive(3000);
  ck_assert_uint_eq(r->id, id);
  ck_assert_int_eq(r->run->steps[0]->outcome, POLICYEXEC__V1__STEP_RESULT__OUTCOME__OUTCOME_FAILED);
  ck_assert_ptr_nonnull(strstr(r->run->steps[0]->error, "cancelled"));
  pw_response_free(r);
  uint64_t next = send_run(&sync);
  r = receive(3000);
  ck_assert_uint_eq(r->id, next);
  pw_response_free(r);
}
END_TEST

/* A connection closed with batches awaiting: they are cancelled, the worker
 * serves a new connection. */
START_TEST(closing_a_connection_cancels_its_batches) {
  char path[64];
  snprintf(path, sizeof path, "/tmp/pe-pw-async-%d.sock", (int)getpid());
  const char *args[] = {"--socket", path, NULL};
  pw_spawn_options opt = {.extra_args = args};
  pw_worker second = {0, -1};
  ck_assert_int_eq(pw_worker_start(&second, &opt), 0);
  int fd = pw_connect(path);
  ck_assert_int_ge(fd, 0);
  pw_response *r;
  ck_assert_int_eq(pw_hello(fd, &rbuf, 1, &r), 0);
  pw_response_free(r);
  ck_assert_int_eq(pw_create(fd, &rbuf, 2, 7, "sample-python-io-wait", "{\"ms\": 3600000}", &r), 0);
  pw_response_free(r);
  int saved = worker.fd;
  worker.fd = fd;
  uint64_t inst = 7;
  for (int i = 0; i < 5; i++)
    send_run(&inst);
  worker.fd = saved;
  close(fd);
  fd = pw_connect(path);
  ck_assert_int_ge(fd, 0);
  ck_assert_int_eq(pw_hello(fd, &rbuf, 1, &r), 0);
  ck_assert_int_eq(r->body_case, POLICYEXEC__V1__RESPONSE__BODY_HELLO);
  pw_response_free(r);
  close(fd);
  pw_worker_kill(&second);
}
END_TEST

int main(void) {
  Suite *s = suite_create("pyworker_async");
  TCase *t = tcase_create("async");
  tcase_set_timeout(t, 30);
  tcase_add_checked_fixture(t, setup, teardown);
  tcase_add_test(t, async_phases_are_reported);
  tcase_add_test(t, replies_go_out_in_completion_order);
  tcase_add_test(t, many_batches_wait_together);
  tcase_add_test(t, cancel_ends_a_waiting_batch);
  tcase_add_test(t, closing_a_connection_cancels_its_batches);
  suite_add_tcase(s, t);
  SRunner *sr = srunner_create(s);
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? 1 : 0;
}
