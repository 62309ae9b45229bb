/*
 * Client connections (see gw_client.h).
 *
 * The read event stays registered for the connection's whole life and the
 * write event is added only when a write would block, so a keep-alive
 * request costs no epoll_ctl at all. Timeouts are checked by a periodic
 * sweep rather than a timer per connection, for the same reason.
 */
#include "gw_client.h"

#include "gw_headers.h"
#include "gw_proxy.h"
#include "gw_thread.h"
#include "pe_clock.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* Read buffer kept between requests; larger ones are released. */
#define KEEP_BUFFER 16384
/* Pipelined bytes read ahead while a request is being answered. */
#define MAX_READ_AHEAD 65536

typedef enum client_state {
  READING_HEAD,
  READING_BODY,
  BUSY /* the proxy has the request */
} client_state;

struct gw_client {
  gw_thread *thread;
  TAILQ_ENTRY(gw_client) link; /* in thread->clients */
  int fd;
  struct event *read_event;
  struct event *write_event;
  client_state state;
  gw_buf in;
  gw_buf out;
  gw_buf head;    /* the request head, when its body comes in later reads */
  gw_buf body;    /* the decoded request body */
  size_t scanned; /* head bytes searched for the blank line */
  gw_framing framing;
  uint64_t body_remaining;
  gw_chunked chunked;
  uint64_t last_activity_ns;
  uint64_t head_start_ns;     /* first byte of the request head being read */
  uint64_t body_start_ns;     /* end of the head whose body is being read */
  uint64_t write_progress_ns; /* last write progress, or when writes began to block */
  uint64_t out_written;       /* bytes ever written from out */
  uint64_t response_begin;    /* offset in that stream of the current response */

  unsigned keep_alive : 1;      /* of the current request */
  unsigned http10 : 1;          /* the current request is HTTP/1.0 */
  unsigned head_method : 1;     /* the current request is HEAD */
  unsigned no_body : 1;         /* the response has no body (HEAD, 204, 304) */
  unsigned chunked_out : 1;     /* the response body is chunk-coded */
  unsigned closing : 1;         /* close once the output is written */
  unsigned peer_gone : 1;       /* read EOF or error: no more requests */
  unsigned write_armed : 1;     /* write_event is added */
  unsigned flush_queued : 1;    /* a write is scheduled for this iteration */
  unsigned reading : 1;         /* read_event is added */
  unsigned dead : 1;            /* socket closed; freed when the proxy is done */
  unsigned in_process : 1;      /* inside process_input() */
  unsigned body_streaming : 1;  /* BUSY, and the body is still to be read for the proxy */
  unsigned body_flowing : 1;    /* the proxy takes its bytes (gw_client_body_start) */
  unsigned body_paused : 1;     /* the proxy asked to stop reading it for now */
  uint64_t body_seen;           /* streamed body bytes so far (the rate check) */
  uint64_t pause_start_ns;      /* when body_paused was set */
  unsigned in_pump : 1;         /* inside pump_body(): freeing waits for its end */
  unsigned free_pending : 1;    /* freed while in_pump */
  unsigned expect_continue : 1; /* the client waits for "100 Continue" before its body */
  void *owner;                  /* the proxy's request, while BUSY */
};

static void process_input(gw_client *c);
static void pump_body(gw_client *c);
static void send_continue(gw_client *c);
static void queue_flush(gw_client *c);
static void mark_closing(gw_client *c);
static void parse_requests(gw_client *c, gw_thread *t);

/* Idle and head timeouts need milliseconds, not a precise clock. */
static uint64_t now_ns(void) {
  return pe__clock_ns(CLOCK_MONOTONIC_COARSE);
}

static void client_free(gw_client *c) {
  if (c->in_pump) { /* pump_body() still runs on it: it frees c at its end */
    event_del(c->read_event);
    event_del(c->write_event);
    if (c->fd >= 0)
      close(c->fd);
    c->fd = -1;
    c->dead = 1;
    c->owner = NULL;
    c->body_streaming = 0;
    c->free_pending = 1;
    return;
  }
  TAILQ_REMOVE(&c->thread->clients, c, link);
  event_free(c->read_event);
  event_free(c->write_event);
  if (c->fd >= 0)
    close(c->fd);
  gw_buf_free(&c->in);
  gw_buf_free(&c->out);
  gw_buf_free(&c->head);
  gw_buf_free(&c->body);
  free(c);
}

