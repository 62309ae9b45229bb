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

#include "gw_headers.h"
#include "gw_path.h"
#include "pe_clock.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef void (*gw_next_fn)(gw_request *r);

typedef enum upstream_state { UPSTREAM_NONE, UPSTREAM_ACTIVE, UPSTREAM_DONE } upstream_state;

struct gw_request {
  gw_thread *thread;
  TAILQ_ENTRY(gw_request) link; /* in thread->inflight */
  gw_client *client;            /* not touched once client_done */
  const gw_buf *client_body;
  gw_route *route;
  pe_exchange *ex;
  uint64_t start_ns;
  int status; /* sent to the client, for the metrics */

  gw_upstream_conn *upstream;
  upstream_state upstream_state;
  gw_upstream_result upstream_result;
  int64_t upstream_length; /* GW_LENGTH_AS_IS, or GW_LENGTH_CHUNKED */

  gw_next_fn resume; /* continuation of the pending phase */
  unsigned phase_pending : 1;
  unsigned in_upstream_cb : 1; /* inside an upstream callback */
  unsigned drop_upstream : 1;  /* tell the upstream callback to return -1 */
  unsigned headers_done : 1;   /* body bytes may go to the client or exchange */
  unsigned streaming : 1;      /* the response is started; body bytes pass through */
  unsigned client_done : 1;    /* the client has its whole answer */
  unsigned paused : 1;         /* upstream reads paused for a slow client */
  unsigned had_body : 1;       /* the client's request carried a body */
  unsigned client_gone : 1;    /* the client went away: answer nobody upstream */
  unsigned stream_resp : 1;    /* the response body goes through pe_chain_stream_body */
  unsigned head_pending : 1;   /* its head waits for the stream's first output bytes */
  unsigned req_stream : 1;     /* the request body comes from the client as it is read */
  unsigned req_chunked : 1;    /* ... and goes upstream chunked (else with its length) */
  unsigned req_stopped : 1;    /* ... and is no longer forwarded (stopped, or answered) */
  unsigned body_paused : 1;    /* the client's body reads wait for the upstream */
  unsigned chunk_paused : 1;   /* upstream reads paused while a response chunk is pending */
  unsigned chunk_last : 1;     /* the pending response chunk ends the body */
  unsigned req_ended : 1;      /* the streamed request body was read whole */
  int chunk_rc;                /* the pending response chunk's result */
  pe_slice chunk_out;          /* ... and what it lets out */
  uint64_t req_length;         /* the client's Content-Length, when not chunked */
  gw_buf held;                 /* response body that arrived while a phase ran */
  gw_buf streamed;             /* the request body as the streamed steps left it */
};

static const gw_upstream_callbacks upstream_callbacks;

uint64_t gw_now_ns(void) {
  return pe__clock_ns(CLOCK_MONOTONIC);
}

/* ---- finishing ---- */

static void request_free(gw_request *r) {
  gw_route_unref(r->route);
  gw_buf_free(&r->held);
  gw_buf_free(&r->streamed);
  free(r);
}

static void maybe_finish(gw_request *r) {
  if (!r->client_done || r->upstream_state == UPSTREAM_ACTIVE || r->phase_pending)
    return;
  gw_thread *t = r->thread;
  gw_metrics_observe(r->route->metrics, r->status, gw_now_ns() - r->start_ns);
  TAILQ_REMOVE(&t->inflight, r, link);
  t->inflight_count--;
  gw_thread_give_exchange(t, r->ex);
  request_free(r);
}

void gw_proxy_abandon_all(gw_thread *t) {
  while (!TAILQ_EMPTY(&t->inflight)) {
    gw_request *r = TAILQ_FIRST(&t->inflight);
    TAILQ_REMOVE(&t->inflight, r, link);
    pe_exchange_free(r->ex); /* the dispatcher is gone: no phase owns it */
    request_free(r);
  }
  t->inflight_count = 0;
}

/* ---- answering the client ---- */

static void reply_error(gw_request *r, int status, const char *text) {
  r->status = status;
  r->client_done = 1;
  gw_client_send_simple(r->client, status, text);
}

static int bodiless(const gw_request *r, int status) {
  return gw_client_is_head(r->client) || status == 204 || status == 304;
}

/* Sends the response side of the exchange as it stands: the upstream's
 * response as the policies left it, or an immediate response. Its length
 * is the body's (whatever Content-Length the upstream stated), except
 * where a message has no body and the field describes the resource. */
