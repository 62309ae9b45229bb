/*
 * One request in flight, shared by the files of the request flow (and by
 * nothing else):
 *
 *   gw_request.c             finishing, answering the client, running phases
 *   gw_proxy.c               the request: routing, request phases, the
 *                            upstream request
 *   gw_proxy_request_body.c  a request body streamed to the upstream
 *   gw_proxy_response.c      the upstream's response: head, phases, body
 *                            passed, streamed or buffered
 */
#ifndef GW_REQUEST_H
#define GW_REQUEST_H

#include "gw_proxy.h"

typedef void (*gw_next_fn)(gw_request *r);

typedef enum upstream_state { UPSTREAM_NONE, UPSTREAM_ACTIVE, UPSTREAM_DONE } upstream_state;

struct gw_request {
  gw_thread *thread;
  TAILQ_ENTRY(gw_request) link; /* in thread->inflight */
  gw_client *client;            /* not touched once client_done */
  const gw_buf *client_body;
  gw_route *route;
  pe_exchange *ex;
  uint64_t start_ns;
  int status; /* sent to the client, for the metrics */

  gw_upstream_conn *upstream;
  upstream_state upstream_state;
  gw_upstream_result upstream_result;
  int64_t upstream_length; /* GW_LENGTH_AS_IS, or GW_LENGTH_CHUNKED */

  gw_next_fn resume; /* continuation of the pending phase */
  unsigned phase_pending : 1;
  unsigned in_upstream_cb : 1;    /* inside an upstream callback */
  unsigned drop_upstream : 1;     /* tell the upstream callback to return -1 */
  unsigned headers_done : 1;      /* body bytes may go to the client or exchange */
  unsigned streaming : 1;         /* the response is started; body bytes pass through */
  unsigned client_done : 1;       /* the client has its whole answer */
  unsigned paused : 1;            /* upstream reads paused for a slow client */
  unsigned had_body : 1;          /* the client's request carried a body */
  unsigned client_gone : 1;       /* the client went away: answer nobody upstream */
  unsigned stream_resp : 1;       /* the response body goes through pe_chain_stream_body */
  unsigned head_pending : 1;      /* its head waits for the stream's first output bytes */
  unsigned req_stream : 1;        /* the request body comes from the client as it is read */
  unsigned req_chunked : 1;       /* ... and goes upstream chunked (else with its length) */
  unsigned req_stopped : 1;       /* ... and is no longer forwarded (stopped, or answered) */
  unsigned body_paused : 1;       /* the client's body reads wait for the upstream */
  unsigned chunk_paused : 1;      /* upstream reads paused while a response chunk is pending */
  unsigned chunk_last : 1;        /* the pending response chunk ends the body */
  unsigned req_ended : 1;         /* the streamed request body was read whole */
  unsigned req_chunk_last : 1;    /* the pending request chunk ends the body */
  unsigned req_held_last : 1;     /* the body's end is in req_held's wake */
  unsigned gated : 1;             /* upstream reads paused while the exchange is busy */
  unsigned req_policy_paused : 1; /* client reads paused while request bytes wait */
  unsigned pinned;                /* > 0: gw_req_maybe_finish() leaves r alone */
  int req_chunk_rc;               /* the pending request chunk's result */
  pe_slice req_out;               /* ... and what it lets out */
  gw_buf req_held;                /* request body read while the exchange was busy */
  int chunk_rc;                   /* the pending response chunk's result */
  pe_slice chunk_out;             /* ... and what it lets out */
  uint64_t req_length;            /* the client's Content-Length, when not chunked */
  gw_buf held;                    /* response body that arrived while a phase ran */
  gw_buf streamed;                /* the request body as the streamed steps left it */
};

/* Upstream callbacks of every request (gw_proxy_response.c). */
extern const gw_upstream_callbacks gw_req_upstream_callbacks;

/* Ends @p r (counted, exchange recycled, freed) once the client has its
 * answer, the upstream request is over and no phase is pending. */
void gw_req_maybe_finish(gw_request *r);
/* The gateway's own error answer. */
void gw_req_reply_error(gw_request *r, int status, const char *text);
/* Whether a response with @p status to @p r has no body. */
int gw_req_bodiless(const gw_request *r, int status);
/* Sends the response side of the exchange as it stands. */
void gw_req_reply_from_exchange(gw_request *r);
/* 502 or 504 after an upstream failure. */
void gw_req_reply_upstream_failure(gw_request *r);
/* The completion of a pending phase: resumes with r->resume. */
void gw_req_on_phase_done(pe_exchange *ex, int rc, void *user_data);
/* Runs phases @p first to @p last if the chain has steps there, then
 * continues with @p next, now or once the dispatcher completes them. */
void gw_req_run_phases(gw_request *r, pe_phase first, pe_phase last, gw_next_fn next);
void gw_req_run_phase(gw_request *r, pe_phase phase, gw_next_fn next);
/* Whether a step answered the request itself. */
int gw_req_responded(const gw_request *r);
/* Ends the upstream request early (the client was answered otherwise). */
void gw_req_drop_upstream(gw_request *r);
/* The upstream request ended (r->upstream_result) with no phase pending:
 * answers or ends the response accordingly (gw_proxy_response.c). */
void gw_req_upstream_ended(gw_request *r);
/* Whether request body bytes (or its end) wait for the exchange. */
int gw_req_body_waiting(const gw_request *r);
/* The exchange is free again (no phase pending): pushes the request bytes
 * held meanwhile, then lets the upstream and the client go on if nothing
 * is pending any more (gw_proxy_request_body.c). */
void gw_req_body_kick(gw_request *r);
/* The end of a streamed response body (gw_proxy_response.c). */
void gw_req_end_stream(gw_request *r);

#endif /* GW_REQUEST_H */
