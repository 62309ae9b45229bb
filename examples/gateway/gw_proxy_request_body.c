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