static void reply_from_exchange(gw_request *r) {
  int status = pe_exchange_status(r->ex);
  if (status < 200 || status > 999) {
    reply_error(r, 502, "bad gateway: no valid response status\n");
    return;
  }
  pe_slice body = pe_exchange_body(r->ex, PE_RESPONSE);
  r->status = status;
  r->client_done = 1;
  if (bodiless(r, status)) {
    gw_client_start_response(r->client, status, r->ex, GW_LENGTH_AS_IS);
  } else {
    gw_client_start_response(r->client, status, r->ex, (int64_t)body.len);
    gw_client_send_body(r->client, body.ptr, body.len);
  }
  gw_client_end_response(r->client);
}

static void reply_upstream_failure(gw_request *r) {
  if (r->upstream_result == GW_UPSTREAM_TIMEOUT)
    reply_error(r, 504, "gateway timeout\n");
  else if (r->upstream_result == GW_UPSTREAM_UNREACHABLE)
    reply_error(r, 502, "bad gateway: upstream unreachable\n");
  else
    reply_error(r, 502, "bad gateway: upstream response broken\n");
}

/* ---- running phases ---- */

static void on_phase_done(pe_exchange *ex, int rc, void *user_data) {
  gw_request *r = user_data;
  (void)ex;
  (void)rc; /* always PE_OK: step failures show in the verdict */
  r->phase_pending = 0;
  if (!r->thread->closing) /* at shutdown the request is only freed */
    r->resume(r);
}

/* Runs phases @p first to @p last if the chain has steps there, then
 * continues with @p next, now or once the dispatcher completes them. */
static void run_phases(gw_request *r, pe_phase first, pe_phase last, gw_next_fn next) {
  unsigned wanted = 0;
  for (unsigned p = first; p <= last; p++)
    wanted |= PE_PHASE_BIT(p);
  if (!(r->route->phases & wanted)) {
    next(r);
    return;
  }
  int rc = pe_chain_run_phases_async(r->route->chain, r->ex, first, last, r->thread->dispatcher,
                                     on_phase_done, r);
  if (rc == PE_PENDING) {
    r->resume = next;
    r->phase_pending = 1;
    return;
  }
  if (rc < 0) { /* nothing ran: answer as a closed failure would */
    pe_engine_log(r->thread->ctx->engine, PE_LOG_ERROR, "api %s: %s phase not run: %s",
                  r->route->spec.name, pe_phase_name(first), pe_strerror(rc));
    pe_exchange_respond(r->ex, rc == PE_ERR_BUSY ? 503 : 500,
                        rc == PE_ERR_BUSY ? PE_LIT("policy workers busy\n")
                                          : PE_LIT("policy error\n"));
  }
  next(r);
}

static void run_phase(gw_request *r, pe_phase phase, gw_next_fn next) {
  run_phases(r, phase, phase, next);
}

static int responded(const gw_request *r) {
  return pe_exchange_verdict(r->ex) == PE_VERDICT_RESPOND;
}

/* ---- upstream side ---- */

/* Ends the upstream request early (the client was answered otherwise). */
static void drop_upstream(gw_request *r) {
  if (r->upstream_state != UPSTREAM_ACTIVE)
    return;
  if (r->in_upstream_cb) {
    r->drop_upstream = 1; /* the callback returns -1; see upstream_dropped() */
    return;
  }
  gw_upstream_cancel(r->upstream);
  r->upstream = NULL;
  r->upstream_state = UPSTREAM_DONE;
}

/* After an upstream callback that returns -1: the connection is gone. */
static int upstream_dropped(gw_request *r) {
  r->upstream = NULL;
  r->upstream_state = UPSTREAM_DONE;
  maybe_finish(r);
  return -1;
}

static void after_response_body(gw_request *r) {
  reply_from_exchange(r);
  maybe_finish(r);
}

static void finish_buffered_response(gw_request *r) {
  if (r->upstream_result != GW_UPSTREAM_OK) {
    reply_upstream_failure(r);
    maybe_finish(r);
    return;
  }
  run_phases(r, PE_PHASE_RESPONSE_HEADERS, PE_PHASE_RESPONSE_BODY, after_response_body);
}

/* A streamed response body stopped at a step (failed closed, or
 * answered): the client gets the exchange's answer if nothing of the
 * response has gone out yet, else the connection is cut, so that a
 * truncated body never looks complete. */
