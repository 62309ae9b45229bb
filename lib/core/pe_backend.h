/*
 * The one door between the core and the executors that run steps out of
 * process (the local Python pool in lib/python/, remote executors in their
 * own folders). A backend fills a pe__backend_ops table and registers an
 * executor with pe__engine_add_executor(); from then on the core reaches it
 * only through that table, as curl reaches its TLS backends. In the other
 * direction a backend may call the services declared below: the dispatcher's
 * fd and timer, and the completion of a pending run.
 *
 * The dispatcher belongs to the core. A backend that runs non-blocking keeps
 * per-dispatcher state (its connections, its calls in flight), made on first
 * use by dispatcher_attach, registers its fds with pe__dispatcher_watch(),
 * and asks for a timer tick with pe__dispatcher_arm(); so one fd per host
 * thread covers every executor.
 */
#ifndef PE_BACKEND_H
#define PE_BACKEND_H

#include "pe_internal.h"

#include <sys/epoll.h>

/* A backend's own object and its per-dispatcher state: each backend defines
 * its own struct and casts; the core never looks inside. */
typedef struct pe__backend pe__backend;
typedef struct pe__dstate pe__dstate;

typedef struct pe__backend_ops {
  const char *kind; /* what the backend is, for logs */
  /* Creates the instance of `step` (step->params_json) in the executor;
   * err gets the reason on failure. */
  int (*create_instance)(pe__backend *be, pe__step *step, char *err);
  void (*destroy_instance)(pe__backend *be, pe__step *step);
  /* Runs the steps of b (consecutive, in run order, all for this executor),
   * each in its phase, and returns when every step's outcome has been
   * applied with the txn / pe__step_failed rules (PE_OK). The runner has
   * already moved ex->run.phase / pos past the batch. b lives on the
   * runner's stack: copy it (pe__batch_copy) to keep it. A negative return
   * means no step of the batch ran: the runner then fails each one with
   * that code through pe__step_failed. */
  int (*run_batch)(pe__backend *be, pe_exchange *ex, const pe__batch *b);
  /* The non-blocking run_batch, for a run started by pe_chain_run_async on
   * the dispatcher that owns ds. Returns PE_PENDING when sent (the backend
   * later applies the reply and calls pe__dispatch_complete), PE_OK when
   * the outcome is already applied, or a negative code when no step ran. */
  int (*submit)(pe__backend *be, pe__dstate *ds, pe_exchange *ex, const pe__batch *b);
  /* Makes the per-dispatcher state, on the dispatcher's first run that
   * needs this executor. */
  int (*dispatcher_attach)(pe__backend *be, pe_dispatcher *d, pe__dstate **out);
  /* The dispatcher is being freed: fail every call still pending (their
   * runs complete through pe__dispatch_complete), release every fd
   * registered, free ds. */
  void (*dispatcher_detach)(pe__dstate *ds);
  /* The dispatcher's timer fired (it was armed with pe__dispatcher_arm):
   * handle deadlines up to now_ns and re-arm for the next one. Returns the
   * number of runs completed. */
  int (*dispatcher_timer)(pe__dstate *ds, uint64_t now_ns);
  /* pe_exchange_free on ex while its batch is pending on ds: drop ex from
   * the call (its reply, when it comes, is discarded). Returns whether ex
   * was found. */
  bool (*forget)(pe__dstate *ds, pe_exchange *ex);
  /* In-flight accounting for pe_chain_run_async: PE_OK when another batch
   * may be sent now, PE_ERR_BUSY when the executor's budget is used up
   * (errmsg gets why). */
  int (*admit)(pe__backend *be, char *errmsg);
  /* Readiness: how many of the executor's processes or endpoints answer a
   * ping now. PE_OK when all do. */
  int (*ping)(pe__backend *be, size_t *alive);
  /* Stops the executor and frees be (when the engine goes away). */
  void (*shutdown)(pe__backend *be);
  /* Streamed body steps (stream.h). NULL: a step of this executor with a
   * body phase is a buffered step (pe_stream.c plans the body
   * PE_BODY_BUFFER). Else, for a policy that advertised chunks for that
   * body (pe__policy.streams), runs one chunk through step (blocking),
   * writing the step's output with pe_body_chunk_write / keep as a native
   * chunk callback does, and keeps what it needs across the body's chunks
   * in *pe_body_chunk_state(). A negative return is the step's failure
   * (ex->errmsg says why; PE_ERR_TIMEOUT answers 504 when closed). */
  int (*stream_chunk)(pe__backend *be, pe_exchange *ex, const pe__step *step, pe_body_chunk *chunk);
  /* Frees what stream_chunk left in the state slot (not NULL): the body
   * ended, the step failed, or the exchange was reset unfinished. Needed
   * when stream_chunk is set. */
  void (*stream_free)(pe__backend *be, const pe__step *step, void *state);
  /* The non-blocking stream_chunk, for pe_chain_stream_body_async on the
   * dispatcher that owns ds: PE_PENDING when sent (the backend later
   * writes the output to chunk, which stays valid, and calls
   * pe__dispatch_stream_done), or the step's failure now (negative,
   * ex->errmsg says why). NULL: the chunk runs through stream_chunk,
   * blocking. */
  int (*stream_submit)(pe__backend *be, pe__dstate *ds, pe_exchange *ex, const pe__step *step,
                       pe_body_chunk *chunk);
} pe__backend_ops;

