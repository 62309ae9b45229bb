/*
 * libpolicyexec-grpc.so: the module's entry point, gRPC's lazy start,
 * channels and blocking calls. Every gRPC call of libpolicyexec lives in
 * this module (see pe_grpc_transport.h); the non-blocking calls are in
 * pe_grpc_queue.c.
 */
#include "pe_grpc_module.h"

#include <grpc/byte_buffer_reader.h>
#include <grpc/support/alloc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct pe__grpc_channel {
  grpc_channel *ch;
};

/* ---- gRPC's start: lazily, once per process ---- */

static pthread_mutex_t start_lock = PTHREAD_MUTEX_INITIALIZER;
static pid_t started_pid; /* 0: not started */

int pe__grpc_started(char *err) {
  pthread_mutex_lock(&start_lock);
  pid_t me = getpid();
  int rc = 0;
  if (started_pid == 0) {
    grpc_init();
    started_pid = me;
  } else if (started_pid != me) {
    /* gRPC's threads stayed in the parent: nothing of it works here. */
    snprintf(err, PE__GRPC_DETAIL_SIZE,
             "gRPC was started in process %d before it forked; a forked child cannot use it "
             "(make the first call after the fork)",
             (int)started_pid);
    rc = -1;
  }
  pthread_mutex_unlock(&start_lock);
  return rc;
}

static const char *module_version(void) {
  return grpc_version_string();
}

/* ---- channels ---- */