static void stream_stopped(gw_request *r) {
  pe_engine_log(r->thread->ctx->engine, PE_LOG_WARN, "api %s: response body stream stopped: %s",
                r->route->spec.name, pe_exchange_errmsg(r->ex));
  r->stream_resp = 0;
  int clean = pe_exchange_stream_state(r->ex, PE_RESPONSE) == PE_STREAM_STOPPED_CLEAN;
  if (!r->client_gone && clean && (r->head_pending || gw_client_retract_response(r->client))) {
    r->head_pending = 0;
    reply_from_exchange(r);
    return;
  }
  r->client_done = 1;
  gw_client_abort(r->client);
}

/* What a response chunk's steps gave: bytes for the client, or a stop.
 * Returns 0, or -1 when the stream stopped. */
static int stream_out_result(gw_request *r, int rc, pe_slice out, int last) {
  if (rc != PE_OK) {
    stream_stopped(r);
    return -1;
  }
  if (r->head_pending && (out.len > 0 || last)) {
    r->head_pending = 0;
    gw_client_start_response(r->client, r->status, r->ex, GW_LENGTH_CHUNKED);
  }
  gw_client_send_body(r->client, out.ptr, out.len);
  return 0;
}

static void after_response_chunk(gw_request *r);

static void on_chunk_done(pe_exchange *ex, int rc, void *user_data) {
  gw_request *r = user_data;
  r->chunk_rc = rc;
  on_phase_done(ex, PE_OK, user_data);
}

/* Sends response body bytes to the client: as they are, or through the
 * chain's streamed steps. Returns 0, 1 when the chunk waits on a worker
 * (upstream reads are paused and after_response_chunk takes over), or -1
 * when the stream stopped (the client is answered or cut; the caller drops
 * the upstream). */
static int stream_out(gw_request *r, const char *data, size_t len, int last) {
  if (!r->stream_resp) {
    gw_client_send_body(r->client, data, len);
    return 0;
  }
  if (r->req_stream && !r->req_ended && !r->req_stopped) {
    /* The request body still streams (the upstream answered early): its
     * pieces need the exchange at any time, so this chunk runs blocking. */
    pe_slice out;
    int rc =
        pe_chain_stream_body(r->route->chain, r->ex, PE_RESPONSE, pe_bytes(data, len), last, &out);
    return stream_out_result(r, rc, out, last);
  }
  int rc = pe_chain_stream_body_async(r->route->chain, r->ex, PE_RESPONSE, pe_bytes(data, len),
                                      last, &r->chunk_out, r->thread->dispatcher, on_chunk_done, r);
  if (rc == PE_PENDING) {
    r->resume = after_response_chunk;
    r->phase_pending = 1;
    r->chunk_last = last != 0;
    if (r->upstream_state == UPSTREAM_ACTIVE && !r->paused && !r->chunk_paused) {
      gw_upstream_pause(r->upstream);
      r->chunk_paused = 1;
    }
    return 1;
  }
  return stream_out_result(r, rc, r->chunk_out, last);
}

static void end_stream(gw_request *r) {
  if (r->upstream_result == GW_UPSTREAM_OK) {
    if (stream_out(r, NULL, 0, 1) != 0)
      return; /* the client is answered or cut, or the last chunk is pending */
    r->client_done = 1;
    gw_client_end_response(r->client);
  } else if (!r->client_gone && (r->head_pending || gw_client_retract_response(r->client))) {
    r->head_pending = 0;
    reply_upstream_failure(r); /* nothing was out yet: a 502 is still possible */
  } else {
    r->client_done = 1;
    gw_client_abort(r->client); /* the only honest end of a cut-off body */
  }
}

