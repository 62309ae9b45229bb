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
 *
 * A response body planned PE_BODY_STREAM goes through the streamed steps
 * buffer by buffer (ngx_http_policyexec_stream.c): its head loses its
 * Content-Length (nginx frames it chunked, or ends it by closing), and
 * waits for the first bytes the steps let out, so that a step failing
 * before that still gets a clean answer; a failure after it cuts the
 * connection, so the client never takes a truncated body for a whole one.
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

/* Both response phases are complete (or the exchange answers): the whole
 * new response goes out. */
ngx_int_t ngx_http_pe_after_both(ngx_http_request_t *r, ngx_http_pe_ctx_t *ctx) {
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
  if (ctx->spec->plan[PE_RESPONSE] == PE_BODY_STREAM && !r->header_only) {
    ctx->resp = PE_NGX_RESP_STREAM;
    if (ngx_http_pe_apply_response(r, ctx->ex, -1) != NGX_OK)
      return NGX_ERROR;
    /* The steps may change the length, and the content with it. */
    ngx_http_clear_content_length(r);
    ngx_http_clear_accept_ranges(r);
    ngx_http_weak_etag(r);
    r->allow_ranges = 0;
    ctx->head_held = 1; /* until the first bytes come out */
    return NGX_OK;
  }
  ctx->resp = PE_NGX_RESP_PASS;
  if (ngx_http_pe_apply_response(r, ctx->ex, -1) != NGX_OK)
    return NGX_ERROR;
  return ngx_http_next_header_filter(r);
}

static ngx_int_t ngx_http_pe_has_data(ngx_chain_t *cl) {
  for (; cl; cl = cl->next)
    if (ngx_buf_size(cl->buf) > 0 || cl->buf->last_buf)
      return 1;
  return 0;
}

/* A streamed response body: each buffer through the streamed steps, what
 * comes out passed on; the held head goes first, with the first bytes.
 * While a chunk is in flight (NGX_AGAIN) the input waits in its own, busy
 * buffers and r->buffered keeps the request open, as for a pending phase. */
static ngx_int_t ngx_http_pe_stream_response(ngx_http_request_t *r, ngx_http_pe_ctx_t *ctx,
                                             ngx_chain_t *in) {
  ngx_chain_t *out;
  ngx_int_t rc = ngx_http_pe_stream(r, ctx, PE_RESPONSE, in, &out);
  if (ctx->stream_q[PE_RESPONSE])
    r->buffered |= NGX_HTTP_POLICYEXEC_BUFFERED;
  else
    r->buffered &= ~NGX_HTTP_POLICYEXEC_BUFFERED;
  if (rc == NGX_DECLINED && ctx->head_held &&
      pe_exchange_stream_state(ctx->ex, PE_RESPONSE) == PE_STREAM_STOPPED_CLEAN) {
    ctx->head_held = 0; /* nothing went out: the exchange's answer does */
    return ngx_http_pe_after_both(r, ctx);
  }
  ngx_int_t waiting = rc == NGX_AGAIN;
  if (rc != NGX_OK && !waiting) { /* bytes went out: cut, never end the message */
    ctx->resp = PE_NGX_RESP_SENT;
    r->keepalive = 0; /* a request finalized from a completion must not keep it */
    r->connection->error = 1;
    return NGX_ERROR;
  }
  if (ctx->head_held) {
    if (!ngx_http_pe_has_data(out)) {
      ngx_http_pe_stream_sweep(r, ctx, &out);
      return waiting ? NGX_AGAIN : NGX_OK;
    }
    ctx->head_held = 0;
    rc = ngx_http_next_header_filter(r);
    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
      ngx_http_pe_consume(out);
      ngx_http_pe_stream_sweep(r, ctx, &out);
      return rc;
    }
  }
  rc = ngx_http_next_body_filter(r, out);
  ngx_http_pe_stream_sweep(r, ctx, &out);
  return rc == NGX_OK && waiting ? NGX_AGAIN : rc;
}

void ngx_http_pe_stream_response_resume(ngx_http_pe_ctx_t *ctx) {
  ngx_http_request_t *r = ctx->request;
  if (ctx->resp != PE_NGX_RESP_STREAM) { /* answered or cut meanwhile: drop what waited */
    ngx_http_pe_consume(ctx->stream_q[PE_RESPONSE]);
    ctx->stream_q[PE_RESPONSE] = NULL;
    ctx->stream_wait &= ~(1u << PE_RESPONSE);
    r->buffered &= ~NGX_HTTP_POLICYEXEC_BUFFERED;
  } else if (ngx_http_pe_stream_response(r, ctx, NULL) == NGX_ERROR) {
    r->connection->error = 1;
    ngx_http_finalize_request(r, NGX_ERROR);
    return;
  }
  r->write_event_handler(r);
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
    if (rc != NGX_ERROR && rc <= NGX_OK && ctx->out &&
        (ctx->resp == PE_NGX_RESP_PASS || ctx->resp == PE_NGX_RESP_STREAM)) {
      ngx_chain_t *out = ctx->out;
      ctx->out = NULL;
      rc = ctx->resp == PE_NGX_RESP_PASS ? ngx_http_next_body_filter(r, out)
                                         : ngx_http_pe_stream_response(r, ctx, out);
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
  /* A streamed request body stopped: nginx's error page gives way to the
   * exchange's answer. */
  if (r == r->main && (ctx = ngx_http_get_module_ctx(r, ngx_http_policyexec_module)) != NULL &&
      ctx->answer && ctx->ex && ctx->resp != PE_NGX_RESP_SENT)
    return ngx_http_pe_after_both(r, ctx);
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
  pe_body_plan plan = (pe_body_plan)ctx->spec->plan[PE_RESPONSE];
  if (plan == PE_BODY_BUFFER && !r->header_only) {
    ctx->resp = PE_NGX_RESP_HOLD; /* the body filter takes it from here */
    return NGX_OK;
  }
  if (plan == PE_BODY_STREAM)
    r->filter_need_in_memory = 1; /* the copy filter reads files for the steps */
  /* No body to hold: the headers phase, and for a bodiless answer to a
   * buffering chain the body phase too, on an empty body (a streamed body
   * phase has nothing to run: there is no body to stream). */
  pe_phase last = plan == PE_BODY_BUFFER ? PE_PHASE_RESPONSE_BODY : PE_PHASE_RESPONSE_HEADERS;
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
  case PE_NGX_RESP_STREAM:
    return ngx_http_pe_stream_response(r, ctx, in);
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
  return ngx_http_pe_request_body_filter_init();
}
