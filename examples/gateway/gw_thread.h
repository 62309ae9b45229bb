/*
 * Worker threads: each has its own event loop, listening socket (bound
 * with SO_REUSEPORT, so the kernel spreads new connections over the
 * threads), client connections, upstream pool, exchange free list and
 * policy dispatcher. Nothing on the request path is shared between threads
 * except the engine and the chains (both thread-safe) and the metrics
 * counters (atomics); the loops therefore run without locks.
 */
#ifndef GW_THREAD_H
#define GW_THREAD_H

#include "gw_apis.h"
#include "gw_config.h"
#include "gw_http.h"
#include "gw_metrics.h"
#include "gw_upstream.h"

#include <sys/queue.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <policyexec/policyexec.h>
#include <pthread.h>

/* What every thread shares; owned by gw_main.c. */
typedef struct gw_context {
  const gw_config *config;
  pe_engine *engine;
  gw_apis *apis;
  gw_metrics *metrics;
} gw_context;

typedef struct gw_request gw_request;
typedef struct gw_client gw_client;

typedef struct gw_thread {
  unsigned index;
  gw_context *ctx;
  pthread_t tid;
  int running; /* tid is a live thread */
  struct event_base *base;
  struct evconnlistener *listener;
  pe_dispatcher *dispatcher;
  struct event *dispatch_event;
  int stop_fd; /* eventfd: the main thread writes to ask for a stop */
  struct event *stop_event;
  struct event *sweep_timer;
  unsigned grace_ms; /* set before the stop request */
  uint64_t drain_deadline_ns;
  int draining; /* stopping: no new connections, close after each response */
  int closing;  /* loop over: completions must not resume requests */
  gw_upstream_pool *upstreams;
  gw_apis_view view;

  /* Limits, from the engine's. */
  size_t limit_body_bytes;
  size_t max_head_bytes;
  /* Client timeouts and buffers, from the configuration. */
  uint64_t header_timeout_ns, body_timeout_ns, send_timeout_ns, idle_timeout_ns;
  size_t body_min_rate;
  size_t stream_buffer_bytes;
  /* Accepting while out of file descriptors (see on_accept_error()). */
  struct event *accept_resume;
  uint64_t accept_log_ns;    /* when the last accept() failure was logged */
  unsigned accept_log_quiet; /* failures not logged since */
  /* Scratch for parsing one head at a time (field_cap = the engine's
   * header count limit + 1, so one field too many is noticed). */
  gw_field *fields;
  size_t field_cap;
  char *path_buf; /* the normalised request target (max_head_bytes) */

  /* Every open client connection, newest first (so the oldest is last). */
  TAILQ_HEAD(gw_client_list, gw_client) clients;

  /* Exchanges of finished requests, reset and kept for the next ones. */
  pe_exchange **spare_exchanges;
  size_t *spare_sizes; /* body bytes each one held before its reset */
  size_t spare_count;
  size_t spare_bytes; /* their sum, kept within the configured budget */

  /* Requests in flight (a list, so a forced shutdown can free them). */
  TAILQ_HEAD(gw_request_list, gw_request) inflight;
  size_t inflight_count;
} gw_thread;

/* Sets up @p t's loop and a new SO_REUSEPORT socket bound to the
 * configured address. Returns 0, or -1 after printing why. */
int gw_thread_init(gw_thread *t, unsigned index, gw_context *ctx);
/* Runs the loop on a new thread. Returns 0 or -1. */
int gw_thread_start(gw_thread *t, int pin_to_cpu);
/* Asks the thread (from any thread) to stop accepting, let its requests in
 * flight finish within @p grace_ms, and leave its loop. */
void gw_thread_stop(gw_thread *t, unsigned grace_ms);
/* Joins the thread and frees everything it owns. */
void gw_thread_join_and_free(gw_thread *t);

/* A reset exchange from the free list, or a new one; NULL when out of memory. */
pe_exchange *gw_thread_take_exchange(gw_thread *t);
void gw_thread_give_exchange(gw_thread *t, pe_exchange *ex);

#endif /* GW_THREAD_H */
