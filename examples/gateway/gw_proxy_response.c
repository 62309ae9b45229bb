/*
 * The upstream's response (see gw_request.h): its head, the response
 * phases, and its body passed through, streamed through the chain's
 * streamed steps chunk by chunk (pe_chain_stream_body_async: a chunk that
 * waits on a Python worker counts as a pending phase, upstream reads
 * paused and later bytes held), or buffered for the body phase.
 */
#include "gw_request.h"

#include "gw_headers.h"

/* After an upstream callback that returns -1: the connection is gone. */
static int upstream_dropped(gw_request *r) {
  r->upstream = NULL;
  r->upstream_state = UPSTREAM_DONE;
  gw_req_maybe_finish(r);
  return -1;
}

static void after_response_body(gw_request *r) {
  gw_req_reply_from_exchange(r);
  gw_req_maybe_finish(r);
}

static void finish_buffered_response(gw_request *r) {
  if (r->upstream_result != GW_UPSTREAM_OK) {
    gw_req_reply_upstream_failure(r);
    gw_req_maybe_finish(r);
    return;
  }
  gw_req_run_phases(r, PE_PHASE_RESPONSE_HEADERS, PE_PHASE_RESPONSE_BODY, after_response_body);
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
    gw_req_reply_from_exchange(r);
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
  gw_req_on_phase_done(ex, PE_OK, user_data);
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
  /* A request body still streaming (the upstream answered early) is no
   * obstacle: its pieces wait in a queue while this chunk is pending (see
   * gw_proxy_request_body.c). */
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

void gw_req_end_stream(gw_request *r) {
  if (r->upstream_result == GW_UPSTREAM_OK) {
    if (stream_out(r, NULL, 0, 1) != 0)
      return; /* the client is answered or cut, or the last chunk is pending */
    r->client_done = 1;
    gw_client_end_response(r->client);
  } else if (!r->client_gone && (r->head_pending || gw_client_retract_response(r->client))) {
    r->head_pending = 0;
    gw_req_reply_upstream_failure(r); /* nothing was out yet: a 502 is still possible */
  } else {
    r->client_done = 1;
    gw_client_abort(r->client); /* the only honest end of a cut-off body */
  }
}

static void start_streaming(gw_request *r) {
  int status = pe_exchange_status(r->ex);
  r->status = status;
  r->streaming = 1;
  r->stream_resp = r->route->plan[PE_RESPONSE] == PE_BODY_STREAM && !gw_req_bodiless(r, status);
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
      gw_req_drop_upstream(r);
      if (!r->drop_upstream)
        gw_req_maybe_finish(r);
      return;
    }
    if (rc > 0)
      return; /* after_response_chunk goes on */
  }
  if (r->upstream_state == UPSTREAM_DONE) {
    gw_req_end_stream(r);
    gw_req_maybe_finish(r);
  }
}

/* A response chunk that waited on a worker is through: its bytes go out,
 * then the bytes held meanwhile, then the end or more upstream reads. */
static void after_response_chunk(gw_request *r) {
  if (r->client_gone && !r->client_done) {
    /* The client went away meanwhile (its handler left the end to us). */
    gw_req_drop_upstream(r);
    r->client_done = 1;
    gw_client_abort(r->client);
    gw_req_maybe_finish(r);
    return;
  }
  if (r->client_done) { /* answered otherwise meanwhile */
    gw_req_maybe_finish(r);
    return;
  }
  if (stream_out_result(r, r->chunk_rc, r->chunk_out, r->chunk_last) < 0) {
    gw_req_drop_upstream(r);
    gw_req_maybe_finish(r);
    return;
  }
  if (r->chunk_last) {
    r->client_done = 1;
    gw_client_end_response(r->client);
    gw_req_maybe_finish(r);
    return;
  }
  if (r->held.len > 0) {
    int rc = stream_out(r, gw_buf_ptr(&r->held), r->held.len, 0);
    gw_buf_reset(&r->held, 0);
    if (rc != 0) {
      if (rc < 0) {
        gw_req_drop_upstream(r);
        gw_req_maybe_finish(r);
      }
      return;
    }
  }
  if (r->upstream_state == UPSTREAM_DONE) {
    gw_req_end_stream(r);
    gw_req_maybe_finish(r);
    return;
  }
  if (r->chunk_paused && gw_req_body_waiting(r)) {
    /* Request bytes wait for the exchange: they go first, and the upstream
     * stays paused until they are through (gw_req_body_kick resumes it). */
    r->chunk_paused = 0;
    r->gated = 1;
  } else if (r->chunk_paused) {
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
  if (gw_req_responded(r)) {
    gw_req_reply_from_exchange(r);
    gw_req_drop_upstream(r);
    if (!r->drop_upstream)
      gw_req_maybe_finish(r);
    return;
  }
  start_streaming(r);
}

static int on_upstream_head(void *user, const gw_head *head) {
  gw_request *r = user;
  gw_framing framing;
  uint64_t length;
  if (r->phase_pending) {
    /* Upstream reads are paused while a request chunk is pending, so a
     * head cannot come then; were it to, the exchange is not ours. */
    gw_req_reply_error(r, 502, "bad gateway: upstream answered while a policy ran\n");
    return upstream_dropped(r);
  }
  int rc = pe_exchange_set_status(r->ex, head->status);
  if (rc == PE_OK)
    rc = gw_headers_to_exchange(head, r->ex, PE_RESPONSE);
  if (rc < 0 || gw_http_framing(head, 0, &framing, &length) < 0) {
    gw_req_reply_error(r, 502, "bad gateway: upstream response head refused\n");
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
  gw_req_run_phase(r, PE_PHASE_RESPONSE_HEADERS, after_response_headers);
  r->in_upstream_cb = 0;
  return r->drop_upstream ? upstream_dropped(r) : 0;
}

static int on_upstream_body(void *user, const char *data, size_t len) {
  gw_request *r = user;
  if (r->phase_pending || !r->headers_done) {
    /* the exchange belongs to the phase meanwhile */
    if (gw_buf_append(&r->held, data, len) < 0) {
      gw_req_reply_error(r, 502, "bad gateway: out of memory\n");
      return upstream_dropped(r);
    }
    if (r->phase_pending && !r->paused && !r->chunk_paused && !r->gated) {
      /* No more reads until the phase is over (gw_req_body_kick resumes
       * them), so what is held stays within one read. */
      gw_upstream_pause(r->upstream);
      r->gated = 1;
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
    gw_req_reply_error(r, 502, "bad gateway: upstream response too large\n");
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
  gw_req_upstream_ended(r);
}

void gw_req_upstream_ended(gw_request *r) {
  if (r->client_done) {
    gw_req_maybe_finish(r);
  } else if (r->streaming) {
    gw_req_end_stream(r);
    gw_req_maybe_finish(r);
  } else if (!r->headers_done) {
    gw_req_reply_upstream_failure(r); /* no (usable) head came */
    gw_req_maybe_finish(r);
  } else {
    finish_buffered_response(r);
  }
}

static void on_upstream_drain(void *user) {
  gw_request *r = user;
  if (r->body_paused && !r->client_done) {
    r->body_paused = 0;
    /* Bytes held for a request chunk in flight keep the client paused. */
    if (!r->req_policy_paused)
      gw_client_body_resume(r->client);
  }
}

const gw_upstream_callbacks gw_req_upstream_callbacks = {.on_head = on_upstream_head,
                                                         .on_body = on_upstream_body,
                                                         .on_done = on_upstream_done,
                                                         .on_drain = on_upstream_drain};
