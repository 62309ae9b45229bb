/*
 * Internal declarations shared by the library's modules. Nothing here is
 * part of the ABI: internal functions are `pe__*` and hidden.
 *
 * Module map (one job per file):
 *   pe_error.c      pe_strerror, pe_errname, pe_phase_name, message buffers
 *   pe_version.c    pe_version
 *   pe_mem.c        allocator wrappers
 *   pe_buf.c        growable byte buffer
 *   pe_fields.c     ordered multi-map of byte fields (headers, metadata)
 *   pe_validate.c   token / header value / request-line checks
 *   pe_engine.c     engine, options, log
 *   pe_registry.c   policy registry (native and Python entries)
 *   pe_plugin.c     plugin loading (dlopen)
 *   pe_params.c     param validation against specs, pe_params_* getters
 *   pe_builder.c    chain builder and the JSON chain format
 *   pe_chain.c      chain object: refcount, queries, instance teardown
 *   pe_run.c        running a phase: step order, failure modes, resume
 *   pe_exchange.c   exchange lifecycle, request line, status, verdict, errors
 *   pe_headers.c    pe_exchange_header_* and pe_exchange_meta_*
 *   pe_body.c       pe_exchange_body_*
 *   pe_txn.c        per-step snapshot/rollback of an exchange
 *   pe_executor.c   the engine's named executors (out-of-process backends)
 *   pe_dispatch.c   pe_dispatcher and the non-blocking runs
 *   pe_stream.c     streamed bodies: chunks through streamed steps (also async)
 *   pe_stream_plan.c  streamed bodies: the plan of each body of a chain
 *
 * Backends (lib/python/, ...) are reached only through the table in
 * pe_backend.h, and reach the core only through what it declares.
 */
#ifndef PE_INTERNAL_H
#define PE_INTERNAL_H

#include <policyexec/policyexec.h>

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <string.h>

#define PE__ERRMSG_SIZE 256

/* A slice a caller passed: NULL only when empty. */
static inline bool pe__slice_ok(pe_slice s) {
  return s.ptr || s.len == 0;
}

static inline bool pe__dir_ok(pe_dir dir) {
  return dir == PE_REQUEST || dir == PE_RESPONSE;
}

/* ---- pe_error.c ---- */

/* Formats into a fixed message buffer of PE__ERRMSG_SIZE bytes (truncating). */
void pe__errmsg_vset(char *buf, const char *fmt, va_list ap) PE_PRINTF(2, 0);
void pe__errmsg_set(char *buf, const char *fmt, ...) PE_PRINTF(2, 3);

/* ---- pe_mem.c ---- */

void *pe__malloc(const pe_mem *mem, size_t size);
void *pe__calloc(const pe_mem *mem, size_t nmemb, size_t size);
void *pe__realloc(const pe_mem *mem, void *ptr, size_t size);
void pe__free(const pe_mem *mem, void *ptr);
/* NUL-terminated copy of len bytes. */
char *pe__strndup(const pe_mem *mem, const char *s, size_t len);
/* The malloc-based defaults. */
extern const pe_mem pe__default_mem;

/* ---- pe_buf.c: growable bytes, reused across requests ---- */

typedef struct pe__buf {
  char *data;
  size_t len;
  size_t cap;
} pe__buf;

/* Makes room for `extra` more bytes (amortised doubling). */
int pe__buf_reserve(pe__buf *b, const pe_mem *mem, size_t extra);
int pe__buf_set(pe__buf *b, const pe_mem *mem, const char *p, size_t n);
int pe__buf_append(pe__buf *b, const pe_mem *mem, const char *p, size_t n);
int pe__buf_prepend(pe__buf *b, const pe_mem *mem, const char *p, size_t n);
void pe__buf_free(pe__buf *b, const pe_mem *mem);
static inline pe_slice pe__buf_slice(const pe__buf *b) {
  return pe_bytes(b->data, b->len);
}

/* ---- pe_fields.c: ordered multi-map (headers: case-insensitive names) ---- */

typedef struct pe__field {
  size_t name_off, name_len; /* into pe__fields.bytes */
  size_t value_off, value_len;
} pe__field;

