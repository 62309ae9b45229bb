/*
 * Metrics storage. Every counter is a relaxed atomic: a scrape may see one
 * request's count before its latency, which Prometheus tolerates, and the
 * hot path pays one uncontended atomic add per counter instead of a lock.
 *
 * Per-policy counters live in a fixed open-addressing table of atomic
 * pointers: lookups never lock; the first execution of a new
 * name@version takes a mutex to insert it.
 */
#include "gw_metrics.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Upper bounds of the latency buckets, in microseconds (then +Inf). */
static const uint64_t bucket_bounds_us[] = {100,     250,     500,     1000,    2500,   5000,
                                            10000,   25000,   50000,   100000,  250000, 500000,
                                            1000000, 2500000, 5000000, 10000000};
#define BUCKETS (sizeof bucket_bounds_us / sizeof bucket_bounds_us[0] + 1)

/* Status classes 1xx .. 5xx. */
#define STATUS_CLASSES 5

struct gw_api_metrics {
  char *name;
  gw_api_metrics *next;
  atomic_uint_fast64_t by_class[STATUS_CLASSES];
  atomic_uint_fast64_t buckets[BUCKETS];
  atomic_uint_fast64_t duration_ns_sum;
};

#define OUTCOMES 5
typedef struct policy_metrics {
  char *name;
  char *version;
  atomic_uint_fast64_t count[PE_PHASE_COUNT][OUTCOMES];
  atomic_uint_fast64_t duration_ns_sum[PE_PHASE_COUNT];
} policy_metrics;

#define POLICY_SLOTS 1024

struct gw_metrics {
  pthread_mutex_t lock; /* guards inserts into apis and policies */
  _Atomic(gw_api_metrics *) apis;
  _Atomic(policy_metrics *) policies[POLICY_SLOTS];
  atomic_uint_fast64_t unrouted;
  atomic_int_fast64_t spare_exchange_bytes; /* a gauge: kept by the threads' free lists */
  atomic_uint_fast64_t accept_failures;     /* accept() out of descriptors */
  atomic_uint_fast64_t dropped_events;      /* more than POLICY_SLOTS policies, or out of memory */
};

int gw_metrics_new(gw_metrics **out) {
  gw_metrics *m = calloc(1, sizeof *m);
  if (!m)
    return -1;
  pthread_mutex_init(&m->lock, NULL);
  *out = m;
  return 0;
}

void gw_metrics_free(gw_metrics *m) {
  if (!m)
    return;
  gw_api_metrics *am = atomic_load(&m->apis);
  while (am) {
    gw_api_metrics *next = am->next;
    free(am->name);
    free(am);
    am = next;
  }
  for (size_t i = 0; i < POLICY_SLOTS; i++) {
    policy_metrics *pm = atomic_load(&m->policies[i]);
    if (pm) {
      free(pm->name);
      free(pm->version);
      free(pm);
    }
  }
  pthread_mutex_destroy(&m->lock);
  free(m);
}

gw_api_metrics *gw_metrics_api(gw_metrics *m, const char *name) {
  pthread_mutex_lock(&m->lock);
  gw_api_metrics *am = atomic_load(&m->apis);
  while (am && strcmp(am->name, name) != 0)
    am = am->next;
  if (!am && (am = calloc(1, sizeof *am)) != NULL) {
    if ((am->name = strdup(name)) == NULL) {
      free(am);
      am = NULL;
    } else {
      am->next = atomic_load(&m->apis);
      atomic_store(&m->apis, am);
    }
  }
  pthread_mutex_unlock(&m->lock);
  return am;
}

static void add(atomic_uint_fast64_t *counter, uint64_t value) {
  atomic_fetch_add_explicit(counter, value, memory_order_relaxed);
}

static uint64_t get(const atomic_uint_fast64_t *counter) {
  return atomic_load_explicit(counter, memory_order_relaxed);
}

void gw_metrics_observe(gw_api_metrics *am, int status, uint64_t duration_ns) {
  if (!am)
    return;
  int cls = status / 100 - 1;
  if (cls < 0 || cls >= STATUS_CLASSES)
    cls = STATUS_CLASSES - 1;
  add(&am->by_class[cls], 1);
  uint64_t us = duration_ns / 1000;
  size_t b = 0;
  while (b < BUCKETS - 1 && us > bucket_bounds_us[b])
    b++;
  add(&am->buckets[b], 1);
  add(&am->duration_ns_sum, duration_ns);
}

void gw_metrics_count_unrouted(gw_metrics *m) {
  add(&m->unrouted, 1);
}

