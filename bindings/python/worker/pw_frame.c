#include "pw_frame.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

int pw_buf_reserve(pw_buf *b, size_t cap) {
  if (cap <= b->cap) {
    return 0;
  }
  size_t n = b->cap ? b->cap : 4096;
  while (n < cap) {
    n = n > SIZE_MAX / 2 ? cap : n * 2;
  }
  uint8_t *p = realloc(b->data, n);
  if (p == NULL) {
    return -1;
  }
  b->data = p;
  b->cap = n;
  return 0;
}

void pw_buf_free(pw_buf *b) {
  free(b->data);
  b->data = NULL;
  b->len = b->cap = 0;
}

int pw_frame_write(int fd, const uint8_t *msg, size_t len) {
  if (len > UINT32_MAX) {
    errno = EMSGSIZE;
    return -1;
  }
  uint8_t header[PE__FRAME_HEADER];
  pe__frame_len_put(header, (uint32_t)len);
  struct iovec iov[2] = {{header, sizeof(header)}, {(void *)msg, len}};
  struct msghdr mh = {.msg_iov = iov, .msg_iovlen = 2};
  size_t left = sizeof(header) + len;
  while (left > 0) {
    ssize_t n = sendmsg(fd, &mh, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      return -1;
    }
    left -= (size_t)n;
    /* Skip what was sent: a large frame may need several calls. */
    while (n > 0 && mh.msg_iovlen > 0) {
      size_t step = (size_t)n < mh.msg_iov->iov_len ? (size_t)n : mh.msg_iov->iov_len;
      mh.msg_iov->iov_base = (uint8_t *)mh.msg_iov->iov_base + step;
      mh.msg_iov->iov_len -= step;
      n -= (ssize_t)step;
      if (mh.msg_iov->iov_len == 0) {
        mh.msg_iov++;
        mh.msg_iovlen--;
      }
    }
  }
  return 0;
}

/* Reads exactly @p len bytes; returns 0, 1 on EOF before any byte, -1. */
static int read_exact(int fd, uint8_t *p, size_t len) {
  size_t got = 0;
  while (got < len) {
    ssize_t n = read(fd, p + got, len - got);
    if (n == 0) {
      if (got == 0) {
        return 1;
      }
      errno = EPROTO;
      return -1;
    }
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      return -1;
    }
    got += (size_t)n;
  }
  return 0;
}

int pw_frame_read(int fd, pw_buf *b, size_t max) {
  uint8_t header[PE__FRAME_HEADER];
  int rc = read_exact(fd, header, sizeof(header));
  if (rc != 0) {
    return rc;
  }
  size_t len = pe__frame_len_get(header);
  if (len > max) {
    return -2;
  }
  if (pw_buf_reserve(b, len ? len : 1) != 0) {
    errno = ENOMEM;
    return -1;
  }
  rc = read_exact(fd, b->data, len);
  if (rc == 1) {
    errno = EPROTO;
    return -1;
  }
  b->len = len;
  return rc;
}
