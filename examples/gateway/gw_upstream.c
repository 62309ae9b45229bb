/*
 * Upstream connections and their pools (see gw_upstream.h).
 *
 * Like client connections, an upstream connection keeps its read event
 * registered for life (an idle one notices the upstream closing it) and
 * writes directly, arming the write event only when the socket is full.
 *
 * A reused connection can have been closed by the upstream just as the
 * request went out (the keep-alive race): when it breaks before a single
 * response byte, the request is sent once more on a fresh connection.
 */
#include "gw_upstream.h"

#include "pe_clock.h"

#include <errno.h>
#include <sys/queue.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* The first bytes of an open request stay in its buffer after they are
 * written, so that the keep-alive race can still be retried; later ones
 * are released as they go out. */
#define RETRY_WINDOW 65536

/* Idle connections kept per upstream; more are closed as they finish. */
#define MAX_IDLE_PER_HOST 256

typedef struct upstream_host {
  char *name;
  uint16_t port;
  struct sockaddr_storage addr;
  socklen_t addr_len;
  gw_upstream_conn *idle;
  size_t idle_count;
  struct upstream_host *next;
} upstream_host;

typedef enum conn_state {
  CONN_IDLE,
  CONN_CONNECTING,
  CONN_SENDING, /* request partly written */
  CONN_READING, /* request written, response expected */
} conn_state;

struct gw_upstream_conn {
  gw_upstream_pool *pool;
  upstream_host *host;
  TAILQ_ENTRY(gw_upstream_conn) link; /* in pool->conns: every connection of the pool */
  gw_upstream_conn *next_idle;
  int fd;
  conn_state state;
  struct event *read_event;
  struct event *write_event;
  gw_buf request;
  size_t written;
  gw_buf in;
  size_t scanned;
  int head_request;
  int have_head;
  int reused;    /* served a request before this one */
  int got_bytes; /* response bytes arrived for this request */
  int reusable;  /* keep-alive after this response */
  int paused;
  int open_request; /* a streamed request body: more bytes to come */
  int released;     /* request bytes were written and dropped: no retry */
  int drain_wait;   /* an open request waited for the socket: on_drain when empty */
  gw_framing framing;
  uint64_t remaining;
  gw_chunked chunked;
  uint64_t deadline_ns;
  const gw_upstream_callbacks *cb;
  void *user;
};

struct gw_upstream_pool {
  struct event_base *base;
  uint64_t timeout_ns;
  upstream_host *hosts;
  TAILQ_HEAD(gw_upstream_conn_list, gw_upstream_conn) conns;
  gw_field *fields;
  size_t field_cap;
};

/* Deadlines of whole seconds: the coarse clock is enough, and cheaper. */
static uint64_t now_ns(void) {
  return pe__clock_ns(CLOCK_MONOTONIC_COARSE);
}

int gw_upstream_pool_new(gw_upstream_pool **out, struct event_base *base, uint32_t timeout_ms,
                         size_t max_head_fields) {
  gw_upstream_pool *pool = calloc(1, sizeof *pool);
  if (!pool || !(pool->fields = calloc(max_head_fields, sizeof *pool->fields))) {
    free(pool);
    return -1;
  }
  TAILQ_INIT(&pool->conns);
  pool->base = base;
  pool->timeout_ns = (uint64_t)timeout_ms * 1000000u;
  pool->field_cap = max_head_fields;
  *out = pool;
  return 0;
}

static void unlink_idle(gw_upstream_conn *conn) {
  upstream_host *h = conn->host;
  for (gw_upstream_conn **p = &h->idle; *p; p = &(*p)->next_idle) {
    if (*p == conn) {
      *p = conn->next_idle;
      h->idle_count--;
      return;
    }
  }
}

static void conn_free(gw_upstream_conn *conn) {
  gw_upstream_pool *pool = conn->pool;
  if (conn->state == CONN_IDLE)
    unlink_idle(conn);
  TAILQ_REMOVE(&pool->conns, conn, link);
  if (conn->read_event)
    event_free(conn->read_event);
  if (conn->write_event)
    event_free(conn->write_event);
  if (conn->fd >= 0)
    close(conn->fd);
  gw_buf_free(&conn->request);
  gw_buf_free(&conn->in);
  free(conn);
}