void gw_metrics_spare_bytes(gw_metrics *m, int64_t delta) {
  atomic_fetch_add_explicit(&m->spare_exchange_bytes, delta, memory_order_relaxed);
}

void gw_metrics_count_accept_failure(gw_metrics *m) {
  add(&m->accept_failures, 1);
}

static int policy_is(const policy_metrics *pm, const pe_step_event *ev) {
  return strlen(pm->name) == ev->policy_name.len &&
         memcmp(pm->name, ev->policy_name.ptr, ev->policy_name.len) == 0 &&
         strlen(pm->version) == ev->policy_version.len &&
         memcmp(pm->version, ev->policy_version.ptr, ev->policy_version.len) == 0;
}

static size_t policy_hash(const pe_step_event *ev) {
  uint64_t h = 1469598103934665603ull; /* FNV-1a */
  for (size_t i = 0; i < ev->policy_name.len; i++)
    h = (h ^ (unsigned char)ev->policy_name.ptr[i]) * 1099511628211ull;
  h = (h ^ '@') * 1099511628211ull;
  for (size_t i = 0; i < ev->policy_version.len; i++)
    h = (h ^ (unsigned char)ev->policy_version.ptr[i]) * 1099511628211ull;
  return (size_t)(h % POLICY_SLOTS);
}

static policy_metrics *find_policy(gw_metrics *m, const pe_step_event *ev, int insert) {
  size_t start = policy_hash(ev);
  for (size_t probe = 0; probe < POLICY_SLOTS; probe++) {
    size_t slot = (start + probe) % POLICY_SLOTS;
    policy_metrics *pm = atomic_load_explicit(&m->policies[slot], memory_order_acquire);
    if (!pm) {
      if (!insert)
        return NULL;
      pm = calloc(1, sizeof *pm);
      if (!pm || !(pm->name = strndup(ev->policy_name.ptr, ev->policy_name.len)) ||
          !(pm->version = strndup(ev->policy_version.ptr, ev->policy_version.len))) {
        if (pm)
          free(pm->name);
        free(pm);
        return NULL;
      }
      atomic_store_explicit(&m->policies[slot], pm, memory_order_release);
      return pm;
    }
    if (policy_is(pm, ev))
      return pm;
  }
  return NULL;
}

void gw_metrics_on_step(const pe_step_event *ev, void *user_data) {
  gw_metrics *m = user_data;
  policy_metrics *pm = find_policy(m, ev, 0);
  if (!pm) { /* first sight of this policy: insert under the lock, re-probing */
    pthread_mutex_lock(&m->lock);
    pm = find_policy(m, ev, 1);
    pthread_mutex_unlock(&m->lock);
  }
  if (!pm || (unsigned)ev->phase >= PE_PHASE_COUNT || (unsigned)ev->outcome >= OUTCOMES) {
    add(&m->dropped_events, 1);
    return;
  }
  add(&pm->count[ev->phase][ev->outcome], 1);
  add(&pm->duration_ns_sum[ev->phase], ev->duration_ns);
}

static void render_api(const gw_api_metrics *am, struct evbuffer *out) {
  for (int c = 0; c < STATUS_CLASSES; c++)
    evbuffer_add_printf(out, "policyexec_gateway_requests_total{api=\"%s\",code=\"%dxx\"} %llu\n",
                        am->name, c + 1, (unsigned long long)get(&am->by_class[c]));
  uint64_t cumulative = 0;
  for (size_t b = 0; b < BUCKETS; b++) {
    cumulative += get(&am->buckets[b]);
    if (b < BUCKETS - 1)
      evbuffer_add_printf(out,
                          "policyexec_gateway_request_duration_seconds_bucket{api=\"%s\","
                          "le=\"%g\"} %llu\n",
                          am->name, (double)bucket_bounds_us[b] / 1e6,
                          (unsigned long long)cumulative);
    else
      evbuffer_add_printf(out,
                          "policyexec_gateway_request_duration_seconds_bucket{api=\"%s\","
                          "le=\"+Inf\"} %llu\n",
                          am->name, (unsigned long long)cumulative);
  }
  evbuffer_add_printf(out, "policyexec_gateway_request_duration_seconds_sum{api=\"%s\"} %.9f\n",
                      am->name, (double)get(&am->duration_ns_sum) / 1e9);
  evbuffer_add_printf(out, "policyexec_gateway_request_duration_seconds_count{api=\"%s\"} %llu\n",
                      am->name, (unsigned long long)cumulative);
}

static const char *const outcome_metric[OUTCOMES] = {NULL, "responses", "failures", "timeouts",
                                                     "crashes"};

