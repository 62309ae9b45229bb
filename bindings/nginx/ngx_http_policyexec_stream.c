/*
 * Streamed bodies: a body whose plan is PE_BODY_STREAM goes through
 * pe_chain_stream_body_async() one nginx buffer at a time, in the
 * request-body filter (nginx >= 1.21 has ngx_http_top_request_body_filter)
 * and in the response body filter, and what comes out is passed on at once.
 *
 * Native streamed steps complete in the call. A chunk that reaches a Python
 * streamed step is in flight until the dispatcher completes it: its buffer
 * and all input after it wait (ctx->stream_q) in nginx's own buffers, which
 * stay busy, so their owners read no further; the completion records the
 * result and moves the request along through its own read or write
 * handler, which calls the filter again to finish the buffer and go on.
 *
 * Buffers. What the steps pass on unchanged is a view into the input
 * buffer: that buffer itself goes on, narrowed to the view (no copy). Other
 * output points into the exchange and is valid only until the next call, so
 * it is copied into a buffer of our own. The input buffer it came from is
 * released (pos = last) only once our copy has been written on: its owner
 * (nginx's request body reader, the upstream, the copy filter) then sees it
 * busy and reads no further, so a slow receiver holds the sender back and
 * memory stays bounded by nginx's own buffers, whatever the body's size.
 * Our buffers are reused (ngx_chain_update_chains with our tag).
 *
 * The request-body filter. Under nginx's request buffering (the default)
 * the output lands in nginx's buffer and temp file and the upstream receives
 * it with a Content-Length set from the bytes the steps let out. Without it
 * (proxy_request_buffering off) the upstream request is already on its way:
 * a client body sent chunked goes on chunked, one sent with a Content-Length
 * goes on with it, so steps that change its length stop the request (500,
 * the upstream request cut) rather than send a wrong body. A stream that
 * stops (a step failing closed or answering) answers the client with the
 * exchange's response, which the header filter substitutes for nginx's
 * error page.
 */
#include "ngx_http_policyexec.h"

/* Our own output buffers are at least this large, so that one is reused for
 * many chunks of a body. */
#define PE_NGX_STREAM_BUF 16384

static ngx_http_request_body_filter_pt ngx_http_next_request_body_filter;

/* The tag of our buffers (ngx_chain_update_chains). */
static ngx_buf_tag_t ngx_http_pe_stream_tag(void) {
  return (ngx_buf_tag_t)&ngx_http_policyexec_module;
}

/* A buffer of ours with room for @p size bytes, empty; NULL when out of
 * memory. */
static ngx_chain_t *ngx_http_pe_own_buf(ngx_http_request_t *r, ngx_http_pe_ctx_t *ctx,
                                        size_t size) {
  for (ngx_chain_t **ll = &ctx->stream_free; *ll; ll = &(*ll)->next) {
    ngx_chain_t *cl = *ll;
    ngx_buf_t *b = cl->buf;
    if ((size_t)(b->end - b->start) < size)
      continue;
    *ll = cl->next;
    cl->next = NULL;
    b->pos = b->last = b->start;
    b->temporary = 1;
    b->last_buf = 0;
    b->last_in_chain = 0;
    b->flush = 0;
    b->shadow = NULL;
    return cl;
  }
  ngx_chain_t *cl = ngx_alloc_chain_link(r->pool);
  ngx_buf_t *b = ngx_create_temp_buf(r->pool, ngx_max(size, PE_NGX_STREAM_BUF));
  if (cl == NULL || b == NULL)
    return NULL;
  b->tag = ngx_http_pe_stream_tag();
  cl->buf = b;
  cl->next = NULL;
  return cl;
}

static ngx_chain_t *ngx_http_pe_link(ngx_http_request_t *r, ngx_buf_t *b) {
  ngx_chain_t *cl = ngx_alloc_chain_link(r->pool);
  if (cl == NULL)
    return NULL;
  cl->buf = b;
  cl->next = NULL;
  return cl;
}

static void ngx_http_pe_consume_from(ngx_chain_t *cl) {
  for (; cl; cl = cl->next)
    cl->buf->pos = cl->buf->last;
}

/* The output of one input buffer @p b (chunk @p chunk, output @p o) as a
 * chain link: @p b itself narrowed to a view, or a copy in a buffer of ours
 * that releases @p b once written. NULL link and NGX_OK: nothing to pass. */
