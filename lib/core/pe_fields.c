/* An ordered multi-map of byte strings: request and response headers (names
 * compared ASCII case-insensitively) and metadata (keys compared exactly).
 *
 * Layout: `items` keeps the fields in order; each field's name and value sit
 * next to each other in `bytes` (value_off == name_off + name_len, which the
 * compaction below relies on). Adding appends to `bytes`; replacing a value
 * with one no longer than the old one writes in place, so the common "set
 * the same header on every request" never grows memory. Whatever becomes
 * garbage is reclaimed by an in-place compaction once it outweighs the live
 * bytes, so no sequence of calls grows memory without bound.
 *
 * Limit checks happen before anything changes, and names and values may point
 * into the map itself (copying one header to another): such sources are
 * found again by offset after a reallocation. */
#include "pe_internal.h"

#include <stdint.h>

/* Garbage allowed on top of the live bytes before compacting: small maps
 * never compact, large ones compact at most once per doubling. */
#define FIELDS_SLACK 4096
#define FIELDS_MIN_CAP 8

static inline unsigned char ascii_lower(unsigned char c) {
  return c >= 'A' && c <= 'Z' ? (unsigned char)(c | 0x20) : c;
}

static bool bytes_equal(const pe__fields *f, const char *a, const char *b, size_t len) {
  if (!f->ci)
    return len == 0 || memcmp(a, b, len) == 0;
  const unsigned char *x = (const unsigned char *)a, *y = (const unsigned char *)b;
  for (size_t i = 0; i < len; i++)
    if (x[i] != y[i] && ascii_lower(x[i]) != ascii_lower(y[i]))
      return false;
  return true;
}

static bool name_is(const pe__fields *f, const pe__field *fld, const char *name, size_t len) {
  return fld->name_len == len && bytes_equal(f, f->bytes.data + fld->name_off, name, len);
}

/* Whether [p, p+len) overlaps [start, start+n) of f->bytes (by address). */
static bool overlaps(const pe__fields *f, size_t start, size_t n, const char *p, size_t len) {
  if (!f->bytes.data || !p || n == 0 || len == 0)
    return false;
  uintptr_t a = (uintptr_t)(f->bytes.data + start), b = (uintptr_t)p;
  return b < a + n && a < b + len;
}

static size_t offset_in_bytes(const pe__fields *f, const char *p, size_t len) {
  return overlaps(f, 0, f->bytes.len, p, len) ? (size_t)((uintptr_t)p - (uintptr_t)f->bytes.data)
                                              : SIZE_MAX;
}

void pe__fields_init(pe__fields *f, bool case_insensitive) {
  memset(f, 0, sizeof *f);
  f->ci = case_insensitive;
}

void pe__fields_clear(pe__fields *f) {
  f->count = 0;
  f->bytes.len = 0;
  f->live_bytes = 0;
}

void pe__fields_free(pe__fields *f, const pe_mem *mem) {
  pe__free(mem, f->items);
  pe__buf_free(&f->bytes, mem);
  f->items = NULL;
  f->count = f->cap = 0;
  f->live_bytes = 0;
}

static int reserve_items(pe__fields *f, const pe_mem *mem, size_t need) {
  if (need <= f->cap)
    return PE_OK;
  const size_t max = SIZE_MAX / sizeof(pe__field);
  size_t cap = f->cap ? f->cap : FIELDS_MIN_CAP;
  while (cap < need)
    cap = cap > max / 2 ? need : cap * 2;
  if (cap > max)
    return PE_ERR_NOMEM;
  pe__field *items = pe__realloc(mem, f->items, cap * sizeof *items);
  if (!items)
    return PE_ERR_NOMEM;
  f->items = items;
  f->cap = cap;
  return PE_OK;
}

/* Checks that a map of `count` fields and `live` bytes plus name and value
 * stays within the limits; *total receives name.len + value.len. */
static int check_limits(size_t count, size_t live, pe_slice name, pe_slice value, size_t max_count,
                        size_t max_bytes, size_t *total) {
  if (count > max_count)
    return PE_ERR_TOO_MANY_HEADERS;
  if (value.len > SIZE_MAX - name.len)
    return PE_ERR_HEADERS_TOO_LARGE;
  size_t n = name.len + value.len;
  if (n > max_bytes || live > max_bytes - n)
    return PE_ERR_HEADERS_TOO_LARGE;
  *total = n;
  return PE_OK;
}

