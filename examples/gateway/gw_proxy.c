/*
 * The request flow, as a continuation-passing state machine:
 *
 *   client request -> route -> [request headers] -> [request body]
 *     -> upstream request -> upstream head
 *     -> [response headers] -> stream the body, or, when the chain needs
 *        the response body: buffer it -> [response headers + body] -> reply
 *
 * Each body follows the chain's plan for it (pe_chain_body_plan): passed
 * through untouched, streamed through the chain's streamed steps chunk by
 * chunk (pe_chain_stream_body, framed chunked since its length may
 * change), or buffered for the body phase.
 *
 * A buffered response reaches the client only after the body phase, so
 * both response phases wait for the whole body and run as one
 * (pe_chain_run_phases_async): their Python steps cost one round trip to
 * a worker, not two.
 *
 * A streamed response chunk goes through pe_chain_stream_body_async() the
 * same way: a chunk that waits on a Python worker counts as a pending
 * phase (upstream reads paused, later bytes held) and the flow resumes
 * from its completion.
 *
 * Each [phase] runs through pe_chain_run_phases_async(): it either completes at
 * once (native policies) and the flow goes straight on, or returns
 * PE_PENDING (a Python batch in flight) and the flow resumes from the
 * thread's dispatcher callback. Either way the next step is the same
 * function, so no step knows which happened.
 *
 * A request is finished (counted, and its memory recycled) once the client
 * has its answer, the upstream request is over and no phase is pending;
 * any of the three may come last.
 */
#include "gw_proxy.h"

#include "gw_request.h"

#include "gw_headers.h"
#include "gw_path.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void gw_proxy_client_gone(void *owner) {
  gw_request *r = owner;
  r->client_gone = 1;
  if (r->client_done)
    return;
  if (r->upstream_state == UPSTREAM_ACTIVE && !r->in_upstream_cb) {
    gw_upstream_cancel(r->upstream);
    r->upstream = NULL;
    r->upstream_state = UPSTREAM_DONE;
    r->upstream_result = GW_UPSTREAM_BROKEN;
    r->status = 499; /* for the metrics, as nginx logs it */
    if (r->phase_pending)
      return; /* the phase's continuation ends it */
    if (r->streaming) {
      gw_req_end_stream(r);
    } else {
      r->client_done = 1;
      gw_client_abort(r->client);
    }
    gw_req_maybe_finish(r);
  }
  /* Otherwise a phase runs (its continuation ends the request on the dead
   * client) or the upstream request has not started (send_upstream sees
   * client_gone). */
}

void gw_proxy_client_drained(void *owner) {
  gw_request *r = owner;
  if (r->paused && r->upstream_state == UPSTREAM_ACTIVE) {
    r->paused = 0;
    if (!r->gated)                     /* else the exchange is busy: gw_req_body_kick resumes it */
      gw_upstream_resume(r->upstream); /* may complete, and finish, r */
  }
}

/* The request line, the end-to-end fields and the body, as the upstream
 * gets them. Returns 0 or -1. */
static int write_upstream_request(gw_request *r, gw_buf *out) {
  const gw_api_spec *api = &r->route->spec;
  pe_slice method = pe_exchange_method(r->ex), path = pe_exchange_path(r->ex);
  pe_body_plan plan = r->route->plan[PE_REQUEST];
  pe_slice body = r->req_stream            ? PE_LIT("")
                  : plan == PE_BODY_BUFFER ? pe_exchange_body(r->ex, PE_REQUEST)
                  : plan == PE_BODY_STREAM
                      ? pe_bytes(gw_buf_ptr(&r->streamed), r->streamed.len)
                      : pe_bytes(gw_buf_ptr(r->client_body), r->client_body->len);
  int rc = gw_buf_reserve(out, method.len + path.len + body.len + 512);
  rc |= gw_buf_append(out, method.ptr, method.len);
  rc |= gw_buf_append(out, " ", 1);
  rc |= gw_buf_append(out, path.ptr, path.len);
  rc |= gw_buf_append_str(out, " HTTP/1.1\r\n");
  rc |= gw_headers_write(r->ex, PE_REQUEST, out, 0);
  if (!gw_headers_has(r->ex, PE_REQUEST, "host")) {
    char host[300];
    snprintf(host, sizeof host, "host: %s:%u\r\n", api->upstream_host,
             (unsigned)api->upstream_port);
    rc |= gw_buf_append_str(out, host);
  }
  if (r->req_stream) {
    /* The body follows as it is read: with the client's length when it
     * passes unchanged, else chunked (streamed steps may change it). */
    if (r->req_chunked) {
      rc |= gw_buf_append_str(out, "transfer-encoding: chunked\r\n");
    } else {
      rc |= gw_buf_append_str(out, "content-length: ");
      rc |= gw_buf_append_dec(out, r->req_length);
      rc |= gw_buf_append_str(out, "\r\n");
    }
    rc |= gw_buf_append_str(out, "\r\n");
    return rc ? -1 : 0;
  }
  /* The whole body is here, so its length is known: state it, which also
   * covers a rewritten or de-chunked body. */
  if (body.len > 0 || r->had_body) {
    rc |= gw_buf_append_str(out, "content-length: ");
    rc |= gw_buf_append_dec(out, body.len);
    rc |= gw_buf_append_str(out, "\r\n");
  }
  rc |= gw_buf_append_str(out, "\r\n");
  rc |= gw_buf_append(out, body.ptr, body.len);
  return rc ? -1 : 0;
}