typedef struct pe__fields {
  pe__field *items;
  size_t count, cap;
  pe__buf bytes;     /* append-only between compactions */
  size_t live_bytes; /* sum of name_len + value_len over items */
  bool ci;           /* compare names case-insensitively */
} pe__fields;

void pe__fields_init(pe__fields *f, bool case_insensitive);
void pe__fields_clear(pe__fields *f); /* keeps memory */
void pe__fields_free(pe__fields *f, const pe_mem *mem);
/* Deep copy of src into dst (reusing dst's memory). */
int pe__fields_copy(pe__fields *dst, const pe__fields *src, const pe_mem *mem);
void pe__fields_swap(pe__fields *a, pe__fields *b);
/* nth value of name, or -1. */
long pe__fields_find(const pe__fields *f, pe_slice name, size_t nth);
pe_slice pe__fields_name(const pe__fields *f, size_t i);
pe_slice pe__fields_value(const pe__fields *f, size_t i);
/* Limit-checked mutators: return PE_ERR_TOO_MANY_HEADERS /
 * PE_ERR_HEADERS_TOO_LARGE when max_count / max_bytes would be exceeded. */
int pe__fields_add(pe__fields *f, const pe_mem *mem, pe_slice name, pe_slice value,
                   size_t max_count, size_t max_bytes);
int pe__fields_set(pe__fields *f, const pe_mem *mem, pe_slice name, pe_slice value,
                   size_t max_count, size_t max_bytes);
int pe__fields_remove(pe__fields *f, pe_slice name); /* count removed */

/* ---- pe_validate.c ---- */

bool pe__is_token(pe_slice s);             /* RFC 9110 token, non-empty */
bool pe__is_field_value(pe_slice s);       /* no CR, LF, NUL, DEL */
size_t pe__field_value_bad_at(pe_slice s); /* index of the first of those, or s.len */
bool pe__is_request_target(pe_slice s, bool allow_empty); /* visible ASCII, no space */
/* A header that frames the message or the connection (Content-Length,
 * Transfer-Encoding and the hop-by-hop ones): the proxy's, not a policy's. */
bool pe__is_framing_header(pe_slice name);

/* ---- pe_engine.c / pe_registry.c ---- */

/* NATIVE: C callbacks in this process. EXECUTOR: run by an out-of-process
 * executor (the Python pool, a remote executor) through its backend. */
typedef enum pe__kind { PE__KIND_NATIVE = 0, PE__KIND_EXECUTOR = 1 } pe__kind;

struct pe__executor; /* pe_backend.h */

typedef struct pe__policy {
  pe__kind kind;
  char *name;
  char *version;
  unsigned phases; /* PE_PHASE_BIT mask */
  unsigned needs;  /* PE_NEEDS_* mask */
  /* native only: */
  pe_param_spec *specs; /* deep copy (names owned) */
  size_t spec_count;
  int (*create)(void **instance, pe_params *params, void *user_data);
  void (*destroy)(void *instance, void *user_data);
  pe_phase_fn on[PE_PHASE_COUNT];
  void *user_data;
  void (*free_user_data)(void *user_data);
  void *plugin; /* the pe__plugin that registered it, or NULL */
  /* streamed bodies (native, ABI 2): chunk callbacks by pe_dir, and the
   * bodies (PE_NEEDS_* bits) it must see whole: flags, or a buffered body
   * callback without a streamed one */
  pe_body_chunk_fn on_chunk[2];
  pe_body_state_free_fn free_body_state;
  unsigned buffers;
  /* executor only: the bodies (PE_NEEDS_* bits) it can take in chunks
   * (PolicyInfo.chunk_phases); streamed when its executor fills
   * pe__backend_ops.stream_chunk and it does not also buffer them */
  unsigned streams;
  /* executor only: the executor that advertised it (NULL: the engine's
   * default executor, resolved when a step runs) */
  const struct pe__executor *exec;
  struct pe__policy *next;
} pe__policy;

struct pe_engine_options {
  pe_mem mem;
  pe_log_fn log;
  void *log_ud;
  pe_log_level log_level;
  pe_metrics_fn metrics;
  void *metrics_ud;
  size_t limits[5]; /* indexed by pe_limit */
};

/* Executors an engine may hold: a fixed array, so that chains may keep
 * pointers to entries and the hot path reads them without a lock. */
