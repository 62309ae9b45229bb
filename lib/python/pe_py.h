/*
 * The Python backend: a pool of policyexec-pyworker processes reached over
 * Unix sockets with length-framed protobuf (proto/policyexec/v1).
 *
 * Module map (one job per file):
 *   pe_py_options.c   pe_python_options_* (the public settings object)
 *   pe_py_arena.c     bump allocator that protobuf-c decodes into
 *   pe_py_conn.c      one connection: framing, buffers, blocking calls
 *   pe_py_shm.c       bodies in sealed memfds passed with the frames
 *   pe_py_worker.c    one worker process: spawn, handshake, kill, reap
 *   pe_py_pool.c      the pool: start, pick a worker, instances, shutdown
 *   pe_py_codec.c     exchange -> HttpData, StepResult -> exchange
 *   pe_py_batch.c     run_batch: the blocking round trip
 *   pe_py_dispatch.c  non-blocking runs: per-dispatcher connections and calls
 *                     (batches and streamed chunks)
 *   pe_py_stream.c    streamed body steps: the body's worker, a chunk's
 *                     blocking round trip, checking and applying its answer
 *   pe_py_cancel.c    deadlines of coroutine steps: Cancel instead of a kill
 *   pe_py_supervisor.c  the thread that brings replaced workers back up
 *
 * Locking. Each worker has `lock` (its state, process and control
 * connection) and `pool_lock` (its idle blocking connections). The backend
 * has `inst_lock` (live instances). Order: inst_lock, then a worker's lock,
 * then its pool_lock. The hot path takes only pool_lock (blocking runs) or
 * no lock at all (dispatchers): worker state and generation are atomics.
 */
#ifndef PE_PY_H
#define PE_PY_H

#include "pe_backend.h"

#include <policyexec/v1/executor.pb-c.h>
#include <sched.h>
#include <sys/types.h>
#include <sys/un.h>

typedef Policyexec__V1__Request pe__py_request;
typedef Policyexec__V1__Response pe__py_response;

/* ---- pe_py_options.c ---- */

struct pe_python_options {
  char name[PE__EXECUTOR_NAME_MAX + 1]; /* "": PE__DEFAULT_EXECUTOR */
  unsigned workers;                     /* 0: one per online CPU */
  char *worker_path;
  char **module_paths;
  size_t module_path_count;
  uint32_t default_timeout_ms;
  size_t max_in_flight;
  uint32_t backoff_initial_ms, backoff_max_ms;
  uint32_t startup_timeout_ms;
  uint32_t create_timeout_ms; /* one instance's creation on one worker */
  uint32_t shutdown_grace_ms;
  size_t max_message;          /* 0: derived from the engine's limits */
  bool cpu_affinity;           /* pin workers, prefer the caller's CPU's worker */
  size_t worker_max_in_flight; /* batches in flight per worker */
  size_t shm_threshold;        /* bodies of this size on go in memfds; 0: never */
  char *virtualenv;            /* NULL: none */
};

/* Deep copy into memory of `mem` (for the backend, which outlives opts). */
int pe__py_options_copy(pe_python_options *dst, const pe_python_options *src, const pe_mem *mem);
void pe__py_options_release(pe_python_options *o, const pe_mem *mem);
void pe__py_options_defaults(pe_python_options *o);

/* ---- pe_py_arena.c: decode memory, reset after each message ---- */

typedef struct pe__py_chunk pe__py_chunk;

typedef struct pe__py_arena {
  ProtobufCAllocator pc; /* hands out memory of this arena */
  const pe_mem *mem;
  pe__py_chunk *head; /* current chunk; older ones follow */
} pe__py_arena;

void pe__py_arena_init(pe__py_arena *a, const pe_mem *mem);
/* Forgets every allocation; keeps one chunk big enough for all of them. */
void pe__py_arena_reset(pe__py_arena *a);
void pe__py_arena_free(pe__py_arena *a);

/* ---- pe_py_conn.c: one connection to a worker ---- */

typedef struct pe__py_call pe__py_call;
typedef struct pe__py_worker pe__py_worker;
typedef struct pe__py_instance pe__py_instance;

