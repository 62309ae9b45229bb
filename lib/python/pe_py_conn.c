/* One connection to a worker: 4-byte big-endian length + protobuf framing,
 * with buffers kept across messages. The socket is always non-blocking so
 * that a stuck worker can never hold a caller past its deadline, even while
 * a large body is being written. */
#include "pe_py.h"

#include "pe_fdpass.h"
#include "pe_frame.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>

#define READ_CHUNK (64u * 1024u)

void pe__py_conn_init(pe__py_conn *c, const pe_mem *mem, size_t max_message) {
  memset(c, 0, sizeof *c);
  c->fd = -1;
  c->mem = mem;
  c->max_message = max_message;
  pe__py_arena_init(&c->arena, mem);
}

int pe__py_conn_connect(pe__py_conn *c, const char *path) {
  struct sockaddr_un addr = {.sun_family = AF_UNIX};
  size_t len = strlen(path);
  if (len >= sizeof addr.sun_path) {
    errno = ENAMETOOLONG;
    return PE_ERR_WORKER;
  }
  memcpy(addr.sun_path, path, len + 1);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return PE_ERR_WORKER;
  /* Connected while blocking (a Unix connect completes at once unless the
   * backlog is full), non-blocking afterwards. */
  if (connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0 ||
      fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) != 0) {
    int saved = errno;
    close(fd);
    errno = saved;
    return PE_ERR_WORKER;
  }
  pe__py_conn_close(c);
  c->fd = fd;
  return PE_OK;
}

void pe__py_conn_close(pe__py_conn *c) {
  if (c->fd >= 0)
    close(c->fd);
  c->fd = -1;
  c->out.len = c->out_off = 0;
  c->in.len = c->in_off = 0;
  c->frame_len = 0;
  c->eof = false;
  c->watching_out = false;
  pe__py_shm_drop(c);
  pe__py_arena_reset(&c->arena);
}

void pe__py_conn_free(pe__py_conn *c) {
  pe__py_conn_close(c);
  pe__buf_free(&c->out, c->mem);
  pe__buf_free(&c->in, c->mem);
  pe__py_arena_free(&c->arena);
  pe__py_shm_free(c);
  pe__free(c->mem, c->hdrs);
  pe__free(c->mem, c->hdr_ptrs);
  pe__free(c->mem, c->meta);
  pe__free(c->mem, c->meta_ptrs);
  pe__free(c->mem, c->ids);
  pe__free(c->mem, c->fail_open);
  pe__free(c->mem, c->timeouts);
  pe__free(c->mem, c->step_phases);
  c->hdrs = NULL;
  c->hdr_ptrs = NULL;
  c->meta = NULL;
  c->meta_ptrs = NULL;
  c->ids = NULL;
  c->fail_open = NULL;
  c->timeouts = NULL;
  c->step_phases = NULL;
  c->hdr_cap = c->meta_cap = c->step_cap = 0;
}

int pe__py_conn_queue(pe__py_conn *c, pe__py_request *req) {
  req->id = ++c->next_id;
  size_t size = policyexec__v1__request__get_packed_size(req);
  if (size > c->max_message || size > UINT32_MAX) {
    pe__py_shm_mark(c, SIZE_MAX);
    snprintf(c->why, sizeof c->why, "request of %zu bytes exceeds the message limit", size);
    return PE_ERR_BODY_TOO_LARGE;
  }
  /* Written bytes are dropped here rather than after each write, so that a
   * partly written queue is moved at most once per new message. Fd marks
   * are offsets into out: all were sent when all of out was. */
  if (c->out_off == c->out.len)
    c->out.len = c->out_off = 0;
  int rc = pe__buf_reserve(&c->out, c->mem, PE__FRAME_HEADER + size);
  if (rc == PE_OK)
    rc = pe__py_shm_mark(c, c->out.len);
  else
    pe__py_shm_mark(c, SIZE_MAX);
  if (rc != PE_OK)
    return rc;
  unsigned char *p = (unsigned char *)c->out.data + c->out.len;
  pe__frame_len_put(p, (uint32_t)size);
  policyexec__v1__request__pack(req, p + PE__FRAME_HEADER);
  c->out.len += PE__FRAME_HEADER + size;
  return PE_OK;
}