static void send_upstream(gw_request *r) {
  const gw_api_spec *api = &r->route->spec;
  if (r->client_gone) {
    r->client_done = 1;
    r->status = 499;
    gw_client_abort(r->client);
    gw_req_maybe_finish(r);
    return;
  }
  r->upstream = gw_upstream_acquire(r->thread->upstreams, api->upstream_host, api->upstream_port);
  if (!r->upstream) {
    r->upstream_result = GW_UPSTREAM_UNREACHABLE;
    gw_req_reply_upstream_failure(r);
    gw_req_maybe_finish(r);
    return;
  }
  if (write_upstream_request(r, gw_upstream_request(r->upstream)) < 0) {
    gw_upstream_cancel(r->upstream);
    r->upstream = NULL;
    gw_req_reply_error(r, 500, "internal error: out of memory\n");
    gw_req_maybe_finish(r);
    return;
  }
  r->upstream_state = UPSTREAM_ACTIVE;
  if (!r->req_stream) {
    gw_upstream_send(r->upstream, gw_client_is_head(r->client), &gw_req_upstream_callbacks, r);
    return;
  }
  gw_upstream_send_open(r->upstream, gw_client_is_head(r->client), &gw_req_upstream_callbacks, r);
  gw_client_body_start(r->client); /* body bytes come now (may finish r) */
}

/* ---- request side ---- */

static void after_request_body(gw_request *r) {
  if (gw_req_responded(r)) {
    gw_req_reply_from_exchange(r);
    gw_req_maybe_finish(r);
    return;
  }
  send_upstream(r);
}

/* The streamed steps saw the end of a request without a body. */
static void after_empty_body(gw_request *r) {
  if (r->req_chunk_rc != PE_OK) {
    pe_engine_log(r->thread->ctx->engine, PE_LOG_WARN, "api %s: request body stream stopped: %s",
                  r->route->spec.name, pe_exchange_errmsg(r->ex));
    gw_req_reply_from_exchange(r); /* nothing went upstream yet */
    gw_req_maybe_finish(r);
    return;
  }
  if (gw_buf_append(&r->streamed, r->req_out.ptr, r->req_out.len) < 0) {
    gw_req_reply_error(r, 500, "internal error: out of memory\n");
    gw_req_maybe_finish(r);
    return;
  }
  send_upstream(r);
}

static void on_empty_body_done(pe_exchange *ex, int rc, void *user_data) {
  gw_request *r = user_data;
  r->req_chunk_rc = rc;
  gw_req_on_phase_done(ex, PE_OK, user_data);
}

static void after_request_headers(gw_request *r) {
  if (gw_req_responded(r)) {
    gw_req_reply_from_exchange(r);
    gw_req_maybe_finish(r);
    return;
  }
  if (r->req_stream) {
    send_upstream(r); /* the body follows, read as it comes */
    return;
  }
  if (r->route->plan[PE_REQUEST] == PE_BODY_STREAM) {
    /* A request without a body: the steps still see its (empty) end,
     * without blocking on a worker either. */
    pe_slice body = pe_bytes(gw_buf_ptr(r->client_body), r->client_body->len);
    int rc = pe_chain_stream_body_async(r->route->chain, r->ex, PE_REQUEST, body, 1, &r->req_out,
                                        r->thread->dispatcher, on_empty_body_done, r);
    if (rc == PE_PENDING) {
      r->resume = after_empty_body;
      r->phase_pending = 1;
      return;
    }
    r->req_chunk_rc = rc;
    after_empty_body(r);
    return;
  }
  if (r->route->plan[PE_REQUEST] == PE_BODY_BUFFER) {
    int rc = pe_exchange_body_set(r->ex, PE_REQUEST,
                                  pe_bytes(gw_buf_ptr(r->client_body), r->client_body->len));
    if (rc < 0) {
      gw_req_reply_error(r, rc == PE_ERR_BODY_TOO_LARGE ? 413 : 500,
                         rc == PE_ERR_BODY_TOO_LARGE ? "request body too large\n"
                                                     : "internal error: out of memory\n");
      gw_req_maybe_finish(r);
      return;
    }
  }
  gw_req_run_phase(r, PE_PHASE_REQUEST_BODY, after_request_body);
}

/* Fills the request side of the exchange. Returns 0, or the status to
 * answer with. */