/* Closes the socket. While the proxy holds the request the structure
 * stays, so that its later calls land somewhere; it is freed when the
 * response ends, which the proxy is told to bring about at once (its
 * upstream request has nobody to answer any more). May free @p c. */
static void client_close(gw_client *c) {
  if (c->state != BUSY) {
    client_free(c);
    return;
  }
  event_del(c->read_event);
  event_del(c->write_event);
  if (c->fd >= 0)
    close(c->fd);
  c->fd = -1;
  c->dead = 1;
  if (c->owner)
    gw_proxy_client_gone(c->owner);
}

/* Writes what it can; arms the write event if the socket is full. */
static void flush(gw_client *c) {
  while (c->out.len > 0) {
    ssize_t n = send(c->fd, gw_buf_ptr(&c->out), c->out.len, MSG_NOSIGNAL);
    if (n > 0) {
      gw_buf_consume(&c->out, (size_t)n);
      c->out_written += (uint64_t)n;
      c->write_progress_ns = now_ns();
      continue;
    }
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      if (!c->write_armed) {
        event_add(c->write_event, NULL);
        c->write_armed = 1;
        c->write_progress_ns = now_ns(); /* the send timeout runs from here */
      }
      return;
    }
    client_close(c); /* the client went away */
    return;
  }
  if (c->write_armed) {
    event_del(c->write_event);
    c->write_armed = 0;
  }
  if (c->closing && c->state != BUSY)
    client_free(c);
  else if (c->state == BUSY && c->owner)
    gw_proxy_client_drained(c->owner);
}

static void on_writable(evutil_socket_t fd, short what, void *arg) {
  gw_client *c = arg;
  (void)fd;
  (void)what;
  c->flush_queued = 0;
  if (!c->dead)
    flush(c);
}

/* One write per loop iteration: everything appended before it goes out
 * together. */
static void queue_flush(gw_client *c) {
  if (c->flush_queued || c->dead)
    return;
  c->flush_queued = 1;
  event_active(c->write_event, EV_WRITE, 1);
}

static void start_reading(gw_client *c) {
  if (!c->reading && !c->peer_gone && !c->dead) {
    event_add(c->read_event, NULL);
    c->reading = 1;
  }
}

static void stop_reading(gw_client *c) {
  if (c->reading) {
    event_del(c->read_event);
    c->reading = 0;
  }
}

static void on_readable(evutil_socket_t fd, short what, void *arg) {
  gw_client *c = arg;
  (void)what;
  /* A streamed body is read in larger pieces: fewer calls per byte. */
  if (gw_buf_reserve(&c->in, c->body_flowing ? 65536 : 8192) < 0) {
    client_close(c);
    return;
  }
  ssize_t n = recv(fd, c->in.data + c->in.off + c->in.len, c->in.cap - c->in.off - c->in.len, 0);
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
    return;
  if (n <= 0) {
    /* EOF: no more requests, but those already read are answered (a
     * half-closed client still reads); a request cut short is dropped. */
    c->peer_gone = 1;
    stop_reading(c);
    if (c->state == BUSY && c->body_streaming) {
      client_close(c); /* the body was cut short: its upstream request goes too */
      return;
    }
    if (c->state == BUSY)
      return;
    if (n == 0 && c->out.len > 0)
      mark_closing(c); /* the answers written so far still go out */
    else
      client_close(c);
    return;
  }
  uint64_t now = now_ns();
  if (c->state == READING_HEAD && c->in.len == 0)
    c->head_start_ns = now; /* the whole head must come within the timeout */
  c->in.len += (size_t)n;
  c->last_activity_ns = now;
  if (c->state == BUSY && c->body_flowing) {
    pump_body(c);
    return;
  }
  if (c->state == BUSY) { /* pipelined (or a body not wanted yet): parsed later */
    if (c->in.len >= MAX_READ_AHEAD)
      stop_reading(c);
    return;
  }
  process_input(c);
}

