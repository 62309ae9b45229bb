/* pe_fields.c: the ordered multi-map behind headers and metadata. Besides
 * the map semantics, checks the memory promises: limits refuse without
 * changing anything, repeated sets stay bounded, compaction keeps order,
 * and sources pointing into the map itself are safe. */
#include "pe_internal.h"
#include "pe_test_util.h"

#include <stdio.h>
#include <stdlib.h>

#define NOLIMIT ((size_t)-1)

static const pe_mem *mem(void) {
  return &pe__default_mem;
}

/* The map as "name=value;..." for compact comparisons. */
static const char *dump(const pe__fields *f) {
  static char out[4096];
  size_t at = 0;
  out[0] = '\0';
  for (size_t i = 0; i < f->count && at < sizeof out; i++) {
    pe_slice n = pe__fields_name(f, i), v = pe__fields_value(f, i);
    at += (size_t)snprintf(out + at, sizeof out - at, "%.*s=%.*s;", (int)n.len, n.ptr, (int)v.len,
                           v.ptr);
  }
  return out;
}

/* Recomputes live_bytes and checks the name/value adjacency invariant. */
static void check_invariants(const pe__fields *f) {
  size_t live = 0;
  for (size_t i = 0; i < f->count; i++) {
    const pe__field *fld = &f->items[i];
    ck_assert_uint_eq(fld->value_off, fld->name_off + fld->name_len);
    ck_assert_uint_le(fld->value_off + fld->value_len, f->bytes.len);
    live += fld->name_len + fld->value_len;
  }
  ck_assert_uint_eq(live, f->live_bytes);
}

static int add(pe__fields *f, const char *n, const char *v) {
  return pe__fields_add(f, mem(), pe_str(n), pe_str(v), NOLIMIT, NOLIMIT);
}

static int set(pe__fields *f, const char *n, const char *v) {
  return pe__fields_set(f, mem(), pe_str(n), pe_str(v), NOLIMIT, NOLIMIT);
}

START_TEST(add_find_order) {
  pe__fields f;
  pe__fields_init(&f, true);
  ck_assert_int_eq(add(&f, "Host", "a"), PE_OK);
  ck_assert_int_eq(add(&f, "Accept", "x"), PE_OK);
  ck_assert_int_eq(add(&f, "host", "b"), PE_OK);
  ck_assert_str_eq(dump(&f), "Host=a;Accept=x;host=b;");
  ck_assert_int_eq(pe__fields_find(&f, PE_LIT("HOST"), 0), 0);
  ck_assert_int_eq(pe__fields_find(&f, PE_LIT("hOsT"), 1), 2);
  ck_assert_int_eq(pe__fields_find(&f, PE_LIT("host"), 2), -1);
  ck_assert_int_eq(pe__fields_find(&f, PE_LIT("hos"), 0), -1);
  ck_assert_int_eq(pe__fields_find(&f, PE_LIT("hostx"), 0), -1);
  ck_assert_int_eq(pe__fields_find(&f, pe_bytes(NULL, 3), 0), -1);
  check_invariants(&f);
  pe__fields_free(&f, mem());
}
END_TEST

START_TEST(exact_keys) {
  pe__fields f;
  pe__fields_init(&f, false);
  ck_assert_int_eq(add(&f, "Key", "1"), PE_OK);
  ck_assert_int_eq(pe__fields_find(&f, PE_LIT("key"), 0), -1);
  ck_assert_int_eq(pe__fields_find(&f, PE_LIT("Key"), 0), 0);
  /* Case-insensitive compare is ASCII only: no folding of other bytes. */
  pe__fields g;
  pe__fields_init(&g, true);
  ck_assert_int_eq(add(&g, "\xc3\xa9", "1"), PE_OK);
  ck_assert_int_eq(pe__fields_find(&g, PE_LIT("\xc3\x89"), 0), -1);
  ck_assert_int_eq(add(&g, "[", "1"), PE_OK);
  ck_assert_int_eq(pe__fields_find(&g, PE_LIT("{"), 0), -1);
  pe__fields_free(&f, mem());
  pe__fields_free(&g, mem());
}
END_TEST

