#include "pw_conn.h"

#include "pe_fdpass.h"

#include <errno.h>
#include <string.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

/* Up to this, a connection keeps its buffers between requests, so bodies up
 * to the engine's default 16 MiB limit do not fault in fresh pages every
 * time; after a bigger message the memory is given back once empty. */
#define PW_KEEP_BUFFER (17u * 1024u * 1024u)
#define PW_RECV_CHUNK (64u * 1024u)

void pw_conn_init(pw_conn *c, int fd) {
  static uint64_t serials;
  memset(c, 0, sizeof(*c));
  c->fd = fd;
  c->serial = ++serials;
}

void pw_conn_close(pw_conn *c) {
  if (c->fd >= 0) {
    close(c->fd);
  }
  for (size_t i = 0; i < c->n_fds_in; i++) {
    close(c->fds_in[i]);
  }
  for (size_t i = 0; i < c->n_fds_next; i++) {
    close(c->fds_next[i]);
  }
  for (size_t i = c->fds_out_head; i < c->n_fds_out; i++) {
    close(c->fds_out[i].fd);
  }
  free(c->fds_out);
  c->fds_out = NULL;
  c->n_fds_in = c->n_fds_next = c->fds_out_head = c->n_fds_out = c->fds_out_cap = 0;
  c->fd = -1;
  pw_buf_free(&c->in);
  pw_buf_free(&c->out);
  c->in_off = c->out_off = 0;
}

/* recv, keeping the fds that come along (MSG_CMSG_CLOEXEC: never inherited
 * by what a policy spawns). More than the connection keeps: EPROTO. */
static ssize_t recv_fds(pw_conn *c) {
  union {
    char buf[CMSG_SPACE(PW_CONN_FDS * sizeof(int))];
    struct cmsghdr align;
  } u;
  struct iovec iov = {.iov_base = c->in.data + c->in.len, .iov_len = c->in.cap - c->in.len};
  struct msghdr msg = {
      .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof(u.buf)};
  ssize_t n = recvmsg(c->fd, &msg, MSG_CMSG_CLOEXEC);
  if (n < 0) {
    return n;
  }
  int overflow = (msg.msg_flags & MSG_CTRUNC) != 0;
  for (struct cmsghdr *cm = CMSG_FIRSTHDR(&msg); cm != NULL; cm = CMSG_NXTHDR(&msg, cm)) {
    if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS) {
      continue;
    }
    size_t k = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < k; i++) {
      int fd;
      memcpy(&fd, CMSG_DATA(cm) + i * sizeof(int), sizeof(fd));
      if (c->n_fds_in < PW_CONN_FDS) {
        c->fds_in[c->n_fds_in++] = fd;
      } else {
        close(fd);
        overflow = 1;
      }
    }
  }
  if (overflow) {
    errno = EPROTO;
    return -1;
  }
  return n;
}

int pw_conn_take_fd(pw_conn *c) {
  if (c->n_fds_in == 0) {
    return -1;
  }
  int fd = c->fds_in[0];
  memmove(c->fds_in, c->fds_in + 1, --c->n_fds_in * sizeof(c->fds_in[0]));
  return fd;
}

int pw_conn_give_fd(pw_conn *c, int fd) {
  if (c->n_fds_next == PW_CONN_FDS) {
    close(fd);
    return -1;
  }
  c->fds_next[c->n_fds_next++] = fd;
  return 0;
}

int pw_conn_receive(pw_conn *c, size_t max_message) {
  /* Move the unhandled tail to the front so one frame is contiguous. */
  if (c->in_off > 0) {
    memmove(c->in.data, c->in.data + c->in_off, c->in.len - c->in_off);
    c->in.len -= c->in_off;
    c->in_off = 0;
  }
  size_t want = c->in.len + PW_RECV_CHUNK;
  if (c->in.len >= PE__FRAME_HEADER) {
    size_t frame = PE__FRAME_HEADER + (size_t)pe__frame_len_get(c->in.data);
    if (frame - PE__FRAME_HEADER <= max_message && frame > want) {
      want = frame; /* read a big body straight into its final place */
    }
  }
  if (pw_buf_reserve(&c->in, want) != 0) {
    errno = ENOMEM;
    return -1;
  }
  for (;;) {
    ssize_t n = recv_fds(c);
    if (n > 0) {
      c->in.len += (size_t)n;
      return 0;
    }
    if (n == 0) {
      errno = 0;
      return -1;
    }
    if (errno == EINTR) {
      continue;
    }
    return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -1;
  }
}

