/*
 * Byte buffers (see gw_buf.h).
 */
#include "gw_buf.h"

#include <stdlib.h>
#include <string.h>

int gw_buf_reserve(gw_buf *b, size_t extra) {
  if (b->cap - b->off - b->len >= extra)
    return 0;
  if (b->off > 0) { /* slide the unconsumed bytes to the front */
    memmove(b->data, b->data + b->off, b->len);
    b->off = 0;
    if (b->cap - b->len >= extra)
      return 0;
  }
  size_t cap = b->cap ? b->cap : 4096;
  while (cap - b->len < extra)
    cap *= 2;
  char *bigger = realloc(b->data, cap);
  if (!bigger)
    return -1;
  b->data = bigger;
  b->cap = cap;
  return 0;
}

int gw_buf_append(gw_buf *b, const void *data, size_t len) {
  if (len == 0)
    return 0;
  if (gw_buf_reserve(b, len) < 0)
    return -1;
  memcpy(b->data + b->off + b->len, data, len);
  b->len += len;
  return 0;
}

int gw_buf_append_str(gw_buf *b, const char *s) {
  return gw_buf_append(b, s, strlen(s));
}

int gw_buf_append_dec(gw_buf *b, uint64_t value) {
  char text[20];
  size_t n = sizeof text;
  do {
    text[--n] = (char)('0' + value % 10);
    value /= 10;
  } while (value);
  return gw_buf_append(b, text + n, sizeof text - n);
}

int gw_buf_append_hex(gw_buf *b, uint64_t value) {
  char text[16];
  size_t n = sizeof text;
  do {
    text[--n] = "0123456789abcdef"[value & 15];
    value >>= 4;
  } while (value);
  return gw_buf_append(b, text + n, sizeof text - n);
}

void gw_buf_consume(gw_buf *b, size_t len) {
  if (len >= b->len) {
    b->off = b->len = 0;
  } else {
    b->off += len;
    b->len -= len;
  }
}

void gw_buf_reset(gw_buf *b, size_t keep) {
  b->off = b->len = 0;
  if (b->cap > keep) {
    free(b->data);
    b->data = NULL;
    b->cap = 0;
  }
}

void gw_buf_free(gw_buf *b) {
  free(b->data);
  b->data = NULL;
  b->off = b->len = b->cap = 0;
}
