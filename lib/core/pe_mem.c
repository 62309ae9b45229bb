/* Allocation through the engine's pe_mem hooks. Zero-byte requests are
 * rounded up to one byte so that NULL always means "out of memory". */
#include "pe_internal.h"

#include <stdint.h>
#include <stdlib.h>

static void *default_malloc(size_t size, void *user_data) {
  (void)user_data;
  return malloc(size);
}

static void default_free(void *ptr, void *user_data) {
  (void)user_data;
  free(ptr);
}

static void *default_calloc(size_t nmemb, size_t size, void *user_data) {
  (void)user_data;
  return calloc(nmemb, size);
}

static void *default_realloc(void *ptr, size_t size, void *user_data) {
  (void)user_data;
  return realloc(ptr, size);
}

const pe_mem pe__default_mem = {default_malloc, default_free, default_calloc, default_realloc,
                                NULL};

void *pe__malloc(const pe_mem *mem, size_t size) {
  return mem->malloc(size ? size : 1, mem->user_data);
}

void *pe__calloc(const pe_mem *mem, size_t nmemb, size_t size) {
  if (nmemb == 0 || size == 0)
    nmemb = size = 1;
  else if (nmemb > SIZE_MAX / size)
    return NULL; /* the product would wrap: a user hook might not check */
  return mem->calloc(nmemb, size, mem->user_data);
}

void *pe__realloc(const pe_mem *mem, void *ptr, size_t size) {
  /* realloc(p, 0) may free p and return NULL: never ask for that. */
  return mem->realloc(ptr, size ? size : 1, mem->user_data);
}

void pe__free(const pe_mem *mem, void *ptr) {
  if (ptr)
    mem->free(ptr, mem->user_data);
}

char *pe__strndup(const pe_mem *mem, const char *s, size_t len) {
  if (len == SIZE_MAX)
    return NULL;
  char *copy = pe__malloc(mem, len + 1);
  if (!copy)
    return NULL;
  if (len)
    memcpy(copy, s, len);
  copy[len] = '\0';
  return copy;
}