/* Sends out[out_off, end) with the fds marked at out_off (each frame's fds
 * go with its first byte, and a send stops before the next marked frame so
 * that the worker can tell them apart). */
static ssize_t send_some(pe__py_conn *c) {
  size_t end = c->out.len;
  size_t first = c->fds_out_head, nfds = 0;
  while (first + nfds < c->n_fds_out && c->fds_out[first + nfds].off == c->out_off)
    nfds++;
  if (first + nfds < c->n_fds_out)
    end = c->fds_out[first + nfds].off;
  if (nfds > 2)
    nfds = 2; /* a request carries at most two bodies */
  int fds[2];
  for (size_t i = 0; i < nfds; i++)
    fds[i] = c->fds_out[first + i].fd;
  ssize_t n = pe__sendmsg_fds(c->fd, c->out.data + c->out_off, end - c->out_off, fds, nfds);
  if (n > 0) {
    /* In flight now: the kernel holds them until the worker takes them. */
    for (size_t i = 0; i < nfds; i++)
      close(c->fds_out[first + i].fd);
    c->fds_out_head += nfds;
    if (c->fds_out_head == c->n_fds_out)
      c->fds_out_head = c->n_fds_out = 0;
  }
  return n;
}

int pe__py_conn_flush(pe__py_conn *c) {
  while (c->out_off < c->out.len) {
    /* MSG_NOSIGNAL: a dead worker must give EPIPE, not kill the host. */
    ssize_t n = send_some(c);
    if (n > 0) {
      c->out_off += (size_t)n;
      continue;
    }
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
      return PE_PENDING;
    snprintf(c->why, sizeof c->why, "write to worker failed: %s",
             n < 0 ? strerror(errno) : "no progress");
    return PE_ERR_WORKER;
  }
  c->out.len = c->out_off = 0;
  return PE_OK;
}

/* Bytes still needed to complete the frame that starts at in_off. */
static size_t frame_wanted(const pe__py_conn *c) {
  size_t have = c->in.len - c->in_off;
  if (have < PE__FRAME_HEADER)
    return READ_CHUNK;
  const unsigned char *p = (const unsigned char *)c->in.data + c->in_off;
  size_t len = pe__frame_len_get(p);
  size_t total = PE__FRAME_HEADER + len;
  return total > have && len <= c->max_message ? total - have : READ_CHUNK;
}

/* recv with the fds that come along (a worker's replacement bodies):
 * queued in c->fds_in for the frames that refer to them. -2: the worker
 * sent more fds than the engine keeps (c->why). */
static ssize_t recv_some(pe__py_conn *c, size_t room) {
  union {
    char buf[CMSG_SPACE(PE__PY_FDS_IN * sizeof(int))];
    struct cmsghdr align;
  } u;
  struct iovec iov = {.iov_base = c->in.data + c->in.len, .iov_len = room};
  struct msghdr msg = {
      .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof u.buf};
  ssize_t n = recvmsg(c->fd, &msg, MSG_CMSG_CLOEXEC);
  if (n < 0)
    return n;
  bool overflow = (msg.msg_flags & MSG_CTRUNC) != 0;
  for (struct cmsghdr *cm = CMSG_FIRSTHDR(&msg); cm; cm = CMSG_NXTHDR(&msg, cm)) {
    if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
      continue;
    size_t k = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < k; i++) {
      int fd;
      memcpy(&fd, CMSG_DATA(cm) + i * sizeof(int), sizeof fd);
      if (c->n_fds_in < PE__PY_FDS_IN)
        c->fds_in[c->n_fds_in++] = fd;
      else {
        close(fd);
        overflow = true;
      }
    }
  }
  if (overflow) {
    snprintf(c->why, sizeof c->why, "worker sent more fds than its frames refer to");
    return -2;
  }
  return n;
}

