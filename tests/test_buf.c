/* pe_buf.c and pe_mem.c: growth, reuse without allocation, unchanged buffer
 * on failure, sources inside the buffer, and calloc overflow. */
#include "pe_internal.h"
#include "pe_test_util.h"

#include <stdint.h>
#include <stdlib.h>

START_TEST(set_append_prepend) {
  pe__buf b = {0};
  const pe_mem *m = &pe__default_mem;
  ck_assert_int_eq(pe__buf_set(&b, m, "world", 5), PE_OK);
  ck_assert_int_eq(pe__buf_prepend(&b, m, "hello ", 6), PE_OK);
  ck_assert_int_eq(pe__buf_append(&b, m, "!", 1), PE_OK);
  ck_assert_slice_eq(pe__buf_slice(&b), "hello world!");
  ck_assert_int_eq(pe__buf_set(&b, m, "x", 1), PE_OK);
  ck_assert_slice_eq(pe__buf_slice(&b), "x");
  ck_assert_int_eq(pe__buf_set(&b, m, NULL, 0), PE_OK);
  ck_assert_uint_eq(b.len, 0);
  ck_assert_int_eq(pe__buf_append(&b, m, NULL, 0), PE_OK);
  ck_assert_int_eq(pe__buf_prepend(&b, m, NULL, 0), PE_OK);
  ck_assert_uint_eq(b.len, 0);
  pe__buf_free(&b, m);
  ck_assert_ptr_null(b.data);
  ck_assert_uint_eq(b.cap, 0);
}
END_TEST

START_TEST(growth_is_amortised) {
  pe_test_alloc a = {0};
  pe_mem m = pe_test_mem(&a);
  pe__buf b = {0};
  for (int i = 0; i < 100000; i++)
    ck_assert_int_eq(pe__buf_append(&b, &m, "abcdefghij", 10), PE_OK);
  ck_assert_uint_eq(b.len, 1000000);
  /* Doubling from 64 bytes: about log2(1e6 / 64) reallocations. */
  ck_assert_int_le(atomic_load(&a.attempts), 20);
  pe__buf_free(&b, &m);
  ck_assert_int_eq(atomic_load(&a.allocs), atomic_load(&a.frees));
}
END_TEST

START_TEST(reuse_does_not_allocate) {
  pe_test_alloc a = {0};
  pe_mem m = pe_test_mem(&a);
  pe__buf b = {0};
  ck_assert_int_eq(pe__buf_set(&b, &m, "0123456789", 10), PE_OK);
  long before = atomic_load(&a.attempts);
  for (int i = 0; i < 1000; i++) {
    b.len = 0;
    ck_assert_int_eq(pe__buf_append(&b, &m, "01234", 5), PE_OK);
    ck_assert_int_eq(pe__buf_prepend(&b, &m, "56789", 5), PE_OK);
    ck_assert_int_eq(pe__buf_set(&b, &m, "abc", 3), PE_OK);
  }
  ck_assert_int_eq(atomic_load(&a.attempts), before);
  pe__buf_free(&b, &m);
}
END_TEST

START_TEST(failure_leaves_buffer_unchanged) {
  pe_test_alloc a = {0};
  pe_mem m = pe_test_mem(&a);
  pe__buf b = {0};
  ck_assert_int_eq(pe__buf_set(&b, &m, "keep", 4), PE_OK);
  char big[200];
  memset(big, 'z', sizeof big);
  atomic_store(&a.fail_at, atomic_load(&a.attempts) + 1);
  ck_assert_int_eq(pe__buf_append(&b, &m, big, sizeof big), PE_ERR_NOMEM);
  ck_assert_slice_eq(pe__buf_slice(&b), "keep");
  atomic_store(&a.fail_at, atomic_load(&a.attempts) + 1);
  ck_assert_int_eq(pe__buf_prepend(&b, &m, big, sizeof big), PE_ERR_NOMEM);
  ck_assert_slice_eq(pe__buf_slice(&b), "keep");
  atomic_store(&a.fail_at, atomic_load(&a.attempts) + 1);
  ck_assert_int_eq(pe__buf_set(&b, &m, big, sizeof big), PE_ERR_NOMEM);
  ck_assert_slice_eq(pe__buf_slice(&b), "keep");
  /* Sizes that would wrap size_t fail without calling the allocator. */
  atomic_store(&a.fail_at, 0);
  long before = atomic_load(&a.attempts);
  ck_assert_int_eq(pe__buf_reserve(&b, &m, SIZE_MAX), PE_ERR_NOMEM);
  ck_assert_int_eq(pe__buf_reserve(&b, &m, SIZE_MAX - 2), PE_ERR_NOMEM);
  ck_assert_int_eq(atomic_load(&a.attempts), before);
  ck_assert_slice_eq(pe__buf_slice(&b), "keep");
  pe__buf_free(&b, &m);
  ck_assert_int_eq(atomic_load(&a.allocs), atomic_load(&a.frees));
}
END_TEST

