/* Helpers shared by the Check suites: a counting allocator that can fail the
 * Nth allocation (for allocation-failure loops), and a log recorder. */
#ifndef PE_TEST_UTIL_H
#define PE_TEST_UTIL_H

#include <check.h>
#include <policyexec/policyexec.h>
#include <stdatomic.h>

typedef struct pe_test_alloc {
  atomic_long allocs;   /* successful malloc/calloc/realloc(NULL, n) */
  atomic_long frees;    /* free of a non-NULL pointer */
  atomic_long fail_at;  /* fail the allocation with this ordinal (1-based); 0 never */
  atomic_long attempts; /* allocations attempted so far */
} pe_test_alloc;

/* Allocator hooks counting into *a (which must outlive the engine). */
pe_mem pe_test_mem(pe_test_alloc *a);

/* Engine options with the counting allocator and the log recorder. */
pe_engine *pe_test_engine(pe_test_alloc *a);

/* The log recorder: keeps the last PE_TEST_LOG_LINES messages. */
#define PE_TEST_LOG_LINES 16
void pe_test_log_fn(pe_log_level level, const char *message, void *user_data);
void pe_test_log_clear(void);
/* 1 if some recorded message contains needle. */
int pe_test_log_contains(const char *needle);

/* Runs a suite and returns the process exit code (0 when all pass). */
int pe_test_run_suite(Suite *s);

/* Compares a slice with a C string. */
#define ck_assert_slice_eq(slice, cstr)                                                            \
  do {                                                                                             \
    pe_slice _s = (slice);                                                                         \
    const char *_c = (cstr);                                                                       \
    ck_assert_msg(_s.len == strlen(_c) && memcmp(_s.ptr ? _s.ptr : "", _c, _s.len) == 0,           \
                  "slice '%.*s' != '%s'", (int)_s.len, _s.ptr ? _s.ptr : "", _c);                  \
  } while (0)

#endif
