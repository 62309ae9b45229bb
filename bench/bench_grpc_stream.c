/*
 * bench_grpc_stream: what one message costs on a bidirectional gRPC stream
 * against a unary call, on this machine, with gRPC's C core on both sides
 * and nothing else (no Python, no codec): the data behind the choice
 * between one unary call per batch (what the engine does) and one stream
 * per dispatcher and executor connection (doc/DECISIONS.md).
 *
 *   bench_grpc_stream [--iterations N] [--size BYTES] [--cpu C] [--server-cpu C]
 *
 * A child process serves two methods on a loopback port: a unary echo
 * answered at once (like policyexec-executor's Health/Check) and a
 * bidirectional echo (one reply per message). The parent measures, on one
 * channel, N unary calls made as the engine's blocking calls are (one call,
 * one six-op batch, a pluck queue), then N messages on one stream (a send
 * and a receive per message on the same queue), and prints p50, p99 and CPU
 * time per round trip (both processes). Each thread is pinned to --cpu,
 * the server to --server-cpu (default: both on the first CPU, as
 * bench_hooks places host thread 0 and the executor).
 */
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/time.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define UNARY "/bench.Echo/Unary"
#define STREAM "/bench.Echo/Stream"

static uint64_t now_ns(clockid_t c) {
  struct timespec ts;
  clock_gettime(c, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void pin(int cpu) {
  if (cpu < 0)
    return;
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  sched_setaffinity(0, sizeof set, &set);
}

static gpr_timespec forever(void) {
  return gpr_inf_future(GPR_CLOCK_REALTIME);
}

static grpc_byte_buffer *buffer(const char *data, size_t len) {
  grpc_slice s = grpc_slice_from_copied_buffer(data, len);
  grpc_byte_buffer *b = grpc_raw_byte_buffer_create(&s, 1);
  grpc_slice_unref(s);
  return b;
}

/* ---- the server (child process) ---- */

typedef struct sslot {
  grpc_call *call;
  grpc_call_details details;
  grpc_metadata_array md;
  grpc_byte_buffer *recv, *send;
  int cancelled, stream, closing;
} sslot;

/* Tags: the slot's address for a new call, +1 for a stream's receive, +2
 * for a send or the unary's answer (the slot is 8-aligned). */
static void *tag(sslot *s, int kind) {
  return (char *)s + kind;
}

static void serve_request(grpc_server *srv, grpc_completion_queue *cq, sslot *s) {
  memset(s, 0, sizeof *s);
  grpc_call_details_init(&s->details);
  grpc_metadata_array_init(&s->md);
  grpc_server_request_call(srv, &s->call, &s->details, &s->md, cq, cq, tag(s, 0));
}

static void serve_recv(sslot *s) {
  grpc_op op;
  memset(&op, 0, sizeof op);
  op.op = GRPC_OP_RECV_MESSAGE;
  op.data.recv_message.recv_message = &s->recv;
  grpc_call_start_batch(s->call, &op, 1, tag(s, 1), NULL);
}

static void serve_end(sslot *s, const char *data, size_t len) {
  grpc_op ops[4];
  memset(ops, 0, sizeof ops);
  size_t n = 0;
  if (!s->stream)
    ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
  if (data) {
    s->send = buffer(data, len);
    ops[n].op = GRPC_OP_SEND_MESSAGE;
    ops[n++].data.send_message.send_message = s->send;
  }
  ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
  ops[n++].data.send_status_from_server.status = GRPC_STATUS_OK;
  ops[n].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
  ops[n++].data.recv_close_on_server.cancelled = &s->cancelled;
  s->closing = 1;
  grpc_call_start_batch(s->call, ops, n, tag(s, 2), NULL);
}

static void serve_free(sslot *s) {
  if (s->recv)
    grpc_byte_buffer_destroy(s->recv);
  if (s->send)
    grpc_byte_buffer_destroy(s->send);
  grpc_call_details_destroy(&s->details);
  grpc_metadata_array_destroy(&s->md);
  grpc_call_unref(s->call);
}

/* The echo: the request's bytes back. */
static grpc_byte_buffer *echo_of(grpc_byte_buffer *in) {
  grpc_byte_buffer_reader rd;
  grpc_byte_buffer_reader_init(&rd, in);
  grpc_slice all = grpc_byte_buffer_reader_readall(&rd);
  grpc_byte_buffer_reader_destroy(&rd);
  grpc_byte_buffer *out = grpc_raw_byte_buffer_create(&all, 1);
  grpc_slice_unref(all);
  return out;
}

static void on_server_event(grpc_server *srv, grpc_completion_queue *cq, sslot *slots,
                            grpc_event ev) {
  sslot *s = (sslot *)((uintptr_t)ev.tag & ~(uintptr_t)7);
  int kind = (int)((uintptr_t)ev.tag & 7);
  if (kind == 0) { /* a new call: read its (first) message */
    s->stream = grpc_slice_str_cmp(s->details.method, STREAM) == 0;
    if (s->stream) {
      grpc_op op;
      memset(&op, 0, sizeof op);
      op.op = GRPC_OP_SEND_INITIAL_METADATA;
      grpc_call_start_batch(s->call, &op, 1, tag(s, 4), NULL);
    }
    serve_recv(s);
    return;
  }
  if (kind == 4) /* the stream's initial metadata went out */
    return;
  if (kind == 1) { /* a message, or the client closed its side */
    if (!s->recv) {
      serve_end(s, NULL, 0);
      return;
    }
    grpc_byte_buffer *reply = echo_of(s->recv);
    grpc_byte_buffer_destroy(s->recv);
    s->recv = NULL;
    if (!s->stream) {
      grpc_op ops[4];
      memset(ops, 0, sizeof ops);
      ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
      ops[1].op = GRPC_OP_SEND_MESSAGE;
      ops[1].data.send_message.send_message = s->send = reply;
      ops[2].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
      ops[2].data.send_status_from_server.status = GRPC_STATUS_OK;
      ops[3].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
      ops[3].data.recv_close_on_server.cancelled = &s->cancelled;
      s->closing = 1;
      grpc_call_start_batch(s->call, ops, 4, tag(s, 2), NULL);
      return;
    }
    /* The reply, and the next message's receive, both in flight. */
    if (s->send)
      grpc_byte_buffer_destroy(s->send);
    s->send = reply;
    grpc_op op;
    memset(&op, 0, sizeof op);
    op.op = GRPC_OP_SEND_MESSAGE;
    op.data.send_message.send_message = reply;
    grpc_call_start_batch(s->call, &op, 1, tag(s, 2), NULL);
    serve_recv(s);
    return;
  }
  /* kind 2: a stream's reply went out, or a call ended */
  if (s->closing) {
    serve_free(s);
    serve_request(srv, cq, s);
  }
  (void)slots;
}

static void serve(int port_fd, int cpu) {
  pin(cpu);
  grpc_init();
  grpc_completion_queue *cq = grpc_completion_queue_create_for_next(NULL);
  grpc_server *srv = grpc_server_create(NULL, NULL);
  grpc_server_register_completion_queue(srv, cq, NULL);
  grpc_server_credentials *creds = grpc_insecure_server_credentials_create();
  int port = grpc_server_add_http2_port(srv, "127.0.0.1:0", creds);
  grpc_server_credentials_release(creds);
  grpc_server_start(srv);
  static sslot slots[8];
  for (size_t i = 0; i < 8; i++)
    serve_request(srv, cq, &slots[i]);
  if (write(port_fd, &port, sizeof port) != (ssize_t)sizeof port)
    _exit(1);
  close(port_fd);
  for (;;) {
    grpc_event ev = grpc_completion_queue_next(cq, forever(), NULL);
    if (ev.type != GRPC_OP_COMPLETE)
      _exit(0);
    on_server_event(srv, cq, slots, ev);
  }
}

/* ---- the client (this process) ---- */

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

static void report(const char *what, uint64_t *t, size_t n, uint64_t cpu_ns) {
  qsort(t, n, sizeof *t, cmp_u64);
  printf("%-34s p50 %7.1f us  p99 %7.1f us  cpu %6.1f us per round trip\n", what,
         (double)t[n / 2] / 1000, (double)t[n * 99 / 100] / 1000,
         (double)cpu_ns / (double)n / 1000);
}

static uint64_t cpu_both(pid_t child) {
  clockid_t c;
  uint64_t kid = clock_getcpuclockid(child, &c) == 0 ? now_ns(c) : 0;
  return now_ns(CLOCK_PROCESS_CPUTIME_ID) + kid;
}

static int unary(grpc_channel *ch, grpc_completion_queue *cq, const char *req, size_t len) {
  grpc_call *call = grpc_channel_create_call(
      ch, NULL, GRPC_PROPAGATE_DEFAULTS, cq, grpc_slice_from_static_string(UNARY), NULL,
      gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC), gpr_time_from_seconds(5, GPR_TIMESPAN)), NULL);
  grpc_byte_buffer *send = buffer(req, len), *recv = NULL;
  grpc_metadata_array imd, tmd;
  grpc_metadata_array_init(&imd);
  grpc_metadata_array_init(&tmd);
  grpc_status_code status = GRPC_STATUS_UNKNOWN;
  grpc_slice details = grpc_empty_slice();
  grpc_op ops[6];
  memset(ops, 0, sizeof ops);
  ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
  ops[1].op = GRPC_OP_SEND_MESSAGE;
  ops[1].data.send_message.send_message = send;
  ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
  ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
  ops[3].data.recv_initial_metadata.recv_initial_metadata = &imd;
  ops[4].op = GRPC_OP_RECV_MESSAGE;
  ops[4].data.recv_message.recv_message = &recv;
  ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
  ops[5].data.recv_status_on_client.trailing_metadata = &tmd;
  ops[5].data.recv_status_on_client.status = &status;
  ops[5].data.recv_status_on_client.status_details = &details;
  int t;
  grpc_call_start_batch(call, ops, 6, &t, NULL);
  grpc_completion_queue_pluck(cq, &t, forever(), NULL);
  int ok = status == GRPC_STATUS_OK && recv;
  if (recv)
    grpc_byte_buffer_destroy(recv);
  grpc_byte_buffer_destroy(send);
  grpc_slice_unref(details);
  grpc_metadata_array_destroy(&imd);
  grpc_metadata_array_destroy(&tmd);
  grpc_call_unref(call);
  return ok ? 0 : -1;
}

