/*
 * One send() of bytes with file descriptors attached (SCM_RIGHTS), for the
 * shared-memory bodies of the local executor protocol. Header-only, because
 * both ends need it: the library (lib/python/pe_py_conn.c), the worker
 * (bindings/python/worker/pw_conn.c) and the test stand-in worker.
 */
#ifndef PE_FDPASS_H
#define PE_FDPASS_H

#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>

/* At most this many fds travel with one send. */
#define PE__FDPASS_MAX 64

/* Sends up to len bytes of p on sock with fds[0..nfds) attached (nfds may
 * be 0: a plain send; at most PE__FDPASS_MAX). Returns what sendmsg
 * returns: the bytes sent (the fds went with them when > 0), or -1. */
static inline ssize_t pe__sendmsg_fds(int sock, const void *p, size_t len, const int *fds,
                                      size_t nfds) {
  struct iovec iov = {.iov_base = (void *)p, .iov_len = len};
  if (nfds == 0)
    return send(sock, p, len, MSG_NOSIGNAL);
  if (nfds > PE__FDPASS_MAX)
    nfds = PE__FDPASS_MAX;
  union {
    char buf[CMSG_SPACE(PE__FDPASS_MAX * sizeof(int))];
    struct cmsghdr align;
  } u;
  memset(&u, 0, sizeof u);
  struct msghdr msg = {.msg_iov = &iov,
                       .msg_iovlen = 1,
                       .msg_control = u.buf,
                       .msg_controllen = CMSG_SPACE(nfds * sizeof(int))};
  struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
  cm->cmsg_level = SOL_SOCKET;
  cm->cmsg_type = SCM_RIGHTS;
  cm->cmsg_len = CMSG_LEN(nfds * sizeof(int));
  memcpy(CMSG_DATA(cm), fds, nfds * sizeof(int));
  return sendmsg(sock, &msg, MSG_NOSIGNAL);
}

#endif /* PE_FDPASS_H */