/* A memfd to pass with the frame that starts at byte `off` of out. */
typedef struct pe__py_fdmark {
  size_t off;
  int fd;
} pe__py_fdmark;

/* A memfd of the connection's pool for bodies to the worker: mapped
 * writable here before it was sealed against any other write
 * (F_SEAL_FUTURE_WRITE), reused once the request that used it is answered. */
typedef struct pe__py_shmbuf {
  int fd;
  void *map;
  size_t cap;
  uint64_t busy; /* id of the request using it, 0: free */
} pe__py_shmbuf;

/* A received body mapped read-only, unmapped when its reply is consumed. */
typedef struct pe__py_map {
  void *addr;
  size_t len;
} pe__py_map;

/* Fds received and not yet claimed by a frame: a worker cannot make the
 * engine hold more (the connection ends instead). */
#define PE__PY_FDS_IN 32

typedef struct pe__py_conn {
  int fd;       /* -1 when closed */
  unsigned gen; /* generation of the worker it talks to */
  pe__py_worker *worker;
  const pe_mem *mem;
  size_t max_message;
  uint64_t next_id;
  pe__buf out; /* framed requests not yet written */
  size_t out_off;
  pe__buf in; /* bytes read, from in_off on not yet consumed */
  size_t in_off;
  size_t frame_len; /* bytes of the frame last returned by next(), 0: none */
  bool eof;
  pe__py_arena arena;
  char why[PE__ERRMSG_SIZE]; /* what went wrong, for logs */
  /* Encoding scratch, grown as needed and reused. */
  Policyexec__V1__Header *hdrs;
  Policyexec__V1__Header **hdr_ptrs;
  size_t hdr_cap;
  Policyexec__V1__MetaEntry *meta;
  Policyexec__V1__MetaEntry **meta_ptrs;
  size_t meta_cap;
  uint64_t *ids;
  protobuf_c_boolean *fail_open;
  uint32_t *timeouts;
  Policyexec__V1__Phase *step_phases;
  size_t step_cap;
  /* Set by a remote transport before encoding a RunPhase: the specs of the
   * batch's instances (RunPhase.instances); NULL on the local transport. */
  Policyexec__V1__CreateInstance **specs;
  /* Set by pe_py_stream.c before encoding a RunPhase of one streamed step:
   * the chunk goes as the body of the batch's phase, with this StreamChunk
   * (NULL: a normal batch). */
  Policyexec__V1__StreamChunk *stream;
  pe_slice stream_data;
  /* Dispatcher connections: the dispatcher state that owns it, its watch
   * on the dispatcher's epoll set, calls awaiting replies, oldest first. */
  struct pe__py_dstate *ds;
  pe__watch watch;
  pe__py_call *head, *tail;
  size_t calls;
  bool watching_out; /* EPOLLOUT is registered */
  /* Shared memory (pe_py_shm.c), local transport only. */
  size_t shm_threshold; /* 0: every body inline (remote transports) */
  pe__py_shmbuf *bufs;  /* the pool */
  size_t n_bufs, bufs_cap;
  size_t next_bufs[2]; /* pool entries the request being encoded uses */
  size_t n_next;
  pe__py_fdmark *fds_out; /* memfds of queued frames, by offset in out */
  size_t fds_out_head, n_fds_out, fds_out_cap;
  int fds_in[PE__PY_FDS_IN]; /* received, oldest first */
  size_t n_fds_in;
  pe__py_map *maps; /* of the reply last returned by next() */
  size_t n_maps, maps_cap;
  struct pe__py_conn *next; /* idle list (blocking pool) or dispatcher list */
} pe__py_conn;

void pe__py_conn_init(pe__py_conn *c, const pe_mem *mem, size_t max_message);
/* Connects (blocking) to the socket at path and makes the fd non-blocking.
 * Returns PE_OK, or PE_ERR_WORKER with errno kept for the caller. */
