/*
 * Responses of client connections (see gw_client.h): the status line,
 * the fields and the framing of the body; the response's end moves the
 * connection on to its next request.
 */
#include "gw_client_conn.h"

#include "gw_headers.h"

#include <stdio.h>
#include <string.h>

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
  gw_conn_queue_flush(c);
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
  gw_conn_queue_flush(c);
}

void gw_client_end_response(gw_client *c) {
  if (c->dead) {
    gw_conn_free(c);
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
  c->head_start_ns = gw_conn_now_ns(); /* a pipelined head's clock starts now */
  if (c->body.cap > KEEP_BUFFER)
    gw_buf_reset(&c->body, 0);
  if (!c->keep_alive || c->thread->draining) {
    gw_conn_mark_closing(c);
    return;
  }
  gw_conn_queue_flush(c);
  gw_conn_start_reading(c);
  gw_conn_process_input(c); /* a pipelined request may be waiting */
}

void gw_client_send_simple(gw_client *c, int status, const char *text) {
  if (c->dead) {
    gw_conn_free(c);
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
  gw_conn_free(c);
}
