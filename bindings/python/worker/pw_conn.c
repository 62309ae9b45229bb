#include "pw_conn.h"

#include <errno.h>
#include <string.h>
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
  c->fd = -1;
  pw_buf_free(&c->in);
  pw_buf_free(&c->out);
  c->in_off = c->out_off = 0;
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
    ssize_t n = recv(c->fd, c->in.data + c->in.len, c->in.cap - c->in.len, 0);
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
  uint8_t *header = c->out.data + c->out.len;
  pe__frame_len_put(header, (uint32_t)len);
  c->out.len += PE__FRAME_HEADER + len;
  return header + PE__FRAME_HEADER;
}

int pw_conn_flush(pw_conn *c) {
  while (c->out_off < c->out.len) {
    ssize_t n = send(c->fd, c->out.data + c->out_off, c->out.len - c->out_off, MSG_NOSIGNAL);
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
