/*
 * The request side, in the precontent phase (after rewrite and access,
 * before the content handler): request headers, then, when the chain needs
 * it, the request body read with ngx_http_read_client_request_body() and
 * the request-body phase. Either phase may answer at once; the upstream is
 * then never contacted.
 *
 * The handler is a small state machine re-entered through
 * ngx_http_core_run_phases() when a pending phase completes.
 */
#include "ngx_http_policyexec.h"

static void ngx_http_pe_req_resume(ngx_http_pe_ctx_t *ctx) {
  ngx_http_core_run_phases(ctx->request);
}

/* Answers with the exchange's response; the request ends here. */
static ngx_int_t ngx_http_pe_send_immediate(ngx_http_request_t *r, ngx_http_pe_ctx_t *ctx) {
  ngx_int_t rc;
  ctx->req = PE_NGX_REQ_DONE;
  ctx->responded = 1;
  ctx->resp = PE_NGX_RESP_PASS; /* the response phases do not run on it */
  if (!ctx->body_read && ngx_http_discard_request_body(r) != NGX_OK)
    r->keepalive = 0;
  pe_slice body = pe_exchange_body(ctx->ex, PE_RESPONSE);
  if (ngx_http_pe_apply_response(r, ctx->ex, (off_t)body.len) != NGX_OK) {
    ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
    return NGX_DONE;
  }
  rc = ngx_http_send_header(r);
  if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
    ngx_http_finalize_request(r, rc);
    return NGX_DONE;
  }
  ngx_chain_t *out = ngx_http_pe_body_chain(r, body);
  ngx_http_finalize_request(r, out ? ngx_http_output_filter(r, out) : NGX_ERROR);
  return NGX_DONE;
}

/* The request body, now read, into the exchange. */
static ngx_int_t ngx_http_pe_load_body(ngx_http_request_t *r, ngx_http_pe_ctx_t *ctx) {
  if (r->request_body == NULL)
    return NGX_OK;
  for (ngx_chain_t *cl = r->request_body->bufs; cl; cl = cl->next) {
    int rc = ngx_http_pe_append_buf(r, ctx->ex, PE_REQUEST, cl->buf);
    if (rc == PE_ERR_BODY_TOO_LARGE)
      return NGX_HTTP_REQUEST_ENTITY_TOO_LARGE;
    if (rc < 0)
      return NGX_HTTP_INTERNAL_SERVER_ERROR;
  }
  return NGX_OK;
}

/* The exchange's body becomes the body the upstream receives. */
static ngx_int_t ngx_http_pe_store_body(ngx_http_request_t *r, ngx_http_pe_ctx_t *ctx) {
  ngx_http_request_body_t *rb = r->request_body;
  pe_slice body = pe_exchange_body(ctx->ex, PE_REQUEST);
  if (rb == NULL)
    return NGX_OK;
  ngx_chain_t *cl = ngx_http_pe_body_chain(r, body);
  if (cl == NULL)
    return NGX_ERROR;
  if (body.len == 0) { /* an empty body is no buffer at all */
    cl = NULL;
  }
  rb->bufs = cl;
  rb->temp_file = NULL;
  r->request_body_in_file_only = 0;
  r->headers_in.content_length_n = (off_t)body.len;
  return NGX_OK;
}

static void ngx_http_pe_body_read(ngx_http_request_t *r) {
  ngx_http_pe_ctx_t *ctx = ngx_http_get_module_ctx(r, ngx_http_policyexec_module);
  ctx->body_read = 1;
  ctx->req = PE_NGX_REQ_BODY;
  ngx_int_t rc = ngx_http_pe_load_body(r, ctx);
  if (rc != NGX_OK) {
    ctx->req = PE_NGX_REQ_DONE;
    ctx->resp = PE_NGX_RESP_PASS;
    ngx_http_finalize_request(r, rc);
    return;
  }
  r->write_event_handler = ngx_http_core_run_phases;
  if (ngx_http_pe_run(ctx, PE_PHASE_REQUEST_BODY, PE_PHASE_REQUEST_BODY, ngx_http_pe_req_resume) ==
      NGX_OK)
    ngx_http_core_run_phases(r);
}