/* Copies name and value to the end of f->bytes and describes them in *out. */
static int store(pe__fields *f, const pe_mem *mem, pe_slice name, pe_slice value, pe__field *out) {
  size_t name_src = offset_in_bytes(f, name.ptr, name.len);
  size_t value_src = offset_in_bytes(f, value.ptr, value.len);
  int rc = pe__buf_reserve(&f->bytes, mem, name.len + value.len);
  if (rc != PE_OK)
    return rc;
  char *base = f->bytes.data;
  out->name_off = f->bytes.len;
  out->name_len = name.len;
  out->value_off = out->name_off + name.len;
  out->value_len = value.len;
  if (name.len)
    memcpy(base + out->name_off, name_src == SIZE_MAX ? name.ptr : base + name_src, name.len);
  if (value.len)
    memcpy(base + out->value_off, value_src == SIZE_MAX ? value.ptr : base + value_src, value.len);
  f->bytes.len += name.len + value.len;
  return PE_OK;
}

static void swap_fields(pe__field *a, pe__field *b) {
  pe__field t = *a;
  *a = *b;
  *b = t;
}

static void sift_down(pe__field *v, size_t root, size_t n) {
  for (;;) {
    size_t child = 2 * root + 1;
    if (child >= n)
      return;
    if (child + 1 < n && v[child].name_off < v[child + 1].name_off)
      child++;
    if (v[root].name_off >= v[child].name_off)
      return;
    swap_fields(&v[root], &v[child]);
    root = child;
  }
}

/* Heapsort: in place and allocation-free, O(n log n) even for large maps. */
static void sort_by_offset(pe__field *v, size_t n) {
  for (size_t i = n / 2; i-- > 0;)
    sift_down(v, i, n);
  for (size_t end = n; end-- > 1;) {
    swap_fields(&v[0], &v[end]);
    sift_down(v, 0, end);
  }
}

/* Slides every live field to the front of `bytes`, keeping field order.
 * Fields must move in increasing offset order so that none overwrites one
 * not yet moved; that order differs from field order after in-order
 * replacements, so the fields are sorted by offset, moved, and put back in
 * place using value_off (recomputable from the invariant) as a tag. */
static void compact(pe__fields *f) {
  pe__field *v = f->items;
  bool sorted = true;
  for (size_t i = 0; i < f->count; i++) {
    v[i].value_off = i;
    if (i && v[i].name_off < v[i - 1].name_off)
      sorted = false;
  }
  if (!sorted)
    sort_by_offset(v, f->count);
  size_t at = 0;
  for (size_t i = 0; i < f->count; i++) {
    size_t n = v[i].name_len + v[i].value_len;
    if (n && v[i].name_off != at)
      memmove(f->bytes.data + at, f->bytes.data + v[i].name_off, n);
    v[i].name_off = at;
    at += n;
  }
  for (size_t i = 0; i < f->count; i++)
    while (v[i].value_off != i)
      swap_fields(&v[i], &v[v[i].value_off]);
  for (size_t i = 0; i < f->count; i++)
    v[i].value_off = v[i].name_off + v[i].name_len;
  f->bytes.len = at;
}

static void maybe_compact(pe__fields *f) {
  size_t garbage = f->bytes.len - f->live_bytes;
  if (garbage > f->live_bytes + FIELDS_SLACK)
    compact(f);
}

int pe__fields_copy(pe__fields *dst, const pe__fields *src, const pe_mem *mem) {
  if (dst == src)
    return PE_OK;
  int rc = reserve_items(dst, mem, src->count);
  if (rc != PE_OK)
    return rc;
  /* Copy only live bytes: the copy is compact and in offset order. */
  size_t old_len = dst->bytes.len;
  dst->bytes.len = 0;
  rc = pe__buf_reserve(&dst->bytes, mem, src->live_bytes);
  if (rc != PE_OK) {
    dst->bytes.len = old_len;
    return rc;
  }
  for (size_t i = 0; i < src->count; i++) {
    const pe__field *s = &src->items[i];
    pe__field *d = &dst->items[i];
    size_t n = s->name_len + s->value_len;
    if (n)
      memcpy(dst->bytes.data + dst->bytes.len, src->bytes.data + s->name_off, n);
    d->name_off = dst->bytes.len;
    d->name_len = s->name_len;
    d->value_off = d->name_off + s->name_len;
    d->value_len = s->value_len;
    dst->bytes.len += n;
  }
  dst->count = src->count;
  dst->live_bytes = src->live_bytes;
  dst->ci = src->ci;
  return PE_OK;
}