static void start_streaming(gw_request *r) {
  int status = pe_exchange_status(r->ex);
  r->status = status;
  r->streaming = 1;
  r->stream_resp = r->route->plan[PE_RESPONSE] == PE_BODY_STREAM && !bodiless(r, status);
  /* A body passing unchanged keeps the upstream's framing, whatever the
   * policies did to Content-Length or Transfer-Encoding: the gateway
   * writes both fields itself (the upstream's length, or chunked). A body
   * through streamed steps may change length: chunked (close-delimited
   * for HTTP/1.0), and its head waits for the first bytes the steps let
   * out, so that a step failing before that still gets a clean 500. */
  if (r->stream_resp) /* the head goes with the first output bytes (see stream_out) */
    r->head_pending = 1;
  else
    gw_client_start_response(r->client, status, r->ex, r->upstream_length);
  if (r->held.len > 0) {
    int rc = stream_out(r, gw_buf_ptr(&r->held), r->held.len, 0);
    gw_buf_reset(&r->held, 0); /* the library copied what a pending chunk needs */
    if (rc < 0) {
      drop_upstream(r);
      if (!r->drop_upstream)
        maybe_finish(r);
      return;
    }
    if (rc > 0)
      return; /* after_response_chunk goes on */
  }
  if (r->upstream_state == UPSTREAM_DONE) {
    end_stream(r);
    maybe_finish(r);
  }
}

/* A response chunk that waited on a worker is through: its bytes go out,
 * then the bytes held meanwhile, then the end or more upstream reads. */
static void after_response_chunk(gw_request *r) {
  if (r->client_gone && !r->client_done) {
    /* The client went away meanwhile (its handler left the end to us). */
    drop_upstream(r);
    r->client_done = 1;
    gw_client_abort(r->client);
    maybe_finish(r);
    return;
  }
  if (r->client_done) { /* answered otherwise meanwhile */
    maybe_finish(r);
    return;
  }
  if (stream_out_result(r, r->chunk_rc, r->chunk_out, r->chunk_last) < 0) {
    drop_upstream(r);
    maybe_finish(r);
    return;
  }
  if (r->chunk_last) {
    r->client_done = 1;
    gw_client_end_response(r->client);
    maybe_finish(r);
    return;
  }
  if (r->held.len > 0) {
    int rc = stream_out(r, gw_buf_ptr(&r->held), r->held.len, 0);
    gw_buf_reset(&r->held, 0);
    if (rc != 0) {
      if (rc < 0) {
        drop_upstream(r);
        maybe_finish(r);
      }
      return;
    }
  }
  if (r->upstream_state == UPSTREAM_DONE) {
    end_stream(r);
    maybe_finish(r);
    return;
  }
  if (r->chunk_paused) {
    r->chunk_paused = 0;
    /* A slow client keeps the upstream paused (gw_proxy_client_drained). */
    if (gw_client_pending_output(r->client) > r->thread->stream_buffer_bytes)
      r->paused = 1;
    else
      gw_upstream_resume(r->upstream); /* may complete, and finish, r */
  }
}

/* After the response-headers phase of a streamed response (or straight
 * after the upstream's head when the chain has no step there). May finish
 * @p r. */
static void after_response_headers(gw_request *r) {
  r->headers_done = 1;
  if (responded(r)) {
    reply_from_exchange(r);
    drop_upstream(r);
    if (!r->drop_upstream)
      maybe_finish(r);
    return;
  }
  start_streaming(r);
}

static int on_upstream_head(void *user, const gw_head *head) {
  gw_request *r = user;
  gw_framing framing;
  uint64_t length;
  int rc = pe_exchange_set_status(r->ex, head->status);
  if (rc == PE_OK)
    rc = gw_headers_to_exchange(head, r->ex, PE_RESPONSE);
  if (rc < 0 || gw_http_framing(head, 0, &framing, &length) < 0) {
    reply_error(r, 502, "bad gateway: upstream response head refused\n");
    return upstream_dropped(r);
  }
  /* The length the gateway will state: the upstream's (for HEAD that of
   * the resource), else chunked; never the exchange's field. */
  r->upstream_length = framing == GW_BODY_LENGTH              ? (int64_t)length
                       : gw_http_find(head, "content-length") ? 0
                                                              : GW_LENGTH_CHUNKED;
  if (r->route->plan[PE_RESPONSE] == PE_BODY_BUFFER) {
    r->headers_done = 1; /* the body goes to the exchange; phases at its end */
    return 0;
  }
  r->in_upstream_cb = 1;
  run_phase(r, PE_PHASE_RESPONSE_HEADERS, after_response_headers);
  r->in_upstream_cb = 0;
  return r->drop_upstream ? upstream_dropped(r) : 0;
}