START_TEST(set_replaces_in_first_place) {
  pe__fields f;
  pe__fields_init(&f, true);
  add(&f, "a", "1");
  add(&f, "X", "2");
  add(&f, "b", "3");
  add(&f, "x", "4");
  add(&f, "c", "5");
  ck_assert_int_eq(set(&f, "x", "new-and-longer"), PE_OK);
  ck_assert_str_eq(dump(&f), "a=1;x=new-and-longer;b=3;c=5;");
  ck_assert_int_eq(set(&f, "X", "s"), PE_OK); /* shorter: written in place */
  ck_assert_str_eq(dump(&f), "a=1;X=s;b=3;c=5;");
  ck_assert_int_eq(set(&f, "d", ""), PE_OK); /* absent: appended */
  ck_assert_str_eq(dump(&f), "a=1;X=s;b=3;c=5;d=;");
  check_invariants(&f);
  pe__fields_free(&f, mem());
}
END_TEST

START_TEST(remove_all_values) {
  pe__fields f;
  pe__fields_init(&f, true);
  add(&f, "a", "1");
  add(&f, "X", "2");
  add(&f, "x", "3");
  ck_assert_int_eq(pe__fields_remove(&f, PE_LIT("x")), 2);
  ck_assert_int_eq(pe__fields_remove(&f, PE_LIT("x")), 0);
  ck_assert_str_eq(dump(&f), "a=1;");
  check_invariants(&f);
  ck_assert_int_eq(pe__fields_remove(&f, PE_LIT("A")), 1);
  ck_assert_uint_eq(f.count, 0);
  ck_assert_uint_eq(f.bytes.len, 0); /* nothing live: bytes reclaimed */
  ck_assert_int_eq(pe__fields_remove(&f, pe_bytes(NULL, 1)), 0);
  pe__fields_free(&f, mem());
}
END_TEST

START_TEST(limits_change_nothing) {
  pe__fields f;
  pe__fields_init(&f, true);
  ck_assert_int_eq(pe__fields_add(&f, mem(), PE_LIT("a"), PE_LIT("12"), 2, 10), PE_OK);
  ck_assert_int_eq(pe__fields_add(&f, mem(), PE_LIT("b"), PE_LIT("1234"), 2, 10), PE_OK);
  ck_assert_uint_eq(f.live_bytes, 8);
  ck_assert_int_eq(pe__fields_add(&f, mem(), PE_LIT("c"), PE_LIT(""), 2, 10),
                   PE_ERR_TOO_MANY_HEADERS);
  ck_assert_int_eq(pe__fields_set(&f, mem(), PE_LIT("c"), PE_LIT(""), 2, 10),
                   PE_ERR_TOO_MANY_HEADERS);
  /* Replacing keeps the count, so only bytes matter: 3 + 8 > 10. */
  ck_assert_int_eq(pe__fields_set(&f, mem(), PE_LIT("b"), PE_LIT("1234567"), 2, 10),
                   PE_ERR_HEADERS_TOO_LARGE);
  ck_assert_int_eq(pe__fields_set(&f, mem(), PE_LIT("b"), PE_LIT("12345"), 2, 10), PE_OK);
  ck_assert_int_eq(pe__fields_remove(&f, PE_LIT("a")), 1);
  ck_assert_int_eq(pe__fields_add(&f, mem(), PE_LIT("c"), PE_LIT("1234"), 2, 10),
                   PE_ERR_HEADERS_TOO_LARGE);
  ck_assert_str_eq(dump(&f), "b=12345;");
  ck_assert_int_eq(pe__fields_add(&f, mem(), PE_LIT("c"), PE_LIT("123"), 2, 10), PE_OK);
  /* Sizes that would wrap are refused as too large. */
  ck_assert_int_eq(pe__fields_add(&f, mem(), PE_LIT("d"), pe_bytes("", (size_t)-1), 5, NOLIMIT),
                   PE_ERR_HEADERS_TOO_LARGE);
  ck_assert_str_eq(dump(&f), "b=12345;c=123;");
  check_invariants(&f);
  /* set over duplicates: count becomes count - matches + 1. */
  pe__fields_clear(&f);
  for (int i = 0; i < 3; i++)
    ck_assert_int_eq(pe__fields_add(&f, mem(), PE_LIT("x"), PE_LIT("v"), 3, 100), PE_OK);
  ck_assert_int_eq(pe__fields_set(&f, mem(), PE_LIT("x"), PE_LIT("w"), 1, 100), PE_OK);
  ck_assert_str_eq(dump(&f), "x=w;");
  pe__fields_free(&f, mem());
}
END_TEST