#define PE__MAX_EXECUTORS 8
#define PE__EXECUTOR_NAME_MAX 63
/* The executor a step uses when neither it nor its policy names one. */
#define PE__DEFAULT_EXECUTOR "python"

struct pe__executor {
  char name[PE__EXECUTOR_NAME_MAX + 1];
  const struct pe__backend_ops *ops;
  struct pe__backend *be;
};

struct pe_engine {
  atomic_int refs;
  pe_engine_options opts; /* immutable after pe_engine_new */
  pthread_mutex_t lock;   /* guards registry, plugins, errmsg */
  pe__policy *policies;
  void *plugins; /* pe_plugin.c's list of dlopen handles */
  char errmsg[PE__ERRMSG_SIZE];
  /* Entries [0, executor_count) are complete; added under lock, published
   * with a release store, never removed before the engine goes. */
  struct pe__executor executors[PE__MAX_EXECUTORS];
  atomic_size_t executor_count;
};

void pe__engine_ref(pe_engine *e);
void pe__engine_unref(pe_engine *e); /* last reference destroys */
void pe__engine_fail(pe_engine *e, const char *fmt, ...) PE_PRINTF(2, 3);
void pe__log(pe_engine *e, pe_log_level level, const char *fmt, ...) PE_PRINTF(3, 4);
static inline const pe_mem *pe__engine_mem(const pe_engine *e) {
  return &e->opts.mem;
}

/* Registry (call with e->lock held). */
pe__policy *pe__registry_find(pe_engine *e, pe_slice name, pe_slice version);
/* Takes ownership of p (frees it and its user_data on failure). */
int pe__registry_add(pe_engine *e, pe__policy *p);
void pe__policy_free(pe_engine *e, pe__policy *p);
/* Removes (and frees) every policy registered by `plugin`. */
void pe__registry_remove_plugin(pe_engine *e, void *plugin);
void pe__registry_free_all(pe_engine *e);

/* pe_plugin.c */
void pe__plugins_close_all(pe_engine *e);

/* ---- pe_params.c ---- */

/* Validates params_json against p's specs. On failure writes "param 'x':
 * expected string" style text to err and returns PE_ERR_PARAM / PE_ERR_JSON. */
int pe__params_validate(const pe__policy *p, pe_slice params_json, char *err);
/* Validates, then calls p->create. */
int pe__params_create_instance(const pe__policy *p, pe_slice params_json, void **instance,
                               char *err);

/* ---- chains ---- */

typedef struct pe__step {
  pe__policy *policy;
  const struct pe__executor *exec; /* named by the step ("executor"), or NULL */
  void *instance;                  /* native instance, or backend instance handle */
  char *params_json;               /* NUL-terminated compact JSON object */
  size_t params_len;
  pe_failure_mode mode;
  uint32_t timeout_ms; /* 0: not set; the backend applies its default */
  bool enabled;
  size_t index;
} pe__step;

/* pe_executor.c */
/* The executor named name, or NULL. Lock-free. */
const struct pe__executor *pe__engine_find_executor(const pe_engine *e, pe_slice name);
/* The executor that runs step s of kind EXECUTOR: the step's own, its
 * policy's, else the default one; NULL when none is running. */
const struct pe__executor *pe__step_executor(const pe_engine *e, const pe__step *s);
/* Shuts every executor down (engine teardown). */
void pe__executors_shutdown(pe_engine *e);

struct pe_chain {
  atomic_int refs;
  pe_engine *engine; /* holds a reference */
  pe__step *steps;
  size_t step_count;
  /* Run order per phase: indices into steps, enabled steps implementing the
   * phase, reversed for response phases. */
  size_t *order[PE_PHASE_COUNT];
  size_t order_len[PE_PHASE_COUNT];
  unsigned phases;
  unsigned needs;
  unsigned char plan[2]; /* pe_body_plan by pe_dir (pe_stream_plan.c) */
};

#define PE__DEFAULT_TIMEOUT_MS 1000u

/* ---- exchanges ---- */

/* Parts of an exchange a step may change, for snapshot/rollback. */
enum {
  PE__PART_REQUEST_LINE = 1u << 0,
  PE__PART_REQ_HEADERS = 1u << 1,
  PE__PART_RESP_HEADERS = 1u << 2,
  PE__PART_REQ_BODY = 1u << 3,
  PE__PART_RESP_BODY = 1u << 4,
  PE__PART_META = 1u << 5
};

