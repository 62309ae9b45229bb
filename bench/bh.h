/* bench_hooks: internal declarations shared by its files. */
#ifndef BH_H
#define BH_H

#include <policyexec/policyexec.h>
#include <pthread.h>
#include <time.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

/* ---- bh_hist.c: log-linear latency histogram (HDR-style, < 0.2 % error) ---- */

#define BH_HIST_SUB_BITS 9
#define BH_HIST_BUCKETS ((64 - BH_HIST_SUB_BITS) << BH_HIST_SUB_BITS)

typedef struct bh_hist {
  uint64_t count;
  uint64_t sum_ns;
  uint64_t max_ns;
  uint64_t buckets[BH_HIST_BUCKETS];
} bh_hist;

void bh_hist_record(bh_hist *h, uint64_t ns);
void bh_hist_merge(bh_hist *into, const bh_hist *from);
/* Value at percentile p (0..100], from the bucket's midpoint. */
uint64_t bh_hist_percentile(const bh_hist *h, double p);
double bh_hist_mean(const bh_hist *h);

/* ---- bh_profile.c: what a profile runs and what it must produce ---- */

typedef enum bh_kind { BH_NATIVE, BH_PYTHON } bh_kind;

typedef struct bh_profile {
  char name[32];
  size_t hooks;      /* steps in the chain (each runs once per request) */
  bh_kind kinds[64]; /* kind of each step */
  int roles[64];     /* which sample policy each step is (bh_role) */
  bool uses_python;
  char executor[16]; /* the executor of its Python steps; "": the local pool */
  /* What a correct run produces. */
  size_t request_prefixes;  /* "[sample-request-body]" count */
  size_t response_prefixes; /* "[sample-response-body]" count */
  bool response_header;     /* x-sample-policy-phase: response-header */
  bool request_header;      /* x-sample-policy-phase: request-header upstream */
  bool io_wait;             /* python-io: the step awaits a 10 ms timer */
} bh_profile;

enum bh_role { BH_RESP_HEADER = 0, BH_REQ_BODY = 1, BH_RESP_BODY = 2, BH_REQ_HEADER = 3 };

/* Parses "empty", "mix-4", "native-N", "python-N", "native-body", "python-body",
 * "python-io". */
int bh_profile_parse(const char *name, bh_profile *out, char *err, size_t errlen);
/* The chain of a profile as the JSON accepted by pe_chain_new_from_json. */
char *bh_profile_chain_json(const bh_profile *p);

/* ---- bh_driver.c: host threads driving exchanges ---- */

typedef struct bh_config {
  const bh_profile *profile;
  size_t payload_bytes;
  int threads;
  int inflight; /* exchanges in flight per thread (Python only) */
  double duration_s;
  uint64_t iterations; /* per thread; 0: run for duration_s */
  double warmup_s;
  bool pin; /* pin host thread i to the i-th allowed CPU */
} bh_config;

typedef struct bh_result {
  bh_hist hist; /* per-request latency, every thread merged */
  uint64_t requests;
  uint64_t failures;
  double elapsed_s;
  uint64_t allocs; /* heap allocations during the measured part */
  uint64_t cpu_ns; /* CPU time of this process and its children, measured part */
  char first_failure[256];
} bh_result;

/* Allocation counter fed by the engine's allocator hooks. */
extern atomic_ulong bh_alloc_count;
pe_mem bh_counting_mem(void);

/* One host thread's state. */
typedef struct bh_thread {
  pe_engine *engine;
  const pe_chain *chain;
  const bh_config *cfg;
  pthread_barrier_t *ready; /* warm-up done: main snapshots counters */
  pthread_barrier_t *go;    /* measured part starts */
  char *payload;
  char *expected_body;
  size_t expected_len;
  bh_hist hist;
  uint64_t requests;
  uint64_t failures;
  char first_failure[256];
  int error;
} bh_thread;

/* The pieces of one request, shared by the blocking and the async driver. */
int bh_fill_request(bh_thread *t, pe_exchange *ex);
int bh_play_upstream(pe_exchange *ex);
/* Checks what the brief says every response must be; counts a failure. */
void bh_check_result(bh_thread *t, pe_exchange *ex);
void bh_record_failure(bh_thread *t, const char *fmt, ...) PE_PRINTF(2, 3);
/* bh_async.c: a host thread with --inflight non-blocking exchanges. */
void *bh_async_thread(void *arg);

int bh_run(pe_engine *engine, const pe_chain *chain, const bh_config *cfg, bh_result *out);

/* ---- bh_floor.c: the physical floor of an out-of-process call ---- */

/* p50/p99 of a 64-byte Unix-socket ping-pong with a child process, in ns,
 * with this thread on CPU cpu_self and the child on CPU cpu_child (the n-th
 * CPU this process may use; -1 leaves placement to the scheduler). */
int bh_uds_roundtrip(uint64_t iterations, int cpu_self, int cpu_child, uint64_t *p50_ns,
                     uint64_t *p99_ns);
/* The i-th CPU this process may run on (wrapping around), or -1. */
int bh_nth_allowed_cpu(int i);
/* Pins the calling thread (tid 0) or thread tid to CPU cpu; -1 does nothing. */
void bh_pin(pthread_t tid, int cpu);

/* ---- bh_cpu.c ---- */

/* CPU time used so far by this process and its live children (workers,
 * executors), in ns; *children_ns (if not NULL): the children's part. */
uint64_t bh_cpu_ns(uint64_t *children_ns);

/* ---- bh_clock ---- */

static inline uint64_t bh_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

#endif