static int fill_request(gw_request *r, const gw_head *head, const char *path, size_t path_len) {
  const gw_field *host = gw_http_find(head, "host");
  if (pe_exchange_set_method(r->ex, pe_bytes(head->method, head->method_len)) < 0 ||
      pe_exchange_set_path(r->ex, pe_bytes(path, path_len)) < 0 ||
      (host && pe_exchange_set_authority(r->ex, pe_bytes(host->value, host->value_len)) < 0))
    return 400;
  int rc = gw_headers_to_exchange(head, r->ex, PE_REQUEST);
  if (rc == PE_ERR_TOO_MANY_HEADERS || rc == PE_ERR_HEADERS_TOO_LARGE)
    return 431;
  if (rc < 0)
    return rc == PE_ERR_NOMEM ? 500 : 400;
  return 0;
}

/* The request's own checks, before any routing. Returns NULL, or why it
 * is refused with a 400. */
static const char *refusal(const gw_head *head) {
  if (head->target[0] != '/') /* origin-form only: this is not a forward proxy */
    return "bad request: request target must be a path\n";
  /* RFC 9112 section 3.2: exactly one Host in HTTP/1.1, at most one in 1.0.
   * Two could mean different authorities to a policy and to the upstream. */
  size_t hosts = gw_http_count(head, "host");
  if (hosts > 1 || (hosts == 0 && head->minor >= 1))
    return "bad request: exactly one Host header field is required\n";
  return NULL;
}

int gw_proxy_streams_body(gw_client *c, const gw_head *head) {
  gw_thread *t = gw_client_thread(c);
  if (refusal(head))
    return 0; /* refused before any body is needed */
  size_t path_len = gw_path_normalize(head->target, head->target_len, t->path_buf);
  if (path_len == 0)
    return 0;
  gw_route *route = gw_apis_route(t->ctx->apis, &t->view, t->path_buf, path_len);
  if (!route)
    return 0;
  int stream = route->plan[PE_REQUEST] != PE_BODY_BUFFER;
  gw_route_unref(route);
  return stream;
}

void gw_proxy_request(gw_client *c, const gw_head *head, gw_buf *body) {
  gw_thread *t = gw_client_thread(c);
  const char *why = refusal(head);
  if (why) {
    gw_client_send_simple(c, 400, why);
    return;
  }
  if (head->method_len == 7 && memcmp(head->method, "CONNECT", 7) == 0) {
    gw_client_send_simple(c, 405, "method not allowed\n");
    return;
  }
  /* Routing, policies and the upstream all see the normalised target, so
   * that no other spelling of a protected path slips through a shorter
   * context (see README.md, "Routing and path normalisation"). */
  size_t path_len = gw_path_normalize(head->target, head->target_len, t->path_buf);
  if (path_len == 0) {
    gw_client_send_simple(c, 400, "bad request: request target cannot be normalised\n");
    return;
  }
  gw_route *route = gw_apis_route(t->ctx->apis, &t->view, t->path_buf, path_len);
  if (!route) {
    gw_metrics_count_unrouted(t->ctx->metrics);
    gw_client_send_simple(c, 404, "no API serves this path\n");
    return;
  }
  if (!body && route->plan[PE_REQUEST] == PE_BODY_BUFFER) {
    /* The API changed between the head's two look-ups and now wants the
     * body whole, which is already streaming: never bypass its steps. */
    gw_route_unref(route);
    gw_client_send_simple(c, 503, "API reconfigured, retry\n");
    return;
  }
  gw_request *r = calloc(1, sizeof *r);
  pe_exchange *ex = r ? gw_thread_take_exchange(t) : NULL;
  if (!ex) {
    free(r);
    gw_route_unref(route);
    gw_client_send_simple(c, 503, "out of memory\n");
    return;
  }
  r->thread = t;
  r->client = c;
  r->client_body = body;
  if (!body) {
    gw_framing framing;
    uint64_t length = 0;
    gw_http_framing(head, 1, &framing, &length); /* checked by the client already */
    r->req_stream = 1;
    r->req_length = length;
    r->req_chunked = framing != GW_BODY_LENGTH || route->plan[PE_REQUEST] == PE_BODY_STREAM;
  }
  r->route = route;
  r->ex = ex;
  r->start_ns = gw_now_ns();
  r->had_body = !body || body->len > 0 || gw_http_find(head, "content-length") ||
                gw_http_find(head, "transfer-encoding");
  TAILQ_INSERT_HEAD(&t->inflight, r, link);
  t->inflight_count++;
  gw_client_set_owner(c, r);

  int status = fill_request(r, head, t->path_buf, path_len);
  if (status) {
    gw_req_reply_error(r, status,
                       status == 431 ? "request header fields too large\n" : "bad request\n");
    gw_req_maybe_finish(r);
    return;
  }
  gw_req_run_phase(r, PE_PHASE_REQUEST_HEADERS, after_request_headers);
}