static int stream_message(grpc_call *call, grpc_completion_queue *cq, const char *req, size_t len) {
  grpc_byte_buffer *send = buffer(req, len), *recv = NULL;
  grpc_op ops[2];
  memset(ops, 0, sizeof ops);
  ops[0].op = GRPC_OP_SEND_MESSAGE;
  ops[0].data.send_message.send_message = send;
  ops[1].op = GRPC_OP_RECV_MESSAGE;
  ops[1].data.recv_message.recv_message = &recv;
  int t;
  grpc_call_start_batch(call, ops, 2, &t, NULL);
  grpc_event ev = grpc_completion_queue_pluck(cq, &t, forever(), NULL);
  int ok = ev.success && recv;
  if (recv)
    grpc_byte_buffer_destroy(recv);
  grpc_byte_buffer_destroy(send);
  return ok ? 0 : -1;
}

int main(int argc, char **argv) {
  size_t n = 10000, size = 64;
  int cpu = 0, server_cpu = 0;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!strcmp(argv[i], "--iterations"))
      n = strtoul(argv[i + 1], NULL, 10);
    else if (!strcmp(argv[i], "--size"))
      size = strtoul(argv[i + 1], NULL, 10);
    else if (!strcmp(argv[i], "--cpu"))
      cpu = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--server-cpu"))
      server_cpu = atoi(argv[i + 1]);
    else {
      fprintf(stderr, "usage: bench_grpc_stream [--iterations N] [--size BYTES] [--cpu C] "
                      "[--server-cpu C]\n");
      return 2;
    }
  }
  if (n < 10 || size > (1u << 20)) {
    fprintf(stderr, "bench_grpc_stream: --iterations >= 10, --size <= 1 MiB\n");
    return 2;
  }
  int p[2];
  if (pipe(p) != 0)
    return 1;
  pid_t child = fork();
  if (child == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    close(p[0]);
    serve(p[1], server_cpu);
  }
  close(p[1]);
  int port = 0;
  if (child < 0 || read(p[0], &port, sizeof port) != (ssize_t)sizeof port) {
    fprintf(stderr, "bench_grpc_stream: the server did not start\n");
    return 1;
  }
  close(p[0]);
  pin(cpu);
  grpc_init();
  char target[64];
  snprintf(target, sizeof target, "ipv4:127.0.0.1:%d", port);
  grpc_channel_credentials *creds = grpc_insecure_credentials_create();
  grpc_channel *ch = grpc_channel_create(target, creds, NULL);
  grpc_channel_credentials_release(creds);
  grpc_completion_queue *cq = grpc_completion_queue_create_for_pluck(NULL);
  char *req = calloc(1, size + 1);
  uint64_t *t = calloc(n, sizeof *t);
  int rc = req && t ? 0 : 1;

  /* Unary calls; a tenth first, not counted (connection, warm caches). */
  for (size_t i = 0; rc == 0 && i < n / 10; i++)
    rc = unary(ch, cq, req, size);
  uint64_t cpu0 = cpu_both(child);
  for (size_t i = 0; rc == 0 && i < n; i++) {
    uint64_t t0 = now_ns(CLOCK_MONOTONIC);
    rc = unary(ch, cq, req, size);
    t[i] = now_ns(CLOCK_MONOTONIC) - t0;
  }
  if (rc == 0)
    report("unary call (6-op batch)", t, n, cpu_both(child) - cpu0);

  /* One stream, one message and its reply per round trip. */
  grpc_call *call = rc ? NULL
                       : grpc_channel_create_call(ch, NULL, GRPC_PROPAGATE_DEFAULTS, cq,
                                                  grpc_slice_from_static_string(STREAM), NULL,
                                                  gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
  grpc_metadata_array imd;
  grpc_metadata_array_init(&imd);
  if (call) {
    grpc_op ops[2];
    memset(ops, 0, sizeof ops);
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[1].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[1].data.recv_initial_metadata.recv_initial_metadata = &imd;
    int tg;
    grpc_call_start_batch(call, ops, 2, &tg, NULL);
    grpc_completion_queue_pluck(cq, &tg, forever(), NULL);
    for (size_t i = 0; rc == 0 && i < n / 10; i++)
      rc = stream_message(call, cq, req, size);
    cpu0 = cpu_both(child);
    for (size_t i = 0; rc == 0 && i < n; i++) {
      uint64_t t0 = now_ns(CLOCK_MONOTONIC);
      rc = stream_message(call, cq, req, size);
      t[i] = now_ns(CLOCK_MONOTONIC) - t0;
    }
    if (rc == 0)
      report("message on one bidi stream", t, n, cpu_both(child) - cpu0);
    grpc_call_cancel(call, NULL);
    grpc_call_unref(call);
  }
  grpc_metadata_array_destroy(&imd);
  if (rc != 0)
    fprintf(stderr, "bench_grpc_stream: a round trip failed\n");
  kill(child, SIGKILL);
  waitpid(child, NULL, 0);
  grpc_channel_destroy(ch);
  grpc_completion_queue_shutdown(cq);
  while (grpc_completion_queue_pluck(cq, NULL, forever(), NULL).type != GRPC_QUEUE_SHUTDOWN) {
  }
  grpc_completion_queue_destroy(cq);
  grpc_shutdown();
  free(req);
  free(t);
  return rc ? 1 : 0;
}