void gw_client_accept(gw_thread *t, int fd) {
  gw_client *c = calloc(1, sizeof *c);
  if (!c) {
    close(fd);
    return;
  }
  c->thread = t;
  c->fd = fd;
  c->read_event = event_new(t->base, fd, EV_READ | EV_PERSIST, on_readable, c);
  c->write_event = event_new(t->base, fd, EV_WRITE | EV_PERSIST, on_writable, c);
  if (!c->read_event || !c->write_event) {
    if (c->read_event)
      event_free(c->read_event);
    free(c);
    close(fd);
    return;
  }
  TAILQ_INSERT_HEAD(&t->clients, c, link);
  c->last_activity_ns = c->head_start_ns = now_ns();
  start_reading(c);
}

/* The gateway's own answer to a request it cannot take; the connection is
 * closed after it since the rest of the input cannot be trusted. */
static void refuse(gw_client *c, int status, const char *text) {
  c->keep_alive = 0;
  c->head_method = 0;
  c->state = BUSY; /* send_simple expects a current request */
  gw_client_send_simple(c, status, text);
}

static int append_body(void *arg, const char *data, size_t len) {
  gw_client *c = arg;
  gw_thread *t = c->thread;
  if (c->body.len + len > t->limit_body_bytes)
    return 1;
  return gw_buf_append(&c->body, data, len) < 0 ? 1 : 0;
}

/* Moves body bytes from the input; returns 1 when the body is complete, 0
 * when more is needed, -1 after refusing the request. */