void pe__fields_swap(pe__fields *a, pe__fields *b) {
  pe__fields t = *a;
  *a = *b;
  *b = t;
}

long pe__fields_find(const pe__fields *f, pe_slice name, size_t nth) {
  if (name.len && !name.ptr)
    return -1;
  for (size_t i = 0; i < f->count; i++) {
    if (name_is(f, &f->items[i], name.ptr, name.len)) {
      if (nth == 0)
        return (long)i;
      nth--;
    }
  }
  return -1;
}

pe_slice pe__fields_name(const pe__fields *f, size_t i) {
  const pe__field *fld = &f->items[i];
  return pe_bytes(fld->name_len ? f->bytes.data + fld->name_off : "", fld->name_len);
}

pe_slice pe__fields_value(const pe__fields *f, size_t i) {
  const pe__field *fld = &f->items[i];
  return pe_bytes(fld->value_len ? f->bytes.data + fld->value_off : "", fld->value_len);
}

int pe__fields_add(pe__fields *f, const pe_mem *mem, pe_slice name, pe_slice value,
                   size_t max_count, size_t max_bytes) {
  size_t n;
  int rc = check_limits(f->count + 1, f->live_bytes, name, value, max_count, max_bytes, &n);
  if (rc == PE_OK)
    rc = reserve_items(f, mem, f->count + 1);
  pe__field fld;
  if (rc == PE_OK)
    rc = store(f, mem, name, value, &fld);
  if (rc != PE_OK)
    return rc;
  f->items[f->count++] = fld;
  f->live_bytes += n;
  maybe_compact(f);
  return PE_OK;
}

int pe__fields_set(pe__fields *f, const pe_mem *mem, pe_slice name, pe_slice value,
                   size_t max_count, size_t max_bytes) {
  size_t first = SIZE_MAX, matches = 0, old_bytes = 0;
  for (size_t i = 0; i < f->count; i++) {
    const pe__field *fld = &f->items[i];
    if (name_is(f, fld, name.ptr, name.len)) {
      if (first == SIZE_MAX)
        first = i;
      matches++;
      old_bytes += fld->name_len + fld->value_len;
    }
  }
  if (first == SIZE_MAX)
    return pe__fields_add(f, mem, name, value, max_count, max_bytes);

  size_t n;
  int rc = check_limits(f->count - matches + 1, f->live_bytes - old_bytes, name, value, max_count,
                        max_bytes, &n);
  if (rc != PE_OK)
    return rc;
  pe__field *slot = &f->items[first];
  size_t slot_len = slot->name_len + slot->value_len;
  if (value.len <= slot->value_len && !overlaps(f, slot->name_off, slot_len, name.ptr, name.len) &&
      !overlaps(f, slot->name_off, slot_len, value.ptr, value.len)) {
    /* Same name length (names match), value fits: overwrite in place. */
    if (name.len)
      memcpy(f->bytes.data + slot->name_off, name.ptr, name.len);
    if (value.len)
      memcpy(f->bytes.data + slot->value_off, value.ptr, value.len);
    slot->value_len = value.len;
  } else {
    pe__field fld;
    rc = store(f, mem, name, value, &fld);
    if (rc != PE_OK)
      return rc;
    *slot = fld;
  }
  /* Drop the later fields of that name; compare with the stored name since
   * `name` may have pointed into bytes that store() reallocated. */
  size_t kept = first + 1;
  const char *stored = f->bytes.data + slot->name_off;
  for (size_t i = first + 1; i < f->count; i++)
    if (!name_is(f, &f->items[i], stored, slot->name_len))
      f->items[kept++] = f->items[i];
  f->count = kept;
  f->live_bytes = f->live_bytes - old_bytes + n;
  maybe_compact(f);
  return PE_OK;
}

int pe__fields_remove(pe__fields *f, pe_slice name) {
  if (name.len && !name.ptr)
    return 0;
  size_t kept = 0, removed = 0;
  for (size_t i = 0; i < f->count; i++) {
    pe__field *fld = &f->items[i];
    if (name_is(f, fld, name.ptr, name.len)) {
      f->live_bytes -= fld->name_len + fld->value_len;
      removed++;
    } else {
      f->items[kept++] = *fld;
    }
  }
  f->count = kept;
  if (kept == 0)
    f->bytes.len = 0; /* nothing live: all of it is garbage */
  return removed > INT32_MAX ? INT32_MAX : (int)removed;
}