typedef struct pe__executor pe__executor;

/* Registers an executor. PE_OK, PE_ERR_EXISTS (name taken; err says so),
 * PE_ERR_INVALID_ARGUMENT (empty or too long a name), PE_ERR_UNSUPPORTED
 * (too many executors). On success the engine owns be: ops->shutdown runs
 * when the engine goes away. */
int pe__engine_add_executor(pe_engine *e, const char *name, const pe__backend_ops *ops,
                            pe__backend *be, const pe__executor **out, char *err);
/* The policies an executor advertises when it starts, as registry entries
 * not registered yet (kind EXECUTOR). */
typedef struct pe__advertised {
  pe__policy **items;
  size_t count;
} pe__advertised;

/* Frees the entries still held (a start-up that failed). */
void pe__advertised_free(pe_engine *e, pe__advertised *a);
/* Registers an executor together with the policies it advertised, in one
 * critical section: both or neither. A name@version that another executor
 * advertised already stays with that one (a step may still name this
 * executor); one taken by a native policy, or advertised twice, is
 * PE_ERR_EXISTS, with `what` ("python policy") in err's message. On PE_OK
 * the entries belong to the registry and a is emptied. Else as
 * pe__engine_add_executor. */
int pe__engine_add_executor_with_policies(pe_engine *e, const char *name,
                                          const pe__backend_ops *ops, pe__backend *be,
                                          pe__advertised *a, const char *what, char *err);

/* The executor of e that uses ops (the first), or NULL. */
/* The same with e->lock held, for a backend that registers its policies
 * in the same critical section (so that both or neither happen). */
int pe__engine_add_executor_locked(pe_engine *e, const char *name, const pe__backend_ops *ops,
                                   pe__backend *be, const pe__executor **out, char *err);
const pe__executor *pe__engine_executor_of(const pe_engine *e, const pe__backend_ops *ops);

/* ---- dispatcher services for backends (pe_dispatch.c) ---- */

/* An fd a backend watches on a dispatcher. ready() runs from
 * pe_dispatcher_dispatch with the epoll events and returns the number of
 * runs it completed. The watch must stay valid (not freed) until the
 * backend's dispatcher_detach, even after unwatch: an event already read
 * in the same dispatch may still name it. */
typedef struct pe__watch pe__watch;
struct pe__watch {
  int (*ready)(pe__watch *w, uint32_t events);
};

/* EPOLL_CTL_ADD / MOD / DEL on the dispatcher's epoll set. PE_OK or
 * PE_ERR_IO. */
int pe__dispatcher_watch(pe_dispatcher *d, int fd, uint32_t events, pe__watch *w);
int pe__dispatcher_rewatch(pe_dispatcher *d, int fd, uint32_t events, pe__watch *w);
void pe__dispatcher_unwatch(pe_dispatcher *d, int fd);
/* Makes the dispatcher's fd readable at at_ns (CLOCK_MONOTONIC), unless its
 * timer fires earlier already; then every attached backend's
 * dispatcher_timer runs. 1 means "as soon as possible". */
void pe__dispatcher_arm(pe_dispatcher *d, uint64_t at_ns);
/* Whether pe_dispatcher_free is under way (submit must refuse). */
bool pe__dispatcher_closing(const pe_dispatcher *d);
const pe_mem *pe__dispatcher_mem(const pe_dispatcher *d);

/* A backend has applied the outcome of ex's pending batch: resumes the
 * run and, when it is complete, calls its done callback. Returns 1 if the
 * run completed, 0 if it is pending again. */
int pe__dispatch_complete(pe_exchange *ex);
/* The same for a pending stream chunk (stream_submit): its step ended
 * with rc (PE_OK, or its failure with ex->errmsg set). */
int pe__dispatch_stream_done(pe_exchange *ex, int rc);
/* Whether x can take a chunk of ex's stream without blocking on ex's
 * dispatcher: it has stream_submit, the dispatcher is not closing (then
 * pe_dispatcher_free runs what is left blocking) and its state for x is
 * attached. Otherwise the chunk runs blocking, as in pe_chain_stream_body. */
bool pe__dispatch_can_stream(pe_exchange *ex, const pe__executor *x);
/* Sends chunk of the pending stream of ex through step on ex's dispatcher
 * (pe_stream.c), after pe__dispatch_can_stream: as stream_submit. */
int pe__dispatch_stream_submit(pe_exchange *ex, const pe__executor *x, const pe__step *step,
                               pe_body_chunk *chunk);

#endif /* PE_BACKEND_H */
