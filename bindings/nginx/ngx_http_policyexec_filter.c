/*
 * The response side, as header and body filters.
 *
 * When the chain needs the response body, the head is held and the body
 * collected into the exchange; at its last buffer both response phases run
 * as one (pe_chain_run_phases_async: one round trip for their Python steps)
 * and the result goes on with its own Content-Length, whatever framing the
 * upstream used. Otherwise only the response-headers phase runs, and the
 * body passes through untouched; output that arrives while that phase is
 * pending is saved (its buffers stay busy, so the upstream waits) and sent
 * after it. While a phase is pending, r->buffered keeps the request open.
 */
#include "ngx_http_policyexec.h"

#define PE_NGX_RESPONSE_PHASES                                                                     \
  (PE_PHASE_BIT(PE_PHASE_RESPONSE_HEADERS) | PE_PHASE_BIT(PE_PHASE_RESPONSE_BODY))

static ngx_http_output_header_filter_pt ngx_http_next_header_filter;
static ngx_http_output_body_filter_pt ngx_http_next_body_filter;

/* Consumes @p in: its buffers are free for reuse by their owner. */
static void ngx_http_pe_consume(ngx_chain_t *in) {
  for (; in; in = in->next) {
    in->buf->pos = in->buf->last;
    in->buf->file_pos = in->buf->file_last;
  }
}

/* Sends the exchange's response body after its head. */
static ngx_int_t ngx_http_pe_send_body(ngx_http_request_t *r, ngx_http_pe_ctx_t *ctx) {
  ngx_chain_t *out = ngx_http_pe_body_chain(
      r, r->header_only ? pe_bytes(NULL, 0) : pe_exchange_body(ctx->ex, PE_RESPONSE));
  ctx->resp = PE_NGX_RESP_SENT;
  return out ? ngx_http_next_body_filter(r, out) : NGX_ERROR;
}

/* Both response phases are complete: the whole new response goes out. */
static ngx_int_t ngx_http_pe_after_both(ngx_http_request_t *r, ngx_http_pe_ctx_t *ctx) {
  pe_slice body = pe_exchange_body(ctx->ex, PE_RESPONSE);
  r->buffered &= ~NGX_HTTP_POLICYEXEC_BUFFERED;
  ctx->resp = PE_NGX_RESP_SENT;
  if (ngx_http_pe_apply_response(r, ctx->ex, (off_t)body.len) != NGX_OK)
    return NGX_ERROR;
  ngx_int_t rc = ngx_http_next_header_filter(r);
  if (rc == NGX_ERROR || rc > NGX_OK)
    return rc;
  return ngx_http_pe_send_body(r, ctx);
}

/* The response-headers phase is complete (the body was not held). */
static ngx_int_t ngx_http_pe_after_headers(ngx_http_request_t *r, ngx_http_pe_ctx_t *ctx) {
  r->buffered &= ~NGX_HTTP_POLICYEXEC_BUFFERED;
  if (ngx_http_pe_responded(ctx)) { /* answered at once: the upstream body is dropped */
    ngx_http_pe_consume(ctx->out);
    ctx->out = NULL;
    return ngx_http_pe_after_both(r, ctx);
  }
  ctx->resp = PE_NGX_RESP_PASS;
  if (ngx_http_pe_apply_response(r, ctx->ex, -1) != NGX_OK)
    return NGX_ERROR;
  return ngx_http_next_header_filter(r);
}

/* Continuation when a response phase completes from the dispatcher: send
 * what was held, then let the request's own write handler go on (it
 * finalizes the request, or moves the upstream along), as nginx's copy
 * filter does when a thread read completes. */
static void ngx_http_pe_resp_resume(ngx_http_pe_ctx_t *ctx) {
  ngx_http_request_t *r = ctx->request;
  ngx_int_t rc;
  if (ctx->resp == PE_NGX_RESP_WAIT_HB) {
    rc = ngx_http_pe_after_both(r, ctx);
  } else {
    rc = ngx_http_pe_after_headers(r, ctx);
    if (rc != NGX_ERROR && rc <= NGX_OK && ctx->resp == PE_NGX_RESP_PASS && ctx->out) {
      ngx_chain_t *out = ctx->out;
      ctx->out = NULL;
      rc = ngx_http_next_body_filter(r, out);
    }
  }
  if (rc == NGX_ERROR) {
    r->connection->error = 1;
    ngx_http_finalize_request(r, NGX_ERROR);
    return;
  }
  r->write_event_handler(r);
}