typedef struct pe__snapshot {
  unsigned saved; /* PE__PART_* already copied in this step */
  pe__buf method, path, authority;
  pe__fields headers[2];
  pe__buf body[2];
  pe__fields meta;
  int status;
  pe_verdict verdict;
  unsigned changes; /* pe_exchange.changes when the step began */
} pe__snapshot;

/* State of a phase run, kept on the exchange so that a pending run can
 * resume where it stopped. */
typedef struct pe__run_state {
  const pe_chain *chain;
  pe_phase phase; /* the phase running now */
  pe_phase last;  /* the run ends after this phase (pe_chain_run_phases) */
  size_t pos;     /* next entry of chain->order[phase] */
  bool pending;   /* an out-of-process batch is in flight */
  /* A policy is changing the exchange right now: a native callback runs, or
   * a worker's edits are being applied. Re-entrant calls that would restart
   * or recurse into the run (pe_exchange_reset, pe_chain_run* on this
   * exchange) are refused, and so are edits of framing headers, which only
   * the host may make (pe__is_framing_header). */
  bool in_step;
  pe_run_done_fn done; /* completion of an async run */
  void *done_ud;
  pe_dispatcher *dispatcher;       /* NULL: a blocking run */
  const struct pe__executor *exec; /* the executor of the pending batch */
  /* pe_dir + 1 of the body whose chunk is pending (pe_chain_stream_body_async),
   * 0: the pending thing is a phase run */
  unsigned char stream_dir;
  uint64_t started_ns; /* clock when the current step or batch began (metrics on) */
} pe__run_state;

struct pe_exchange {
  pe_engine *engine; /* holds a reference */
  const pe_mem *mem;
  size_t limits[5];
  pe__buf method, path, authority;
  pe__fields headers[2]; /* [PE_REQUEST], [PE_RESPONSE] */
  pe__buf body[2];
  pe__fields meta;
  int status;
  pe_verdict verdict;
  char errmsg[PE__ERRMSG_SIZE];
  unsigned changes; /* pe_change bits of policies' edits (pe_exchange_changes) */
  bool txn_active;  /* a fail-open step is running: snapshot before writes */
  pe__snapshot snap;
  pe__run_state run;
  struct pe__stream *stream[2]; /* streamed bodies by pe_dir (pe_stream.c), made on first use */
};

/* pe_txn.c: call pe__txn_touch(ex, PART) before changing a part. */
void pe__txn_begin(pe_exchange *ex); /* before a fail-open step */
int pe__txn_save(pe_exchange *ex, unsigned part);
static inline int pe__txn_touch(pe_exchange *ex, unsigned part) {
  if (!ex->txn_active || (ex->snap.saved & part))
    return PE_OK;
  return pe__txn_save(ex, part);
}
void pe__txn_commit(pe_exchange *ex);
void pe__txn_rollback(pe_exchange *ex);
void pe__snapshot_free(pe__snapshot *s, const pe_mem *mem);

/* Records a successful edit of the parts in `bits` (pe_change) when a
 * policy made it: the host's own edits are not "changes of the chain". */
static inline void pe__changed(pe_exchange *ex, unsigned bits) {
  if (ex->run.in_step)
    ex->changes |= bits;
}

/* What an immediate answer replaces (pe_exchange_respond, a closed failure). */
#define PE__CHANGE_ANSWER (PE_CHANGE_STATUS | PE_CHANGE_RESPONSE_HEADERS | PE_CHANGE_RESPONSE_BODY)

/* pe_exchange.c: records a refused call's message on ex and returns rc. */
int pe__exchange_fail(pe_exchange *ex, int rc, const char *fmt, ...) PE_PRINTF(3, 4);

/* ---- pe_run.c ---- */

/* Applies a step failure: logs it (naming the policy), records it on ex,
 * reports metrics, then per the step's mode rolls back (open) or answers
 * 500 / 504 (closed). Shared by native steps and the Python backend. */
void pe__step_failed(pe_exchange *ex, const pe__step *step, pe_phase phase, int rc,
                     pe_step_outcome outcome, const char *why);
