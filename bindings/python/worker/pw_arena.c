#include "pw_arena.h"

#include <stdalign.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define PW_ARENA_CHUNK (64u * 1024u)
/* The largest chunk up to this size survives a reset: the next request with
 * a body of similar size reuses its pages instead of faulting in new ones. */
#define PW_ARENA_KEEP (17u * 1024u * 1024u)

struct pw_arena_chunk {
  pw_arena_chunk *next;
  size_t cap;
  size_t used;
  alignas(max_align_t) unsigned char data[];
};

static pw_arena_chunk *chunk_new(size_t cap) {
  pw_arena_chunk *c = malloc(sizeof(*c) + cap);
  if (c == NULL) {
    return NULL;
  }
  c->next = NULL;
  c->cap = cap;
  c->used = 0;
  return c;
}

static void *take(pw_arena_chunk *c, size_t size) {
  size_t start = (c->used + alignof(max_align_t) - 1) & ~(alignof(max_align_t) - 1);
  if (start > c->cap || c->cap - start < size) {
    return NULL;
  }
  c->used = start + size;
  return c->data + start;
}

/* Uninitialised memory: protobuf-c initialises what it allocates, and a
 * large body must not be written twice. */
static void *alloc_raw(pw_arena *a, size_t size) {
  void *p = take(a->base, size);
  if (p == NULL && a->extra != NULL) {
    p = take(a->extra, size);
  }
  if (p == NULL) {
    pw_arena_chunk *c = chunk_new(size > PW_ARENA_CHUNK ? size : PW_ARENA_CHUNK);
    if (c == NULL) {
      return NULL;
    }
    c->next = a->extra;
    a->extra = c;
    p = take(c, size);
  }
  return p;
}

void *pw_arena_alloc(pw_arena *a, size_t size) {
  void *p = alloc_raw(a, size);
  if (p != NULL) {
    memset(p, 0, size);
  }
  return p;
}

static void *pb_alloc(void *data, size_t size) {
  return alloc_raw(data, size);
}

static void pb_free(void *data, void *p) {
  /* Freed in bulk by pw_arena_reset(). */
  (void)data;
  (void)p;
}

int pw_arena_init(pw_arena *a) {
  a->base = chunk_new(PW_ARENA_CHUNK);
  a->extra = NULL;
  a->pb.alloc = pb_alloc;
  a->pb.free = pb_free;
  a->pb.allocator_data = a;
  return a->base == NULL ? -1 : 0;
}

static void release_extra(pw_arena *a, size_t keep_up_to) {
  pw_arena_chunk *keep = NULL;
  while (a->extra != NULL) {
    pw_arena_chunk *c = a->extra;
    a->extra = c->next;
    if (c->cap <= keep_up_to && (keep == NULL || c->cap > keep->cap)) {
      free(keep);
      keep = c;
    } else {
      free(c);
    }
  }
  if (keep != NULL) {
    keep->next = NULL;
    keep->used = 0;
  }
  a->extra = keep;
}

void pw_arena_reset(pw_arena *a) {
  release_extra(a, PW_ARENA_KEEP);
  a->base->used = 0;
}

void pw_arena_destroy(pw_arena *a) {
  release_extra(a, 0);
  free(a->base);
  a->base = NULL;
}