static ngx_int_t ngx_http_pe_header_filter(ngx_http_request_t *r) {
  ngx_http_pe_ctx_t *ctx;
  if (r != r->main || (ctx = ngx_http_get_module_ctx(r, ngx_http_policyexec_module)) == NULL ||
      ctx->resp != PE_NGX_RESP_NONE || ctx->ex == NULL ||
      !(ctx->spec->phases & PE_NGX_RESPONSE_PHASES))
    return ngx_http_next_header_filter(r);
  if (ngx_http_pe_fill_response(r, ctx->ex) != NGX_OK) {
    ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                  "policyexec_chain in %V: response head refused: %s", &ctx->spec->where,
                  pe_exchange_errmsg(ctx->ex));
    pe_exchange_respond(ctx->ex, NGX_HTTP_BAD_GATEWAY,
                        PE_LIT("bad gateway: upstream response head refused\n"));
    ctx->resp = PE_NGX_RESP_WAIT_H;
    return ngx_http_pe_after_headers(r, ctx);
  }
  if ((ctx->spec->needs & PE_NEEDS_RESPONSE_BODY) && !r->header_only) {
    ctx->resp = PE_NGX_RESP_HOLD; /* the body filter takes it from here */
    return NGX_OK;
  }
  /* No body to wait for (or none needed): the headers phase, and for a
   * bodiless answer the body phase too, on an empty body. */
  pe_phase last = (ctx->spec->needs & PE_NEEDS_RESPONSE_BODY) ? PE_PHASE_RESPONSE_BODY
                                                              : PE_PHASE_RESPONSE_HEADERS;
  ctx->resp = PE_NGX_RESP_WAIT_H;
  if (ngx_http_pe_run(ctx, PE_PHASE_RESPONSE_HEADERS, last, ngx_http_pe_resp_resume) == NGX_AGAIN) {
    r->buffered |= NGX_HTTP_POLICYEXEC_BUFFERED;
    return NGX_OK;
  }
  return ngx_http_pe_after_headers(r, ctx);
}

static ngx_int_t ngx_http_pe_body_filter(ngx_http_request_t *r, ngx_chain_t *in) {
  ngx_http_pe_ctx_t *ctx;
  if (r != r->main || (ctx = ngx_http_get_module_ctx(r, ngx_http_policyexec_module)) == NULL)
    return ngx_http_next_body_filter(r, in);
  switch (ctx->resp) {
  case PE_NGX_RESP_NONE:
  case PE_NGX_RESP_PASS:
    return ngx_http_next_body_filter(r, in);
  case PE_NGX_RESP_WAIT_H:
    if (in && ngx_chain_add_copy(r->pool, &ctx->out, in) != NGX_OK)
      return NGX_ERROR;
    return NGX_AGAIN;
  case PE_NGX_RESP_WAIT_HB:
    ngx_http_pe_consume(in);
    return NGX_AGAIN;
  case PE_NGX_RESP_SENT:
    ngx_http_pe_consume(in);
    return ngx_http_next_body_filter(r, NULL);
  case PE_NGX_RESP_HOLD:
    break;
  }
  ngx_int_t last = 0;
  for (ngx_chain_t *cl = in; cl; cl = cl->next) {
    int rc = ngx_http_pe_append_buf(r, ctx->ex, PE_RESPONSE, cl->buf);
    last |= cl->buf->last_buf;
    if (rc < 0) {
      ngx_http_pe_consume(in);
      ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                    "policyexec_chain in %V: response body not held: %s", &ctx->spec->where,
                    pe_strerror(rc));
      pe_exchange_respond(ctx->ex, NGX_HTTP_BAD_GATEWAY,
                          rc == PE_ERR_BODY_TOO_LARGE
                              ? PE_LIT("bad gateway: upstream response too large\n")
                              : PE_LIT("bad gateway: upstream response not read\n"));
      return ngx_http_pe_after_both(r, ctx);
    }
  }
  ngx_http_pe_consume(in);
  if (!last)
    return NGX_OK;
  ctx->resp = PE_NGX_RESP_WAIT_HB;
  if (ngx_http_pe_run(ctx, PE_PHASE_RESPONSE_HEADERS, PE_PHASE_RESPONSE_BODY,
                      ngx_http_pe_resp_resume) == NGX_AGAIN) {
    r->buffered |= NGX_HTTP_POLICYEXEC_BUFFERED;
    return NGX_AGAIN;
  }
  return ngx_http_pe_after_both(r, ctx);
}

ngx_int_t ngx_http_pe_filter_init(ngx_conf_t *cf) {
  (void)cf;
  ngx_http_next_header_filter = ngx_http_top_header_filter;
  ngx_http_top_header_filter = ngx_http_pe_header_filter;
  ngx_http_next_body_filter = ngx_http_top_body_filter;
  ngx_http_top_body_filter = ngx_http_pe_body_filter;
  return NGX_OK;
}
