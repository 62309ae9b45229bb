/*
 * Host threads: each drives its own exchanges through the four phases the
 * way a proxy does (fill the request, run the request phases, play an echo
 * upstream, run the response phases), times every request, and checks every
 * result. The host's work is the same for every profile, so the difference
 * between a profile and `empty` is the cost of its policies.
 */
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bh.h"

atomic_ulong bh_alloc_count;

static void *count_malloc(size_t n, void *ud) {
  (void)ud;
  atomic_fetch_add_explicit(&bh_alloc_count, 1, memory_order_relaxed);
  return malloc(n);
}
static void count_free(void *p, void *ud) {
  (void)ud;
  free(p);
}
static void *count_calloc(size_t n, size_t size, void *ud) {
  (void)ud;
  atomic_fetch_add_explicit(&bh_alloc_count, 1, memory_order_relaxed);
  return calloc(n, size);
}
static void *count_realloc(void *p, size_t n, void *ud) {
  (void)ud;
  atomic_fetch_add_explicit(&bh_alloc_count, 1, memory_order_relaxed);
  return realloc(p, n);
}

pe_mem bh_counting_mem(void) {
  pe_mem m = {count_malloc, count_free, count_calloc, count_realloc, NULL};
  return m;
}

void bh_record_failure(bh_thread *t, const char *fmt, ...) {
  if (t->failures++ == 0) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(t->first_failure, sizeof t->first_failure, fmt, ap);
    va_end(ap);
  }
}

int bh_fill_request(bh_thread *t, pe_exchange *ex) {
  pe_slice payload = pe_bytes(t->payload, t->cfg->payload_bytes);
  int rc = pe_exchange_reset(ex);
  rc = rc ? rc : pe_exchange_set_method(ex, PE_LIT("POST"));
  rc = rc ? rc : pe_exchange_set_path(ex, PE_LIT("/echo"));
  rc = rc ? rc : pe_exchange_set_authority(ex, PE_LIT("backend.local:9000"));
  rc =
      rc ? rc : pe_exchange_header_add(ex, PE_REQUEST, PE_LIT("user-agent"), PE_LIT("bench_hooks"));
  rc = rc ? rc
          : pe_exchange_header_add(ex, PE_REQUEST, PE_LIT("content-type"), PE_LIT("text/plain"));
  rc = rc ? rc : pe_exchange_header_add(ex, PE_REQUEST, PE_LIT("accept"), PE_LIT("*/*"));
  return rc ? rc : pe_exchange_body_set(ex, PE_REQUEST, payload);
}

int bh_play_upstream(pe_exchange *ex) {
  /* The echo upstream answers with the request body as forwarded. */
  int rc = pe_exchange_set_status(ex, 200);
  rc = rc ? rc
          : pe_exchange_header_add(ex, PE_RESPONSE, PE_LIT("content-type"), PE_LIT("text/plain"));
  return rc ? rc : pe_exchange_body_set(ex, PE_RESPONSE, pe_exchange_body(ex, PE_REQUEST));
}

/* One request through all four phases with blocking runs. The upstream's
 * response is whole before its phases run, so they run as one, as the
 * gateway does for a buffered response (one Python round trip for both).
 * Returns PE_OK, or the code of a library call the benchmark made wrongly. */
static int one_request(bh_thread *t, pe_exchange *ex) {
  int rc = bh_fill_request(t, ex);
  rc = rc ? rc : pe_chain_run(t->chain, ex, PE_PHASE_REQUEST_HEADERS);
  rc = rc ? rc : pe_chain_run(t->chain, ex, PE_PHASE_REQUEST_BODY);
  if (rc == PE_OK && pe_exchange_verdict(ex) == PE_VERDICT_CONTINUE) {
    rc = bh_play_upstream(ex);
    rc = rc ? rc
            : pe_chain_run_phases(t->chain, ex, PE_PHASE_RESPONSE_HEADERS, PE_PHASE_RESPONSE_BODY);
  }
  return rc;
}

void bh_check_result(bh_thread *t, pe_exchange *ex) {
  const bh_profile *p = t->cfg->profile;
  pe_slice v, body = pe_exchange_body(ex, PE_RESPONSE);
  if (pe_exchange_verdict(ex) != PE_VERDICT_CONTINUE || pe_exchange_status(ex) != 200) {
    bh_record_failure(t, "immediate response instead of the upstream's: %s",
                      pe_exchange_errmsg(ex));
    return;
  }
  int has = pe_exchange_header_get(ex, PE_RESPONSE, PE_LIT("x-sample-policy-phase"), &v) == PE_OK;
  if (has != p->response_header ||
      (has && (v.len != 15 || memcmp(v.ptr, "response-header", 15) != 0))) {
    bh_record_failure(t, "response header x-sample-policy-phase wrong or missing");
    return;
  }
  if (body.len != t->expected_len || memcmp(body.ptr, t->expected_body, body.len) != 0)
    bh_record_failure(t, "response body differs from the expected prefixes + payload");
}

