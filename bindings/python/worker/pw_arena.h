/* A bump allocator reset after every request: the decoded Request and the
 * Response under construction live here, so the hot path does not call
 * malloc/free once per protobuf field. */
#ifndef PW_ARENA_H
#define PW_ARENA_H

#include <stddef.h>
#include <protobuf-c/protobuf-c.h>

typedef struct pw_arena_chunk pw_arena_chunk;

typedef struct pw_arena {
  pw_arena_chunk *base;  /* kept across resets: small requests never allocate */
  pw_arena_chunk *extra; /* chunks for big requests, freed by reset */
  ProtobufCAllocator pb; /* hands this arena to protobuf-c's unpack */
} pw_arena;

/* Returns 0, or -1 when out of memory. */
int pw_arena_init(pw_arena *a);
/* Zero-filled memory aligned for any type, valid until the next reset; NULL
 * when out of memory. */
void *pw_arena_alloc(pw_arena *a, size_t size);
/* Releases everything allocated since the last reset. */
void pw_arena_reset(pw_arena *a);
void pw_arena_destroy(pw_arena *a);

#endif
