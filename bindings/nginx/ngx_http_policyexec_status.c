/*
 * Step counters: when a location has "policyexec_status;", the engine's
 * metrics callback counts every step by phase and outcome in a shared memory
 * zone (so every worker's steps show in one place), and that location
 * prints them in the Prometheus text format.
 */
#include "ngx_http_policyexec.h"

#define PE_NGX_OUTCOMES 5

typedef struct {
  ngx_atomic_t steps[PE_PHASE_COUNT][PE_NGX_OUTCOMES];
  ngx_atomic_t nanos[PE_PHASE_COUNT]; /* wall time of the steps, summed */
} ngx_http_pe_counters_t;

static const char *const ngx_http_pe_outcomes[PE_NGX_OUTCOMES] = {"ok", "responded", "failed",
                                                                  "timeout", "crashed"};

static ngx_int_t ngx_http_pe_zone_init(ngx_shm_zone_t *zone, void *data) {
  if (data) { /* reload: keep counting where the old cycle stopped */
    zone->data = data;
    return NGX_OK;
  }
  ngx_slab_pool_t *shpool = (ngx_slab_pool_t *)zone->shm.addr;
  ngx_http_pe_counters_t *counters = ngx_slab_calloc(shpool, sizeof(ngx_http_pe_counters_t));
  if (counters == NULL)
    return NGX_ERROR;
  zone->data = counters;
  return NGX_OK;
}

ngx_int_t ngx_http_pe_status_zone(ngx_conf_t *cf, ngx_http_pe_main_conf_t *pmcf) {
  ngx_str_t name = ngx_string("policyexec_metrics");
  pmcf->shm_zone = ngx_shared_memory_add(cf, &name, 8 * ngx_pagesize, &ngx_http_policyexec_module);
  if (pmcf->shm_zone == NULL)
    return NGX_ERROR;
  pmcf->shm_zone->init = ngx_http_pe_zone_init;
  return NGX_OK;
}

void ngx_http_pe_on_step(const pe_step_event *event, void *user_data) {
  ngx_shm_zone_t *zone = user_data;
  ngx_http_pe_counters_t *counters = zone->data;
  if (counters == NULL || (unsigned)event->phase >= PE_PHASE_COUNT ||
      (unsigned)event->outcome >= PE_NGX_OUTCOMES)
    return;
  ngx_atomic_fetch_add(&counters->steps[event->phase][event->outcome], 1);
  ngx_atomic_fetch_add(&counters->nanos[event->phase], (ngx_atomic_int_t)event->duration_ns);
}

static ngx_int_t ngx_http_pe_status_handler(ngx_http_request_t *r) {
  if (!(r->method & (NGX_HTTP_GET | NGX_HTTP_HEAD)))
    return NGX_HTTP_NOT_ALLOWED;
  ngx_int_t rc = ngx_http_discard_request_body(r);
  if (rc != NGX_OK)
    return rc;
  ngx_http_pe_main_conf_t *pmcf = ngx_http_get_module_main_conf(r, ngx_http_policyexec_module);
  ngx_http_pe_counters_t *counters = pmcf->shm_zone ? pmcf->shm_zone->data : NULL;
  size_t size = 256 + PE_PHASE_COUNT * (PE_NGX_OUTCOMES + 1) * 128;
  ngx_buf_t *b = ngx_create_temp_buf(r->pool, size);
  if (b == NULL)
    return NGX_HTTP_INTERNAL_SERVER_ERROR;
  b->last = ngx_cpymem(b->last, "# TYPE policyexec_steps_total counter\n",
                       sizeof("# TYPE policyexec_steps_total counter\n") - 1);
  for (int p = 0; p < PE_PHASE_COUNT; p++)
    for (int o = 0; o < PE_NGX_OUTCOMES; o++)
      b->last = ngx_sprintf(b->last, "policyexec_steps_total{phase=\"%s\",outcome=\"%s\"} %uA\n",
                            pe_phase_name((pe_phase)p), ngx_http_pe_outcomes[o],
                            counters ? counters->steps[p][o] : 0);
  b->last = ngx_cpymem(b->last, "# TYPE policyexec_step_seconds_total counter\n",
                       sizeof("# TYPE policyexec_step_seconds_total counter\n") - 1);
  for (int p = 0; p < PE_PHASE_COUNT; p++) {
    ngx_atomic_uint_t ns = counters ? counters->nanos[p] : 0;
    b->last = ngx_sprintf(b->last, "policyexec_step_seconds_total{phase=\"%s\"} %uA.%09uA\n",
                          pe_phase_name((pe_phase)p), ns / 1000000000, ns % 1000000000);
  }
  b->last_buf = 1;
  b->last_in_chain = 1;
  r->headers_out.status = NGX_HTTP_OK;
  r->headers_out.content_length_n = b->last - b->pos;
  ngx_str_set(&r->headers_out.content_type, "text/plain; version=0.0.4");
  r->headers_out.content_type_len = r->headers_out.content_type.len;
  rc = ngx_http_send_header(r);
  if (rc == NGX_ERROR || rc > NGX_OK || r->header_only)
    return rc;
  ngx_chain_t out = {b, NULL};
  return ngx_http_output_filter(r, &out);
}

char *ngx_http_pe_status(ngx_conf_t *cf, ngx_command_t *cmd, void *conf) {
  (void)cmd;
  (void)conf;
  /* Steps are counted only when some location shows the counters: without
   * a metrics callback the library does not even read the clock. */
  ngx_http_pe_main_conf_t *pmcf =
      ngx_http_conf_get_module_main_conf(cf, ngx_http_policyexec_module);
  if (pmcf->shm_zone == NULL && ngx_http_pe_status_zone(cf, pmcf) != NGX_OK)
    return NGX_CONF_ERROR;
  ngx_http_core_loc_conf_t *clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
  clcf->handler = ngx_http_pe_status_handler;
  return NGX_CONF_OK;
}
