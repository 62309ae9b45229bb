#include "pw_server.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "pw_log.h"

typedef struct pw_server {
  pw_conn *conns;
  size_t n;
  size_t cap;
  struct pollfd *pfds;
  size_t pfd_cap;
  int ever_connected;
} pw_server;

static int add_conn(pw_server *s, int fd) {
  if (s->n == s->cap) {
    size_t cap = s->cap ? 2 * s->cap : 4;
    pw_conn *p = realloc(s->conns, cap * sizeof(*p));
    if (p == NULL) {
      return -1;
    }
    s->conns = p;
    s->cap = cap;
  }
  pw_conn_init(&s->conns[s->n++], fd);
  s->ever_connected = 1;
  return 0;
}

static void accept_all(pw_server *s, int lfd) {
  for (;;) {
    int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR && errno != ECONNABORTED) {
        PW_LOG("accept: %s", strerror(errno));
      }
      return;
    }
    if (add_conn(s, fd) != 0) {
      PW_LOG("out of memory; refusing a connection");
      close(fd);
      return;
    }
  }
}

/* Serves every whole frame buffered on @p c while its output is drained.
 * Returns 0, or -1 when the connection must be closed. */
static int serve_frames(pw_conn *c, pw_handler *h, size_t max_message) {
  for (;;) {
    if (c->out.len > c->out_off) {
      int rc = pw_conn_flush(c);
      if (rc != 0) {
        /* 1: the peer is not reading; stop here and wait for POLLOUT. */
        return rc < 0 ? -1 : 0;
      }
    }
    const uint8_t *msg;
    size_t len;
    pw_frame_status st = pw_conn_next_frame(c, max_message, &msg, &len);
    if (st == PW_FRAME_PARTIAL) {
      return 0;
    }
    if (st == PW_FRAME_TOO_LARGE) {
      PW_LOG("a message of %u bytes exceeds the limit of %zu; closing the connection",
             pe__frame_len_get(c->in.data + c->in_off), max_message);
      return -1;
    }
    if (pw_handle_request(h, c, msg, len) != 0) {
      return -1;
    }
    pw_conn_consume(c, len);
  }
}

/* ---- pw_async.c: replies of coroutine batches, in completion order ---- */

typedef struct pw_pump_ctx {
  pw_server *s;
  pw_handler *h;
} pw_pump_ctx;

static int reply_ended(void *ctx, uint64_t conn, uint64_t id, PyObject *result) {
  pw_pump_ctx *p = ctx;
  for (size_t i = 0; i < p->s->n; i++) {
    pw_conn *c = &p->s->conns[i];
    if (c->serial == conn && c->fd >= 0) {
      if (pw_reply_ended(p->h, c, id, result) != 0 || pw_conn_flush(c) < 0) {
        pw_async_conn_closed(&p->h->async, c->serial);
        pw_conn_close(c);
      }
      return 0;
    }
  }
  return 0; /* its connection is gone: the reply has nowhere to go */
}

static int ensure_pollfds(pw_server *s, size_t n) {
  if (n <= s->pfd_cap) {
    return 0;
  }
  struct pollfd *p = realloc(s->pfds, n * sizeof(*p));
  if (p == NULL) {
    return -1;
  }
  s->pfds = p;
  s->pfd_cap = n;
  return 0;
}

int pw_server_run(const pw_server_config *cfg, pw_handler *h, volatile sig_atomic_t *stop) {
  pw_server s;
  memset(&s, 0, sizeof(s));
  int rc = 0;
  for (size_t i = 0; i < cfg->n_conn; i++) {
    if (add_conn(&s, cfg->conn_fds[i]) != 0) {
      rc = -1;
      goto out;
    }
  }
  while (!*stop && !(s.ever_connected && s.n == 0)) {
    size_t nl = cfg->n_listen;
    /* pw_async.c: once a coroutine ran, the loop's fd and next timer too. */
    long long timeout_us = -1;
    int afd = pw_async_poll_setup(&h->async, &timeout_us);
    if (ensure_pollfds(&s, nl + s.n + 1) != 0) {
      rc = -1;
      break;
    }
    for (size_t i = 0; i < nl; i++) {
      s.pfds[i] = (struct pollfd){.fd = cfg->listen_fds[i], .events = POLLIN};
    }
    for (size_t i = 0; i < s.n; i++) {
      pw_conn *c = &s.conns[i];
      /* While a reply waits to be sent, read nothing more from that peer. */
      short ev = c->out.len > c->out_off ? POLLOUT : POLLIN;
      s.pfds[nl + i] = (struct pollfd){.fd = c->fd, .events = ev};
    }
    size_t npfd = nl + s.n, afd_index = npfd;
    if (afd >= 0) {
      s.pfds[npfd++] = (struct pollfd){.fd = afd, .events = POLLIN};
    }
    struct timespec ts = {(time_t)(timeout_us / 1000000), (long)(timeout_us % 1000000) * 1000};
    if (ppoll(s.pfds, npfd, timeout_us < 0 ? NULL : &ts, NULL) < 0) {
      if (errno == EINTR) {
        continue;
      }
      PW_LOG("poll: %s", strerror(errno));
      rc = -1;
      break;
    }
    size_t n_before = s.n;
    for (size_t i = 0; i < n_before; i++) {
      pw_conn *c = &s.conns[i];
      short re = s.pfds[nl + i].revents;
      if (re == 0) {
        continue;
      }
      int ended = 0;
      if ((re & (POLLIN | POLLHUP | POLLERR)) && pw_conn_receive(c, cfg->max_message) != 0) {
        if (errno != 0) {
          PW_LOG("connection error: %s", strerror(errno));
        }
        ended = 1;
      }
      /* Requests that arrived before the peer's end are still answered. */
      if (serve_frames(c, h, cfg->max_message) != 0 || ended) {
        pw_async_conn_closed(&h->async, c->serial);
        pw_conn_close(c);
      }
    }
    pw_pump_ctx pump = {.s = &s, .h = h};
    pw_async_pump(&h->async, afd >= 0 && (s.pfds[afd_index].revents & POLLIN), reply_ended, &pump);
    /* Accept after serving: the loop above indexes pfds by connection. */
    for (size_t i = 0; i < nl; i++) {
      if (s.pfds[i].revents & POLLIN) {
        accept_all(&s, cfg->listen_fds[i]);
      }
    }
    size_t kept = 0;
    for (size_t i = 0; i < s.n; i++) {
      if (s.conns[i].fd >= 0) {
        s.conns[kept++] = s.conns[i];
      }
    }
    s.n = kept;
  }
out:
  for (size_t i = 0; i < s.n; i++) {
    pw_conn_close(&s.conns[i]);
  }
  free(s.conns);
  free(s.pfds);
  return rc;
}
