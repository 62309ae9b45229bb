/* A growable byte buffer that keeps its memory across requests. Capacity
 * doubles, so appending chunk by chunk costs amortised O(1) per byte, and a
 * reused buffer stops allocating once it has seen its largest request.
 *
 * Every operation either succeeds or leaves the buffer unchanged, and the
 * source bytes may point into the buffer itself (e.g. appending a body to
 * itself): such sources are located by offset across a reallocation. */
#include "pe_internal.h"

#include <stdint.h>

/* Smallest capacity worth allocating: avoids several tiny reallocs for the
 * first short strings (methods, paths). */
#define BUF_MIN_CAP 64

/* Offset of p inside b's live bytes, or SIZE_MAX when p lies elsewhere.
 * Compared as integers: relational operators on unrelated pointers are
 * undefined in C. */
static size_t offset_inside(const pe__buf *b, const char *p) {
  uintptr_t start = (uintptr_t)b->data, at = (uintptr_t)p;
  if (!b->data || !p || at < start || at >= start + b->len)
    return SIZE_MAX;
  return (size_t)(at - start);
}

/* Grows the capacity to at least `need` bytes. */
static int grow_to(pe__buf *b, const pe_mem *mem, size_t need) {
  if (need <= b->cap)
    return PE_OK;
  size_t cap = b->cap ? b->cap : BUF_MIN_CAP;
  while (cap < need)
    cap = cap > SIZE_MAX / 2 ? need : cap * 2;
  char *data = pe__realloc(mem, b->data, cap);
  if (!data)
    return PE_ERR_NOMEM;
  b->data = data;
  b->cap = cap;
  return PE_OK;
}

int pe__buf_reserve(pe__buf *b, const pe_mem *mem, size_t extra) {
  if (extra > SIZE_MAX - b->len)
    return PE_ERR_NOMEM;
  return grow_to(b, mem, b->len + extra);
}

int pe__buf_set(pe__buf *b, const pe_mem *mem, const char *p, size_t n) {
  size_t off = offset_inside(b, p);
  int rc = grow_to(b, mem, n);
  if (rc != PE_OK)
    return rc;
  if (n)
    memmove(b->data, off == SIZE_MAX ? p : b->data + off, n);
  b->len = n;
  return PE_OK;
}

int pe__buf_append(pe__buf *b, const pe_mem *mem, const char *p, size_t n) {
  size_t off = offset_inside(b, p);
  int rc = pe__buf_reserve(b, mem, n);
  if (rc != PE_OK)
    return rc;
  if (n)
    memcpy(b->data + b->len, off == SIZE_MAX ? p : b->data + off, n);
  b->len += n;
  return PE_OK;
}

int pe__buf_prepend(pe__buf *b, const pe_mem *mem, const char *p, size_t n) {
  size_t off = offset_inside(b, p);
  int rc = pe__buf_reserve(b, mem, n);
  if (rc != PE_OK || n == 0)
    return rc;
  memmove(b->data + n, b->data, b->len);
  /* A source inside the buffer has just moved n bytes to the right. */
  memcpy(b->data, off == SIZE_MAX ? p : b->data + off + n, n);
  b->len += n;
  return PE_OK;
}

void pe__buf_free(pe__buf *b, const pe_mem *mem) {
  pe__free(mem, b->data);
  b->data = NULL;
  b->len = b->cap = 0;
}