START_TEST(allocation_failure_changes_nothing) {
  pe_test_alloc a = {0};
  pe_mem m = pe_test_mem(&a);
  pe__fields f;
  pe__fields_init(&f, true);
  char big[300];
  memset(big, 'v', sizeof big);
  ck_assert_int_eq(pe__fields_add(&f, &m, PE_LIT("a"), PE_LIT("1"), 100, NOLIMIT), PE_OK);
  atomic_store(&a.fail_at, atomic_load(&a.attempts) + 1);
  ck_assert_int_eq(pe__fields_add(&f, &m, PE_LIT("b"), pe_bytes(big, sizeof big), 100, NOLIMIT),
                   PE_ERR_NOMEM);
  ck_assert_str_eq(dump(&f), "a=1;");
  atomic_store(&a.fail_at, atomic_load(&a.attempts) + 1);
  ck_assert_int_eq(pe__fields_set(&f, &m, PE_LIT("A"), pe_bytes(big, sizeof big), 100, NOLIMIT),
                   PE_ERR_NOMEM);
  ck_assert_str_eq(dump(&f), "a=1;");
  check_invariants(&f);
  /* Items array growth failing: fill to its first capacity, fail the next. */
  atomic_store(&a.fail_at, 0);
  while (f.count < f.cap)
    ck_assert_int_eq(pe__fields_add(&f, &m, PE_LIT("n"), PE_LIT(""), 100, NOLIMIT), PE_OK);
  size_t count = f.count;
  atomic_store(&a.fail_at, atomic_load(&a.attempts) + 1);
  ck_assert_int_eq(pe__fields_add(&f, &m, PE_LIT("n"), PE_LIT(""), 100, NOLIMIT), PE_ERR_NOMEM);
  ck_assert_uint_eq(f.count, count);
  pe__fields_free(&f, &m);
  ck_assert_int_eq(atomic_load(&a.allocs), atomic_load(&a.frees));
}
END_TEST

START_TEST(repeated_sets_stay_bounded) {
  pe_test_alloc a = {0};
  pe_mem m = pe_test_mem(&a);
  pe__fields f;
  pe__fields_init(&f, true);
  char value[200];
  memset(value, 'v', sizeof value);
  pe__fields_add(&f, &m, PE_LIT("first"), PE_LIT("1"), NOLIMIT, NOLIMIT);
  pe__fields_add(&f, &m, PE_LIT("grows"), PE_LIT(""), NOLIMIT, NOLIMIT);
  pe__fields_add(&f, &m, PE_LIT("last"), PE_LIT("3"), NOLIMIT, NOLIMIT);
  size_t max_cap = 0;
  /* Each set grows the value, so none fits in place: all old ones become
   * garbage, and compaction must reclaim them while keeping order. */
  for (int i = 0; i < 20000; i++) {
    size_t n = 1 + (size_t)i % sizeof value;
    ck_assert_int_eq(pe__fields_set(&f, &m, PE_LIT("grows"), pe_bytes(value, n), NOLIMIT, NOLIMIT),
                     PE_OK);
    ck_assert_int_eq(pe__fields_add(&f, &m, PE_LIT("tmp"), PE_LIT("t"), NOLIMIT, NOLIMIT), PE_OK);
    ck_assert_int_eq(pe__fields_remove(&f, PE_LIT("tmp")), 1);
    if (f.bytes.cap > max_cap)
      max_cap = f.bytes.cap;
  }
  ck_assert_uint_le(max_cap, 16384);
  ck_assert_uint_eq(f.count, 3);
  ck_assert_slice_eq(pe__fields_name(&f, 0), "first");
  ck_assert_slice_eq(pe__fields_value(&f, 0), "1");
  ck_assert_slice_eq(pe__fields_name(&f, 1), "grows");
  ck_assert_uint_eq(pe__fields_value(&f, 1).len, 1 + 19999 % sizeof value);
  ck_assert_slice_eq(pe__fields_value(&f, 2), "3");
  check_invariants(&f);
  pe__fields_free(&f, &m);
  ck_assert_int_eq(atomic_load(&a.allocs), atomic_load(&a.frees));
}
END_TEST

