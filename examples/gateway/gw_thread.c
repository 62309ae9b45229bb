/*
 * Worker threads (see gw_thread.h).
 */
#include "gw_thread.h"

#include "gw_client.h"
#include "gw_proxy.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

/* Reset exchanges kept per thread; enough for the usual concurrency, few
 * enough that a burst does not pin its memory for good. */
#define MAX_SPARE_EXCHANGES 256
/* An exchange whose bodies held more than this is not kept for reuse. */
#define KEEP_EXCHANGE_BYTES (64 * 1024)
/* How long accepting pauses when out of descriptors with nothing to free. */
#define ACCEPT_PAUSE_MS 100
/* At most one accept() failure line per this period (the rest are counted). */
#define ACCEPT_LOG_PERIOD_NS (5ull * 1000000000ull)
/* Idle connections closed at once to make room for new ones. */
#define ACCEPT_RECLAIM 16
/* Period of the timeout sweep (and of the drain check at shutdown). */
#define SWEEP_MS 50
/* Bytes of a request head beyond the engine's header bytes: the request
 * line and the ": " and CR LF of each field. */
#define HEAD_SLACK 8192

pe_exchange *gw_thread_take_exchange(gw_thread *t) {
  if (t->spare_count > 0) {
    t->spare_count--;
    t->spare_bytes -= t->spare_sizes[t->spare_count];
    gw_metrics_spare_bytes(t->ctx->metrics, -(int64_t)t->spare_sizes[t->spare_count]);
    return t->spare_exchanges[t->spare_count];
  }
  pe_exchange *ex = NULL;
  return pe_exchange_new(&ex, t->ctx->engine) == PE_OK ? ex : NULL;
}

/* A reset exchange keeps the buffers its bodies grew to (the library has no
 * way to shrink them), so what it held is what it would keep pinned: one
 * that held a large body is freed, and the spares together stay within the
 * configured byte budget. A burst of large requests then leaves nothing
 * behind but small exchanges. */
void gw_thread_give_exchange(gw_thread *t, pe_exchange *ex) {
  size_t held = pe_exchange_body(ex, PE_REQUEST).len + pe_exchange_body(ex, PE_RESPONSE).len;
  size_t budget = t->ctx->config->spare_exchange_bytes;
  if (t->spare_count < MAX_SPARE_EXCHANGES && held <= KEEP_EXCHANGE_BYTES &&
      t->spare_bytes + held <= budget && pe_exchange_reset(ex) == PE_OK) {
    t->spare_sizes[t->spare_count] = held;
    t->spare_exchanges[t->spare_count++] = ex;
    t->spare_bytes += held;
    gw_metrics_spare_bytes(t->ctx->metrics, (int64_t)held);
  } else {
    pe_exchange_free(ex);
  }
}

static int listen_socket(const char *host, uint16_t port, unsigned backlog) {
  struct addrinfo hints = {
      .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
  struct addrinfo *res = NULL;
  char service[8];
  snprintf(service, sizeof service, "%u", (unsigned)port);
  int rc = getaddrinfo(host, service, &hints, &res);
  if (rc != 0) {
    fprintf(stderr, "policyexec-gateway: listen %s:%u: %s\n", host, (unsigned)port,
            gai_strerror(rc));
    return -1;
  }
  int fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  int on = 1;
  if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on) < 0 ||
      setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof on) < 0 ||
      bind(fd, res->ai_addr, res->ai_addrlen) < 0 || listen(fd, (int)backlog) < 0) {
    fprintf(stderr, "policyexec-gateway: listen %s:%u: %s\n", host, (unsigned)port,
            strerror(errno));
    if (fd >= 0)
      close(fd);
    fd = -1;
  }
  freeaddrinfo(res);
  return fd;
}

static void on_accept(struct evconnlistener *listener, evutil_socket_t fd, struct sockaddr *addr,
                      int addr_len, void *arg) {
  (void)listener;
  (void)addr;
  (void)addr_len;
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  gw_client_accept(arg, fd);
}

static void on_accept_resume(evutil_socket_t fd, short what, void *arg) {
  gw_thread *t = arg;
  (void)fd;
  (void)what;
  if (t->listener && !t->draining)
    evconnlistener_enable(t->listener);
}

/* accept() failed for a reason other than a retriable one. Out of file
 * descriptors (or kernel memory), the listening socket stays readable, so
 * retrying at once would spin: like nginx, free the oldest idle connections
 * first and accept on; with none to free, stop accepting for a moment. The
 * log line is rate-limited: the failure repeats as long as the cause lasts. */