pw_frame_status pw_conn_next_frame(pw_conn *c, size_t max_message, const uint8_t **msg,
                                   size_t *len) {
  size_t avail = c->in.len - c->in_off;
  if (avail < PE__FRAME_HEADER) {
    return PW_FRAME_PARTIAL;
  }
  size_t n = pe__frame_len_get(c->in.data + c->in_off);
  if (n > max_message) {
    return PW_FRAME_TOO_LARGE;
  }
  if (avail - PE__FRAME_HEADER < n) {
    return PW_FRAME_PARTIAL;
  }
  *msg = c->in.data + c->in_off + PE__FRAME_HEADER;
  *len = n;
  return PW_FRAME_READY;
}

void pw_conn_consume(pw_conn *c, size_t len) {
  c->in_off += PE__FRAME_HEADER + len;
  if (c->in_off == c->in.len) {
    c->in_off = c->in.len = 0;
    if (c->in.cap > PW_KEEP_BUFFER) {
      pw_buf_free(&c->in);
    }
  }
}

uint8_t *pw_conn_reply_space(pw_conn *c, size_t len) {
  if (len > UINT32_MAX || pw_buf_reserve(&c->out, c->out.len + PE__FRAME_HEADER + len) != 0) {
    return NULL;
  }
  if (c->n_fds_out + c->n_fds_next > c->fds_out_cap) {
    size_t cap = c->fds_out_cap ? 2 * c->fds_out_cap : 16;
    while (cap < c->n_fds_out + c->n_fds_next) {
      cap *= 2;
    }
    struct pw_fdmark *m = realloc(c->fds_out, cap * sizeof(*m));
    if (m == NULL) {
      return NULL;
    }
    c->fds_out = m;
    c->fds_out_cap = cap;
  }
  for (size_t i = 0; i < c->n_fds_next; i++) {
    c->fds_out[c->n_fds_out++] = (struct pw_fdmark){.off = c->out.len, .fd = c->fds_next[i]};
  }
  c->n_fds_next = 0;
  uint8_t *header = c->out.data + c->out.len;
  pe__frame_len_put(header, (uint32_t)len);
  c->out.len += PE__FRAME_HEADER + len;
  return header + PE__FRAME_HEADER;
}

/* Sends from out_off with the fds of the frame starting there, up to the
 * next frame that has fds of its own. */
static ssize_t send_fds(pw_conn *c) {
  size_t end = c->out.len, first = c->fds_out_head, nfds = 0;
  while (first + nfds < c->n_fds_out && c->fds_out[first + nfds].off == c->out_off &&
         nfds < PW_CONN_FDS) {
    nfds++;
  }
  if (first + nfds < c->n_fds_out) {
    end = c->fds_out[first + nfds].off;
  }
  int fds[PW_CONN_FDS];
  for (size_t i = 0; i < nfds; i++) {
    fds[i] = c->fds_out[first + i].fd;
  }
  ssize_t n = pe__sendmsg_fds(c->fd, c->out.data + c->out_off, end - c->out_off, fds, nfds);
  if (n > 0) {
    for (size_t i = 0; i < nfds; i++) {
      close(c->fds_out[first + i].fd);
    }
    c->fds_out_head += nfds;
    if (c->fds_out_head == c->n_fds_out) {
      c->fds_out_head = c->n_fds_out = 0;
    }
  }
  return n;
}

int pw_conn_flush(pw_conn *c) {
  while (c->out_off < c->out.len) {
    ssize_t n = send_fds(c);
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      return errno == EAGAIN || errno == EWOULDBLOCK ? 1 : -1;
    }
    c->out_off += (size_t)n;
  }
  c->out_off = c->out.len = 0;
  if (c->out.cap > PW_KEEP_BUFFER) {
    pw_buf_free(&c->out);
  }
  return 0;
}