START_TEST(compaction_keeps_order_when_offsets_are_shuffled) {
  pe__fields f;
  pe__fields_init(&f, false);
  char name[16], value[64];
  enum { N = 300 };
  for (int i = 0; i < N; i++) {
    snprintf(name, sizeof name, "k%03d", i);
    ck_assert_int_eq(add(&f, name, "0"), PE_OK);
  }
  /* Grow values in a scattered order so that byte offsets no longer follow
   * field order, until compaction has happened several times. */
  unsigned seed = 12345;
  for (int round = 1; round <= 40; round++) {
    for (int j = 0; j < N; j++) {
      seed = seed * 1103515245u + 12345u;
      int i = (int)((seed >> 8) % N);
      snprintf(name, sizeof name, "k%03d", i);
      snprintf(value, sizeof value, "%d-%0*d", i, round % 50 + 1, round);
      ck_assert_int_eq(set(&f, name, value), PE_OK);
    }
    check_invariants(&f);
    ck_assert_uint_le(f.bytes.len - f.live_bytes, f.live_bytes + 4096);
  }
  ck_assert_uint_eq(f.count, N);
  for (int i = 0; i < N; i++) {
    snprintf(name, sizeof name, "k%03d", i);
    ck_assert_slice_eq(pe__fields_name(&f, (size_t)i), name);
    pe_slice v = pe__fields_value(&f, (size_t)i);
    char prefix[16];
    int n = snprintf(prefix, sizeof prefix, "%d-", i);
    ck_assert(v.len == 1 || (v.len > (size_t)n && memcmp(v.ptr, prefix, (size_t)n) == 0));
  }
  pe__fields_free(&f, mem());
}
END_TEST

START_TEST(sources_inside_the_map) {
  pe__fields f;
  pe__fields_init(&f, true);
  add(&f, "host", "example.com");
  /* Copy one header to another, many times, across reallocations. */
  for (int i = 0; i < 200; i++) {
    pe_slice v = pe__fields_value(&f, 0);
    ck_assert_int_eq(pe__fields_add(&f, mem(), PE_LIT("x-orig-host"), v, NOLIMIT, NOLIMIT), PE_OK);
  }
  for (size_t i = 1; i < f.count; i++)
    ck_assert_slice_eq(pe__fields_value(&f, i), "example.com");
  /* set a header to its own value, a part of it, or its own name. */
  ck_assert_int_eq(
      pe__fields_set(&f, mem(), pe__fields_name(&f, 0), pe__fields_value(&f, 0), NOLIMIT, NOLIMIT),
      PE_OK);
  ck_assert_slice_eq(pe__fields_value(&f, 0), "example.com");
  pe_slice part = pe__fields_value(&f, 0);
  part.ptr += 8;
  part.len = 3;
  ck_assert_int_eq(pe__fields_set(&f, mem(), PE_LIT("HOST"), part, NOLIMIT, NOLIMIT), PE_OK);
  ck_assert_slice_eq(pe__fields_name(&f, 0), "HOST");
  ck_assert_slice_eq(pe__fields_value(&f, 0), "com");
  ck_assert_int_eq(
      pe__fields_set(&f, mem(), PE_LIT("x-orig-host"), pe__fields_name(&f, 1), NOLIMIT, NOLIMIT),
      PE_OK);
  ck_assert_uint_eq(f.count, 2);
  ck_assert_slice_eq(pe__fields_value(&f, 1), "x-orig-host");
  check_invariants(&f);
  pe__fields_free(&f, mem());
}
END_TEST