START_TEST(source_inside_buffer) {
  const pe_mem *m = &pe__default_mem;
  pe__buf b = {0};
  ck_assert_int_eq(pe__buf_set(&b, m, "abc", 3), PE_OK);
  /* Appending the buffer to itself repeatedly forces reallocations while
   * the source points into the old block. */
  for (int i = 0; i < 6; i++)
    ck_assert_int_eq(pe__buf_append(&b, m, b.data, b.len), PE_OK);
  ck_assert_uint_eq(b.len, 3 * 64);
  for (size_t i = 0; i < b.len; i++)
    ck_assert_int_eq(b.data[i], "abc"[i % 3]);
  ck_assert_int_eq(pe__buf_set(&b, m, "0123456789", 10), PE_OK);
  ck_assert_int_eq(pe__buf_prepend(&b, m, b.data + 7, 3), PE_OK);
  ck_assert_slice_eq(pe__buf_slice(&b), "7890123456789");
  ck_assert_int_eq(pe__buf_set(&b, m, b.data + 3, 4), PE_OK);
  ck_assert_slice_eq(pe__buf_slice(&b), "0123");
  pe__buf_free(&b, m);
}
END_TEST

START_TEST(mem_wrappers) {
  pe_test_alloc a = {0};
  pe_mem m = pe_test_mem(&a);
  ck_assert_ptr_null(pe__calloc(&m, SIZE_MAX / 2, 4)); /* overflow: hook never called */
  ck_assert_int_eq(atomic_load(&a.attempts), 0);
  unsigned char *z = pe__calloc(&m, 16, 4);
  ck_assert_ptr_nonnull(z);
  for (int i = 0; i < 64; i++)
    ck_assert_int_eq(z[i], 0);
  z = pe__realloc(&m, z, 0); /* never frees: NULL means failure only */
  ck_assert_ptr_nonnull(z);
  pe__free(&m, z);
  void *p = pe__malloc(&m, 0);
  ck_assert_ptr_nonnull(p);
  pe__free(&m, p);
  void *c0 = pe__calloc(&m, 0, 8);
  ck_assert_ptr_nonnull(c0);
  pe__free(&m, c0);
  pe__free(&m, NULL);
  char *s = pe__strndup(&m, "hello world", 5);
  ck_assert_str_eq(s, "hello");
  pe__free(&m, s);
  ck_assert_ptr_null(pe__strndup(&m, "x", SIZE_MAX));
  atomic_store(&a.fail_at, atomic_load(&a.attempts) + 1);
  ck_assert_ptr_null(pe__strndup(&m, "x", 1));
  ck_assert_int_eq(atomic_load(&a.allocs), atomic_load(&a.frees));
  void *d = pe__malloc(&pe__default_mem, 10);
  d = pe__realloc(&pe__default_mem, d, 100);
  ck_assert_ptr_nonnull(d);
  pe__free(&pe__default_mem, d);
  pe__free(&pe__default_mem, pe__calloc(&pe__default_mem, 2, 2));
}
END_TEST

static Suite *buf_suite(void) {
  Suite *s = suite_create("buf");
  TCase *tc = tcase_create("core");
  tcase_add_test(tc, set_append_prepend);
  tcase_add_test(tc, growth_is_amortised);
  tcase_add_test(tc, reuse_does_not_allocate);
  tcase_add_test(tc, failure_leaves_buffer_unchanged);
  tcase_add_test(tc, source_inside_buffer);
  tcase_add_test(tc, mem_wrappers);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) {
  return pe_test_run_suite(buf_suite());
}