static ngx_int_t ngx_http_pe_output(ngx_http_request_t *r, ngx_http_pe_ctx_t *ctx, pe_dir dir,
                                    ngx_buf_t *b, pe_slice chunk, pe_slice o, int last,
                                    ngx_chain_t **link) {
  *link = NULL;
  if (o.len && o.ptr >= chunk.ptr && o.ptr + o.len <= chunk.ptr + chunk.len) {
    b->pos = (u_char *)o.ptr;
    b->last = b->pos + o.len;
    if (dir == PE_REQUEST)
      b->start = b->pos; /* an upstream retry resends request buffers from start */
    *link = ngx_http_pe_link(r, b);
    return *link ? NGX_OK : NGX_ERROR;
  }
  if (o.len == 0 && !last) {
    b->pos = b->last; /* held back or dropped by the steps */
    return NGX_OK;
  }
  ngx_chain_t *cl = ngx_http_pe_own_buf(r, ctx, o.len);
  if (cl == NULL)
    return NGX_ERROR;
  if (o.len)
    cl->buf->last = ngx_cpymem(cl->buf->pos, o.ptr, o.len);
  else
    cl->buf->temporary = 0; /* an empty last buffer is special: no memory to write */
  cl->buf->last_buf = last ? 1 : 0;
  cl->buf->last_in_chain = last ? 1 : 0;
  cl->buf->flush = b->flush;
  if (b->pos == b->last || o.len == 0)
    b->pos = b->last;
  else
    cl->buf->shadow = b; /* released when cl->buf is written */
  *link = cl;
  return NGX_OK;
}

/* The chunk of @p b came back from the steps with @p rc and output @p o:
 * its output is linked at *@p ll. NGX_OK, NGX_DECLINED (the stream
 * stopped), NGX_ERROR. */
static ngx_int_t ngx_http_pe_stream_result(ngx_http_request_t *r, ngx_http_pe_ctx_t *ctx,
                                           pe_dir dir, ngx_buf_t *b, pe_slice chunk, int rc,
                                           pe_slice o, ngx_chain_t ***ll) {
  int last = b->last_buf ? 1 : 0;
  if (rc != PE_OK) {
    ngx_http_pe_log_failure(ctx);
    if (pe_exchange_verdict(ctx->ex) != PE_VERDICT_RESPOND) /* a refused call: fail closed */
      pe_exchange_respond(ctx->ex, NGX_HTTP_INTERNAL_SERVER_ERROR, PE_LIT(""));
    ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                  "policyexec_chain in %V: streamed %s body stopped (%s)", &ctx->spec->where,
                  dir == PE_REQUEST ? "request" : "response", pe_strerror(rc));
    return NGX_DECLINED;
  }
  ctx->streamed[dir] += (off_t)o.len;
  if (last)
    ctx->stream_ended |= 1u << dir;
  ngx_chain_t *link;
  if (ngx_http_pe_output(r, ctx, dir, b, chunk, o, last, &link) != NGX_OK)
    return NGX_ERROR;
  if (link) {
    **ll = link;
    *ll = &link->next;
  }
  return NGX_OK;
}

static void ngx_http_pe_stream_done(pe_exchange *ex, int rc, void *user_data);