void gw_upstream_pool_free(gw_upstream_pool *pool) {
  if (!pool)
    return;
  while (!TAILQ_EMPTY(&pool->conns))
    conn_free(TAILQ_FIRST(&pool->conns));
  while (pool->hosts) {
    upstream_host *next = pool->hosts->next;
    free(pool->hosts->name);
    free(pool->hosts);
    pool->hosts = next;
  }
  free(pool->fields);
  free(pool);
}

/* Resolved once per thread and host (a blocking look-up, so upstreams are
 * best given as addresses). */
static upstream_host *find_host(gw_upstream_pool *pool, const char *name, uint16_t port) {
  for (upstream_host *h = pool->hosts; h; h = h->next)
    if (h->port == port && strcmp(h->name, name) == 0)
      return h;
  struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
  struct addrinfo *res = NULL;
  char service[8];
  snprintf(service, sizeof service, "%u", (unsigned)port);
  if (getaddrinfo(name, service, &hints, &res) != 0 || !res)
    return NULL;
  upstream_host *h = calloc(1, sizeof *h);
  if (h && (h->name = strdup(name)) != NULL && res->ai_addrlen <= sizeof h->addr) {
    memcpy(&h->addr, res->ai_addr, res->ai_addrlen);
    h->addr_len = res->ai_addrlen;
    h->port = port;
    h->next = pool->hosts;
    pool->hosts = h;
  } else if (h) {
    free(h->name);
    free(h);
    h = NULL;
  }
  freeaddrinfo(res);
  return h;
}

static void on_readable(evutil_socket_t fd, short what, void *arg);
static void on_writable(evutil_socket_t fd, short what, void *arg);

/* A new socket for @p conn, connecting. Returns 0 or -1. */
static int open_socket(gw_upstream_conn *conn) {
  upstream_host *h = conn->host;
  int fd = socket(h->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return -1;
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (connect(fd, (struct sockaddr *)&h->addr, h->addr_len) < 0 && errno != EINPROGRESS) {
    close(fd);
    return -1;
  }
  conn->read_event = event_new(conn->pool->base, fd, EV_READ | EV_PERSIST, on_readable, conn);
  conn->write_event = event_new(conn->pool->base, fd, EV_WRITE | EV_PERSIST, on_writable, conn);
  if (!conn->read_event || !conn->write_event) {
    close(fd);
    return -1;
  }
  conn->fd = fd;
  conn->state = CONN_CONNECTING;
  event_add(conn->write_event, NULL); /* writable = connected (or failed) */
  return 0;
}

static void close_socket(gw_upstream_conn *conn) {
  if (conn->read_event)
    event_free(conn->read_event);
  if (conn->write_event)
    event_free(conn->write_event);
  conn->read_event = conn->write_event = NULL;
  if (conn->fd >= 0)
    close(conn->fd);
  conn->fd = -1;
}

gw_upstream_conn *gw_upstream_acquire(gw_upstream_pool *pool, const char *name, uint16_t port) {
  upstream_host *h = find_host(pool, name, port);
  if (!h)
    return NULL;
  gw_upstream_conn *conn = h->idle;
  if (conn) {
    h->idle = conn->next_idle;
    h->idle_count--;
    conn->reused = 1;
    conn->state = CONN_SENDING; /* not idle: no longer in the idle list */
  } else {
    conn = calloc(1, sizeof *conn);
    if (!conn)
      return NULL;
    conn->pool = pool;
    conn->host = h;
    conn->fd = -1;
    conn->state = CONN_SENDING;
    TAILQ_INSERT_HEAD(&pool->conns, conn, link);
    if (open_socket(conn) < 0) {
      conn_free(conn);
      return NULL;
    }
  }
  conn->request.off = conn->request.len = 0;
  return conn;
}

gw_buf *gw_upstream_request(gw_upstream_conn *conn) {
  return &conn->request;
}

/* Ends the request: returns the connection to its pool (or closes it),
 * then tells the user. */
static void finish(gw_upstream_conn *conn, gw_upstream_result result) {
  const gw_upstream_callbacks *cb = conn->cb;
  void *user = conn->user;
  upstream_host *h = conn->host;
  conn->cb = NULL;
  conn->user = NULL;
  if (conn->open_request || conn->state == CONN_SENDING)
    conn->reusable = 0; /* answered before the whole request went out */
  if (result == GW_UPSTREAM_OK && conn->reusable && h->idle_count < MAX_IDLE_PER_HOST &&
      conn->in.len == 0) {
    conn->state = CONN_IDLE;
    conn->next_idle = h->idle;
    h->idle = conn;
    h->idle_count++;
    if (conn->paused) {
      event_add(conn->read_event, NULL);
      conn->paused = 0;
    }
    if (conn->in.cap > 65536)
      gw_buf_reset(&conn->in, 0);
    if (conn->request.cap > 65536)
      gw_buf_reset(&conn->request, 0);
  } else {
    conn_free(conn);
  }
  if (cb)
    cb->on_done(user, result);
}

/* Sends the rest of the request. Returns 1 if an open request's bytes
 * are all out after it had to wait (time for on_drain), else 0. */
static int write_request(gw_upstream_conn *conn) {
  size_t before = conn->written;
  while (conn->written < conn->request.len) {
    ssize_t n = send(conn->fd, gw_buf_ptr(&conn->request) + conn->written,
                     conn->request.len - conn->written, MSG_NOSIGNAL);
    if (n > 0) {
      conn->written += (size_t)n;
      continue;
    }
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      event_add(conn->write_event, NULL);
      conn->drain_wait = conn->open_request;
      if (conn->written > before) /* an upload in progress is progress */
        conn->deadline_ns = now_ns() + conn->pool->timeout_ns;
      return 0;
    }
    break; /* broken: on_readable sees the error or EOF and decides */
  }
  event_del(conn->write_event);
  if (!conn->open_request) {
    conn->state = CONN_READING;
    return 0;
  }
  /* An open request: release what went out (past the retry window), wait
   * for more. */
  if (conn->written > RETRY_WINDOW) {
    gw_buf_consume(&conn->request, conn->written);
    conn->written = 0;
    conn->released = 1;
    conn->deadline_ns = now_ns() + conn->pool->timeout_ns;
  }
  int drained = conn->drain_wait;
  conn->drain_wait = 0;
  return drained;
}

