#include "px_server.h"

#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/time.h>
#include <stdio.h>
#include <stdlib.h>
#include <poll.h>
#include <string.h>

#include "pw_conn.h"

#define PX_LOG(fmt, ...) fprintf(stderr, "policyexec-executor: " fmt "\n", ##__VA_ARGS__)

/* Calls requested from the server at once: more than one, so that calls
 * arriving while Python runs wait in gRPC, not in the client. The first
 * slots ask for the executor's method and the health check as registered
 * methods, whose request gRPC reads before it hands the call over (one
 * completion per call instead of two); the last take any other method
 * (answered UNIMPLEMENTED). */
#define SLOTS 22
#define CALL_SLOTS 16
#define CHECK_SLOTS 4

enum { M_ANY, M_CALL, M_CHECK };

static const char *const method_names[] = {NULL, "/policyexec.v1.Executor/Call",
                                           "/grpc.health.v1.Health/Check"};

enum { SLOT_NEW, SLOT_READ, SLOT_SENT };

typedef struct slot {
  int state;
  grpc_call *call;
  grpc_call_details details;
  grpc_metadata_array md;
  grpc_byte_buffer *recv;
  grpc_byte_buffer *send;
  int cancelled;
  int inited; /* details and md hold memory */
  int method; /* M_CALL, M_CHECK (registered: request pre-read) or M_ANY */
  gpr_timespec deadline;
} slot;

typedef struct server {
  grpc_server *srv;
  grpc_completion_queue *cq;
  pw_handler *h;
  pw_conn scratch;  /* the reply is built in its out buffer (no fd) */
  void *methods[3]; /* grpc_server_register_method's handles, by M_* */
  int shutting;
  slot slots[SLOTS];
} server;

static int shutdown_tag;

static void request(server *s, slot *sl) {
  size_t i = (size_t)(sl - s->slots);
  int method = i < CALL_SLOTS ? M_CALL : i < CALL_SLOTS + CHECK_SLOTS ? M_CHECK : M_ANY;
  memset(sl, 0, sizeof *sl);
  grpc_call_details_init(&sl->details);
  grpc_metadata_array_init(&sl->md);
  sl->inited = 1;
  sl->method = method;
  sl->state = SLOT_NEW;
  grpc_call_error e =
      method
          ? grpc_server_request_registered_call(s->srv, s->methods[method], &sl->call,
                                                &sl->deadline, &sl->md, &sl->recv, s->cq, s->cq, sl)
          : grpc_server_request_call(s->srv, &sl->call, &sl->details, &sl->md, s->cq, s->cq, sl);
  if (e != GRPC_CALL_OK)
    PX_LOG("cannot request a call");
}

static void slot_clear(slot *sl) {
  if (!sl->inited)
    return;
  sl->inited = 0;
  if (sl->recv)
    grpc_byte_buffer_destroy(sl->recv);
  if (sl->send)
    grpc_byte_buffer_destroy(sl->send);
  grpc_call_details_destroy(&sl->details);
  grpc_metadata_array_destroy(&sl->md);
  if (sl->call)
    grpc_call_unref(sl->call);
  sl->recv = sl->send = NULL;
  sl->call = NULL;
}

static int method_is(const slot *sl, const char *name) {
  if (sl->method)
    return !strcmp(name, method_names[sl->method]);
  return grpc_slice_str_cmp(sl->details.method, name) == 0;
}

/* pw_async.c's reply callback: the batch of the call being answered has
 * ended; its reply goes into the scratch connection. */
static int reply_ended(void *ctx, uint64_t conn, uint64_t id, PyObject *result) {
  server *s = ctx;
  if (conn != s->scratch.serial)
    return 0;
  return pw_reply_ended(s->h, &s->scratch, id, result);
}

/* A RunPhase whose step is a coroutine left its batch pending on the
 * worker's asyncio loop. A unary call has one answer, and this executor
 * serves one call at a time, so it runs the loop until the batch ends, or
 * until the call's deadline (then the batch is cancelled). 0 when the
 * reply is queued in the scratch connection, -1 past the deadline. */