static int on_upstream_body(void *user, const char *data, size_t len) {
  gw_request *r = user;
  if (r->phase_pending || !r->headers_done) {
    /* the exchange belongs to the phase meanwhile */
    if (gw_buf_append(&r->held, data, len) < 0) {
      reply_error(r, 502, "bad gateway: out of memory\n");
      return upstream_dropped(r);
    }
    return 0;
  }
  if (r->streaming) {
    int rc = stream_out(r, data, len, 0);
    if (rc < 0)
      return upstream_dropped(r);
    if (rc > 0)
      return 0; /* paused while the chunk is pending */
    /* Backpressure: a slow client pauses the upstream, so the gateway
     * holds at most this much of a streamed body per client. */
    if (gw_client_pending_output(r->client) > r->thread->stream_buffer_bytes) {
      gw_upstream_pause(r->upstream);
      r->paused = 1;
    }
    return 0;
  }
  if (pe_exchange_body_append(r->ex, PE_RESPONSE, pe_bytes(data, len)) < 0) {
    reply_error(r, 502, "bad gateway: upstream response too large\n");
    return upstream_dropped(r);
  }
  return 0;
}

static void on_upstream_done(void *user, gw_upstream_result result) {
  gw_request *r = user;
  r->upstream_state = UPSTREAM_DONE;
  r->upstream = NULL;
  r->upstream_result = result;
  if (r->phase_pending) /* the phase's continuation takes it from here */
    return;
  if (r->client_done) {
    maybe_finish(r);
  } else if (r->streaming) {
    end_stream(r);
    maybe_finish(r);
  } else if (!r->headers_done) {
    reply_upstream_failure(r); /* no (usable) head came */
    maybe_finish(r);
  } else {
    finish_buffered_response(r);
  }
}

static void on_upstream_drain(void *user) {
  gw_request *r = user;
  if (r->body_paused && !r->client_done) {
    r->body_paused = 0;
    gw_client_body_resume(r->client);
  }
}

static const gw_upstream_callbacks upstream_callbacks = {.on_head = on_upstream_head,
                                                         .on_body = on_upstream_body,
                                                         .on_done = on_upstream_done,
                                                         .on_drain = on_upstream_drain};

/* ---- a streamed request body ---- */

/* The request body stream stopped at a step: the upstream request is
 * dropped; the client gets the exchange's answer unless the upstream's
 * response is on its way already (then it is cut). */
static void request_stream_stopped(gw_request *r) {
  pe_engine_log(r->thread->ctx->engine, PE_LOG_WARN, "api %s: request body stream stopped: %s",
                r->route->spec.name, pe_exchange_errmsg(r->ex));
  r->req_stopped = 1;
  drop_upstream(r);
  if (r->client_done)
    return;
  if (r->streaming || r->head_pending) {
    r->client_done = 1;
    gw_client_abort(r->client);
  } else {
    reply_from_exchange(r);
  }
  maybe_finish(r);
}

/* Frames and queues body bytes for the upstream; pauses the client when
 * the upstream lags by more than the stream buffer. Returns 0 or -1. */
static int forward_body(gw_request *r, const char *data, size_t len, int last) {
  char size[24];
  struct iovec iov[4];
  int count = 0;
  if (r->req_chunked && len > 0) {
    int n = snprintf(size, sizeof size, "%zx\r\n", len);
    iov[count++] = (struct iovec){size, (size_t)n};
  }
  if (len > 0)
    iov[count++] = (struct iovec){(void *)data, len};
  if (r->req_chunked && len > 0)
    iov[count++] = (struct iovec){"\r\n", 2};
  if (last && r->req_chunked)
    iov[count++] = (struct iovec){"0\r\n\r\n", 5};
  int rc = count ? gw_upstream_writev(r->upstream, iov, count) : 0;
  if (rc == 0 && !last && !r->body_paused &&
      gw_upstream_unsent(r->upstream) > r->thread->stream_buffer_bytes) {
    r->body_paused = 1;
    gw_client_body_pause(r->client);
  }
  return rc;
}

static void request_body_piece(gw_request *r, const char *data, size_t len, int last) {
  if (r->req_stopped || r->client_done || r->upstream_state != UPSTREAM_ACTIVE)
    return; /* answered already: the rest of the body is read and dropped */
  pe_slice out = pe_bytes(data, len);
  if (r->route->plan[PE_REQUEST] == PE_BODY_STREAM &&
      pe_chain_stream_body(r->route->chain, r->ex, PE_REQUEST, pe_bytes(data, len), last, &out) !=
          PE_OK) {
    request_stream_stopped(r);
    return;
  }
  if (forward_body(r, out.ptr, out.len, last) < 0) {
    pe_exchange_respond(r->ex, 500, PE_LIT("internal error: out of memory\n"));
    request_stream_stopped(r);
    return;
  }
  if (last) {
    r->req_ended = 1;
    gw_upstream_end_request(r->upstream);
  }
}

