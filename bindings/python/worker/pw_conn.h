/* One engine connection of the worker: non-blocking receive of frames and
 * send of replies, with buffers reused from request to request. */
#ifndef PW_CONN_H
#define PW_CONN_H

#include <stddef.h>
#include <stdint.h>

#include "pw_frame.h"

/* Fds a connection holds in each direction at most. */
#define PW_CONN_FDS 16

typedef struct pw_conn {
  int fd;
  uint64_t serial; /* unique per process, never 0: names it to pw_async.c */
  pw_buf in;       /* received bytes; in.data[in_off..in.len) not yet handled */
  size_t in_off;
  pw_buf out; /* replies; out.data[out_off..out.len) not yet sent */
  size_t out_off;
  /* Shared-memory bodies (pw_shm.c): from the engine's Hello, the size from
   * which bodies go in memfds (0: never); fds received and not yet claimed
   * by a request, oldest first; memfds for the next reply frame; memfds of
   * queued replies, each sent with the first byte of its frame. */
  uint64_t shm_threshold;
  int fds_in[PW_CONN_FDS];
  size_t n_fds_in;
  int fds_next[PW_CONN_FDS];
  size_t n_fds_next;
  struct pw_fdmark {
    size_t off;
    int fd;
  } * fds_out;
  size_t fds_out_head, n_fds_out, fds_out_cap;
} pw_conn;

typedef enum pw_frame_status {
  PW_FRAME_READY = 1,   /* a whole frame is buffered */
  PW_FRAME_PARTIAL = 0, /* more bytes are needed */
  PW_FRAME_TOO_LARGE = -1
} pw_frame_status;

void pw_conn_init(pw_conn *c, int fd);
/* Closes the socket and frees the buffers. */
void pw_conn_close(pw_conn *c);

/* Receives what the socket has. Returns 0 (got bytes, or nothing yet), or -1
 * when the peer closed the connection or it failed (errno 0 on a clean end). */
int pw_conn_receive(pw_conn *c, size_t max_message);

/* The next whole frame's message, if buffered. */
pw_frame_status pw_conn_next_frame(pw_conn *c, size_t max_message, const uint8_t **msg,
                                   size_t *len);
/* Marks the frame of @p len bytes returned by pw_conn_next_frame() handled. */
void pw_conn_consume(pw_conn *c, size_t len);

/* Reserves room for one reply frame of @p len bytes at the end of out and
 * returns where its message goes (the header is written now); NULL if out of
 * memory. */
uint8_t *pw_conn_reply_space(pw_conn *c, size_t len);

/* Sends buffered replies. Returns 0 when all are sent, 1 when the socket is
 * full (wait for POLLOUT), -1 when the connection failed. */
int pw_conn_flush(pw_conn *c);

/* Oldest received fd not yet claimed (the caller owns it), or -1. */
int pw_conn_take_fd(pw_conn *c);
/* Keeps @p fd (owned) to go with the next reply frame: 0, or -1 (closed). */
int pw_conn_give_fd(pw_conn *c, int fd);

#endif