static void on_accept_error(struct evconnlistener *listener, void *arg) {
  gw_thread *t = arg;
  int err = EVUTIL_SOCKET_ERROR();
  gw_metrics_count_accept_failure(t->ctx->metrics);
  size_t freed = 0;
  if (err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM)
    freed = gw_client_close_idle(t, ACCEPT_RECLAIM);
  if (freed == 0) {
    evconnlistener_disable(listener);
    struct timeval pause = {0, ACCEPT_PAUSE_MS * 1000};
    event_add(t->accept_resume, &pause);
  }
  uint64_t now = gw_now_ns();
  if (t->accept_log_ns == 0 || now - t->accept_log_ns >= ACCEPT_LOG_PERIOD_NS) {
    fprintf(stderr,
            "policyexec-gateway: thread %u: accept: %s (%u more since the last report); "
            "closed %zu idle connections%s\n",
            t->index, strerror(err), t->accept_log_quiet, freed, freed ? "" : ", pausing accepts");
    t->accept_log_ns = now;
    t->accept_log_quiet = 0;
  } else {
    t->accept_log_quiet++;
  }
}

static void on_dispatch_ready(evutil_socket_t fd, short what, void *arg) {
  gw_thread *t = arg;
  (void)fd;
  (void)what;
  pe_dispatcher_dispatch(t->dispatcher);
}

static void on_sweep(evutil_socket_t fd, short what, void *arg) {
  gw_thread *t = arg;
  (void)fd;
  (void)what;
  uint64_t now = gw_now_ns();
  gw_upstream_sweep(t->upstreams, now);
  gw_client_sweep(t, now);
  if (t->draining &&
      ((t->inflight_count == 0 && !gw_client_any_output(t)) || now >= t->drain_deadline_ns))
    event_base_loopbreak(t->base);
}

/* Runs on the thread itself: stop accepting, then let the sweep wait for
 * the requests in flight and their responses' last bytes, up to the grace
 * period. Idle keep-alive connections are closed by the sweep; busy ones
 * after their response. */
static void on_stop(evutil_socket_t fd, short what, void *arg) {
  gw_thread *t = arg;
  uint64_t count;
  (void)what;
  if (read(fd, &count, sizeof count) < 0 || t->draining)
    return;
  if (t->listener) {
    evconnlistener_free(t->listener);
    t->listener = NULL;
  }
  t->draining = 1;
  t->drain_deadline_ns = gw_now_ns() + (uint64_t)t->grace_ms * 1000000u;
  on_sweep(-1, 0, t);
}