int pe__py_conn_connect(pe__py_conn *c, const char *path);
/* Closes the fd and drops buffered bytes; keeps memory for a reconnect. */
void pe__py_conn_close(pe__py_conn *c);
void pe__py_conn_free(pe__py_conn *c);
/* Frames req (with a fresh id, stored in req->id) after the queued bytes. */
int pe__py_conn_queue(pe__py_conn *c, pe__py_request *req);
/* Writes queued bytes: PE_OK (all written), PE_PENDING (socket full),
 * PE_ERR_WORKER (peer gone; c->why says how). */
int pe__py_conn_flush(pe__py_conn *c);
/* Reads what is available: PE_OK (sets c->eof on end of stream) or
 * PE_ERR_WORKER. */
int pe__py_conn_fill(pe__py_conn *c);
/* The next complete response: PE_OK (*out valid until consume), PE_PENDING
 * (incomplete), PE_ERR_WORKER (oversized or unparsable; c->why). */
int pe__py_conn_next(pe__py_conn *c, pe__py_response **out);
/* Releases the response returned by next(). */
void pe__py_conn_consume(pe__py_conn *c);
/* Blocking round trip: queue, write, wait for the reply with the same id
 * until deadline_ns (CLOCK_MONOTONIC). PE_OK (*out valid until consume),
 * PE_ERR_TIMEOUT, or PE_ERR_WORKER (*sent_nothing tells whether the request
 * never reached the socket, so that retrying elsewhere is safe). */
int pe__py_conn_call(pe__py_conn *c, pe__py_request *req, uint64_t deadline_ns,
                     pe__py_response **out, bool *sent_nothing);
/* The waiting half of pe__py_conn_call, for a request already queued. */
int pe__py_conn_wait(pe__py_conn *c, uint64_t id, uint64_t deadline_ns, pe__py_response **out,
                     bool *sent_nothing);
/* Blocking Hello on a fresh connection; checks the protocol version. */
int pe__py_conn_hello(pe__py_conn *c, uint64_t deadline_ns, pe__py_response **out);

/* ---- pe_py_shm.c: bodies in shared memory ---- */

/* Whether a body of len bytes goes through shared memory on c. */
static inline bool pe__py_shm_wanted(const pe__py_conn *c, size_t len) {
  return c->shm_threshold > 0 && len >= c->shm_threshold;
}
/* Copies len bytes into a free memfd of c's pool (creating one if none
 * fits), to go with the next frame queued, and describes it in ref. PE_OK,
 * PE_ERR_NOMEM or PE_ERR_IO (memfd calls failed; c->why). */
int pe__py_shm_put(pe__py_conn *c, const void *data, size_t len, Policyexec__V1__ShmRef *ref);
/* Queue side: marks the memfds of the request just encoded (id
 * c->next_id) busy and queues them with its frame at offset off of c->out
 * (PE_OK, PE_ERR_NOMEM, PE_ERR_IO), or frees them (off == SIZE_MAX). */
int pe__py_shm_mark(pe__py_conn *c, size_t off);
/* Maps the shared-memory bodies of a reply, each with the next received
 * fd, after checking its seals and size, and points the messages' bytes
 * at them. PE_OK, or PE_ERR_WORKER (c->why): the worker lied. */
int pe__py_shm_resolve(pe__py_conn *c, pe__py_response *resp);
/* Unmaps the bodies of the reply last resolved. */
void pe__py_shm_unmap(pe__py_conn *c);
/* Closes every fd c holds (queued, received, its pool) and unmaps: the
 * connection closes. */
void pe__py_shm_drop(pe__py_conn *c);
/* Frees the arrays (after drop). */
void pe__py_shm_free(pe__py_conn *c);

/* ---- pe_py_worker.c: one worker process ---- */

enum { PE__PY_DEAD = 0, PE__PY_STARTING = 1, PE__PY_READY = 2 };