static ngx_int_t ngx_http_pe_step(ngx_http_request_t *r, ngx_http_pe_ctx_t *ctx) {
  ngx_int_t rc;
  for (;;) {
    if (ctx->pending)
      return NGX_DONE;
    switch (ctx->req) {
    case PE_NGX_REQ_NEW:
      ctx->req = PE_NGX_REQ_HEADERS;
      rc = ngx_http_pe_fill_request(r, ctx->ex);
      if (rc != NGX_OK) {
        ctx->req = PE_NGX_REQ_DONE;
        ctx->resp = PE_NGX_RESP_PASS;
        return rc;
      }
      if (ngx_http_pe_run(ctx, PE_PHASE_REQUEST_HEADERS, PE_PHASE_REQUEST_HEADERS,
                          ngx_http_pe_req_resume) == NGX_AGAIN)
        return NGX_DONE;
      break;
    case PE_NGX_REQ_HEADERS: /* the request-headers phase is complete */
      if (ngx_http_pe_responded(ctx))
        return ngx_http_pe_send_immediate(r, ctx);
      /* The body: PASS leaves it to nginx; STREAM too, with the request-body
       * filter (ngx_http_policyexec_stream.c) running the streamed steps as
       * nginx reads it for the content handler; BUFFER reads it here. */
      if (ctx->spec->plan[PE_REQUEST] == PE_BODY_STREAM) {
        ctx->req = PE_NGX_REQ_BODY;
        break;
      }
      if (ctx->spec->plan[PE_REQUEST] == PE_BODY_BUFFER) {
        ctx->req = PE_NGX_REQ_READING;
        rc = ngx_http_read_client_request_body(r, ngx_http_pe_body_read);
        if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
          ctx->resp = PE_NGX_RESP_PASS;
          return rc;
        }
        ngx_http_finalize_request(r, NGX_DONE); /* the read took a reference */
        return NGX_DONE;
      }
      ctx->req = PE_NGX_REQ_BODY;
      if (ngx_http_pe_run(ctx, PE_PHASE_REQUEST_BODY, PE_PHASE_REQUEST_BODY,
                          ngx_http_pe_req_resume) == NGX_AGAIN)
        return NGX_DONE;
      break;
    case PE_NGX_REQ_READING:
      return NGX_DONE;    /* ngx_http_pe_body_read() moves on */
    case PE_NGX_REQ_BODY: /* the request-body phase is complete */
      if (ngx_http_pe_responded(ctx))
        return ngx_http_pe_send_immediate(r, ctx);
      ctx->req = PE_NGX_REQ_DONE;
      /* Only what the phases changed goes back; an unchanged body stays in
       * nginx's own buffers (or temp file). */
      if (ngx_http_pe_apply_request(r, ctx->ex) != NGX_OK ||
          (ctx->body_read && (pe_exchange_changes(ctx->ex) & PE_CHANGE_REQUEST_BODY) &&
           ngx_http_pe_store_body(r, ctx) != NGX_OK))
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
      return NGX_DECLINED;
    case PE_NGX_REQ_DONE:
      return NGX_DECLINED;
    }
  }
}

ngx_int_t ngx_http_pe_precontent_handler(ngx_http_request_t *r) {
  if (r != r->main)
    return NGX_DECLINED;
  ngx_http_pe_loc_conf_t *plcf = ngx_http_get_module_loc_conf(r, ngx_http_policyexec_module);
  if (!plcf->enable || plcf->spec == NULL || plcf->spec->chain == NULL || plcf->spec->phases == 0)
    return NGX_DECLINED;
  ngx_http_pe_ctx_t *ctx = ngx_http_get_module_ctx(r, ngx_http_policyexec_module);
  if (ctx == NULL) {
    ctx = ngx_http_pe_ctx_create(r, plcf->spec);
    if (ctx == NULL)
      return NGX_HTTP_INTERNAL_SERVER_ERROR;
  }
  return ngx_http_pe_step(r, ctx);
}