static char *read_file(const char *path, char *err) {
  FILE *f = fopen(path, "rb");
  char *buf = NULL;
  long size = -1;
  if (f && fseek(f, 0, SEEK_END) == 0 && (size = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0 &&
      (buf = malloc((size_t)size + 1)) && fread(buf, 1, (size_t)size, f) == (size_t)size) {
    buf[size] = '\0';
    fclose(f);
    return buf;
  }
  free(buf);
  if (f)
    fclose(f);
  snprintf(err, PE__GRPC_DETAIL_SIZE, "cannot read %s", path);
  return NULL;
}

static grpc_channel_credentials *credentials(const pe__grpc_settings *s, char *err) {
  if (!s->ca_file && !s->cert_file && !s->key_file)
    return grpc_insecure_credentials_create();
  char *ca = NULL, *cert = NULL, *key = NULL;
  grpc_channel_credentials *creds = NULL;
  if ((s->ca_file && !(ca = read_file(s->ca_file, err))) ||
      (s->cert_file && !(cert = read_file(s->cert_file, err))) ||
      (s->key_file && !(key = read_file(s->key_file, err))))
    goto out;
  grpc_ssl_pem_key_cert_pair pair = {key, cert};
  creds = grpc_ssl_credentials_create(ca, cert && key ? &pair : NULL, NULL, NULL);
  if (!creds)
    snprintf(err, PE__GRPC_DETAIL_SIZE, "gRPC refused the TLS settings");
out:
  free(ca);
  free(cert);
  free(key);
  return creds;
}

static grpc_arg int_arg(const char *name, long v) {
  grpc_arg a = {.type = GRPC_ARG_INTEGER, .key = (char *)name};
  a.value.integer = v > INT32_MAX ? INT32_MAX : (int)v;
  return a;
}

static grpc_arg string_arg(const char *name, const char *v) {
  grpc_arg a = {.type = GRPC_ARG_STRING, .key = (char *)name};
  a.value.string = (char *)v;
  return a;
}

static int channel_new(const pe__grpc_settings *s, pe__grpc_channel **out, char *err) {
  if (pe__grpc_started(err) != 0)
    return -1;
  grpc_channel_credentials *creds = credentials(s, err);
  if (!creds)
    return -1;
  char service_config[128];
  snprintf(service_config, sizeof service_config, "{\"loadBalancingConfig\":[{\"%s\":{}}]}",
           s->lb_policy ? s->lb_policy : "round_robin");
  grpc_arg args[14];
  size_t n = 0;
  args[n++] = int_arg(GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH, (long)s->max_message);
  args[n++] = int_arg(GRPC_ARG_MAX_SEND_MESSAGE_LENGTH, (long)s->max_message);
  /* Not GRPC_ARG_MIN_RECONNECT_BACKOFF_MS: gRPC 1.51 takes it as the
   * timeout of each connection attempt (TCP and HTTP/2 handshake), so the
   * back-off there (~100 ms) failed every call to an executor whose
   * handshake took longer (a loaded host, TLS over a WAN). Its default,
   * 20 s, applies; a refused or reset connection still fails at once. */
  args[n++] = int_arg(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, s->backoff_initial_ms);
  args[n++] = int_arg(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, s->backoff_max_ms);
  args[n++] = string_arg(GRPC_ARG_SERVICE_CONFIG, service_config);
  /* Each engine its own connections: two engines in one process (or a
   * test's two executors) must not share a subchannel's fate. */
  args[n++] = int_arg(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  if (s->no_retries)
    args[n++] = int_arg(GRPC_ARG_ENABLE_RETRIES, 0);
  if (s->keepalive_ms) {
    args[n++] = int_arg(GRPC_ARG_KEEPALIVE_TIME_MS, s->keepalive_ms);
    args[n++] = int_arg(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, s->keepalive_timeout_ms);
    args[n++] = int_arg(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
    args[n++] = int_arg(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
  }
  if (s->authority)
    args[n++] = string_arg(GRPC_ARG_DEFAULT_AUTHORITY, s->authority);
  grpc_channel_args cargs = {n, args};
  pe__grpc_channel *c = calloc(1, sizeof *c);
  if (c)
    c->ch = grpc_channel_create(s->target, creds, &cargs);
  grpc_channel_credentials_release(creds);
  if (!c || !c->ch) {
    free(c);
    snprintf(err, PE__GRPC_DETAIL_SIZE, "cannot create a channel to %s", s->target);
    return -1;
  }
  *out = c;
  return 0;
}

static void channel_free(pe__grpc_channel *c) {
  if (!c)
    return;
  grpc_channel_destroy(c->ch);
  free(c);
}

/* ---- one unary call, shared by the blocking and the queued calls ---- */

int pe__grpc_unary_begin(pe__grpc_unary *u, pe__grpc_channel *ch, grpc_completion_queue *cq,
                         const char *method, const void *req, size_t len, int64_t timeout_ns,
                         void *tag, char *err) {
  memset(u, 0, sizeof *u);
  gpr_timespec deadline =
      gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC), gpr_time_from_nanos(timeout_ns, GPR_TIMESPAN));
  u->call = grpc_channel_create_call(ch->ch, NULL, GRPC_PROPAGATE_DEFAULTS, cq,
                                     grpc_slice_from_static_string(method), NULL, deadline, NULL);
  if (!u->call) {
    snprintf(err, PE__GRPC_DETAIL_SIZE, "gRPC could not create a call");
    return -1;
  }
  /* One copy of the request into a slice gRPC owns: the caller's buffer
   * may be reused as soon as this returns. */
  grpc_slice s = grpc_slice_from_copied_buffer(req, len);
  u->send = grpc_raw_byte_buffer_create(&s, 1);
  grpc_slice_unref(s);
  grpc_metadata_array_init(&u->initial_md);
  grpc_metadata_array_init(&u->trailing_md);
  grpc_op ops[6];
  memset(ops, 0, sizeof ops);
  ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
  ops[1].op = GRPC_OP_SEND_MESSAGE;
  ops[1].data.send_message.send_message = u->send;
  ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
  ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
  ops[3].data.recv_initial_metadata.recv_initial_metadata = &u->initial_md;
  ops[4].op = GRPC_OP_RECV_MESSAGE;
  ops[4].data.recv_message.recv_message = &u->recv;
  ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
  ops[5].data.recv_status_on_client.trailing_metadata = &u->trailing_md;
  ops[5].data.recv_status_on_client.status = &u->status;
  ops[5].data.recv_status_on_client.status_details = &u->details;
  grpc_call_error e = grpc_call_start_batch(u->call, ops, 6, tag, NULL);
  if (e != GRPC_CALL_OK) {
    snprintf(err, PE__GRPC_DETAIL_SIZE, "gRPC refused the call: error %d", (int)e);
    pe__grpc_unary_end(u, NULL);
    return -1;
  }
  u->started = 1;
  return 0;
}

typedef struct owner {
  grpc_slice slice;
} owner;

void pe__grpc_unary_end(pe__grpc_unary *u, pe__grpc_result *r) {
  if (r) {
    memset(r, 0, sizeof *r);
    r->status = (int)u->status;
    if (u->started && u->status != GRPC_STATUS_OK) {
      char *d = grpc_slice_to_c_string(u->details);
      snprintf(r->detail, sizeof r->detail, "%s", d ? d : "");
      gpr_free(d);
    } else if (u->started && !u->recv) {
      r->status = GRPC_STATUS_INTERNAL;
      snprintf(r->detail, sizeof r->detail, "the executor answered without a message");
    } else if (u->started) {
      owner *o = malloc(sizeof *o);
      if (o) {
        grpc_byte_buffer_reader rd;
        grpc_byte_buffer_reader_init(&rd, u->recv);
        o->slice = grpc_byte_buffer_reader_readall(&rd);
        grpc_byte_buffer_reader_destroy(&rd);
        r->owner = o;
        r->data = GRPC_SLICE_START_PTR(o->slice);
        r->len = GRPC_SLICE_LENGTH(o->slice);
      } else {
        r->status = PE__GRPC_STATUS_LOCAL;
        snprintf(r->detail, sizeof r->detail, "out of memory");
      }
    }
  }
  if (u->recv)
    grpc_byte_buffer_destroy(u->recv);
  if (u->send)
    grpc_byte_buffer_destroy(u->send);
  if (u->started)
    grpc_slice_unref(u->details);
  grpc_metadata_array_destroy(&u->initial_md);
  grpc_metadata_array_destroy(&u->trailing_md);
  if (u->call)
    grpc_call_unref(u->call);
  memset(u, 0, sizeof *u);
}

void pe__grpc_result_release(pe__grpc_result *r) {
  owner *o = r->owner;
  if (o) {
    grpc_slice_unref(o->slice);
    free(o);
  }
  r->owner = NULL;
  r->data = NULL;
  r->len = 0;
}

/* A completion queue per calling thread, kept for its next calls: the
 * thread that waits also drives gRPC's polling, so a blocking call costs no
 * thread hop. Freed when the thread exits. */
static pthread_key_t cq_key;
static pthread_once_t cq_once = PTHREAD_ONCE_INIT;

static void cq_destroy(void *p) {
  grpc_completion_queue *cq = p;
  grpc_completion_queue_shutdown(cq);
  while (grpc_completion_queue_pluck(cq, NULL, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type !=
         GRPC_QUEUE_SHUTDOWN) {
  }
  grpc_completion_queue_destroy(cq);
}

static void cq_key_make(void) {
  pthread_key_create(&cq_key, cq_destroy);
}

static grpc_completion_queue *thread_cq(void) {
  pthread_once(&cq_once, cq_key_make);
  grpc_completion_queue *cq = pthread_getspecific(cq_key);
  if (!cq && (cq = grpc_completion_queue_create_for_pluck(NULL)))
    pthread_setspecific(cq_key, cq);
  return cq;
}

static int call(pe__grpc_channel *ch, const char *method, const void *req, size_t len,
                int64_t timeout_ns, pe__grpc_result *out) {
  memset(out, 0, sizeof *out);
  out->status = PE__GRPC_STATUS_LOCAL;
  if (pe__grpc_started(out->detail) != 0)
    return out->status;
  grpc_completion_queue *cq = thread_cq();
  pe__grpc_unary u;
  int tag;
  if (!cq) {
    snprintf(out->detail, sizeof out->detail, "cannot create a completion queue");
    return out->status;
  }
  if (pe__grpc_unary_begin(&u, ch, cq, method, req, len, timeout_ns, &tag, out->detail) != 0)
    return out->status;
  /* The call's deadline bounds the wait: gRPC completes it by then. */
  grpc_completion_queue_pluck(cq, &tag, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
  pe__grpc_unary_end(&u, out);
  return out->status;
}

static const pe__grpc_transport transport = {
    .abi = PE__GRPC_TRANSPORT_ABI,
    .version = module_version,
    .channel_new = channel_new,
    .channel_free = channel_free,
    .call = call,
    .queue_new = pe__grpc_queue_new,
    .queue_free = pe__grpc_queue_free,
    .call_start = pe__grpc_call_start,
    .queue_drain = pe__grpc_queue_drain,
    .result_release = pe__grpc_result_release,
};

__attribute__((visibility("default"))) int pe_grpc_transport_init(unsigned abi,
                                                                  const pe__grpc_transport **out);

int pe_grpc_transport_init(unsigned abi, const pe__grpc_transport **out) {
  if (abi != PE__GRPC_TRANSPORT_ABI || !out)
    return -1;
  *out = &transport;
  return 0;
}
