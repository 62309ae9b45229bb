/*
 * The inside of a client connection, shared by the files that make up
 * gw_client.h's implementation (and by nothing else):
 *
 *   gw_client.c           the connection: lifetime, socket I/O, request
 *                         heads, timeouts
 *   gw_client_body.c      request bodies: read whole, or streamed to the proxy
 *   gw_client_response.c  responses: status line, fields, framing, the end
 */
#ifndef GW_CLIENT_CONN_H
#define GW_CLIENT_CONN_H

#include "gw_client.h"
#include "gw_thread.h"

#include <stdint.h>

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
  unsigned in_process : 1;      /* inside gw_conn_process_input() */
  unsigned body_streaming : 1;  /* BUSY, and the body is still to be read for the proxy */
  unsigned body_flowing : 1;    /* the proxy takes its bytes (gw_client_body_start) */
  unsigned body_paused : 1;     /* the proxy asked to stop reading it for now */
  uint64_t body_seen;           /* streamed body bytes so far (the rate check) */
  uint64_t pause_start_ns;      /* when body_paused was set */
  unsigned in_pump : 1;         /* inside gw_conn_pump_body(): freeing waits for its end */
  unsigned free_pending : 1;    /* freed while in_pump */
  unsigned expect_continue : 1; /* the client waits for "100 Continue" before its body */
  void *owner;                  /* the proxy's request, while BUSY */
};

/* Monotonic coarse clock: idle and head timeouts need milliseconds. */
uint64_t gw_conn_now_ns(void);
/* Frees @p c now (or at the end of gw_conn_pump_body() when inside it). */
void gw_conn_free(gw_client *c);
/* Closes the socket; a request the proxy holds is told its client is gone.
 * May free @p c. */
void gw_conn_close(gw_client *c);
/* Schedules one write for this loop iteration. */
void gw_conn_queue_flush(gw_client *c);
void gw_conn_start_reading(gw_client *c);
void gw_conn_stop_reading(gw_client *c);
/* No more requests: close once the output is written. */
void gw_conn_mark_closing(gw_client *c);
/* Parses and dispatches the requests in the input buffer. */
void gw_conn_process_input(gw_client *c);
/* The gateway's own answer to a request it cannot take; closes after it. */
void gw_conn_refuse(gw_client *c, int status, const char *text);

/* gw_client_body.c */
/* Moves body bytes of a buffered body from the input; 1: complete, 0: more
 * needed, -1: refused. */
int gw_conn_read_body(gw_client *c);
/* Hands streamed body bytes read so far to the proxy. */
void gw_conn_pump_body(gw_client *c);
/* "100 Continue", if the client waits for it. */
void gw_conn_send_continue(gw_client *c);
/* Whether a request body arriving since c->body_start_ns is too slow. */
int gw_conn_body_too_slow(const gw_client *c, const gw_thread *t, uint64_t now);

#endif /* GW_CLIENT_CONN_H */
