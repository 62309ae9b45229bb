/*
 * What every part of the request flow uses (see gw_request.h): finishing
 * a request, answering its client, running its phases.
 */
#include "gw_request.h"

#include "pe_clock.h"

#include <stdlib.h>
#include <time.h>

uint64_t gw_now_ns(void) {
  return pe__clock_ns(CLOCK_MONOTONIC);
}

/* ---- finishing ---- */

static void gw_req_free(gw_request *r) {
  gw_route_unref(r->route);
  gw_buf_free(&r->held);
  gw_buf_free(&r->streamed);
  gw_buf_free(&r->req_held);
  free(r);
}

void gw_req_maybe_finish(gw_request *r) {
  if (!r->client_done || r->upstream_state == UPSTREAM_ACTIVE || r->phase_pending || r->pinned)
    return;
  gw_thread *t = r->thread;
  gw_metrics_observe(r->route->metrics, r->status, gw_now_ns() - r->start_ns);
  TAILQ_REMOVE(&t->inflight, r, link);
  t->inflight_count--;
  gw_thread_give_exchange(t, r->ex);
  gw_req_free(r);
}

void gw_proxy_abandon_all(gw_thread *t) {
  while (!TAILQ_EMPTY(&t->inflight)) {
    gw_request *r = TAILQ_FIRST(&t->inflight);
    TAILQ_REMOVE(&t->inflight, r, link);
    pe_exchange_free(r->ex); /* the dispatcher is gone: no phase owns it */
    gw_req_free(r);
  }
  t->inflight_count = 0;
}

/* ---- answering the client ---- */

void gw_req_reply_error(gw_request *r, int status, const char *text) {
  r->status = status;
  r->client_done = 1;
  gw_client_send_simple(r->client, status, text);
}

int gw_req_bodiless(const gw_request *r, int status) {
  return gw_client_is_head(r->client) || status == 204 || status == 304;
}

/* Sends the response side of the exchange as it stands: the upstream's
 * response as the policies left it, or an immediate response. Its length
 * is the body's (whatever Content-Length the upstream stated), except
 * where a message has no body and the field describes the resource. */
void gw_req_reply_from_exchange(gw_request *r) {
  int status = pe_exchange_status(r->ex);
  if (status < 200 || status > 999) {
    gw_req_reply_error(r, 502, "bad gateway: no valid response status\n");
    return;
  }
  pe_slice body = pe_exchange_body(r->ex, PE_RESPONSE);
  r->status = status;
  r->client_done = 1;
  if (gw_req_bodiless(r, status)) {
    gw_client_start_response(r->client, status, r->ex, GW_LENGTH_AS_IS);
  } else {
    gw_client_start_response(r->client, status, r->ex, (int64_t)body.len);
    gw_client_send_body(r->client, body.ptr, body.len);
  }
  gw_client_end_response(r->client);
}

void gw_req_reply_upstream_failure(gw_request *r) {
  if (r->upstream_result == GW_UPSTREAM_TIMEOUT)
    gw_req_reply_error(r, 504, "gateway timeout\n");
  else if (r->upstream_result == GW_UPSTREAM_UNREACHABLE)
    gw_req_reply_error(r, 502, "bad gateway: upstream unreachable\n");
  else
    gw_req_reply_error(r, 502, "bad gateway: upstream response broken\n");
}

/* ---- running phases ---- */

void gw_req_on_phase_done(pe_exchange *ex, int rc, void *user_data) {
  gw_request *r = user_data;
  (void)ex;
  (void)rc; /* always PE_OK: step failures show in the verdict */
  r->phase_pending = 0;
  if (r->thread->closing) /* at shutdown the request is only freed */
    return;
  /* The continuation may end the request; the request bytes held while
   * the exchange was busy still need it afterwards, so it stays
   * allocated until both are done. */
  r->pinned++;
  r->resume(r);
  gw_req_body_kick(r);
  r->pinned--;
  gw_req_maybe_finish(r);
}

/* Runs phases @p first to @p last if the chain has steps there, then
 * continues with @p next, now or once the dispatcher completes them. */
void gw_req_run_phases(gw_request *r, pe_phase first, pe_phase last, gw_next_fn next) {
  unsigned wanted = 0;
  for (unsigned p = first; p <= last; p++)
    wanted |= PE_PHASE_BIT(p);
  if (!(r->route->phases & wanted)) {
    next(r);
    return;
  }
  int rc = pe_chain_run_phases_async(r->route->chain, r->ex, first, last, r->thread->dispatcher,
                                     gw_req_on_phase_done, r);
  if (rc == PE_PENDING) {
    r->resume = next;
    r->phase_pending = 1;
    return;
  }
  if (rc < 0) { /* nothing ran: answer as a closed failure would */
    pe_engine_log(r->thread->ctx->engine, PE_LOG_ERROR, "api %s: %s phase not run: %s",
                  r->route->spec.name, pe_phase_name(first), pe_strerror(rc));
    pe_exchange_respond(r->ex, rc == PE_ERR_BUSY ? 503 : 500,
                        rc == PE_ERR_BUSY ? PE_LIT("policy workers busy\n")
                                          : PE_LIT("policy error\n"));
  }
  next(r);
}

void gw_req_run_phase(gw_request *r, pe_phase phase, gw_next_fn next) {
  gw_req_run_phases(r, phase, phase, next);
}

int gw_req_responded(const gw_request *r) {
  return pe_exchange_verdict(r->ex) == PE_VERDICT_RESPOND;
}

/* ---- upstream side ---- */

/* Ends the upstream request early (the client was answered otherwise). */
void gw_req_drop_upstream(gw_request *r) {
  if (r->upstream_state != UPSTREAM_ACTIVE)
    return;
  if (r->in_upstream_cb) {
    r->drop_upstream = 1; /* the callback returns -1; see upstream_dropped() */
    return;
  }
  gw_upstream_cancel(r->upstream);
  r->upstream = NULL;
  r->upstream_state = UPSTREAM_DONE;
}