ngx_int_t ngx_http_pe_stream(ngx_http_request_t *r, ngx_http_pe_ctx_t *ctx, pe_dir dir,
                             ngx_chain_t *in, ngx_chain_t **out) {
  ngx_chain_t **ll = out;
  ngx_int_t rc;
  int own = 0; /* the links of `in` are ours (the queue), not the caller's */
  *out = NULL;
  if (ctx->stream_q[dir] || ctx->pending) {
    /* A chunk is in flight (or its result waits here): new input queues
     * behind it, in nginx's own buffers, which stay busy meanwhile. */
    if (in && ngx_chain_add_copy(r->pool, &ctx->stream_q[dir], in) != NGX_OK)
      return NGX_ERROR;
    if (ctx->pending)
      return NGX_AGAIN;
    in = ctx->stream_q[dir];
    ctx->stream_q[dir] = NULL;
    own = 1;
    if (in && (ctx->stream_wait & (1u << dir))) {
      ctx->stream_wait &= ~(1u << dir);
      rc = ngx_http_pe_stream_result(r, ctx, dir, in->buf, ctx->stream_chunk, ctx->stream_rc,
                                     ctx->stream_o, &ll);
      if (rc != NGX_OK) {
        ngx_http_pe_consume_from(in);
        return rc;
      }
      in = in->next;
    }
  }
  for (ngx_chain_t *cl = in; cl; cl = cl->next) {
    ngx_buf_t *b = cl->buf;
    int last = b->last_buf ? 1 : 0;
    if (!ngx_buf_in_memory(b) && ngx_buf_size(b) != 0) {
      /* r->filter_need_in_memory makes the copy filter read files for us */
      ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                    "policyexec_chain in %V: a streamed %s body buffer is not in memory",
                    &ctx->spec->where, dir == PE_REQUEST ? "request" : "response");
      ngx_http_pe_consume_from(cl);
      return NGX_ERROR;
    }
    pe_slice chunk = pe_bytes(b->pos, (size_t)(b->last - b->pos));
    if (ctx->stream_ended & (1u << dir)) {
      b->pos = b->last; /* nothing follows the last buffer */
      continue;
    }
    if (chunk.len == 0 && !last) {
      /* An empty buffer: a flush goes on (as a buffer of ours: an empty
       * buffer that is not special upsets nginx's writer), others go. */
      if (b->flush) {
        ngx_chain_t *fl = ngx_http_pe_own_buf(r, ctx, 0);
        if (fl == NULL)
          return NGX_ERROR;
        fl->buf->flush = 1;
        fl->buf->temporary = 0; /* special: no memory to write */
        *ll = fl;
        ll = &fl->next;
      }
      continue;
    }
    if (dir == PE_REQUEST)
      ctx->request_in += (off_t)chunk.len;
    pe_slice o;
    int prc =
        pe_chain_stream_body_async(ctx->spec->chain, ctx->ex, dir, chunk, last, &ctx->stream_o,
                                   ngx_http_pe_dispatcher(), ngx_http_pe_stream_done, ctx);
    if (prc == PE_PENDING) {
      /* This buffer and the rest wait, untouched, for the chunk's result. */
      if (own) {
        ctx->stream_q[dir] = cl;
      } else if (ngx_chain_add_copy(r->pool, &ctx->stream_q[dir], cl) != NGX_OK) {
        ctx->stream_q[dir] = NULL; /* the pending chunk is abandoned with the exchange */
        return NGX_ERROR;
      }
      ctx->stream_chunk = chunk;
      ctx->stream_wait |= 1u << dir;
      ctx->stream_dir = dir;
      ngx_http_pe_wait_start(ctx);
      return NGX_AGAIN;
    }
    o = ctx->stream_o;
    rc = ngx_http_pe_stream_result(r, ctx, dir, b, chunk, prc, o, &ll);
    if (rc != NGX_OK) {
      ngx_http_pe_consume_from(cl);
      return rc;
    }
  }
  return NGX_OK;
}

/* A chunk sent to a Python worker completed (from pe_dispatcher_dispatch):
 * its direction is moved along through nginx's own handlers, which call
 * our filter again; a direction whose input queued behind the other's
 * chunk is moved along too. */
static void ngx_http_pe_stream_kick(ngx_http_pe_ctx_t *ctx, pe_dir dir) {
  ngx_http_request_t *r = ctx->request;
  if (dir == PE_RESPONSE) {
    ngx_http_pe_stream_response_resume(ctx);
    return;
  }
  /* The request body reader: nginx's (ngx_http_read_client_request_body's
   * handler) while it buffers the body, the upstream's when it sends it
   * unbuffered; both read on through ngx_http_do_read_client_request_body,
   * whose flush calls the request-body filters with no input. When the
   * upstream is not connected yet (ngx_http_block_reading), it reads the
   * body once it is. */
  r->read_event_handler(r);
}

static void ngx_http_pe_stream_done(pe_exchange *ex, int rc, void *user_data) {
  ngx_http_pe_ctx_t *ctx = user_data;
  (void)ex;
  ngx_http_pe_wait_stop(ctx);
  ctx->stream_rc = rc;
  if (ngx_http_pe_worker_exiting())
    return; /* fast shutdown: the request is only freed */
  ngx_http_request_t *r = ctx->request;
  ngx_connection_t *c = r->connection;
  pe_dir dir = (pe_dir)ctx->stream_dir;
  pe_dir other = dir == PE_REQUEST ? PE_RESPONSE : PE_REQUEST;
  if (ctx->stream_q[other] == NULL) {
    ngx_http_pe_stream_kick(ctx, dir);
  } else {
    /* Two kicks: the first may end the request; our reference keeps it
     * (and ctx) alive for the second. */
    r->main->count++;
    ngx_http_pe_stream_kick(ctx, dir);
    if (!c->destroyed && !c->error && ctx->ex && !ctx->pending && ctx->stream_q[other])
      ngx_http_pe_stream_kick(ctx, other);
    ngx_http_finalize_request(r, NGX_DONE);
  }
  ngx_http_run_posted_requests(c);
}