/* CLOCK_MONOTONIC in nanoseconds. Read only when e->opts.metrics is set. */
uint64_t pe__now_ns(void);
/* Reports a step that ran to the metrics callback, if one is set, with the
 * time since ex->run.started_ns. pe__step_failed calls it itself. */
void pe__step_report(pe_exchange *ex, const pe__step *step, pe_phase phase,
                     pe_step_outcome outcome);

/* Consecutive out-of-process steps sent as one batch; longer runs are split. */
#define PE__BATCH_MAX 64

/* A run of consecutive out-of-process steps. It may cross from one phase
 * into the next when the host runs several phases at once
 * (pe_chain_run_phases): step[i] runs in phase[i], phases non-decreasing. */
typedef struct pe__batch {
  size_t n;
  const pe__step *step[PE__BATCH_MAX];
  pe_phase phase[PE__BATCH_MAX];
} pe__batch;

/* Copies the n entries in use (a whole pe__batch is mostly unused). */
static inline void pe__batch_copy(pe__batch *dst, const pe__batch *src) {
  dst->n = src->n;
  memcpy(dst->step, src->step, src->n * sizeof src->step[0]);
  memcpy(dst->phase, src->phase, src->n * sizeof src->phase[0]);
}

/* pe_dispatch.c: cancels ex's pending async run without calling its done
 * callback (the reply, when it comes, is dropped). Returns whether it was
 * found pending on its dispatcher. */
bool pe__dispatch_forget(pe_exchange *ex);
/* pe_dispatch.c: hands b to executor x for the async run of ex (on
 * ex->run.dispatcher); returns as pe__backend_ops.submit. */
int pe__dispatch_submit(pe_exchange *ex, const struct pe__executor *x, const pe__batch *b);

/* Continues ex->run from ex->run.phase / pos up to ex->run.last; returns
 * PE_OK or PE_PENDING. */
int pe__run_continue(pe_exchange *ex);

/* ---- pe_stream.c, pe_stream_plan.c ---- */

/* Registration of an ABI-2 definition: adds the body phases and needs of
 * p's chunk callbacks and sets p->buffers from flags and the callbacks. */
void pe__policy_add_streamed(pe__policy *p, unsigned flags);
/* Computes c->plan from its steps (chain build). */
void pe__stream_plan(pe_chain *c);
/* Whether step policy p has a streamed callback for body phase `phase`;
 * then pe_run.c runs the step through pe__stream_run_whole. */
static inline bool pe__stream_takes(const pe__policy *p, pe_phase phase) {
  return (phase == PE_PHASE_REQUEST_BODY && p->on_chunk[PE_REQUEST]) ||
         (phase == PE_PHASE_RESPONSE_BODY && p->on_chunk[PE_RESPONSE]);
}
/* A streamed step met in its body phase (the body is buffered): nothing if
 * this body was streamed already, else its buffered callback if it has
 * one, else its chunk callback once over the whole body (one last chunk,
 * whose output becomes the body). Returns as a phase callback. */
int pe__stream_run_whole(pe_exchange *ex, const pe__step *step, pe_phase phase);
/* Ends ex's streams without finishing them (reset: keeps memory; free:
 * releases it). */
void pe__stream_release(pe_exchange *ex, bool free_memory);
/* pe_chain_stream_body_async's start (pe_dispatch.c checks the dispatcher
 * and sets ex->run's completion first): as pe_chain_stream_body, but an
 * out-of-process step goes through pe__dispatch_stream_submit and may
 * leave the chunk PE_PENDING. */
int pe__stream_start_async(const pe_chain *chain, pe_exchange *ex, pe_dir dir, pe_slice chunk,
                           int last, pe_slice *out);
/* The pending step of the pending chunk ended with step_rc (its output
 * written to its chunk): runs the rest. PE_OK, PE_PENDING or a stop code,
 * as pe_chain_stream_body. */
int pe__stream_resume(pe_exchange *ex, int step_rc);
/* Whether out-of-process steps of body phase `phase` are to be skipped:
 * that body of ex was streamed, so they have seen it chunk by chunk. */
bool pe__stream_skips(const pe_exchange *ex, pe_phase phase);

#endif /* PE_INTERNAL_H */