/* The connection broke. A reused one that got no response byte is the
 * keep-alive race: try again, once, on a new socket. */
static void broke(gw_upstream_conn *conn, gw_upstream_result result) {
  if (conn->reused && !conn->got_bytes && conn->cb && !conn->released) {
    conn->reused = 0;
    close_socket(conn);
    conn->written = 0;
    conn->in.off = conn->in.len = 0;
    if (open_socket(conn) == 0)
      return;
    result = GW_UPSTREAM_UNREACHABLE;
  }
  conn->reusable = 0;
  finish(conn, result);
}

static void send_request(gw_upstream_conn *conn, int head_request, const gw_upstream_callbacks *cb,
                         void *user, int open) {
  conn->open_request = open;
  conn->released = conn->drain_wait = 0;
  conn->cb = cb;
  conn->user = user;
  conn->head_request = head_request;
  conn->have_head = conn->got_bytes = conn->paused = 0;
  conn->scanned = 0;
  conn->written = 0;
  conn->deadline_ns = now_ns() + conn->pool->timeout_ns;
  if (conn->state == CONN_CONNECTING)
    return; /* on_writable sends once connected */
  conn->state = CONN_SENDING;
  write_request(conn);
}

void gw_upstream_send(gw_upstream_conn *conn, int head_request, const gw_upstream_callbacks *cb,
                      void *user) {
  send_request(conn, head_request, cb, user, 0);
}

void gw_upstream_send_open(gw_upstream_conn *conn, int head_request,
                           const gw_upstream_callbacks *cb, void *user) {
  send_request(conn, head_request, cb, user, 1);
}

