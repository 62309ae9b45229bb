/*
 * A request body streamed to the upstream as the client sends it (see
 * gw_request.h): through the chain's streamed steps when its plan says
 * so, framed chunked then, else with the client's length.
 */
#include "gw_request.h"

#include <stdio.h>
#include <sys/uio.h>

/* ---- a streamed request body ---- */

/* The request body stream stopped at a step: the upstream request is
 * dropped; the client gets the exchange's answer unless the upstream's
 * response is on its way already (then it is cut). */
static void request_stream_stopped(gw_request *r) {
  pe_engine_log(r->thread->ctx->engine, PE_LOG_WARN, "api %s: request body stream stopped: %s",
                r->route->spec.name, pe_exchange_errmsg(r->ex));
  r->req_stopped = 1;
  gw_req_drop_upstream(r);
  if (r->client_done)
    return;
  if (r->streaming || r->head_pending) {
    r->client_done = 1;
    gw_client_abort(r->client);
  } else {
    gw_req_reply_from_exchange(r);
  }
  gw_req_maybe_finish(r);
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

/* What a request chunk's steps gave: forwarded, or the stream stops. */
static void chunk_result(gw_request *r, int rc, pe_slice out, int last) {
  if (rc != PE_OK) {
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

static void after_request_chunk(gw_request *r);

static void on_request_chunk_done(pe_exchange *ex, int rc, void *user_data) {
  gw_request *r = user_data;
  r->req_chunk_rc = rc;
  gw_req_on_phase_done(ex, PE_OK, user_data);
}

/* Pushes one chunk through the streamed steps. A chunk that waits on a
 * worker is a pending phase: the client's reads pause (bytes it already
 * sent wait in req_held), and so do the upstream's, so that no response
 * head or body needs the exchange meanwhile; after_request_chunk goes on. */
static void push_chunk(gw_request *r, const char *data, size_t len, int last) {
  int rc = pe_chain_stream_body_async(r->route->chain, r->ex, PE_REQUEST, pe_bytes(data, len), last,
                                      &r->req_out, r->thread->dispatcher, on_request_chunk_done, r);
  if (rc != PE_PENDING) {
    chunk_result(r, rc, r->req_out, last);
    return;
  }
  r->resume = after_request_chunk;
  r->phase_pending = 1;
  r->req_chunk_last = last != 0;
  if (!last && !r->req_policy_paused) {
    r->req_policy_paused = 1;
    gw_client_body_pause(r->client);
  }
  if (r->upstream_state == UPSTREAM_ACTIVE && !r->gated) {
    r->gated = 1;
    gw_upstream_pause(r->upstream);
  }
}

/* A request chunk that waited on a worker is through. */
static void after_request_chunk(gw_request *r) {
  if (r->client_gone && !r->client_done) {
    /* The client went away meanwhile (its upstream request is gone). */
    gw_req_drop_upstream(r);
    r->client_done = 1;
    gw_client_abort(r->client);
    return;
  }
  if (r->client_done || r->req_stopped)
    return; /* answered otherwise meanwhile */
  if (r->upstream_state != UPSTREAM_ACTIVE) {
    /* The upstream request broke while the chunk was pending. */
    gw_req_upstream_ended(r);
    return;
  }
  chunk_result(r, r->req_chunk_rc, r->req_out, r->req_chunk_last);
}

int gw_req_body_waiting(const gw_request *r) {
  return r->req_held.len > 0 || r->req_held_last;
}

void gw_req_body_kick(gw_request *r) {
  if (r->phase_pending)
    return;
  if (gw_req_body_waiting(r)) {
    int last = r->req_held_last;
    r->req_held_last = 0;
    if (!r->req_stopped && !r->client_done && r->upstream_state == UPSTREAM_ACTIVE)
      push_chunk(r, gw_buf_ptr(&r->req_held), r->req_held.len, last); /* copied if needed */
    gw_buf_reset(&r->req_held, 0);
    if (r->phase_pending)
      return;
  }
  /* Nothing waits for the exchange any more: both sides go on. Either may
   * bring more work (pieces, a head) at once, which finds the exchange free. */
  if (r->gated) {
    r->gated = 0;
    if (r->upstream_state == UPSTREAM_ACTIVE && !r->paused && !r->chunk_paused)
      gw_upstream_resume(r->upstream);
  }
  if (r->req_policy_paused && !r->phase_pending) {
    r->req_policy_paused = 0;
    if (!r->client_done && !r->client_gone && !r->body_paused)
      gw_client_body_resume(r->client);
  }
}

static void request_body_piece(gw_request *r, const char *data, size_t len, int last) {
  if (r->req_stopped || r->client_done || r->upstream_state != UPSTREAM_ACTIVE)
    return; /* answered already: the rest of the body is read and dropped */
  if (r->route->plan[PE_REQUEST] != PE_BODY_STREAM) {
    chunk_result(r, PE_OK, pe_bytes(data, len), last); /* passed through */
    return;
  }
  if (r->phase_pending || gw_req_body_waiting(r)) {
    /* The exchange is busy (a chunk in flight, or a response phase): the
     * bytes wait, and the client's reads pause. What is held is at most
     * what the client connection had read before the pause. */
    if (gw_buf_append(&r->req_held, data, len) < 0) {
      pe_exchange_respond(r->ex, 500, PE_LIT("internal error: out of memory\n"));
      request_stream_stopped(r);
      return;
    }
    r->req_held_last |= last != 0;
    if (!r->req_policy_paused) {
      r->req_policy_paused = 1;
      gw_client_body_pause(r->client);
    }
    return;
  }
  push_chunk(r, data, len, last);
}

void gw_proxy_body(void *owner, const char *data, size_t len) {
  request_body_piece(owner, data, len, 0);
}

void gw_proxy_body_end(void *owner) {
  request_body_piece(owner, NULL, 0, 1);
}