static int read_body(gw_client *c) {
  if (c->framing == GW_BODY_LENGTH) {
    size_t n = c->in.len < c->body_remaining ? c->in.len : (size_t)c->body_remaining;
    if (gw_buf_append(&c->body, gw_buf_ptr(&c->in), n) < 0) {
      refuse(c, 500, "out of memory\n");
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
    refuse(c, 413, "request body too large\n");
    return -1;
  }
  if (used < 0) {
    refuse(c, 400, "bad request: malformed chunked body\n");
    return -1;
  }
  gw_buf_consume(&c->in, (size_t)used);
  return done;
}

/* Hands the complete request to the proxy. */
static void dispatch(gw_client *c, gw_head *head) {
  c->state = BUSY;
  gw_proxy_request(c, head, &c->body);
}

static void process_input(gw_client *c) {
  gw_thread *t = c->thread;
  if (c->in_process)
    return; /* a response ended inside dispatch(): the loop below goes on */
  c->in_process = 1;
  parse_requests(c, t);
  c->in_process = 0;
}

static void parse_requests(gw_client *c, gw_thread *t) {
  /* Nothing after a request that closes the connection is read (it is not
   * forwarded, nor answered): closing stops the loop. */
  while (!c->dead && !c->closing && c->state != BUSY && c->in.len > 0) {
    gw_head head = {.fields = t->fields, .field_cap = t->field_cap};
    if (c->state == READING_HEAD) {
      size_t end = gw_http_head_end(gw_buf_ptr(&c->in), c->in.len, &c->scanned);
      if (end == 0) {
        if (c->in.len > t->max_head_bytes)
          refuse(c, 431, "request header fields too large\n");
        break;
      }
      if (end > t->max_head_bytes) {
        refuse(c, 431, "request header fields too large\n");
        return;
      }
      ssize_t rc = gw_http_parse_request(gw_buf_ptr(&c->in), end, &head);
      if (rc == GW_HTTP_TOO_MANY_FIELDS) {
        refuse(c, 431, "request header fields too large\n");
        return;
      }
      uint64_t length = 0;
      if (rc <= 0 || gw_http_framing(&head, 1, &c->framing, &length) < 0) {
        refuse(c, 400, "bad request\n");
        return;
      }
      int stream = c->framing != GW_BODY_NONE && gw_proxy_streams_body(c, &head);
      if (!stream && c->framing == GW_BODY_LENGTH && length > t->limit_body_bytes) {
        refuse(c, 413, "request body too large\n");
        return;
      }
      c->keep_alive = (unsigned)gw_http_keep_alive(&head);
      const gw_field *expect = gw_http_find(&head, "expect");
      c->expect_continue = expect && head.minor >= 1 && expect->value_len == 12 &&
                           gw_http_name_is(expect->value, 12, "100-continue");
      c->http10 = head.minor == 0;
      c->head_method = head.method_len == 4 && memcmp(head.method, "HEAD", 4) == 0;
      c->body_remaining = length;
      c->scanned = 0;
      memset(&c->chunked, 0, sizeof c->chunked);
      c->body.len = c->body.off = 0;
      c->body_seen = 0;
      if (c->framing == GW_BODY_NONE) {
        /* Consumed first, yet the fields stay valid through the call: c->in
         * is only written by on_readable, which cannot run meanwhile. */
        gw_buf_consume(&c->in, end);
        dispatch(c, &head);
        continue;
      }
      if (stream) { /* the proxy takes the body as it comes (gw_client_body_start) */
        gw_buf_consume(&c->in, end);
        c->body_streaming = 1;
        c->body_flowing = c->body_paused = 0;
        c->body_seen = 0;
        c->body_start_ns = now_ns();
        c->state = BUSY;
        gw_proxy_request(c, &head, NULL);
        continue;
      }
      /* The body follows: keep the head aside (c->in moves as it fills). */
      c->head.len = c->head.off = 0;
      if (gw_buf_append(&c->head, gw_buf_ptr(&c->in), end) < 0) {
        refuse(c, 500, "out of memory\n");
        return;
      }
      gw_buf_consume(&c->in, end);
      c->state = READING_BODY;
      send_continue(c);
      c->body_start_ns = now_ns();
    }
    int complete = read_body(c);
    if (complete < 0)
      return;
    if (!complete)
      break;
    gw_http_parse_request(gw_buf_ptr(&c->head), c->head.len, &head);
    dispatch(c, &head);
  }
  /* A client that closed its side gets the answers to every complete
   * request it sent (pipelined, then a half-close), then the close. */
  if (c->peer_gone && !c->dead && !c->closing && c->state != BUSY)
    mark_closing(c);
}

/* The interim answer a client sending "Expect: 100-continue" waits for,
 * once the gateway is about to read its body (and only if none of the
 * body is here yet). */
static void send_continue(gw_client *c) {
  if (!c->expect_continue)
    return;
  c->expect_continue = 0;
  if (c->in.len > 0)
    return;
  gw_buf_append_str(&c->out, "HTTP/1.1 100 Continue\r\n\r\n");
  queue_flush(c);
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
static void pump_body(gw_client *c) {
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
    client_free(c);
    return;
  }
  if (malformed && c->body_streaming) {
    client_close(c);
    return;
  }
  if (!c->body_streaming)
    return; /* answered meanwhile (the connection closes after it) */
  c->last_activity_ns = now_ns();
  if (!done)
    return;
  c->body_streaming = c->body_flowing = c->body_paused = 0;
  /* Pipelined bytes after the body wait for the response's end. */
  if (c->in.len >= MAX_READ_AHEAD)
    stop_reading(c);
  gw_proxy_body_end(c->owner);
}

void gw_client_body_start(gw_client *c) {
  if (c->dead || !c->body_streaming)
    return;
  send_continue(c);
  c->body_flowing = 1;
  start_reading(c);
  pump_body(c);
}

void gw_client_body_pause(gw_client *c) {
  if (!c->body_streaming || c->body_paused)
    return;
  c->body_paused = 1;
  c->pause_start_ns = now_ns();
  stop_reading(c);
}

void gw_client_body_resume(gw_client *c) {
  if (!c->body_paused || c->dead)
    return;
  c->body_paused = 0;
  /* Time spent waiting for the upstream is not the client's slowness. */
  c->body_start_ns += now_ns() - c->pause_start_ns;
  c->last_activity_ns = now_ns();
  start_reading(c);
  pump_body(c);
}

gw_thread *gw_client_thread(const gw_client *c) {
  return c->thread;
}

void gw_client_set_owner(gw_client *c, void *owner) {
  c->owner = owner;
}

size_t gw_client_pending_output(const gw_client *c) {
  return c->out.len;
}

int gw_client_is_head(const gw_client *c) {
  return c->head_method;
}

static const char *reason(int status) {
  switch (status) {
  case 200:
    return "OK";
  case 201:
    return "Created";
  case 204:
    return "No Content";
  case 301:
    return "Moved Permanently";
  case 302:
    return "Found";
  case 304:
    return "Not Modified";
  case 400:
    return "Bad Request";
  case 401:
    return "Unauthorized";
  case 403:
    return "Forbidden";
  case 404:
    return "Not Found";
  case 405:
    return "Method Not Allowed";
  case 408:
    return "Request Timeout";
  case 413:
    return "Content Too Large";
  case 429:
    return "Too Many Requests";
  case 431:
    return "Request Header Fields Too Large";
  case 500:
    return "Internal Server Error";
  case 501:
    return "Not Implemented";
  case 502:
    return "Bad Gateway";
  case 503:
    return "Service Unavailable";
  case 504:
    return "Gateway Timeout";
  default:
    return "";
  }
}

/* Whether the connection closes after the current response. A response
 * that ends before its request's body was read whole closes it too: the
 * rest of that body cannot be told from the next request. */
static int last_response(const gw_client *c) {
  return !c->keep_alive || c->thread->draining || (c->peer_gone && c->in.len == 0) ||
         c->body_streaming;
}

static void status_line(gw_client *c, int status) {
  char line[64];
  int n = snprintf(line, sizeof line, "HTTP/1.1 %03d %s\r\n", status, reason(status));
  gw_buf_append(&c->out, line, (size_t)n);
}

void gw_client_start_response(gw_client *c, int status, const pe_exchange *ex, int64_t length) {
  if (c->dead)
    return;
  c->no_body = c->head_method || status == 204 || status == 304 || status < 200;
  c->chunked_out = 0;
  c->response_begin = c->out_written + c->out.len;
  status_line(c, status);
  gw_headers_write(ex, PE_RESPONSE, &c->out, length == GW_LENGTH_AS_IS);
  if (length >= 0) {
    if (!(status == 204 || status == 304 || status < 200)) {
      gw_buf_append_str(&c->out, "content-length: ");
      gw_buf_append_dec(&c->out, (uint64_t)length);
      gw_buf_append(&c->out, "\r\n", 2);
    }
  } else if (length == GW_LENGTH_CHUNKED && !c->no_body) {
    if (c->http10)
      c->keep_alive = 0; /* no chunked coding in HTTP/1.0: the close ends the body */
    else {
      gw_buf_append_str(&c->out, "transfer-encoding: chunked\r\n");
      c->chunked_out = 1;
    }
  }
  if (last_response(c))
    gw_buf_append_str(&c->out, "connection: close\r\n");
  gw_buf_append(&c->out, "\r\n", 2);
  queue_flush(c);
}

int gw_client_retract_response(gw_client *c) {
  if (c->dead || c->out_written > c->response_begin)
    return 0;
  c->out.len = (size_t)(c->response_begin - c->out_written);
  return 1;
}

void gw_client_send_body(gw_client *c, const char *data, size_t len) {
  if (c->dead || c->no_body || len == 0)
    return;
  if (c->chunked_out) {
    gw_buf_append_hex(&c->out, len);
    gw_buf_append(&c->out, "\r\n", 2);
  }
  gw_buf_append(&c->out, data, len);
  if (c->chunked_out)
    gw_buf_append(&c->out, "\r\n", 2);
  queue_flush(c);
}

void gw_client_end_response(gw_client *c) {
  if (c->dead) {
    client_free(c);
    return;
  }
  if (c->chunked_out && !c->no_body)
    gw_buf_append(&c->out, "0\r\n\r\n", 5);
  if (c->body_streaming) { /* answered before its body was all read */
    c->body_streaming = c->body_flowing = c->body_paused = 0;
    c->keep_alive = 0;
  }
  c->state = READING_HEAD;
  c->owner = NULL;
  c->head_start_ns = now_ns(); /* a pipelined head's clock starts now */
  if (c->body.cap > KEEP_BUFFER)
    gw_buf_reset(&c->body, 0);
  if (!c->keep_alive || c->thread->draining) {
    mark_closing(c);
    return;
  }
  queue_flush(c);
  start_reading(c);
  process_input(c); /* a pipelined request may be waiting */
}

/* No more requests: close once the output is written. Unread pipelined
 * input is dropped. */
static void mark_closing(gw_client *c) {
  c->closing = 1;
  c->in.len = c->in.off = 0;
  stop_reading(c);
  queue_flush(c);
}

void gw_client_send_simple(gw_client *c, int status, const char *text) {
  if (c->dead) {
    client_free(c);
    return;
  }
  size_t len = strlen(text);
  c->response_begin = c->out_written + c->out.len;
  status_line(c, status);
  gw_buf_append_str(&c->out, "content-type: text/plain\r\ncontent-length: ");
  gw_buf_append_dec(&c->out, len);
  gw_buf_append(&c->out, "\r\n", 2);
  if (last_response(c))
    gw_buf_append_str(&c->out, "connection: close\r\n");
  gw_buf_append(&c->out, "\r\n", 2);
  if (!c->head_method)
    gw_buf_append(&c->out, text, len);
  c->no_body = 1;
  c->chunked_out = 0;
  gw_client_end_response(c);
}

void gw_client_abort(gw_client *c) {
  c->state = READING_HEAD; /* not BUSY any more: really free it */
  client_free(c);
}

/* Whether a request body arriving since @p c->body_start_ns is too slow:
 * it may take the body timeout plus one second per body_min_rate bytes
 * received, and may not stall for longer than the body timeout. */
static int body_too_slow(const gw_client *c, const gw_thread *t, uint64_t now) {
  uint64_t allowed = t->body_timeout_ns +
                     (uint64_t)((c->body.len + c->body_seen) / t->body_min_rate) * 1000000000ull;
  return now - c->body_start_ns > allowed || now - c->last_activity_ns > t->body_timeout_ns;
}

void gw_client_sweep(gw_thread *t, uint64_t now) {
  gw_client *c = TAILQ_FIRST(&t->clients);
  while (c) {
    gw_client *next = TAILQ_NEXT(c, link);
    if (c->dead) {
      /* the proxy frees it */
    } else if (c->write_armed && now - c->write_progress_ns > t->send_timeout_ns) {
      client_close(c); /* reads nothing of its response: frees the upstream too */
    } else if (c->state == BUSY && c->body_flowing && !c->body_paused) {
      if (body_too_slow(c, t, now))
        client_close(c); /* a streamed body trickling in: as below */
    } else if (c->state == BUSY) {
      /* the proxy has it; its upstream has its own timeout */
    } else if (c->state == READING_HEAD && c->in.len == 0) {
      if (c->out.len == 0 && (now - c->last_activity_ns > t->idle_timeout_ns || t->draining))
        client_free(c);
    } else if (c->state == READING_HEAD) {
      /* The whole head, not each byte: a head trickling in (slowloris)
       * cannot hold the connection beyond the timeout. */
      if (now - c->head_start_ns > t->header_timeout_ns)
        client_free(c);
    } else if (body_too_slow(c, t, now)) {
      client_free(c);
    }
    c = next;
  }
}

size_t gw_client_close_idle(gw_thread *t, size_t max) {
  /* The oldest first: new connections go to the front. */
  gw_client *c = TAILQ_LAST(&t->clients, gw_client_list);
  size_t closed = 0;
  while (c && closed < max) {
    gw_client *prev = TAILQ_PREV(c, gw_client_list, link);
    if (!c->dead && c->state == READING_HEAD && c->in.len == 0 && c->out.len == 0) {
      client_free(c);
      closed++;
    }
    c = prev;
  }
  return closed;
}

int gw_client_any_output(gw_thread *t) {
  const gw_client *c;
  TAILQ_FOREACH(c, &t->clients, link)
  if (c->out.len > 0 && !c->dead)
    return 1;
  return 0;
}

void gw_client_close_all(gw_thread *t) {
  while (!TAILQ_EMPTY(&t->clients))
    client_free(TAILQ_FIRST(&t->clients));
}