int gw_upstream_writev(gw_upstream_conn *conn, const struct iovec *iov, int count) {
  size_t skip = 0; /* bytes of iov the socket took at once */
  if (conn->state == CONN_SENDING && !conn->drain_wait && conn->released &&
      gw_upstream_unsent(conn) == 0) {
    /* Nothing queued, past the retry window: straight from the caller's
     * memory, no copy. */
    struct msghdr msg = {.msg_iov = (struct iovec *)iov, .msg_iovlen = (size_t)count};
    ssize_t n;
    do
      n = sendmsg(conn->fd, &msg, MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    if (n > 0) {
      skip = (size_t)n;
      conn->deadline_ns = now_ns() + conn->pool->timeout_ns;
    }
  }
  for (int i = 0; i < count; i++) {
    size_t len = iov[i].iov_len;
    if (skip >= len) {
      skip -= len;
      continue;
    }
    if (gw_buf_append(&conn->request, (const char *)iov[i].iov_base + skip, len - skip) < 0)
      return -1;
    skip = 0;
  }
  if (conn->state == CONN_SENDING && !conn->drain_wait && gw_upstream_unsent(conn) > 0)
    write_request(conn); /* arms the write event if the socket is full */
  return 0;
}

int gw_upstream_write(gw_upstream_conn *conn, const char *data, size_t len) {
  struct iovec iov = {.iov_base = (void *)data, .iov_len = len};
  return gw_upstream_writev(conn, &iov, 1);
}

void gw_upstream_end_request(gw_upstream_conn *conn) {
  conn->open_request = 0;
  if (conn->state == CONN_SENDING && !conn->drain_wait)
    write_request(conn); /* sets CONN_READING once all is out */
}

size_t gw_upstream_unsent(const gw_upstream_conn *conn) {
  return conn->request.len - conn->written;
}

static int deliver_body(void *arg, const char *data, size_t len) {
  gw_upstream_conn *conn = arg;
  return conn->cb->on_body(conn->user, data, len) < 0 ? 1 : 0;
}

/* Parses what arrived. Returns 1 if the connection is gone (finished or
 * dropped), 0 to wait for more. */
static int process(gw_upstream_conn *conn) {
  while (!conn->have_head) {
    gw_head head = {.fields = conn->pool->fields, .field_cap = conn->pool->field_cap};
    size_t end = gw_http_head_end(gw_buf_ptr(&conn->in), conn->in.len, &conn->scanned);
    if (end == 0)
      return conn->in.len > 1024 * 1024 ? (broke(conn, GW_UPSTREAM_BROKEN), 1) : 0;
    ssize_t rc = gw_http_parse_response(gw_buf_ptr(&conn->in), end, &head);
    uint64_t length = 0;
    if (rc <= 0 || gw_http_framing(&head, 0, &conn->framing, &length) < 0 || head.status == 101) {
      conn->reusable = 0;
      finish(conn, GW_UPSTREAM_BROKEN);
      return 1;
    }
    conn->scanned = 0;
    if (head.status < 200) { /* interim: skip it */
      gw_buf_consume(&conn->in, end);
      continue;
    }
    if (conn->head_request || head.status == 204 || head.status == 304)
      conn->framing = GW_BODY_NONE;
    conn->remaining = length;
    memset(&conn->chunked, 0, sizeof conn->chunked);
    conn->reusable = gw_http_keep_alive(&head) && conn->framing != GW_BODY_CLOSE;
    conn->have_head = 1;
    int keep = conn->cb->on_head(conn->user, &head);
    gw_buf_consume(&conn->in, end);
    if (keep < 0) {
      conn_free(conn);
      return 1;
    }
  }
  if (conn->paused)
    return 0;
  switch (conn->framing) {
  case GW_BODY_NONE:
    finish(conn, GW_UPSTREAM_OK);
    return 1;
  case GW_BODY_LENGTH: {
    size_t n = conn->in.len < conn->remaining ? conn->in.len : (size_t)conn->remaining;
    if (n > 0 && conn->cb->on_body(conn->user, gw_buf_ptr(&conn->in), n) < 0) {
      conn_free(conn);
      return 1;
    }
    gw_buf_consume(&conn->in, n);
    conn->remaining -= n;
    if (conn->remaining == 0) {
      finish(conn, GW_UPSTREAM_OK);
      return 1;
    }
    return 0;
  }
  case GW_BODY_CHUNKED: {
    int done = 0;
    ssize_t used = gw_chunked_decode(&conn->chunked, gw_buf_ptr(&conn->in), conn->in.len,
                                     deliver_body, conn, &done);
    if (used == -2) {
      conn_free(conn);
      return 1;
    }
    if (used < 0) {
      conn->reusable = 0;
      finish(conn, GW_UPSTREAM_BROKEN);
      return 1;
    }
    gw_buf_consume(&conn->in, (size_t)used);
    if (done) {
      finish(conn, GW_UPSTREAM_OK);
      return 1;
    }
    return 0;
  }
  case GW_BODY_CLOSE:
    if (conn->in.len > 0 &&
        conn->cb->on_body(conn->user, gw_buf_ptr(&conn->in), conn->in.len) < 0) {
      conn_free(conn);
      return 1;
    }
    gw_buf_consume(&conn->in, conn->in.len);
    return 0;
  }
  return 0;
}

static void on_readable(evutil_socket_t fd, short what, void *arg) {
  gw_upstream_conn *conn = arg;
  (void)what;
  /* A body is read in larger pieces than a head: fewer calls per byte. */
  if (gw_buf_reserve(&conn->in, conn->have_head ? 65536 : 16384) < 0) {
    broke(conn, GW_UPSTREAM_BROKEN);
    return;
  }
  ssize_t n = recv(fd, conn->in.data + conn->in.off + conn->in.len,
                   conn->in.cap - conn->in.off - conn->in.len, 0);
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
    return;
  if (conn->state == CONN_IDLE) { /* closed by the upstream, or babbling */
    conn_free(conn);
    return;
  }
  if (n <= 0) {
    if (n == 0 && conn->have_head && conn->framing == GW_BODY_CLOSE) {
      conn->reusable = 0;
      finish(conn, GW_UPSTREAM_OK); /* a close-delimited body ends here */
    } else {
      broke(conn, conn->got_bytes ? GW_UPSTREAM_BROKEN : GW_UPSTREAM_UNREACHABLE);
    }
    return;
  }
  conn->in.len += (size_t)n;
  conn->got_bytes = 1;
  conn->deadline_ns = now_ns() + conn->pool->timeout_ns;
  process(conn);
}

static void on_writable(evutil_socket_t fd, short what, void *arg) {
  gw_upstream_conn *conn = arg;
  (void)what;
  if (conn->state == CONN_CONNECTING) {
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0 || err != 0) {
      conn->reusable = 0;
      conn->reused = 0; /* a fresh connection failed: no retry */
      finish(conn, GW_UPSTREAM_UNREACHABLE);
      return;
    }
    event_add(conn->read_event, NULL);
    conn->state = CONN_SENDING;
    if (!conn->cb) { /* connected before a request was given */
      event_del(conn->write_event);
      return;
    }
  }
  conn->drain_wait = conn->drain_wait || conn->open_request;
  if (write_request(conn) && conn->cb && conn->cb->on_drain)
    conn->cb->on_drain(conn->user);
}

