/*
 * Per-request state: the exchange (taken from the worker's spares, given
 * back by the request pool's cleanup), and the non-blocking runs: a phase
 * completes at once (native steps) or later from the dispatcher, and either
 * the caller goes on inline, or the continuation runs from the dispatcher.
 */
#include "ngx_http_policyexec.h"

static void ngx_http_pe_cleanup(void *data) {
  ngx_http_pe_ctx_t *ctx = data;
  if (ctx->ex == NULL)
    return;
  ngx_queue_remove(&ctx->live);
  if (ctx->pending) {
    ngx_http_pe_wait_stop(ctx);
    pe_exchange_free(ctx->ex); /* cancels the run; its callback never comes */
  } else
    ngx_http_pe_give_exchange(ctx->ex);
  ctx->ex = NULL;
}

void ngx_http_pe_free_live(void) {
  ngx_queue_t *q = ngx_http_pe_live_queue();
  while (!ngx_queue_empty(q)) {
    ngx_http_pe_ctx_t *ctx = ngx_queue_data(ngx_queue_head(q), ngx_http_pe_ctx_t, live);
    ngx_queue_remove(&ctx->live);
    pe_exchange_free(ctx->ex);
    ctx->ex = NULL;
  }
}

ngx_http_pe_ctx_t *ngx_http_pe_ctx_create(ngx_http_request_t *r, ngx_http_pe_spec_t *spec) {
  ngx_pool_cleanup_t *cln = ngx_pool_cleanup_add(r->pool, 0);
  ngx_http_pe_ctx_t *ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_pe_ctx_t));
  if (cln == NULL || ctx == NULL)
    return NULL;
  ctx->ex = ngx_http_pe_take_exchange();
  if (ctx->ex == NULL)
    return NULL;
  ctx->request = r;
  ctx->spec = spec;
  ngx_queue_insert_tail(ngx_http_pe_live_queue(), &ctx->live);
  cln->handler = ngx_http_pe_cleanup;
  cln->data = ctx;
  ngx_http_set_ctx(r, ctx, ngx_http_policyexec_module);
  return ctx;
}

/* Logs a step failure once per request, with the request's context (client,
 * request line) that the engine's own log line lacks. */
void ngx_http_pe_log_failure(ngx_http_pe_ctx_t *ctx) {
  const char *msg = pe_exchange_errmsg(ctx->ex);
  size_t len = ngx_strlen(msg);
  if (len == 0 || (ctx->last_err.len == len && ngx_memcmp(ctx->last_err.data, msg, len) == 0))
    return;
  ngx_log_error(NGX_LOG_ERR, ctx->request->connection->log, 0, "policyexec_chain in %V: %s",
                &ctx->spec->where, msg);
  ctx->last_err.data = ngx_pnalloc(ctx->request->pool, len);
  if (ctx->last_err.data) {
    ngx_memcpy(ctx->last_err.data, msg, len);
    ctx->last_err.len = len;
  }
}

static void ngx_http_pe_done(pe_exchange *ex, int rc, void *user_data) {
  ngx_http_pe_ctx_t *ctx = user_data;
  (void)ex;
  (void)rc; /* always PE_OK: step failures show in the verdict */
  ngx_http_pe_wait_stop(ctx);
  if (ngx_http_pe_worker_exiting())
    return; /* fast shutdown: the request is only freed */
  ngx_http_pe_log_failure(ctx);
  ngx_connection_t *c = ctx->request->connection;
  ctx->resume(ctx);
  ngx_http_run_posted_requests(c);
}

ngx_int_t ngx_http_pe_run(ngx_http_pe_ctx_t *ctx, pe_phase first, pe_phase last,
                          ngx_http_pe_next_pt next) {
  unsigned wanted = 0;
  for (unsigned p = first; p <= last; p++)
    wanted |= PE_PHASE_BIT(p);
  if (!(ctx->spec->phases & wanted))
    return NGX_OK;
  int rc = pe_chain_run_phases_async(ctx->spec->chain, ctx->ex, first, last,
                                     ngx_http_pe_dispatcher(), ngx_http_pe_done, ctx);
  if (rc == PE_PENDING) {
    ctx->resume = next;
    ngx_http_pe_wait_start(ctx);
    return NGX_AGAIN;
  }
  if (rc < 0) { /* nothing ran: answer as a closed failure would */
    ngx_log_error(NGX_LOG_ERR, ctx->request->connection->log, 0,
                  "policyexec_chain in %V: %s phase not run: %s", &ctx->spec->where,
                  pe_phase_name(first), pe_strerror(rc));
    pe_exchange_respond(ctx->ex, rc == PE_ERR_BUSY ? 503 : 500,
                        rc == PE_ERR_BUSY ? PE_LIT("policy workers busy\n")
                                          : PE_LIT("policy error\n"));
  } else {
    ngx_http_pe_log_failure(ctx);
  }
  return NGX_OK;
}

ngx_int_t ngx_http_pe_responded(ngx_http_pe_ctx_t *ctx) {
  return pe_exchange_verdict(ctx->ex) == PE_VERDICT_RESPOND;
}