static void *blocking_thread(void *arg) {
  bh_thread *t = arg;
  const bh_config *cfg = t->cfg;
  pe_exchange *ex = NULL;
  if (pe_exchange_new(&ex, t->engine) != PE_OK)
    t->error = 1;

  /* Warm-up: not counted; grows the exchange's buffers to their final size. */
  uint64_t end = bh_now_ns() + (uint64_t)(cfg->warmup_s * 1e9);
  uint64_t n = 0;
  while (!t->error && (n < 2 || bh_now_ns() < end)) {
    if (one_request(t, ex) != PE_OK)
      t->error = 1;
    n++;
  }
  pthread_barrier_wait(t->ready);
  pthread_barrier_wait(t->go);

  end = bh_now_ns() + (uint64_t)(cfg->duration_s * 1e9);
  while (!t->error) {
    uint64_t t0 = bh_now_ns();
    int rc = one_request(t, ex);
    uint64_t t1 = bh_now_ns();
    if (rc != PE_OK) {
      bh_record_failure(t, "a library call failed: %s", pe_strerror(rc));
      t->error = 1;
      break;
    }
    bh_hist_record(&t->hist, t1 - t0);
    bh_check_result(t, ex);
    t->requests++;
    if (cfg->iterations ? t->requests >= cfg->iterations : t1 >= end)
      break;
  }
  pe_exchange_free(ex);
  return NULL;
}

static char *make_expected(const bh_profile *p, const char *payload, size_t len, size_t *out_len) {
  static const char rq[] = "[sample-request-body]", rs[] = "[sample-response-body]";
  size_t total =
      p->response_prefixes * (sizeof rs - 1) + p->request_prefixes * (sizeof rq - 1) + len;
  char *buf = malloc(total + 1), *w = buf;
  if (!buf)
    return NULL;
  for (size_t i = 0; i < p->response_prefixes; i++, w += sizeof rs - 1)
    memcpy(w, rs, sizeof rs - 1);
  for (size_t i = 0; i < p->request_prefixes; i++, w += sizeof rq - 1)
    memcpy(w, rq, sizeof rq - 1);
  memcpy(w, payload, len);
  *out_len = total;
  return buf;
}

int bh_nth_allowed_cpu(int i) {
  cpu_set_t allowed;
  int n = 0;
  if (i < 0 || sched_getaffinity(0, sizeof allowed, &allowed) != 0 || CPU_COUNT(&allowed) == 0)
    return -1;
  i %= CPU_COUNT(&allowed);
  for (int c = 0; c < CPU_SETSIZE; c++)
    if (CPU_ISSET(c, &allowed) && n++ == i)
      return c;
  return -1;
}

void bh_pin(pthread_t tid, int cpu) {
  if (cpu < 0)
    return;
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  pthread_setaffinity_np(tid, sizeof set, &set);
}

int bh_run(pe_engine *engine, const pe_chain *chain, const bh_config *cfg, bh_result *out) {
  int nt = cfg->threads;
  bh_thread *ts = calloc((size_t)nt, sizeof *ts);
  pthread_t *tids = calloc((size_t)nt, sizeof *tids);
  char *payload = malloc(cfg->payload_bytes + 1);
  size_t expected_len = 0;
  char *expected = NULL;
  pthread_barrier_t ready, go;
  int rc = -1;
  if (!ts || !tids || !payload)
    goto out;
  for (size_t i = 0; i < cfg->payload_bytes; i++)
    payload[i] = (char)('a' + (char)(i % 26));
  expected = make_expected(cfg->profile, payload, cfg->payload_bytes, &expected_len);
  if (!expected)
    goto out;

  pthread_barrier_init(&ready, NULL, (unsigned)nt + 1);
  pthread_barrier_init(&go, NULL, (unsigned)nt + 1);
  for (int i = 0; i < nt; i++) {
    ts[i] = (bh_thread){.engine = engine,
                        .chain = chain,
                        .cfg = cfg,
                        .ready = &ready,
                        .go = &go,
                        .payload = payload,
                        .expected_body = expected,
                        .expected_len = expected_len};
    pthread_create(&tids[i], NULL, cfg->profile->uses_python ? bh_async_thread : blocking_thread,
                   &ts[i]);
    if (cfg->pin)
      bh_pin(tids[i], bh_nth_allowed_cpu(i));
  }
  pthread_barrier_wait(&ready);
  unsigned long allocs0 = atomic_load(&bh_alloc_count);
  uint64_t cpu0 = bh_cpu_ns(NULL);
  uint64_t t0 = bh_now_ns();
  pthread_barrier_wait(&go);
  memset(out, 0, sizeof *out);
  for (int i = 0; i < nt; i++) {
    pthread_join(tids[i], NULL);
    bh_hist_merge(&out->hist, &ts[i].hist);
    out->requests += ts[i].requests;
    out->failures += ts[i].failures + (uint64_t)ts[i].error;
    if (!out->first_failure[0] && ts[i].first_failure[0])
      memcpy(out->first_failure, ts[i].first_failure, sizeof out->first_failure);
  }
  out->elapsed_s = (double)(bh_now_ns() - t0) / 1e9;
  out->allocs = atomic_load(&bh_alloc_count) - allocs0;
  out->cpu_ns = bh_cpu_ns(NULL) - cpu0;
  pthread_barrier_destroy(&ready);
  pthread_barrier_destroy(&go);
  rc = 0;
out:
  free(expected);
  free(payload);
  free(tids);
  free(ts);
  return rc;
}