void gw_upstream_pause(gw_upstream_conn *conn) {
  if (!conn->paused && conn->read_event) {
    event_del(conn->read_event);
    conn->paused = 1;
  }
}

void gw_upstream_resume(gw_upstream_conn *conn) {
  if (!conn->paused)
    return;
  conn->paused = 0;
  event_add(conn->read_event, NULL);
  conn->deadline_ns = now_ns() + conn->pool->timeout_ns;
  process(conn); /* bytes read before the pause */
}

void gw_upstream_cancel(gw_upstream_conn *conn) {
  conn_free(conn);
}

void gw_upstream_sweep(gw_upstream_pool *pool, uint64_t now) {
  gw_upstream_conn *conn = TAILQ_FIRST(&pool->conns);
  while (conn) {
    gw_upstream_conn *next = TAILQ_NEXT(conn, link);
    /* An open request with nothing to write waits for its client (whose
     * own body timeout applies), not for the upstream. */
    int waiting_on_client = conn->open_request && gw_upstream_unsent(conn) == 0;
    if (conn->state != CONN_IDLE && conn->cb && !conn->paused && !waiting_on_client &&
        now > conn->deadline_ns) {
      conn->reusable = 0;
      conn->reused = 0; /* a timeout is not the keep-alive race */
      finish(conn, GW_UPSTREAM_TIMEOUT);
      /* finish() may have freed other connections of this pool through
       * the user's callback (cancel): restart from the head. */
      next = TAILQ_FIRST(&pool->conns);
    }
    conn = next;
  }
}