int pe__py_conn_fill(pe__py_conn *c) {
  for (;;) {
    if (c->in_off > 0 && c->in_off == c->in.len)
      c->in.len = c->in_off = 0;
    size_t want = frame_wanted(c);
    if (want < READ_CHUNK)
      want = READ_CHUNK;
    int rc = pe__buf_reserve(&c->in, c->mem, want);
    if (rc != PE_OK)
      return rc;
    size_t room = c->in.cap - c->in.len;
    ssize_t n = recv_some(c, room);
    if (n == -2)
      return PE_ERR_WORKER;
    if (n > 0) {
      c->in.len += (size_t)n;
      if ((size_t)n < room)
        return PE_OK; /* drained what the kernel had */
      continue;
    }
    if (n == 0) {
      c->eof = true;
      return PE_OK;
    }
    if (errno == EINTR)
      continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK)
      return PE_OK;
    snprintf(c->why, sizeof c->why, "read from worker failed: %s", strerror(errno));
    return PE_ERR_WORKER;
  }
}

int pe__py_conn_next(pe__py_conn *c, pe__py_response **out) {
  size_t have = c->in.len - c->in_off;
  if (have < PE__FRAME_HEADER)
    return PE_PENDING;
  const unsigned char *p = (const unsigned char *)c->in.data + c->in_off;
  size_t len = pe__frame_len_get(p);
  if (len > c->max_message) {
    snprintf(c->why, sizeof c->why, "reply of %zu bytes exceeds the message limit of %zu", len,
             c->max_message);
    return PE_ERR_WORKER;
  }
  if (have < PE__FRAME_HEADER + len)
    return PE_PENDING;
  pe__py_response *resp = policyexec__v1__response__unpack(&c->arena.pc, len, p + PE__FRAME_HEADER);
  if (!resp) {
    pe__py_arena_reset(&c->arena);
    snprintf(c->why, sizeof c->why, "reply of %zu bytes does not parse", len);
    return PE_ERR_WORKER;
  }
  if (pe__py_shm_resolve(c, resp) != PE_OK) {
    pe__py_shm_unmap(c);
    pe__py_arena_reset(&c->arena);
    return PE_ERR_WORKER;
  }
  c->frame_len = PE__FRAME_HEADER + len;
  *out = resp;
  return PE_OK;
}

void pe__py_conn_consume(pe__py_conn *c) {
  c->in_off += c->frame_len;
  c->frame_len = 0;
  pe__py_shm_unmap(c);
  pe__py_arena_reset(&c->arena);
  if (c->in_off == c->in.len) {
    c->in.len = c->in_off = 0;
  } else if (c->in_off > c->in.cap / 2) {
    /* Keep the unread tail at the front so the buffer does not creep. */
    memmove(c->in.data, c->in.data + c->in_off, c->in.len - c->in_off);
    c->in.len -= c->in_off;
    c->in_off = 0;
  }
}

/* Milliseconds from now to deadline, rounded up, for poll(). */
static int poll_timeout(uint64_t deadline_ns) {
  uint64_t now = pe__now_ns();
  if (now >= deadline_ns)
    return 0;
  uint64_t ms = (deadline_ns - now + 999999u) / 1000000u;
  return ms > INT32_MAX ? INT32_MAX : (int)ms;
}

int pe__py_conn_call(pe__py_conn *c, pe__py_request *req, uint64_t deadline_ns,
                     pe__py_response **out, bool *sent_nothing) {
  *sent_nothing = true;
  int rc = pe__py_conn_queue(c, req);
  if (rc != PE_OK)
    return rc;
  return pe__py_conn_wait(c, req->id, deadline_ns, out, sent_nothing);
}