void gw_proxy_body(void *owner, const char *data, size_t len) {
  request_body_piece(owner, data, len, 0);
}

void gw_proxy_body_end(void *owner) {
  request_body_piece(owner, NULL, 0, 1);
}

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
      end_stream(r);
    } else {
      r->client_done = 1;
      gw_client_abort(r->client);
    }
    maybe_finish(r);
  }
  /* Otherwise a phase runs (its continuation ends the request on the dead
   * client) or the upstream request has not started (send_upstream sees
   * client_gone). */
}

void gw_proxy_client_drained(void *owner) {
  gw_request *r = owner;
  if (r->paused && r->upstream_state == UPSTREAM_ACTIVE) {
    r->paused = 0;
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
    maybe_finish(r);
    return;
  }
  r->upstream = gw_upstream_acquire(r->thread->upstreams, api->upstream_host, api->upstream_port);
  if (!r->upstream) {
    r->upstream_result = GW_UPSTREAM_UNREACHABLE;
    reply_upstream_failure(r);
    maybe_finish(r);
    return;
  }
  if (write_upstream_request(r, gw_upstream_request(r->upstream)) < 0) {
    gw_upstream_cancel(r->upstream);
    r->upstream = NULL;
    reply_error(r, 500, "internal error: out of memory\n");
    maybe_finish(r);
    return;
  }
  r->upstream_state = UPSTREAM_ACTIVE;
  if (!r->req_stream) {
    gw_upstream_send(r->upstream, gw_client_is_head(r->client), &upstream_callbacks, r);
    return;
  }
  gw_upstream_send_open(r->upstream, gw_client_is_head(r->client), &upstream_callbacks, r);
  gw_client_body_start(r->client); /* body bytes come now (may finish r) */
}

/* ---- request side ---- */

static void after_request_body(gw_request *r) {
  if (responded(r)) {
    reply_from_exchange(r);
    maybe_finish(r);
    return;
  }
  send_upstream(r);
}

static void after_request_headers(gw_request *r) {
  if (responded(r)) {
    reply_from_exchange(r);
    maybe_finish(r);
    return;
  }
  if (r->req_stream) {
    send_upstream(r); /* the body follows, read as it comes */
    return;
  }
  if (r->route->plan[PE_REQUEST] == PE_BODY_STREAM) {
    /* A request without a body: the steps still see its (empty) end. */
    pe_slice out;
    if (pe_chain_stream_body(r->route->chain, r->ex, PE_REQUEST,
                             pe_bytes(gw_buf_ptr(r->client_body), r->client_body->len), 1,
                             &out) != PE_OK) {
      pe_engine_log(r->thread->ctx->engine, PE_LOG_WARN, "api %s: request body stream stopped: %s",
                    r->route->spec.name, pe_exchange_errmsg(r->ex));
      reply_from_exchange(r); /* nothing went upstream yet */
      maybe_finish(r);
      return;
    }
    if (gw_buf_append(&r->streamed, out.ptr, out.len) < 0) {
      reply_error(r, 500, "internal error: out of memory\n");
      maybe_finish(r);
      return;
    }
    send_upstream(r);
    return;
  }
  if (r->route->plan[PE_REQUEST] == PE_BODY_BUFFER) {
    int rc = pe_exchange_body_set(r->ex, PE_REQUEST,
                                  pe_bytes(gw_buf_ptr(r->client_body), r->client_body->len));
    if (rc < 0) {
      reply_error(r, rc == PE_ERR_BODY_TOO_LARGE ? 413 : 500,
                  rc == PE_ERR_BODY_TOO_LARGE ? "request body too large\n"
                                              : "internal error: out of memory\n");
      maybe_finish(r);
      return;
    }
  }
  run_phase(r, PE_PHASE_REQUEST_BODY, after_request_body);
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
    reply_error(r, status, status == 431 ? "request header fields too large\n" : "bad request\n");
    maybe_finish(r);
    return;
  }
  run_phase(r, PE_PHASE_REQUEST_HEADERS, after_request_headers);
}
