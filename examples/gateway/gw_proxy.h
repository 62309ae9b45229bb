/*
 * The request flow: route, run the chain's phases around the upstream
 * round trip, answer the client.
 */
#ifndef GW_PROXY_H
#define GW_PROXY_H

#include "gw_buf.h"
#include "gw_client.h"
#include "gw_http.h"
#include "gw_thread.h"

/* A request from client @p c: its head (valid during the call) and its
 * decoded body (valid until the response ends), or NULL when the body
 * streams (see gw_client_body_start()). */
void gw_proxy_request(gw_client *c, const gw_head *head, gw_buf *body);

/* Whether a request with @p head and a body may have its body streamed
 * (its route does not want the body whole): 1 yes, 0 no (buffer it, under
 * the body limit). */
int gw_proxy_streams_body(gw_client *c, const gw_head *head);

/* Decoded bytes of a streamed request body, and its end; @p owner is the
 * request given to gw_client_set_owner(). */
void gw_proxy_body(void *owner, const char *data, size_t len);
void gw_proxy_body_end(void *owner);

/* The client's output was written out (flow control of a streamed body);
 * @p owner is the request given to gw_client_set_owner(). */
void gw_proxy_client_drained(void *owner);

/* The client of request @p owner went away (a write failed, or the send
 * timeout ran out): its upstream request is dropped and the request ends
 * as soon as no policy phase runs for it. */
void gw_proxy_client_gone(void *owner);

/* Frees the requests still in flight on @p t, without answering them: for
 * a shutdown whose grace period ran out, after the loop stopped. */
void gw_proxy_abandon_all(gw_thread *t);

/* Monotonic clock in nanoseconds. */
uint64_t gw_now_ns(void);

#endif /* GW_PROXY_H */
