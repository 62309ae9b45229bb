/*
 * The gRPC executor backend, the part inside libpolicyexec.so: options,
 * loading libpolicyexec-grpc.so, instances, blocking and non-blocking
 * runs. It speaks the Python pool's protocol, so it reuses that backend's
 * codec (pe_py_codec.c: exchange <-> RunPhase / RunReply) and decode arena;
 * every gRPC call goes through the module's table (pe_grpc_transport.h).
 *
 * Module map:
 *   pe_grpc_options.c   pe_grpc_options_* (the public settings object)
 *   pe_grpc_load.c      dlopen of the module; control calls (Hello,
 *                       Create, Ping), in a child process while gRPC is
 *                       not started in this one
 *   pe_grpc_backend.c   start, instances, run_batch, ping, shutdown
 *   pe_grpc_dispatch.c  non-blocking runs on a dispatcher
 *   module/             libpolicyexec-grpc.so (links gRPC)
 */
#ifndef PE_GRPC_H
#define PE_GRPC_H

#include "pe_grpc_transport.h"
#include "pe_py.h"

#include <sys/types.h>

struct pe_grpc_options {
  char name[PE__EXECUTOR_NAME_MAX + 1];
  char *target;
  char *ca_file, *cert_file, *key_file;
  char *module_path;
  uint32_t default_timeout_ms;
  size_t max_in_flight;
  uint32_t keepalive_ms, keepalive_timeout_ms;
  uint32_t backoff_initial_ms, backoff_max_ms;
  uint32_t startup_timeout_ms;
  size_t max_message; /* 0: derived from the engine's limits */
  bool retries;       /* gRPC's transparent retries */
};

void pe__grpc_options_defaults(pe_grpc_options *o);
int pe__grpc_options_copy(pe_grpc_options *dst, const pe_grpc_options *src, const pe_mem *mem);
void pe__grpc_options_release(pe_grpc_options *o, const pe_mem *mem);

/* An instance: its id (the codec reads base.id) is a hash of name,
 * version and params, the same in every engine, and spec describes it in
 * each call (RunPhase.instances). */
typedef struct pe__grpc_instance {
  pe__py_instance base;
  Policyexec__V1__CreateInstance spec;
} pe__grpc_instance;

/* Encoding and decoding room for one call at a time. */
typedef struct pe__grpc_scratch {
  pe__py_conn conn; /* its out buffer, encode arrays and arena; no fd */
  Policyexec__V1__CreateInstance *specs[PE__BATCH_MAX];
  struct pe__grpc_scratch *next;
} pe__grpc_scratch;

typedef struct pe__grpc_backend {
  pe_engine *engine; /* not a reference: the engine owns the backend */
  const pe_mem *mem;
  pe_grpc_options cfg;
  char *target; /* as gRPC names it */
  size_t max_message;
  const pe__grpc_transport *t;
  pe__grpc_settings settings;
  pthread_mutex_t lock; /* channel creation, idle scratch list */
  pe__grpc_channel *channel;
  pid_t channel_pid; /* the process that made it */
  pe__grpc_scratch *idle;
  atomic_long inflight;
  pe__advertised advertised; /* start-up only */
} pe__grpc_backend;

extern const pe__backend_ops pe__grpc_backend_ops;

/* ---- pe_grpc_load.c ---- */

/* Loads the module (once per process and path). PE_OK, or
 * PE_ERR_UNSUPPORTED with err. */
int pe__grpc_load(const char *path, const pe__grpc_transport **out, char *err);
/* The channel of this process, made on first use. NULL with err when gRPC
 * cannot run here. */
pe__grpc_channel *pe__grpc_channel_get(pe__grpc_backend *be, char *err);
/* One control call (Hello, Create, Ping) with the start-up timeout. When
 * this process has not started gRPC, a child process makes it, so that the
 * host may still fork afterwards. PE_OK with *resp decoded into s's arena
 * (valid until the arena is reset), or PE_ERR_WORKER with err. */
int pe__grpc_control(pe__grpc_backend *be, pe__grpc_scratch *s, pe__py_request *req,
                     pe__py_response **resp, char *err);

/* ---- pe_grpc_backend.c ---- */

pe__grpc_scratch *pe__grpc_scratch_take(pe__grpc_backend *be);
void pe__grpc_scratch_put(pe__grpc_backend *be, pe__grpc_scratch *s);
/* Encodes the RunPhase of b on ex into s; req and len point into s. */
int pe__grpc_encode(pe__grpc_scratch *s, const pe_exchange *ex, const pe__batch *b,
                    const unsigned char **req, size_t *len);
/* The deadline of b: the sum of its steps' timeouts, in ns. */
int64_t pe__grpc_batch_timeout(const pe__batch *b);
/* Applies the outcome of a finished call to ex (reply, or failure mapped
 * from the gRPC status); the reply is decoded into s. */
void pe__grpc_finish(pe__grpc_backend *be, pe__grpc_scratch *s, pe_exchange *ex, const pe__batch *b,
                     const pe__grpc_result *r);
int pe__grpc_admit_take(pe__grpc_backend *be);
void pe__grpc_admit_give(pe__grpc_backend *be);

/* ---- pe_grpc_dispatch.c ---- */

int pe__grpc_submit(pe__backend *be, pe__dstate *ds, pe_exchange *ex, const pe__batch *b);
int pe__grpc_dispatcher_attach(pe__backend *be, pe_dispatcher *d, pe__dstate **out);
void pe__grpc_dispatcher_detach(pe__dstate *ds);
int pe__grpc_dispatcher_timer(pe__dstate *ds, uint64_t now_ns);
bool pe__grpc_forget(pe__dstate *ds, pe_exchange *ex);

#endif /* PE_GRPC_H */