struct pe__py_worker {
  struct pe__py_backend *be;
  size_t index;
  pthread_mutex_t lock;
  atomic_int state;
  atomic_uint gen;      /* bumped each time the process is replaced */
  atomic_int pid;       /* 0 when none */
  atomic_long inflight; /* batches sent and not answered */
  int cpu;              /* the CPU it is pinned to, or -1 */
  char sock_path[sizeof(((struct sockaddr_un *)0)->sun_path)];
  pe__py_conn control; /* handshake, create, destroy, ping */
  uint64_t spawned_ns;
  uint64_t next_spawn_ns; /* back-off: no spawn before this */
  unsigned quick_deaths;  /* consecutive deaths soon after a start */
  pthread_mutex_t pool_lock;
  pe__py_conn *idle; /* idle blocking connections of generation gen */
  /* The policy an instance of which is being created on this worker (by a
   * chain build), or NULL. The worker runs one thing at a time, so while it
   * is set batches go to other workers when any is ready, and a batch that
   * still waits on it past its deadline does not get it killed: the create
   * has a timeout of its own. */
  _Atomic(const struct pe__policy *) creating;
};

/* Asks the worker at the other end of c (w's current process) to create
 * inst, within the pool's create timeout, and records the phases whose
 * methods are coroutines (inst->async_phases). The caller holds whatever makes
 * c its own (w->lock for w->control). PE_OK; PE_ERR_PARAM (refused: the
 * worker's message in err); PE_ERR_TIMEOUT (past the create timeout: err
 * names the policy and the timeout; *kill says the worker could not
 * interrupt it and must be replaced); PE_ERR_WORKER (the connection broke:
 * the caller fails the worker). */
int pe__py_worker_create(pe__py_worker *w, pe__py_conn *c, pe__py_instance *inst, char *err,
                         bool *kill);

/* pe_py_spawn.c: starts path with argv as a worker (stdin /dev/null, the
 * lifeline as fd 3, no other host fd, default signals, own process group).
 * Returns 0 (*pid set) or an errno value. */
int pe__py_spawn(const char *path, char *const argv[], int lifeline_fd, pid_t *pid);

/* With w->lock held: starts a process if the back-off allows it. */
int pe__py_worker_spawn(pe__py_worker *w, char *err);
/* With inst_lock and w->lock held: waits for the socket, says Hello,
 * passes the reply to on_hello (if not NULL; its error fails the
 * handshake), re-creates every live instance, and marks w READY. */
int pe__py_worker_handshake(pe__py_worker *w,
                            int (*on_hello)(struct pe__py_backend *be,
                                            const Policyexec__V1__HelloReply *hello, char *err),
                            char *err);
/* Without locks: makes w READY (spawning / handshaking it if needed).
 * PE_OK, or PE_ERR_WORKER (down: back-off, failed start). */
int pe__py_worker_ensure_ready(pe__py_worker *w);
/* Without locks: kills, reaps and replaces the process of generation gen
 * (nothing if it has been replaced already). why goes to the log. */
void pe__py_worker_fail(pe__py_worker *w, unsigned gen, const char *why);
/* Shutdown: SIGTERM every worker, SIGKILL those left after the grace
 * period, reap all. */
void pe__py_workers_stop(pe__py_worker *workers, size_t n, uint32_t grace_ms);
/* With w->lock held: one control round trip on w->control. */
int pe__py_worker_control_call(pe__py_worker *w, pe__py_request *req, pe__py_response **out);

/* ---- pe_py_supervisor.c ---- */

typedef struct pe__py_supervisor {
  pthread_t thread;
  pthread_mutex_t lock; /* taken after a worker's lock, never before */
  pthread_cond_t wake;  /* CLOCK_MONOTONIC */
  bool running;         /* the thread exists (set and read by the owner) */
  bool stop, poked;
} pe__py_supervisor;

/* Starts the thread once the pool is up. PE_OK or PE_ERR_NOMEM (err). */
int pe__py_supervisor_start(struct pe__py_backend *be, char *err);
/* A worker went down: have the thread replace it now. Any thread. */
void pe__py_supervisor_poke(struct pe__py_backend *be);
/* Stops and joins the thread (before the workers are stopped). */
void pe__py_supervisor_stop(struct pe__py_backend *be);

/* ---- pe_py_pool.c: the backend ---- */