static int await_coroutine_batch(server *s, slot *sl) {
  pw_async *a = &s->h->async;
  gpr_timespec end = gpr_convert_clock_type(sl->deadline, GPR_CLOCK_MONOTONIC);
  while (s->scratch.out.len == 0) {
    gpr_timespec now = gpr_now(GPR_CLOCK_MONOTONIC);
    if (gpr_time_cmp(now, end) >= 0) {
      pw_async_conn_closed(a, s->scratch.serial); /* cancels the batch */
      return -1;
    }
    long long left_us = gpr_time_to_millis(gpr_time_sub(end, now)) * 1000;
    long long timeout_us = -1;
    int afd = pw_async_poll_setup(a, &timeout_us);
    if (timeout_us < 0 || timeout_us > left_us)
      timeout_us = left_us;
    struct pollfd p = {.fd = afd, .events = POLLIN};
    int ready = poll(&p, afd >= 0 ? 1 : 0, (int)((timeout_us + 999) / 1000)) > 0;
    if (pw_async_pump(a, ready, reply_ended, s) != 0)
      return -1;
  }
  return 0;
}

/* The reply to one message: the service's Response, or the health check's
 * HealthCheckResponse{status: SERVING (1)} (a two-byte message). Returns a
 * gRPC status. */
static grpc_status_code answer(server *s, slot *sl, const char **why) {
  if (method_is(sl, "/grpc.health.v1.Health/Check")) {
    static const uint8_t serving[] = {0x08, 0x01};
    grpc_slice out = grpc_slice_from_static_buffer(serving, sizeof serving);
    sl->send = grpc_raw_byte_buffer_create(&out, 1);
    return GRPC_STATUS_OK;
  }
  if (!method_is(sl, "/policyexec.v1.Executor/Call")) {
    *why = "no such method";
    return GRPC_STATUS_UNIMPLEMENTED;
  }
  if (!sl->recv) {
    *why = "no request message";
    return GRPC_STATUS_INVALID_ARGUMENT;
  }
  /* A call that waited here past its deadline has been given up by its
   * engine: running it would only delay the calls behind it. (gRPC itself
   * drops a call whose cancellation it read before handing it over; this
   * catches one handed over, then kept waiting behind a slow step.) */
  if (sl->method == M_CALL &&
      gpr_time_cmp(gpr_now(GPR_CLOCK_MONOTONIC),
                   gpr_convert_clock_type(sl->deadline, GPR_CLOCK_MONOTONIC)) > 0) {
    *why = "deadline passed before the executor could start the call";
    return GRPC_STATUS_DEADLINE_EXCEEDED;
  }
  grpc_byte_buffer_reader rd;
  grpc_byte_buffer_reader_init(&rd, sl->recv);
  grpc_slice in = grpc_byte_buffer_reader_readall(&rd);
  grpc_byte_buffer_reader_destroy(&rd);
  pw_conn *c = &s->scratch;
  c->out.len = c->out_off = 0;
  int rc = pw_handle_request(s->h, c, GRPC_SLICE_START_PTR(in), GRPC_SLICE_LENGTH(in));
  grpc_slice_unref(in);
  if (rc != 0) {
    *why = "the request does not parse";
    return GRPC_STATUS_INVALID_ARGUMENT;
  }
  if (c->out.len == 0 && await_coroutine_batch(s, sl) != 0) {
    *why = "a coroutine step did not end before the call's deadline";
    return GRPC_STATUS_DEADLINE_EXCEEDED;
  }
  /* The worker's reply is framed for a socket: gRPC frames itself. A
   * unary call has one answer, the last frame (a worker may queue progress
   * reports before it when a request asks for them). */
  size_t last = 0;
  for (size_t off = 0; off + PE__FRAME_HEADER <= c->out.len;
       off += PE__FRAME_HEADER + pe__frame_len_get(c->out.data + off))
    last = off;
  size_t len = pe__frame_len_get(c->out.data + last);
  grpc_slice out =
      grpc_slice_from_copied_buffer((const char *)c->out.data + last + PE__FRAME_HEADER, len);
  sl->send = grpc_raw_byte_buffer_create(&out, 1);
  grpc_slice_unref(out);
  return GRPC_STATUS_OK;
}

