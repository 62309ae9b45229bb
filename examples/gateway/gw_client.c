/*
 * Client connections (see gw_client.h).
 *
 * The read event stays registered for the connection's whole life and the
 * write event is added only when a write would block, so a keep-alive
 * request costs no epoll_ctl at all. Timeouts are checked by a periodic
 * sweep rather than a timer per connection, for the same reason.
 */
#include "gw_client_conn.h"

#include "gw_proxy.h"
#include "pe_clock.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static void parse_requests(gw_client *c, gw_thread *t);

/* Idle and head timeouts need milliseconds, not a precise clock. */
uint64_t gw_conn_now_ns(void) {
  return pe__clock_ns(CLOCK_MONOTONIC_COARSE);
}

void gw_conn_free(gw_client *c) {
  if (c->in_pump) { /* gw_conn_pump_body() still runs on it: it frees c at its end */
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
void gw_conn_close(gw_client *c) {
  if (c->state != BUSY) {
    gw_conn_free(c);
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
      c->write_progress_ns = gw_conn_now_ns();
      continue;
    }
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      if (!c->write_armed) {
        event_add(c->write_event, NULL);
        c->write_armed = 1;
        c->write_progress_ns = gw_conn_now_ns(); /* the send timeout runs from here */
      }
      return;
    }
    gw_conn_close(c); /* the client went away */
    return;
  }
  if (c->write_armed) {
    event_del(c->write_event);
    c->write_armed = 0;
  }
  if (c->closing && c->state != BUSY)
    gw_conn_free(c);
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
void gw_conn_queue_flush(gw_client *c) {
  if (c->flush_queued || c->dead)
    return;
  c->flush_queued = 1;
  event_active(c->write_event, EV_WRITE, 1);
}

void gw_conn_start_reading(gw_client *c) {
  if (!c->reading && !c->peer_gone && !c->dead) {
    event_add(c->read_event, NULL);
    c->reading = 1;
  }
}

void gw_conn_stop_reading(gw_client *c) {
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
    gw_conn_close(c);
    return;
  }
  ssize_t n = recv(fd, c->in.data + c->in.off + c->in.len, c->in.cap - c->in.off - c->in.len, 0);
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
    return;
  if (n <= 0) {
    /* EOF: no more requests, but those already read are answered (a
     * half-closed client still reads); a request cut short is dropped. */
    c->peer_gone = 1;
    gw_conn_stop_reading(c);
    if (c->state == BUSY && c->body_streaming) {
      gw_conn_close(c); /* the body was cut short: its upstream request goes too */
      return;
    }
    if (c->state == BUSY)
      return;
    if (n == 0 && c->out.len > 0)
      gw_conn_mark_closing(c); /* the answers written so far still go out */
    else
      gw_conn_close(c);
    return;
  }
  uint64_t now = gw_conn_now_ns();
  if (c->state == READING_HEAD && c->in.len == 0)
    c->head_start_ns = now; /* the whole head must come within the timeout */
  c->in.len += (size_t)n;
  c->last_activity_ns = now;
  if (c->state == BUSY && c->body_flowing) {
    gw_conn_pump_body(c);
    return;
  }
  if (c->state == BUSY) { /* pipelined (or a body not wanted yet): parsed later */
    if (c->in.len >= MAX_READ_AHEAD)
      gw_conn_stop_reading(c);
    return;
  }
  gw_conn_process_input(c);
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
  c->last_activity_ns = c->head_start_ns = gw_conn_now_ns();
  gw_conn_start_reading(c);
}

/* The gateway's own answer to a request it cannot take; the connection is
 * closed after it since the rest of the input cannot be trusted. */
void gw_conn_refuse(gw_client *c, int status, const char *text) {
  c->keep_alive = 0;
  c->head_method = 0;
  c->state = BUSY; /* send_simple expects a current request */
  gw_client_send_simple(c, status, text);
}

/* Hands the complete request to the proxy. */
static void dispatch(gw_client *c, gw_head *head) {
  c->state = BUSY;
  gw_proxy_request(c, head, &c->body);
}

void gw_conn_process_input(gw_client *c) {
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
          gw_conn_refuse(c, 431, "request header fields too large\n");
        break;
      }
      if (end > t->max_head_bytes) {
        gw_conn_refuse(c, 431, "request header fields too large\n");
        return;
      }
      ssize_t rc = gw_http_parse_request(gw_buf_ptr(&c->in), end, &head);
      if (rc == GW_HTTP_TOO_MANY_FIELDS) {
        gw_conn_refuse(c, 431, "request header fields too large\n");
        return;
      }
      uint64_t length = 0;
      if (rc <= 0 || gw_http_framing(&head, 1, &c->framing, &length) < 0) {
        gw_conn_refuse(c, 400, "bad request\n");
        return;
      }
      int stream = c->framing != GW_BODY_NONE && gw_proxy_streams_body(c, &head);
      if (!stream && c->framing == GW_BODY_LENGTH && length > t->limit_body_bytes) {
        gw_conn_refuse(c, 413, "request body too large\n");
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
        c->body_start_ns = gw_conn_now_ns();
        c->state = BUSY;
        gw_proxy_request(c, &head, NULL);
        continue;
      }
      /* The body follows: keep the head aside (c->in moves as it fills). */
      c->head.len = c->head.off = 0;
      if (gw_buf_append(&c->head, gw_buf_ptr(&c->in), end) < 0) {
        gw_conn_refuse(c, 500, "out of memory\n");
        return;
      }
      gw_buf_consume(&c->in, end);
      c->state = READING_BODY;
      gw_conn_send_continue(c);
      c->body_start_ns = gw_conn_now_ns();
    }
    int complete = gw_conn_read_body(c);
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
    gw_conn_mark_closing(c);
}

/* No more requests: close once the output is written. Unread pipelined
 * input is dropped. */
void gw_conn_mark_closing(gw_client *c) {
  c->closing = 1;
  c->in.len = c->in.off = 0;
  gw_conn_stop_reading(c);
  gw_conn_queue_flush(c);
}

void gw_client_sweep(gw_thread *t, uint64_t now) {
  gw_client *c = TAILQ_FIRST(&t->clients);
  while (c) {
    gw_client *next = TAILQ_NEXT(c, link);
    if (c->dead) {
      /* the proxy frees it */
    } else if (c->write_armed && now - c->write_progress_ns > t->send_timeout_ns) {
      gw_conn_close(c); /* reads nothing of its response: frees the upstream too */
    } else if (c->state == BUSY && c->body_flowing && !c->body_paused) {
      if (gw_conn_body_too_slow(c, t, now))
        gw_conn_close(c); /* a streamed body trickling in: as below */
    } else if (c->state == BUSY) {
      /* the proxy has it; its upstream has its own timeout */
    } else if (c->state == READING_HEAD && c->in.len == 0) {
      if (c->out.len == 0 && (now - c->last_activity_ns > t->idle_timeout_ns || t->draining))
        gw_conn_free(c);
    } else if (c->state == READING_HEAD) {
      /* The whole head, not each byte: a head trickling in (slowloris)
       * cannot hold the connection beyond the timeout. */
      if (now - c->head_start_ns > t->header_timeout_ns)
        gw_conn_free(c);
    } else if (gw_conn_body_too_slow(c, t, now)) {
      gw_conn_free(c);
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
      gw_conn_free(c);
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
    gw_conn_free(TAILQ_FIRST(&t->clients));
}