static void render_policy(const policy_metrics *pm, struct evbuffer *out) {
  for (int p = 0; p < PE_PHASE_COUNT; p++) {
    uint64_t total = 0;
    for (int o = 0; o < OUTCOMES; o++)
      total += get(&pm->count[p][o]);
    if (total == 0)
      continue;
    const char *phase = pe_phase_name((pe_phase)p);
    evbuffer_add_printf(out,
                        "policyexec_policy_executions_total{policy=\"%s\",version=\"%s\","
                        "phase=\"%s\"} %llu\n",
                        pm->name, pm->version, phase, (unsigned long long)total);
    for (int o = 1; o < OUTCOMES; o++)
      evbuffer_add_printf(out,
                          "policyexec_policy_%s_total{policy=\"%s\",version=\"%s\","
                          "phase=\"%s\"} %llu\n",
                          outcome_metric[o], pm->name, pm->version, phase,
                          (unsigned long long)get(&pm->count[p][o]));
    evbuffer_add_printf(out,
                        "policyexec_policy_duration_seconds_sum{policy=\"%s\",version=\"%s\","
                        "phase=\"%s\"} %.9f\n",
                        pm->name, pm->version, phase, (double)get(&pm->duration_ns_sum[p]) / 1e9);
  }
}

void gw_metrics_render(gw_metrics *m, pe_engine *engine, int python_enabled, struct evbuffer *out) {
  evbuffer_add_printf(out, "# HELP policyexec_gateway_requests_total Requests answered, by API "
                           "and status class.\n"
                           "# TYPE policyexec_gateway_requests_total counter\n"
                           "# HELP policyexec_gateway_request_duration_seconds Time from the "
                           "request's arrival to the end of its response.\n"
                           "# TYPE policyexec_gateway_request_duration_seconds histogram\n");
  for (gw_api_metrics *am = atomic_load(&m->apis); am; am = am->next)
    render_api(am, out);
  evbuffer_add_printf(out,
                      "# HELP policyexec_gateway_unrouted_requests_total Requests that matched "
                      "no API (404).\n"
                      "# TYPE policyexec_gateway_unrouted_requests_total counter\n"
                      "policyexec_gateway_unrouted_requests_total %llu\n",
                      (unsigned long long)get(&m->unrouted));
  evbuffer_add_printf(
      out,
      "# HELP policyexec_gateway_spare_exchange_bytes Body bytes that the exchanges kept for "
      "reuse held before their reset (bounded by spare_exchange_bytes).\n"
      "# TYPE policyexec_gateway_spare_exchange_bytes gauge\n"
      "policyexec_gateway_spare_exchange_bytes %lld\n"
      "# HELP policyexec_gateway_accept_failures_total accept() calls that failed for want of "
      "file descriptors or memory.\n"
      "# TYPE policyexec_gateway_accept_failures_total counter\n"
      "policyexec_gateway_accept_failures_total %llu\n",
      (long long)atomic_load_explicit(&m->spare_exchange_bytes, memory_order_relaxed),
      (unsigned long long)get(&m->accept_failures));

  evbuffer_add_printf(out, "# HELP policyexec_policy_executions_total Policy steps run.\n"
                           "# TYPE policyexec_policy_executions_total counter\n");
  for (int o = 1; o < OUTCOMES; o++)
    evbuffer_add_printf(out, "# TYPE policyexec_policy_%s_total counter\n", outcome_metric[o]);
  evbuffer_add_printf(out, "# TYPE policyexec_policy_duration_seconds_sum counter\n");
  for (size_t i = 0; i < POLICY_SLOTS; i++) {
    policy_metrics *pm = atomic_load_explicit(&m->policies[i], memory_order_acquire);
    if (pm)
      render_policy(pm, out);
  }
  evbuffer_add_printf(out,
                      "# HELP policyexec_policy_events_dropped_total Step events not counted "
                      "(policy table full).\n"
                      "# TYPE policyexec_policy_events_dropped_total counter\n"
                      "policyexec_policy_events_dropped_total %llu\n",
                      (unsigned long long)get(&m->dropped_events));
  if (engine && python_enabled)
    evbuffer_add_printf(out,
                        "# HELP policyexec_python_worker_restarts_total Python workers "
                        "replaced (deaths, timeouts, protocol errors).\n"
                        "# TYPE policyexec_python_worker_restarts_total counter\n"
                        "policyexec_python_worker_restarts_total %llu\n",
                        (unsigned long long)pe_engine_python_restarts(engine));
}