struct pe__py_instance {
  uint64_t id;
  const pe__policy *policy;
  char *params_json;
  /* Bit (1 << phase) for each phase whose method is a coroutine, from the
   * workers' CreateReply: such a step is cancelled at its deadline, not
   * killed (pe_py_cancel.c). */
  atomic_uint async_phases;
  struct pe__py_instance *prev, *next;
};

struct pe__py_backend {
  pe_engine *engine; /* not a reference: the engine owns the backend */
  const pe_mem *mem;
  pe_python_options cfg;
  size_t max_message;
  char dir[sizeof(((struct sockaddr_un *)0)->sun_path)]; /* socket directory */
  /* Workers read lifeline[0] (as fd 3) and exit at its EOF: only this
   * process holds lifeline[1] (close-on-exec), so they die with it. */
  int lifeline[2];
  /* With cpu_affinity: the worker pinned to each CPU (first one), or -1. */
  short cpu_worker[CPU_SETSIZE];
  pe__py_worker *workers;
  size_t nworkers;
  atomic_uint rr;       /* round-robin start for worker choice */
  atomic_long inflight; /* batches in flight, engine-wide */
  atomic_ullong restarts;
  pthread_mutex_t inst_lock;
  pe__py_instance *instances;
  atomic_ullong next_instance_id;
  pe__py_supervisor supervisor;
  atomic_bool stopping;      /* shutdown: spawn nothing more */
  pe__advertised advertised; /* start-up only: worker 0's policies */
};

typedef struct pe__py_backend pe__py_backend;

extern const pe__backend_ops pe__py_backend_ops;

/* The least loaded READY worker (starting one if none is), or NULL. */
pe__py_worker *pe__py_pick_worker(pe__py_backend *be);
/* Takes a slot of the engine-wide in-flight budget: PE_OK or PE_ERR_BUSY. */
int pe__py_inflight_take(pe__py_backend *be, pe__py_worker *w);
void pe__py_inflight_give(pe__py_backend *be, pe__py_worker *w);
/* The engine's hard deadline for a batch: each step may use its whole
 * timeout, plus a grace. The worker interrupts each step at its own
 * timeout (RunPhase.timeout_ms) and reports it; this deadline only catches
 * a worker that cannot interrupt a step (blocked in C code), which is then
 * killed. */
uint64_t pe__py_batch_deadline(const pe__batch *b, uint64_t now_ns);

/* ---- pe_py_batch.c ---- */

/* The backend's blocking run_batch: one round trip. */
int pe__py_run_batch(pe__backend *be, pe_exchange *ex, const pe__batch *b);
/* An idle blocking connection to w's current process, or a new one
 * (connected and greeted). NULL when w cannot be reached; then w has been
 * failed. */
pe__py_conn *pe__py_pool_take(pe__py_backend *be, pe__py_worker *w);
/* Gives c back to w's idle list (or frees it if w was replaced). */
void pe__py_pool_put(pe__py_backend *be, pe__py_worker *w, pe__py_conn *c);
/* Frees a connection that is not to be reused. */
void pe__py_conn_discard(pe__py_backend *be, pe__py_conn *c);

/* ---- pe_py_stream.c: streamed body steps ---- */

/* What the state slot of a streamed Python step holds: the worker process
 * that holds the step's state of this body. */
typedef struct pe__py_body {
  pe__py_worker *w;
  unsigned gen;     /* w's process when the body began */
  uint64_t body_id; /* StreamChunk.body_id */
  bool worker_done; /* the worker holds no state of it any more */
} pe__py_body;

/* The body's worker for this chunk (the one of its first chunk, or one
 * picked now and recorded in the chunk's state slot), with one in-flight
 * slot taken on it (pe__py_inflight_give returns it). PE_OK, or the
 * step's failure (PE_ERR_WORKER: replaced mid-body, none available;
 * PE_ERR_NOMEM; the in-flight limit's code) with ex->errmsg set. */
int pe__py_stream_worker(pe__py_backend *be, pe_exchange *ex, pe_body_chunk *chunk,
                         pe__py_body **out);
/* Applies the worker's answer to one chunk: PE_OK or the step's failure
 * (ex->errmsg set); *lied says the worker broke the protocol (replace it). */
