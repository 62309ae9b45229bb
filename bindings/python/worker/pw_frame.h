/* Length framing of the executor protocol: a 4-byte big-endian length, then
 * that many bytes of one serialized message. Shared by the worker and by the
 * programs that talk to it directly (tests, benchmarks). */
#ifndef PW_FRAME_H
#define PW_FRAME_H

#include "pe_frame.h" /* the frame's length header, shared with the library */

#include <stddef.h>
#include <stdint.h>

#define PW_DEFAULT_MAX_MESSAGE (40u * 1024u * 1024u)

/* A growable byte buffer, reused from message to message. */
typedef struct pw_buf {
  uint8_t *data;
  size_t len;
  size_t cap;
} pw_buf;

/* Makes room for at least @p cap bytes; returns 0, or -1 when out of memory. */
int pw_buf_reserve(pw_buf *b, size_t cap);
void pw_buf_free(pw_buf *b);

/* Blocking helpers for clients of the worker. */

/* Writes one frame holding @p len bytes of @p msg. Returns 0 or -1 (errno). */
int pw_frame_write(int fd, const uint8_t *msg, size_t len);

/* Reads one frame into @p b (b->len = message length). Returns 0; 1 on a clean
 * end of stream before a frame; -1 on an error or a truncated frame (errno);
 * -2 when the announced length exceeds @p max. */
int pw_frame_read(int fd, pw_buf *b, size_t max);

#endif
