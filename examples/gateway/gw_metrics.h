/*
 * Counters for GET /metrics (Prometheus text format). Updated lock-free
 * from every worker thread; read by the admin thread.
 */
#ifndef GW_METRICS_H
#define GW_METRICS_H

#include <event2/buffer.h>
#include <policyexec/policyexec.h>
#include <stdint.h>

typedef struct gw_metrics gw_metrics;
typedef struct gw_api_metrics gw_api_metrics;

int gw_metrics_new(gw_metrics **out);
void gw_metrics_free(gw_metrics *m);

/* The counters of API @p name, created on first use. They outlive any
 * replacement of the API, so a POST /apis does not reset its history.
 * Returns NULL only when out of memory. Thread-safe. */
gw_api_metrics *gw_metrics_api(gw_metrics *m, const char *name);

/* Records one finished request of an API. Thread-safe, lock-free. */
void gw_metrics_observe(gw_api_metrics *am, int status, uint64_t duration_ns);

/* Records one request that matched no API (answered 404). */
void gw_metrics_count_unrouted(gw_metrics *m);

/* Adds @p delta to the gauge of bytes held by spare exchanges. */
void gw_metrics_spare_bytes(gw_metrics *m, int64_t delta);

/* Records one accept() that failed for want of descriptors or memory. */
void gw_metrics_count_accept_failure(gw_metrics *m);

/* The engine's metrics callback (pe_engine_options_set_metrics); user_data
 * is the gw_metrics. */
void gw_metrics_on_step(const pe_step_event *event, void *user_data);

/* Appends the Prometheus exposition of every counter to @p out. @p engine
 * may be NULL; when its Python pool runs, worker restarts are included. */
void gw_metrics_render(gw_metrics *m, pe_engine *engine, int python_enabled, struct evbuffer *out);

#endif /* GW_METRICS_H */
