/* The memory protobuf-c decodes a worker's reply into. Decoding a message
 * makes one allocation per submessage, string and bytes field; a bump
 * allocator over a kept chunk turns all of them into pointer increments,
 * and a reset after each message makes a reused connection decode without
 * calling the allocator at all once it has seen its largest reply. */
#include "pe_py.h"

#include <stdalign.h>
#include <stdint.h>

#define FIRST_CHUNK (16u * 1024u)
#define ALIGN ((size_t)alignof(max_align_t))

struct pe__py_chunk {
  pe__py_chunk *next;
  size_t cap, used;
  alignas(max_align_t) unsigned char data[];
};

static pe__py_chunk *chunk_new(const pe_mem *mem, size_t cap) {
  if (cap > SIZE_MAX - sizeof(pe__py_chunk))
    return NULL;
  pe__py_chunk *c = pe__malloc(mem, sizeof *c + cap);
  if (c) {
    c->next = NULL;
    c->cap = cap;
    c->used = 0;
  }
  return c;
}

static void *arena_alloc(void *allocator_data, size_t size) {
  pe__py_arena *a = allocator_data;
  if (size > SIZE_MAX - ALIGN)
    return NULL;
  size = (size + ALIGN - 1) & ~(ALIGN - 1);
  pe__py_chunk *c = a->head;
  if (!c || c->cap - c->used < size) {
    size_t cap = c ? c->cap * 2 : FIRST_CHUNK;
    if (cap < size)
      cap = size;
    pe__py_chunk *fresh = chunk_new(a->mem, cap);
    if (!fresh)
      return NULL;
    fresh->next = c;
    a->head = c = fresh;
  }
  void *p = c->data + c->used;
  c->used += size;
  return p;
}

/* Memory goes back all at once in pe__py_arena_reset. */
static void arena_free(void *allocator_data, void *ptr) {
  (void)allocator_data;
  (void)ptr;
}

void pe__py_arena_init(pe__py_arena *a, const pe_mem *mem) {
  a->pc.alloc = arena_alloc;
  a->pc.free = arena_free;
  a->pc.allocator_data = a;
  a->mem = mem;
  a->head = NULL;
}

void pe__py_arena_reset(pe__py_arena *a) {
  pe__py_chunk *c = a->head;
  if (!c)
    return;
  if (!c->next) {
    c->used = 0;
    return;
  }
  /* Several chunks: replace them by one that holds them all, so that the
   * next message of this size needs a single chunk. */
  size_t total = 0;
  for (pe__py_chunk *it = c; it; it = it->next)
    total += it->cap;
  pe__py_arena_free(a);
  a->head = chunk_new(a->mem, total); /* NULL is fine: the next alloc retries */
}

void pe__py_arena_free(pe__py_arena *a) {
  pe__py_chunk *c = a->head;
  while (c) {
    pe__py_chunk *next = c->next;
    pe__free(a->mem, c);
    c = next;
  }
  a->head = NULL;
}