int gw_thread_init(gw_thread *t, unsigned index, gw_context *ctx) {
  const gw_config *cfg = ctx->config;
  memset(t, 0, sizeof *t);
  TAILQ_INIT(&t->clients);
  TAILQ_INIT(&t->inflight);
  t->index = index;
  t->ctx = ctx;
  t->stop_fd = -1;
  /* The loop is only ever touched by its own thread (the stop request comes
   * through an eventfd), so it needs no locks; the changelist folds event
   * changes made within one iteration into one epoll_ctl, or none. */
  struct event_config *ev_cfg = event_config_new();
  if (ev_cfg) {
    event_config_set_flag(ev_cfg, EVENT_BASE_FLAG_NOLOCK | EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
    t->base = event_base_new_with_config(ev_cfg);
    event_config_free(ev_cfg);
  }
  t->limit_body_bytes = pe_engine_limit(ctx->engine, PE_LIMIT_BODY_BYTES);
  t->max_head_bytes = pe_engine_limit(ctx->engine, PE_LIMIT_HEADER_BYTES) + HEAD_SLACK;
  t->field_cap = pe_engine_limit(ctx->engine, PE_LIMIT_HEADER_COUNT) + 1;
  t->fields = calloc(t->field_cap, sizeof *t->fields);
  t->path_buf = malloc(t->max_head_bytes);
  t->header_timeout_ns = (uint64_t)cfg->header_timeout_ms * 1000000u;
  t->body_timeout_ns = (uint64_t)cfg->body_timeout_ms * 1000000u;
  t->body_min_rate = cfg->body_min_rate;
  t->send_timeout_ns = (uint64_t)cfg->send_timeout_ms * 1000000u;
  t->idle_timeout_ns = (uint64_t)cfg->idle_timeout_ms * 1000000u;
  t->stream_buffer_bytes = cfg->stream_buffer_bytes;
  t->spare_sizes = calloc(MAX_SPARE_EXCHANGES, sizeof *t->spare_sizes);
  t->spare_exchanges = calloc(MAX_SPARE_EXCHANGES, sizeof *t->spare_exchanges);
  t->stop_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (!t->base || !t->fields || !t->path_buf || !t->spare_exchanges || !t->spare_sizes ||
      t->stop_fd < 0 ||
      gw_upstream_pool_new(&t->upstreams, t->base, cfg->upstream_timeout_ms, t->field_cap) < 0) {
    fprintf(stderr, "policyexec-gateway: thread %u: out of resources\n", index);
    return -1;
  }
  int rc = pe_dispatcher_new(&t->dispatcher, ctx->engine);
  if (rc < 0) {
    fprintf(stderr, "policyexec-gateway: thread %u: policy dispatcher: %s\n", index,
            pe_strerror(rc));
    return -1;
  }
  t->dispatch_event = event_new(t->base, pe_dispatcher_fd(t->dispatcher), EV_READ | EV_PERSIST,
                                on_dispatch_ready, t);
  t->stop_event = event_new(t->base, t->stop_fd, EV_READ, on_stop, t);
  t->sweep_timer = event_new(t->base, -1, EV_PERSIST, on_sweep, t);
  t->accept_resume = evtimer_new(t->base, on_accept_resume, t);
  struct timeval sweep = {0, SWEEP_MS * 1000};
  if (!t->dispatch_event || !t->stop_event || !t->sweep_timer || !t->accept_resume ||
      event_add(t->dispatch_event, NULL) < 0 || event_add(t->stop_event, NULL) < 0 ||
      event_add(t->sweep_timer, &sweep) < 0)
    return -1;

  int fd = listen_socket(cfg->listen_host, cfg->listen_port, cfg->listen_backlog);
  if (fd < 0)
    return -1;
  /* Backlog 0: the socket listens already, with the configured backlog (a
   * negative one would make libevent listen() again with its own 128). */
  t->listener = evconnlistener_new(t->base, on_accept, t, LEV_OPT_CLOSE_ON_FREE, 0, fd);
  if (!t->listener) {
    close(fd);
    return -1;
  }
  evconnlistener_set_error_cb(t->listener, on_accept_error);
  return 0;
}

static void *thread_main(void *arg) {
  gw_thread *t = arg;
  event_base_dispatch(t->base);
  return NULL;
}

/* The i-th CPU this process may run on (wrapping around), or -1. Python
 * worker i is pinned to the same one, so loop thread i and the worker it
 * prefers share a CPU: no cross-CPU wake-up per Python phase. */
static int nth_allowed_cpu(unsigned i) {
  cpu_set_t allowed;
  if (sched_getaffinity(0, sizeof allowed, &allowed) != 0 || CPU_COUNT(&allowed) == 0)
    return -1;
  unsigned want = i % (unsigned)CPU_COUNT(&allowed), seen = 0;
  for (int c = 0; c < CPU_SETSIZE; c++)
    if (CPU_ISSET(c, &allowed) && seen++ == want)
      return c;
  return -1;
}

int gw_thread_start(gw_thread *t, int pin_to_cpu) {
  pthread_attr_t attr;
  if (pthread_attr_init(&attr) != 0)
    return -1;
  int cpu = pin_to_cpu ? nth_allowed_cpu(t->index) : -1;
  if (cpu >= 0) {
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(cpu, &one);
    pthread_attr_setaffinity_np(&attr, sizeof one, &one);
  }
  int rc = pthread_create(&t->tid, &attr, thread_main, t);
  pthread_attr_destroy(&attr);
  if (rc != 0)
    return -1;
  t->running = 1;
  return 0;
}

void gw_thread_stop(gw_thread *t, unsigned grace_ms) {
  if (!t->running)
    return;
  uint64_t one = 1;
  t->grace_ms = grace_ms; /* published to the thread by the eventfd write */
  if (write(t->stop_fd, &one, sizeof one) < 0)
    perror("policyexec-gateway: stop");
}

void gw_thread_join_and_free(gw_thread *t) {
  if (t->running)
    pthread_join(t->tid, NULL);
  /* The dispatcher goes first: it completes pending phases (whose
   * callbacks then only mark their requests), then what is left is freed
   * without answering. */
  t->closing = 1;
  if (t->dispatch_event)
    event_free(t->dispatch_event);
  pe_dispatcher_free(t->dispatcher);
  gw_proxy_abandon_all(t);
  gw_upstream_pool_free(t->upstreams);
  gw_client_close_all(t);
  if (t->listener)
    evconnlistener_free(t->listener);
  if (t->stop_event)
    event_free(t->stop_event);
  if (t->sweep_timer)
    event_free(t->sweep_timer);
  if (t->accept_resume)
    event_free(t->accept_resume);
  if (t->stop_fd >= 0)
    close(t->stop_fd);
  for (size_t i = 0; i < t->spare_count; i++)
    pe_exchange_free(t->spare_exchanges[i]);
  if (t->ctx)
    gw_metrics_spare_bytes(t->ctx->metrics, -(int64_t)t->spare_bytes);
  free(t->spare_exchanges);
  free(t->spare_sizes);
  free(t->fields);
  free(t->path_buf);
  gw_apis_view_release(&t->view);
  if (t->base)
    event_base_free(t->base);
  memset(t, 0, sizeof *t);
}
