#include "pe_test_util.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int take_slot(pe_test_alloc *a) {
  long n = atomic_fetch_add(&a->attempts, 1) + 1;
  long f = atomic_load(&a->fail_at);
  return !(f > 0 && n == f);
}

static void *t_malloc(size_t size, void *ud) {
  pe_test_alloc *a = ud;
  if (!take_slot(a))
    return NULL;
  void *p = malloc(size);
  if (p)
    atomic_fetch_add(&a->allocs, 1);
  return p;
}

static void t_free(void *ptr, void *ud) {
  pe_test_alloc *a = ud;
  if (ptr)
    atomic_fetch_add(&a->frees, 1);
  free(ptr);
}

static void *t_calloc(size_t nmemb, size_t size, void *ud) {
  pe_test_alloc *a = ud;
  if (!take_slot(a))
    return NULL;
  void *p = calloc(nmemb, size);
  if (p)
    atomic_fetch_add(&a->allocs, 1);
  return p;
}

static void *t_realloc(void *ptr, size_t size, void *ud) {
  pe_test_alloc *a = ud;
  if (!take_slot(a))
    return NULL;
  void *p = realloc(ptr, size);
  if (p && !ptr)
    atomic_fetch_add(&a->allocs, 1);
  return p;
}

pe_mem pe_test_mem(pe_test_alloc *a) {
  pe_mem m = {t_malloc, t_free, t_calloc, t_realloc, a};
  return m;
}

static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static char log_lines[PE_TEST_LOG_LINES][512];
static int log_next;

void pe_test_log_fn(pe_log_level level, const char *message, void *user_data) {
  (void)level;
  (void)user_data;
  pthread_mutex_lock(&log_lock);
  snprintf(log_lines[log_next], sizeof log_lines[0], "%s", message);
  log_next = (log_next + 1) % PE_TEST_LOG_LINES;
  pthread_mutex_unlock(&log_lock);
}

void pe_test_log_clear(void) {
  pthread_mutex_lock(&log_lock);
  memset(log_lines, 0, sizeof log_lines);
  log_next = 0;
  pthread_mutex_unlock(&log_lock);
}

int pe_test_log_contains(const char *needle) {
  int found = 0;
  pthread_mutex_lock(&log_lock);
  for (int i = 0; i < PE_TEST_LOG_LINES && !found; i++)
    found = strstr(log_lines[i], needle) != NULL;
  pthread_mutex_unlock(&log_lock);
  return found;
}

pe_engine *pe_test_engine(pe_test_alloc *a) {
  pe_engine_options *opts = NULL;
  pe_engine *e = NULL;
  ck_assert_int_eq(pe_engine_options_new(&opts), PE_OK);
  if (a) {
    pe_mem m = pe_test_mem(a);
    ck_assert_int_eq(pe_engine_options_set_mem(opts, &m), PE_OK);
  }
  ck_assert_int_eq(pe_engine_options_set_log(opts, pe_test_log_fn, NULL), PE_OK);
  ck_assert_int_eq(pe_engine_options_set_log_level(opts, PE_LOG_DEBUG), PE_OK);
  ck_assert_int_eq(pe_engine_new(&e, opts), PE_OK);
  pe_engine_options_free(opts);
  return e;
}

int pe_test_run_suite(Suite *s) {
  SRunner *sr = srunner_create(s);
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
