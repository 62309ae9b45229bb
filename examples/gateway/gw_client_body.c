/*
 * Request bodies of client connections (see gw_client.h): read whole for
 * the proxy, or handed to it as they are read (a streamed body, with its
 * flow control and rate check).
 */
#include "gw_client_conn.h"

#include "gw_proxy.h"

#include <string.h>

static int append_body(void *arg, const char *data, size_t len) {
  gw_client *c = arg;
  gw_thread *t = c->thread;
  if (c->body.len + len > t->limit_body_bytes)
    return 1;
  return gw_buf_append(&c->body, data, len) < 0 ? 1 : 0;
}

/* Moves body bytes from the input; returns 1 when the body is complete, 0
 * when more is needed, -1 after refusing the request. */
int gw_conn_read_body(gw_client *c) {
  if (c->framing == GW_BODY_LENGTH) {
    size_t n = c->in.len < c->body_remaining ? c->in.len : (size_t)c->body_remaining;
    if (gw_buf_append(&c->body, gw_buf_ptr(&c->in), n) < 0) {
      gw_conn_refuse(c, 500, "out of memory\n");
      return -1;
    }
    gw_buf_consume(&c->in, n);
    c->body_remaining -= n;
    return c->body_remaining == 0;
  }
  int done = 0;
  ssize_t used =
      gw_chunked_decode(&c->chunked, gw_buf_ptr(&c->in), c->in.len, append_body, c, &done);
  if (used == -2) {
    gw_conn_refuse(c, 413, "request body too large\n");
    return -1;
  }
  if (used < 0) {
    gw_conn_refuse(c, 400, "bad request: malformed chunked body\n");
    return -1;
  }
  gw_buf_consume(&c->in, (size_t)used);
  return done;
}

/* The interim answer a client sending "Expect: 100-continue" waits for,
 * once the gateway is about to read its body (and only if none of the
 * body is here yet). */
void gw_conn_send_continue(gw_client *c) {
  if (!c->expect_continue)
    return;
  c->expect_continue = 0;
  if (c->in.len > 0)
    return;
  gw_buf_append_str(&c->out, "HTTP/1.1 100 Continue\r\n\r\n");
  gw_conn_queue_flush(c);
}

static int stream_piece(void *arg, const char *data, size_t len) {
  gw_client *c = arg;
  if (!c->body_streaming)
    return 1; /* answered meanwhile: the rest is not wanted */
  c->body_seen += len;
  gw_proxy_body(c->owner, data, len);
  return 0;
}

/* Hands the body bytes read so far to the proxy; at the body's end tells
 * it so (the last thing done: the proxy may end the response and the
 * connection move on). */
void gw_conn_pump_body(gw_client *c) {
  if (!c->body_streaming || !c->body_flowing || c->dead)
    return;
  /* The proxy may answer (and end the response, or close c) from inside
   * stream_piece(): c stays allocated until the pump is over, and
   * body_streaming says whether the body is still wanted. */
  int done = 0, malformed = 0;
  c->in_pump = 1;
  if (c->framing == GW_BODY_LENGTH) {
    size_t n = c->in.len < c->body_remaining ? c->in.len : (size_t)c->body_remaining;
    if (n > 0)
      stream_piece(c, gw_buf_ptr(&c->in), n);
    if (c->body_streaming) {
      gw_buf_consume(&c->in, n);
      c->body_remaining -= n;
      done = c->body_remaining == 0;
    }
  } else {
    ssize_t used =
        gw_chunked_decode(&c->chunked, gw_buf_ptr(&c->in), c->in.len, stream_piece, c, &done);
    if (used == -1) /* malformed coding, the request half forwarded: cut */
      malformed = 1;
    else if (used >= 0 && c->body_streaming)
      gw_buf_consume(&c->in, (size_t)used);
  }
  c->in_pump = 0;
  if (c->free_pending) {
    gw_conn_free(c);
    return;
  }
  if (malformed && c->body_streaming) {
    gw_conn_close(c);
    return;
  }
  if (!c->body_streaming)
    return; /* answered meanwhile (the connection closes after it) */
  c->last_activity_ns = gw_conn_now_ns();
  if (!done)
    return;
  c->body_streaming = c->body_flowing = c->body_paused = 0;
  /* Pipelined bytes after the body wait for the response's end. */
  if (c->in.len >= MAX_READ_AHEAD)
    gw_conn_stop_reading(c);
  gw_proxy_body_end(c->owner);
}

void gw_client_body_start(gw_client *c) {
  if (c->dead || !c->body_streaming)
    return;
  gw_conn_send_continue(c);
  c->body_flowing = 1;
  gw_conn_start_reading(c);
  gw_conn_pump_body(c);
}

void gw_client_body_pause(gw_client *c) {
  if (!c->body_streaming || c->body_paused)
    return;
  c->body_paused = 1;
  c->pause_start_ns = gw_conn_now_ns();
  gw_conn_stop_reading(c);
}

void gw_client_body_resume(gw_client *c) {
  if (!c->body_paused || c->dead)
    return;
  c->body_paused = 0;
  /* Time spent waiting for the upstream is not the client's slowness. */
  c->body_start_ns += gw_conn_now_ns() - c->pause_start_ns;
  c->last_activity_ns = gw_conn_now_ns();
  gw_conn_start_reading(c);
  gw_conn_pump_body(c);
}

/* Whether a request body arriving since @p c->body_start_ns is too slow:
 * it may take the body timeout plus one second per body_min_rate bytes
 * received, and may not stall for longer than the body timeout. */
int gw_conn_body_too_slow(const gw_client *c, const gw_thread *t, uint64_t now) {
  uint64_t allowed = t->body_timeout_ns +
                     (uint64_t)((c->body.len + c->body_seen) / t->body_min_rate) * 1000000000ull;
  return now - c->body_start_ns > allowed || now - c->last_activity_ns > t->body_timeout_ns;
}
