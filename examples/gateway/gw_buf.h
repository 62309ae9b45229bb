/*
 * A growable byte buffer for socket I/O: bytes are appended at the end and
 * consumed from the front without moving until space is needed.
 */
#ifndef GW_BUF_H
#define GW_BUF_H

#include <stddef.h>
#include <stdint.h>

typedef struct gw_buf {
  char *data;
  size_t off; /* first unconsumed byte */
  size_t len; /* unconsumed bytes */
  size_t cap;
} gw_buf;

static inline char *gw_buf_ptr(const gw_buf *b) {
  return b->data + b->off;
}

/* Room for at least @p extra more bytes after the last one (compacting
 * first). Returns 0, or -1 when out of memory. */
int gw_buf_reserve(gw_buf *b, size_t extra);
int gw_buf_append(gw_buf *b, const void *data, size_t len);
int gw_buf_append_str(gw_buf *b, const char *s);
int gw_buf_append_dec(gw_buf *b, uint64_t value);
int gw_buf_append_hex(gw_buf *b, uint64_t value);
void gw_buf_consume(gw_buf *b, size_t len);
/* Empties the buffer; keeps up to @p keep bytes of capacity for reuse. */
void gw_buf_reset(gw_buf *b, size_t keep);
void gw_buf_free(gw_buf *b);

#endif /* GW_BUF_H */