int pe__py_conn_wait(pe__py_conn *c, uint64_t id, uint64_t deadline_ns, pe__py_response **out,
                     bool *sent_nothing) {
  /* Blocking calls run on a connection with nothing else queued, so "no
   * byte written yet" means the worker cannot have seen this request. */
  bool wrote = false;
  int rc;
  for (;;) {
    if (c->out_off < c->out.len) {
      size_t before = c->out_off;
      rc = pe__py_conn_flush(c);
      wrote = wrote || rc == PE_OK || c->out_off > before;
      *sent_nothing = !wrote;
      if (rc == PE_ERR_WORKER)
        return rc;
    } else {
      wrote = true;
    }
    *sent_nothing = !wrote;
    pe__py_response *resp;
    rc = pe__py_conn_next(c, &resp);
    if (rc == PE_OK) {
      if (resp->id != id) {
        snprintf(c->why, sizeof c->why, "reply id %llu, expected %llu",
                 (unsigned long long)resp->id, (unsigned long long)id);
        pe__py_conn_consume(c);
        return PE_ERR_WORKER;
      }
      *out = resp;
      return PE_OK;
    }
    if (rc != PE_PENDING)
      return rc;
    if (c->eof) {
      snprintf(c->why, sizeof c->why, "worker closed the connection");
      return PE_ERR_WORKER;
    }
    struct pollfd pfd = {.fd = c->fd, .events = POLLIN};
    if (c->out_off < c->out.len)
      pfd.events |= POLLOUT;
    int n = poll(&pfd, 1, poll_timeout(deadline_ns));
    if (n < 0 && errno != EINTR) {
      snprintf(c->why, sizeof c->why, "poll failed: %s", strerror(errno));
      return PE_ERR_WORKER;
    }
    if (n == 0) {
      snprintf(c->why, sizeof c->why, "no reply in time");
      return PE_ERR_TIMEOUT;
    }
    if (n > 0 && (pfd.revents & (POLLIN | POLLHUP | POLLERR))) {
      rc = pe__py_conn_fill(c);
      if (rc != PE_OK)
        return rc;
    }
  }
}

int pe__py_conn_hello(pe__py_conn *c, uint64_t deadline_ns, pe__py_response **out) {
  Policyexec__V1__Hello hello = POLICYEXEC__V1__HELLO__INIT;
  hello.protocol_version = POLICYEXEC__V1__PROTOCOL_VERSION__PROTOCOL_VERSION_CURRENT;
  hello.shm_threshold = c->shm_threshold;
  pe__py_request req = POLICYEXEC__V1__REQUEST__INIT;
  req.body_case = POLICYEXEC__V1__REQUEST__BODY_HELLO;
  req.hello = &hello;
  bool unsent;
  pe__py_response *resp;
  int rc = pe__py_conn_call(c, &req, deadline_ns, &resp, &unsent);
  if (rc != PE_OK)
    return rc;
  if (resp->body_case != POLICYEXEC__V1__RESPONSE__BODY_HELLO) {
    snprintf(c->why, sizeof c->why, "handshake answered with %s",
             resp->body_case == POLICYEXEC__V1__RESPONSE__BODY_ERROR ? resp->error->message
                                                                     : "an unexpected message");
    pe__py_conn_consume(c);
    return PE_ERR_WORKER;
  }
  if (resp->hello->protocol_version != POLICYEXEC__V1__PROTOCOL_VERSION__PROTOCOL_VERSION_CURRENT) {
    snprintf(c->why, sizeof c->why, "worker speaks protocol %u, the engine %d",
             resp->hello->protocol_version,
             POLICYEXEC__V1__PROTOCOL_VERSION__PROTOCOL_VERSION_CURRENT);
    pe__py_conn_consume(c);
    return PE_ERR_WORKER;
  }
  if (out)
    *out = resp;
  else
    pe__py_conn_consume(c);
  return PE_OK;
}
