/* A minimal client of policyexec-pyworker for tests and benchmarks: starts
 * the real worker binary and exchanges framed protobuf messages with it. */
#ifndef PW_CLIENT_H
#define PW_CLIENT_H

#include <stddef.h>
#include <sys/types.h>

#include "policyexec/v1/executor.pb-c.h"
#include "pw_frame.h"

typedef Policyexec__V1__Request pw_request;
typedef Policyexec__V1__Response pw_response;

typedef struct pw_spawn_options {
  const char *socket_path;       /* NULL: one socketpair passed as --fd 3 */
  const char *const *extra_args; /* NULL-terminated, may be NULL */
  /* Run the worker with PATH starting with pyenv shims and bogus PYTHONHOME /
   * PYTHONPATH, as on a developer machine: the worker must not care. */
  int hostile_env;
} pw_spawn_options;

typedef struct pw_worker {
  pid_t pid;
  int fd; /* the connection (socketpair end, or first connect to socket_path) */
} pw_worker;

/* Starts a worker with --module-path for the samples and the test policies.
 * Returns 0, or -1 (errno). */
int pw_worker_start(pw_worker *w, const pw_spawn_options *opt);

/* Connects once more to a worker listening at @p path (retrying up to ~5 s
 * while it starts). Returns the fd or -1. */
int pw_connect(const char *path);

/* Kills (SIGKILL) and reaps the worker if still running; closes the fd. */
void pw_worker_kill(pw_worker *w);

/* Waits up to @p timeout_ms for the worker to exit; returns 1 and the wait
 * status in *status when it did, 0 when it still runs. Reaps it. */
int pw_worker_wait(pw_worker *w, int timeout_ms, int *status);

/* Sends @p req on @p fd. Returns 0 or -1. */
int pw_send(int fd, const pw_request *req);

/* Receives one Response into *out (free with pw_response_free). Returns 0, 1
 * on end of stream, -1 on an error, -2 when no reply came in @p timeout_ms
 * (negative: wait forever). @p buf is reused between calls. */
int pw_receive(int fd, pw_buf *buf, int timeout_ms, pw_response **out);

/* Sends and receives; returns like pw_receive (no timeout). */
int pw_call(int fd, pw_buf *buf, const pw_request *req, pw_response **out);

void pw_response_free(pw_response *resp);

/* Shorthands: Hello (protocol 1), CreateInstance of name@1.0.0. */
int pw_hello(int fd, pw_buf *buf, uint64_t id, pw_response **out);
int pw_create(int fd, pw_buf *buf, uint64_t id, uint64_t instance, const char *name,
              const char *params_json, pw_response **out);

#endif