START_TEST(copy_swap_clear) {
  pe_test_alloc a = {0};
  pe_mem m = pe_test_mem(&a);
  pe__fields src, dst;
  pe__fields_init(&src, true);
  pe__fields_init(&dst, false);
  pe__fields_add(&src, &m, PE_LIT("a"), PE_LIT("1"), NOLIMIT, NOLIMIT);
  pe__fields_add(&src, &m, PE_LIT("b"), PE_LIT("22"), NOLIMIT, NOLIMIT);
  pe__fields_set(&src, &m, PE_LIT("a"), PE_LIT("333"), NOLIMIT, NOLIMIT);
  ck_assert_int_eq(pe__fields_copy(&dst, &src, &m), PE_OK);
  ck_assert_str_eq(dump(&dst), "a=333;b=22;");
  ck_assert(dst.ci);
  ck_assert_uint_eq(dst.bytes.len, dst.live_bytes); /* the copy is compact */
  check_invariants(&dst);
  ck_assert_int_eq(pe__fields_copy(&dst, &dst, &m), PE_OK);
  /* A second copy of a similar map reuses dst's memory. */
  long before = atomic_load(&a.attempts);
  ck_assert_int_eq(pe__fields_copy(&dst, &src, &m), PE_OK);
  ck_assert_int_eq(atomic_load(&a.attempts), before);
  /* A failing copy leaves dst as it was. */
  for (int i = 0; i < 50; i++)
    pe__fields_add(&src, &m, PE_LIT("more"), PE_LIT("values-values"), NOLIMIT, NOLIMIT);
  for (long n = 1;; n++) {
    atomic_store(&a.fail_at, atomic_load(&a.attempts) + n);
    int rc = pe__fields_copy(&dst, &src, &m);
    if (rc == PE_OK)
      break;
    ck_assert_int_eq(rc, PE_ERR_NOMEM);
    ck_assert_str_eq(dump(&dst), "a=333;b=22;");
  }
  atomic_store(&a.fail_at, 0);
  ck_assert_uint_eq(dst.count, 52);
  pe__fields_swap(&src, &dst);
  ck_assert_uint_eq(src.count, 52);
  pe__fields_clear(&dst);
  ck_assert_uint_eq(dst.count, 0);
  ck_assert_uint_eq(dst.live_bytes, 0);
  ck_assert_uint_ne(dst.bytes.cap, 0); /* memory kept */
  pe__fields_free(&src, &m);
  pe__fields_free(&dst, &m);
  ck_assert_int_eq(atomic_load(&a.allocs), atomic_load(&a.frees));
}
END_TEST

START_TEST(reuse_after_clear_does_not_allocate) {
  pe_test_alloc a = {0};
  pe_mem m = pe_test_mem(&a);
  pe__fields f;
  pe__fields_init(&f, true);
  long before = 0;
  for (int round = 0; round < 100; round++) {
    if (round == 1)
      before = atomic_load(&a.attempts);
    pe__fields_clear(&f);
    char name[16];
    for (int i = 0; i < 30; i++) {
      snprintf(name, sizeof name, "x-header-%d", i);
      ck_assert_int_eq(pe__fields_add(&f, &m, pe_str(name), PE_LIT("some value"), 100, 65536),
                       PE_OK);
    }
    ck_assert_int_eq(pe__fields_set(&f, &m, PE_LIT("x-header-3"), PE_LIT("v2"), 100, 65536), PE_OK);
  }
  ck_assert_int_eq(atomic_load(&a.attempts), before);
  pe__fields_free(&f, &m);
}
END_TEST

static Suite *fields_suite(void) {
  Suite *s = suite_create("fields");
  TCase *tc = tcase_create("core");
  tcase_add_test(tc, add_find_order);
  tcase_add_test(tc, exact_keys);
  tcase_add_test(tc, set_replaces_in_first_place);
  tcase_add_test(tc, remove_all_values);
  tcase_add_test(tc, limits_change_nothing);
  tcase_add_test(tc, allocation_failure_changes_nothing);
  tcase_add_test(tc, repeated_sets_stay_bounded);
  tcase_add_test(tc, compaction_keeps_order_when_offsets_are_shuffled);
  tcase_add_test(tc, sources_inside_the_map);
  tcase_add_test(tc, copy_swap_clear);
  tcase_add_test(tc, reuse_after_clear_does_not_allocate);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) {
  return pe_test_run_suite(fields_suite());
}