int pe__py_stream_apply(pe_exchange *ex, pe_body_chunk *chunk, const pe__py_response *resp,
                        pe__py_body *sb, bool *lied);
pe_phase pe__py_body_phase(pe_dir dir);
/* The table's stream_submit (pe_py_dispatch.c). */
int pe__py_stream_submit(pe__backend *be, pe__dstate *ds, pe_exchange *ex, const pe__step *step,
                         pe_body_chunk *chunk);

/* The table's stream_chunk and stream_free (pe_backend.h). */
int pe__py_stream_chunk(pe__backend *be, pe_exchange *ex, const pe__step *step,
                        pe_body_chunk *chunk);
void pe__py_stream_free(pe__backend *be, const pe__step *step, void *state);
/* Applies a step's header, metadata, request line and answer edits (not
 * its body edits) to ex; returns the first refusal (pe_py_codec.c). */
int pe__py_apply_edits(pe_exchange *ex, pe_phase phase, const Policyexec__V1__StepResult *r);

/* ---- pe_py_codec.c ---- */

/* Encodes a RunPhase of b's steps on ex into c's queue (*id_out set). */
int pe__py_encode_run(pe__py_conn *c, const pe_exchange *ex, const pe__batch *b, uint64_t *id_out);
/* Checks that resp answers a RunPhase of b whose steps before `first` have
 * been reported already (partial replies), given the steps' modes: the
 * right kind, no more results than steps left, fewer only after an
 * immediate response or a fail-closed failure (or in a partial reply, which
 * must leave steps to run). PE_OK, or PE_ERR_WORKER with why. */
int pe__py_check_reply(const pe__py_response *resp, const pe__batch *b, size_t first, char *why);
/* 1 if resp (a checked reply) is a partial one: more replies follow. */
bool pe__py_reply_partial(const pe__py_response *resp);
/* Applies a checked reply to ex, step by step from b's step `first`, as
 * each step's own txn. Returns the number of steps it reported. */
size_t pe__py_apply_reply(pe_exchange *ex, const pe__batch *b, size_t first,
                          const pe__py_response *resp);
/* Fails b's steps from `first` on, in order, each by its own failure mode
 * and logged with its own phase, until the exchange answers, with rc: the
 * steps whose outcome the engine does not know (a worker died or was
 * killed mid batch). */
void pe__py_fail_steps(pe_exchange *ex, const pe__batch *b, size_t first, int rc,
                       pe_step_outcome outcome, const char *why);

/* ---- pe_py_cancel.c: deadlines of coroutine steps ---- */

/* How long a worker has, after the engine gave up on a batch with a
 * coroutine step and sent a Cancel, to answer it before it is deemed stuck
 * (a synchronous step blocking) and killed. */
#define PE__PY_CANCEL_GRACE_MS 500u

/* Whether some step of b runs a coroutine method in its phase. */
bool pe__py_batch_may_wait(const pe__batch *b);
/* Queues a Cancel of request id on c (not flushed). */
int pe__py_queue_cancel(pe__py_conn *c, uint64_t id);

/* Copies each PolicyInfo of a handshake's reply into an entry of out (to
 * be registered with pe__engine_add_executor_with_policies). Shared by
 * every transport of the executor protocol. PE_OK or PE_ERR_NOMEM. */
int pe__py_collect_policies(pe_engine *e, const Policyexec__V1__HelloReply *hello,
                            pe__advertised *out, char *err);

/* ---- pe_py_dispatch.c: the table's non-blocking entries ---- */

int pe__py_submit(pe__backend *be, pe__dstate *ds, pe_exchange *ex, const pe__batch *b);
int pe__py_dispatcher_attach(pe__backend *be, pe_dispatcher *d, pe__dstate **out);
void pe__py_dispatcher_detach(pe__dstate *ds);
int pe__py_dispatcher_timer(pe__dstate *ds, uint64_t now_ns);
bool pe__py_forget(pe__dstate *ds, pe_exchange *ex);

#endif /* PE_PY_H */