void ngx_http_pe_stream_sweep(ngx_http_request_t *r, ngx_http_pe_ctx_t *ctx, ngx_chain_t **out) {
  ngx_chain_t *lists[2] = {ctx->stream_busy, *out};
  for (int i = 0; i < 2; i++) {
    for (ngx_chain_t *cl = lists[i]; cl; cl = cl->next) {
      ngx_buf_t *b = cl->buf;
      if (b->tag == ngx_http_pe_stream_tag() && b->shadow && ngx_buf_size(b) == 0) {
        b->shadow->pos = b->shadow->last;
        b->shadow = NULL;
      }
    }
  }
  ngx_chain_update_chains(r->pool, &ctx->stream_free, &ctx->stream_busy, out,
                          ngx_http_pe_stream_tag());
}

/* ---- the request body ---- */

static ngx_int_t ngx_http_pe_request_body_filter(ngx_http_request_t *r, ngx_chain_t *in) {
  ngx_http_pe_ctx_t *ctx;
  if (r != r->main || (ctx = ngx_http_get_module_ctx(r, ngx_http_policyexec_module)) == NULL ||
      ctx->ex == NULL || ctx->spec->plan[PE_REQUEST] != PE_BODY_STREAM ||
      ctx->req != PE_NGX_REQ_DONE || ctx->responded)
    return ngx_http_next_request_body_filter(r, in);
  if (ctx->answer) {
    ngx_http_pe_consume_from(in);
    return NGX_HTTP_INTERNAL_SERVER_ERROR;
  }
  ngx_chain_t *out;
  ngx_int_t rc = ngx_http_pe_stream(r, ctx, PE_REQUEST, in, &out);
  if (rc == NGX_AGAIN) {
    /* A chunk is in flight and nginx's buffers stay busy: the reader then
     * waits (ngx_http_do_read_client_request_body returns NGX_AGAIN rather
     * than alerting "busy buffers after request body flush"). */
    r->request_body->filter_need_buffering = 1;
    rc = NGX_OK;
  }
  /* Without request buffering, a client's Content-Length has gone to the
   * upstream already: a body of another length must not follow it. */
  if (rc == NGX_OK && r->request_body_no_buffering && !r->headers_in.chunked &&
      (ctx->streamed[PE_REQUEST] > r->headers_in.content_length_n ||
       ((ctx->stream_ended & (1u << PE_REQUEST)) &&
        ctx->streamed[PE_REQUEST] != ctx->request_in))) {
    ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                  "policyexec_chain in %V: the streamed request body changed its length, "
                  "which proxy_request_buffering off cannot forward: request stopped",
                  &ctx->spec->where);
    pe_exchange_respond(ctx->ex, NGX_HTTP_INTERNAL_SERVER_ERROR, PE_LIT(""));
    rc = NGX_DECLINED;
  }
  if (rc != NGX_OK) {
    /* The client has seen nothing: it gets the exchange's answer (the
     * header filter), the upstream request is dropped or cut, and the rest
     * of the client's body is not read. */
    ctx->answer = 1;
    r->keepalive = 0;
    r->lingering_close = 1;
    return NGX_HTTP_INTERNAL_SERVER_ERROR;
  }
  if (ctx->stream_ended & (1u << PE_REQUEST))
    r->headers_in.content_length_n = ctx->streamed[PE_REQUEST];
  rc = ngx_http_next_request_body_filter(r, out);
  ngx_http_pe_stream_sweep(r, ctx, &out);
  return rc;
}

ngx_int_t ngx_http_pe_request_body_filter_init(void) {
  ngx_http_next_request_body_filter = ngx_http_top_request_body_filter;
  ngx_http_top_request_body_filter = ngx_http_pe_request_body_filter;
  return NGX_OK;
}
