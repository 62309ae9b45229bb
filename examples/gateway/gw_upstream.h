/*
 * Connections to upstreams: per-thread pools of keep-alive connections,
 * one request at a time on each, with the response delivered through
 * callbacks as it arrives (head first, then body bytes).
 */
#ifndef GW_UPSTREAM_H
#define GW_UPSTREAM_H

#include "gw_buf.h"
#include "gw_http.h"

#include <event2/event.h>
#include <stdint.h>
#include <sys/uio.h>

typedef struct gw_upstream_pool gw_upstream_pool;
typedef struct gw_upstream_conn gw_upstream_conn;

/* How an upstream request ended. */
typedef enum gw_upstream_result {
  GW_UPSTREAM_OK = 0,
  GW_UPSTREAM_UNREACHABLE, /* connect failed, or the connection broke before a response */
  GW_UPSTREAM_BROKEN,      /* the response was malformed or cut short */
  GW_UPSTREAM_TIMEOUT      /* no progress within the timeout */
} gw_upstream_result;

typedef struct gw_upstream_callbacks {
  /* The response head (1xx interim responses are skipped). Fields are
   * valid during the call. Return 0 to go on, -1 to drop the response: the
   * connection is then closed and on_done is not called. */
  int (*on_head)(void *user, const gw_head *head);
  /* Body bytes, decoded. Return 0 to go on, -1 to drop as above. */
  int (*on_body)(void *user, const char *data, size_t len);
  /* The end of the exchange with the upstream; the connection is back in
   * its pool (or closed) already. */
  void (*on_done)(void *user, gw_upstream_result result);
  /* An open request (gw_upstream_send_open) has written out every byte
   * given so far, after having had to wait for the socket: flow control of
   * a streamed request body. May be NULL. */
  void (*on_drain)(void *user);
} gw_upstream_callbacks;

int gw_upstream_pool_new(gw_upstream_pool **out, struct event_base *base, uint32_t timeout_ms,
                         size_t max_head_fields);
/* Closes every connection, without callbacks. */
void gw_upstream_pool_free(gw_upstream_pool *pool);

/* An idle connection to host:port, or a new one (connecting); NULL when
 * out of memory or the host does not resolve. */
gw_upstream_conn *gw_upstream_acquire(gw_upstream_pool *pool, const char *host, uint16_t port);

/* The buffer to write the request into (head and body) before sending. */
gw_buf *gw_upstream_request(gw_upstream_conn *conn);

/* Sends the request in gw_upstream_request(). @p head_request: the
 * response has no body whatever its head says. Callbacks follow. */
void gw_upstream_send(gw_upstream_conn *conn, int head_request, const gw_upstream_callbacks *cb,
                      void *user);

/* The same, for a request whose body is not all there yet (a streamed
 * upload): the request in gw_upstream_request() (head, and any body bytes
 * so far) goes out, and the request stays open for gw_upstream_write()
 * until gw_upstream_end_request(). Bytes written out are released, so an
 * open request holds only what the socket has not taken; a reused
 * connection that breaks is retried only while none was released. The
 * response may come before the request ends; the connection is then not
 * reused. */
void gw_upstream_send_open(gw_upstream_conn *conn, int head_request,
                           const gw_upstream_callbacks *cb, void *user);
/* Appends bytes (already framed by the caller) to an open request and
 * writes what the socket takes. Returns 0, or -1 when out of memory. */
int gw_upstream_write(gw_upstream_conn *conn, const char *data, size_t len);
/* The same for pieces (a chunk's size line, data and CRLF in one call);
 * with nothing queued they go straight to the socket, uncopied. */
int gw_upstream_writev(gw_upstream_conn *conn, const struct iovec *iov, int count);
/* The open request is complete: once written, the response is awaited. */
void gw_upstream_end_request(gw_upstream_conn *conn);
/* Bytes of the request not written yet. */
size_t gw_upstream_unsent(const gw_upstream_conn *conn);

/* Stops reading the response (flow control) / reads again. */
void gw_upstream_pause(gw_upstream_conn *conn);
void gw_upstream_resume(gw_upstream_conn *conn);

/* Drops the request: closes the connection, no more callbacks. Not for
 * use inside a callback (return -1 there instead). */
void gw_upstream_cancel(gw_upstream_conn *conn);

/* Fails requests without progress for longer than the timeout; called
 * periodically. */
void gw_upstream_sweep(gw_upstream_pool *pool, uint64_t now_ns);

#endif /* GW_UPSTREAM_H */