static void on_read(server *s, slot *sl) {
  const char *why = NULL;
  grpc_status_code st = answer(s, sl, &why);
  grpc_op ops[4];
  memset(ops, 0, sizeof ops);
  size_t n = 0;
  ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
  if (sl->send) {
    ops[n].op = GRPC_OP_SEND_MESSAGE;
    ops[n++].data.send_message.send_message = sl->send;
  }
  grpc_slice detail = grpc_slice_from_static_string(why ? why : "");
  ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
  ops[n].data.send_status_from_server.status = st;
  ops[n++].data.send_status_from_server.status_details = why ? &detail : NULL;
  ops[n].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
  ops[n++].data.recv_close_on_server.cancelled = &sl->cancelled;
  sl->state = SLOT_SENT;
  if (grpc_call_start_batch(sl->call, ops, n, sl, NULL) != GRPC_CALL_OK) {
    PX_LOG("cannot answer a call");
    slot_clear(sl);
    if (!s->shutting)
      request(s, sl);
  }
}

static void on_event(server *s, slot *sl, int ok) {
  switch (sl->state) {
  case SLOT_NEW:
    if (!ok) { /* the server is shutting down */
      slot_clear(sl);
      return;
    }
    if (sl->method) { /* the request is read already */
      on_read(s, sl);
      return;
    }
    sl->state = SLOT_READ;
    grpc_op op;
    memset(&op, 0, sizeof op);
    op.op = GRPC_OP_RECV_MESSAGE;
    op.data.recv_message.recv_message = &sl->recv;
    if (grpc_call_start_batch(sl->call, &op, 1, sl, NULL) != GRPC_CALL_OK) {
      slot_clear(sl);
      if (!s->shutting)
        request(s, sl);
    }
    return;
  case SLOT_READ:
    on_read(s, sl);
    return;
  default: /* SLOT_SENT */
    slot_clear(sl);
    if (!s->shutting)
      request(s, sl);
  }
}

static char *read_pem(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f)
    return NULL;
  char *buf = NULL;
  long size;
  if (fseek(f, 0, SEEK_END) == 0 && (size = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0 &&
      (buf = malloc((size_t)size + 1)) && fread(buf, 1, (size_t)size, f) == (size_t)size)
    buf[size] = '\0';
  else {
    free(buf);
    buf = NULL;
  }
  fclose(f);
  return buf;
}

static grpc_server_credentials *credentials(const px_config *cfg) {
  if (!cfg->tls_cert)
    return grpc_insecure_server_credentials_create();
  char *cert = read_pem(cfg->tls_cert), *key = read_pem(cfg->tls_key);
  char *ca = cfg->tls_client_ca ? read_pem(cfg->tls_client_ca) : NULL;
  grpc_server_credentials *creds = NULL;
  if (cert && key && (ca || !cfg->tls_client_ca)) {
    grpc_ssl_pem_key_cert_pair pair = {key, cert};
    creds = grpc_ssl_server_credentials_create_ex(
        ca, &pair, 1,
        ca ? GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY
           : GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE,
        NULL);
  } else {
    PX_LOG("cannot read the TLS certificate, key or client CA");
  }
  free(cert);
  free(key);
  free(ca);
  return creds;
}

