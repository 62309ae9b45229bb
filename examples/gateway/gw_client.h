/*
 * Client connections: read requests (head and whole body), hand each to
 * the proxy, write its response. Keep-alive and pipelining: requests on a
 * connection are answered in order, one at a time.
 *
 * Output is batched: the response calls append to the connection's buffer
 * and one write per loop iteration sends what accumulated (head and body
 * of a small response go out in one write, as nginx does).
 */
#ifndef GW_CLIENT_H
#define GW_CLIENT_H

#include "gw_buf.h"
#include "gw_http.h"

#include <policyexec/policyexec.h>
#include <stdint.h>

typedef struct gw_thread gw_thread;
typedef struct gw_client gw_client;

/* Takes over accepted socket @p fd (non-blocking). */
void gw_client_accept(gw_thread *t, int fd);

/* The response body length argument of gw_client_start_response(). */
#define GW_LENGTH_CHUNKED (-1) /* chunked (HTTP/1.1), or until close (1.0) */
#define GW_LENGTH_AS_IS (-2)   /* keep the Content-Length field of the exchange */

/* Starts the response to the current request: the status line and the
 * response fields of @p ex (hop-by-hop fields dropped), framed by
 * @p length: a byte count, GW_LENGTH_CHUNKED or GW_LENGTH_AS_IS. */
void gw_client_start_response(gw_client *c, int status, const pe_exchange *ex, int64_t length);
/* Body bytes of the started response (nothing is sent for HEAD, 204, 304). */
void gw_client_send_body(gw_client *c, const char *data, size_t len);
/* Ends the response; the connection goes on with its next request. */
void gw_client_end_response(gw_client *c);
/* A complete text/plain response (the gateway's own errors). */
void gw_client_send_simple(gw_client *c, int status, const char *text);
/* Takes back the started response if none of its bytes was written yet
 * (so that an error response can replace it). Returns 1 if it did, 0 if
 * part of it is out (or the connection is gone). */
int gw_client_retract_response(gw_client *c);
/* Closes the connection at once: the end of a response the upstream broke off. */
void gw_client_abort(gw_client *c);

/* A request whose body streams (gw_proxy_request() with no body): the
 * proxy calls this when it can take body bytes; from then on they come
 * through gw_proxy_body() as they are read, then gw_proxy_body_end(). */
void gw_client_body_start(gw_client *c);
/* Stops / resumes reading a streamed body (flow control: the upstream
 * does not take it as fast as the client sends it). */
void gw_client_body_pause(gw_client *c);
void gw_client_body_resume(gw_client *c);

/* Ties the current request to @p owner: gw_proxy_client_drained(owner) is
 * called when the output has been written out. Reset at the response's end. */
void gw_client_set_owner(gw_client *c, void *owner);
/* The worker thread that owns @p c. */
gw_thread *gw_client_thread(const gw_client *c);
/* Output bytes not yet written: for flow control of a streamed body. */
size_t gw_client_pending_output(const gw_client *c);
/* Whether the request's method is HEAD. */
int gw_client_is_head(const gw_client *c);

/* Closes connections past their timeouts (called periodically): idle,
 * request head, request body, and a response the client does not read. */
void gw_client_sweep(gw_thread *t, uint64_t now_ns);
/* Closes up to @p max idle connections (no request in progress, nothing to
 * write), oldest first, to free descriptors. Returns how many it closed. */
size_t gw_client_close_idle(gw_thread *t, size_t max);
/* Whether some connection still has response bytes to write. */
int gw_client_any_output(gw_thread *t);
/* Closes and frees every connection of @p t (shutdown). */
void gw_client_close_all(gw_thread *t);

#endif /* GW_CLIENT_H */
