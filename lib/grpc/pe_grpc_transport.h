/*
 * The contract between libpolicyexec.so and libpolicyexec-grpc.so, the
 * module that holds every call into gRPC (so that a process which never
 * starts a gRPC executor never maps gRPC and its ~50 libraries).
 *
 * The library dlopens the module on first use and calls its one exported
 * symbol, pe_grpc_transport_init(), which hands back this table. The module
 * moves bytes only: the library encodes each Request and decodes each
 * Response (lib/python/pe_py_codec.c, shared by both transports), so the
 * module needs nothing of the library and no symbol of its host.
 *
 * gRPC is initialised on the module's first channel, never at load time:
 * grpc_init starts threads, which a fork would not carry into the child.
 * A process that forks after creating an engine (nginx's master) therefore
 * gets a working gRPC in each child, provided the parent made no call.
 */
#ifndef PE_GRPC_TRANSPORT_H
#define PE_GRPC_TRANSPORT_H

#include <stddef.h>
#include <stdint.h>

#define PE__GRPC_TRANSPORT_ABI 1u
#define PE__GRPC_DETAIL_SIZE 256

/* The executor service's one method, and the standard health check. */
#define PE__GRPC_METHOD_CALL "/policyexec.v1.Executor/Call"

/* A status the module reports when a call could not be started at all
 * (gRPC's own codes are 0..16). */
#define PE__GRPC_STATUS_LOCAL (-1)
/* grpc_status_code values the library maps to outcomes. */
#define PE__GRPC_STATUS_OK 0
#define PE__GRPC_STATUS_CANCELLED 1
#define PE__GRPC_STATUS_DEADLINE_EXCEEDED 4
#define PE__GRPC_STATUS_UNAVAILABLE 14

typedef struct pe__grpc_channel pe__grpc_channel;
typedef struct pe__grpc_queue pe__grpc_queue;

typedef struct pe__grpc_settings {
  const char *target;    /* gRPC target: dns:///h:p, ipv4:a:p,b:p, unix:///path, h:p */
  const char *authority; /* NULL: from the target */
  /* TLS: PEM file paths; all NULL: plaintext. cert and key together: mTLS. */
  const char *ca_file, *cert_file, *key_file;
  uint32_t keepalive_ms, keepalive_timeout_ms; /* 0: no keepalive pings */
  uint32_t backoff_initial_ms, backoff_max_ms; /* reconnect back-off */
  size_t max_message;                          /* both directions */
  const char *lb_policy;                       /* "round_robin", "pick_first" */
  int no_retries;                              /* turn gRPC's retry filter off */
} pe__grpc_settings;

/* The outcome of one call. data/len is the reply message (status OK),
 * owned by the module until result_release. */
typedef struct pe__grpc_result {
  int status; /* grpc_status_code, or PE__GRPC_STATUS_LOCAL */
  char detail[PE__GRPC_DETAIL_SIZE];
  const unsigned char *data;
  size_t len;
  void *owner; /* the module's */
} pe__grpc_result;

/* Called by queue_drain for each finished call, on the draining thread;
 * r is valid during the call only (the module releases it after). */
typedef void (*pe__grpc_done_fn)(void *tag, pe__grpc_result *r, void *ud);

typedef struct pe__grpc_transport {
  unsigned abi; /* PE__GRPC_TRANSPORT_ABI */
  const char *(*version)(void);
  /* A channel to settings->target (strings copied). Starts gRPC in this
   * process if not yet. 0, or -1 with err (PE__GRPC_DETAIL_SIZE bytes). */
  int (*channel_new)(const pe__grpc_settings *s, pe__grpc_channel **out, char *err);
  void (*channel_free)(pe__grpc_channel *ch);
  /* Blocking unary call of method with req; timeout_ns > 0. Fills out
   * (release it) and returns its status. Any thread. */
  int (*call)(pe__grpc_channel *ch, const char *method, const void *req, size_t len,
              int64_t timeout_ns, pe__grpc_result *out);
  /* A queue of non-blocking calls whose completions make *fd readable
   * (an eventfd; the queue owns it). 0, or -1 with err. */
  int (*queue_new)(pe__grpc_queue **out, int *fd, char *err);
  /* Cancels the queue's calls, waits until each has finished and been
   * drained (their done callbacks see CANCELLED), then frees q. */
  void (*queue_free)(pe__grpc_queue *q, pe__grpc_done_fn done, void *ud);
  /* Starts a non-blocking unary call; its result reaches done(tag) through
   * queue_drain. 0, or -1 with err (nothing started, done never called). */
  int (*call_start)(pe__grpc_channel *ch, pe__grpc_queue *q, const char *method, const void *req,
                    size_t len, int64_t timeout_ns, void *tag, char *err);
  /* Runs done for every call finished since the last drain (clears the
   * fd's readiness). Returns how many. The thread that owns q only. */
  size_t (*queue_drain)(pe__grpc_queue *q, pe__grpc_done_fn done, void *ud);
  void (*result_release)(pe__grpc_result *r);
} pe__grpc_transport;

/* The module's one export. 0 and *out set, or -1 (ABI mismatch). */
typedef int (*pe__grpc_transport_init_fn)(unsigned abi, const pe__grpc_transport **out);
#define PE__GRPC_TRANSPORT_INIT "pe_grpc_transport_init"

#endif /* PE_GRPC_TRANSPORT_H */