static int start(server *s, const px_config *cfg) {
  int max = cfg->max_message > 0x7fffffff ? 0x7fffffff : (int)cfg->max_message;
  grpc_arg args[4];
  memset(args, 0, sizeof args);
  size_t n = 0;
  args[n].key = (char *)GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH;
  args[n++].value.integer = max;
  args[n].key = (char *)GRPC_ARG_MAX_SEND_MESSAGE_LENGTH;
  args[n++].value.integer = max;
  if (cfg->max_connection_age_ms) {
    /* Clients reconnect (and re-resolve their target) now and then; a
     * call under way gets the drain time to finish. */
    args[n].key = (char *)GRPC_ARG_MAX_CONNECTION_AGE_MS;
    args[n++].value.integer = (int)cfg->max_connection_age_ms;
    args[n].key = (char *)GRPC_ARG_MAX_CONNECTION_AGE_GRACE_MS;
    args[n++].value.integer = (int)cfg->drain_ms;
  }
  for (size_t i = 0; i < n; i++)
    args[i].type = GRPC_ARG_INTEGER;
  grpc_channel_args cargs = {n, args};
  s->cq = grpc_completion_queue_create_for_next(NULL);
  s->srv = grpc_server_create(&cargs, NULL);
  grpc_server_register_completion_queue(s->srv, s->cq, NULL);
  for (int m = M_CALL; m <= M_CHECK; m++)
    s->methods[m] = grpc_server_register_method(s->srv, method_names[m], NULL,
                                                GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER, 0);
  for (size_t i = 0; i < cfg->n_listen; i++) {
    grpc_server_credentials *creds = credentials(cfg);
    int port = creds ? grpc_server_add_http2_port(s->srv, cfg->listen[i], creds) : 0;
    if (creds)
      grpc_server_credentials_release(creds);
    if (port == 0) {
      PX_LOG("cannot listen at %s", cfg->listen[i]);
      return -1;
    }
    /* The port actually bound (":0" asks for any): tests read this line. */
    printf("listening %s port %d\n", cfg->listen[i], port);
  }
  fflush(stdout);
  grpc_server_start(s->srv);
  for (size_t i = 0; i < SLOTS; i++)
    request(s, &s->slots[i]);
  return 0;
}

static gpr_timespec after_ms(long ms) {
  return gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC), gpr_time_from_millis(ms, GPR_TIMESPAN));
}

int px_serve(const px_config *cfg, pw_handler *h, volatile sig_atomic_t *stop) {
  grpc_init();
  server *s = calloc(1, sizeof *s);
  int rc = -1;
  if (!s)
    goto out;
  s->h = h;
  pw_conn_init(&s->scratch, -1);
  if (start(s, cfg) != 0)
    goto out;
  rc = 0;
  gpr_timespec drain_deadline = gpr_inf_future(GPR_CLOCK_MONOTONIC);
  int cancelled = 0;
  for (;;) {
    /* A short wait, to notice SIGTERM: the handler only sets *stop. */
    grpc_event ev = grpc_completion_queue_next(s->cq, after_ms(100), NULL);
    if (*stop && !s->shutting) {
      PX_LOG("draining: no new calls, finishing those in flight");
      s->shutting = 1;
      grpc_server_shutdown_and_notify(s->srv, s->cq, &shutdown_tag);
      drain_deadline = after_ms((long)cfg->drain_ms);
    }
    if (s->shutting && !cancelled &&
        gpr_time_cmp(gpr_now(GPR_CLOCK_MONOTONIC), drain_deadline) > 0) {
      PX_LOG("drain time over: cancelling the calls left");
      grpc_server_cancel_all_calls(s->srv);
      cancelled = 1;
    }
    if (ev.type == GRPC_QUEUE_TIMEOUT)
      continue;
    if (ev.type != GRPC_OP_COMPLETE)
      break;
    if (ev.tag == &shutdown_tag)
      break;
    on_event(s, ev.tag, ev.success);
  }
out:
  if (s && s->srv) {
    grpc_server_destroy(s->srv);
    for (size_t i = 0; i < SLOTS; i++)
      slot_clear(&s->slots[i]);
  }
  if (s && s->cq) {
    grpc_completion_queue_shutdown(s->cq);
    while (grpc_completion_queue_next(s->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type !=
           GRPC_QUEUE_SHUTDOWN) {
    }
    grpc_completion_queue_destroy(s->cq);
  }
  if (s)
    pw_conn_close(&s->scratch);
  free(s);
  grpc_shutdown();
  return rc;
}
