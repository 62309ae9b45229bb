/* Helpers shared by the Python backend's suites (tests/test_python_*.c):
 * engines with a started worker pool, chains from JSON, exchanges, and
 * checks on worker processes. Header-only: each suite is one executable. */
#ifndef TEST_PYTHON_UTIL_H
#define TEST_PYTHON_UTIL_H

#include "pe_test_util.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* Metrics recorder: counts outcomes of every step event. */
static atomic_int py_outcomes[5];

/* Log callback: records (pe_test_log_fn) and, with PE_TEST_VERBOSE set in
 * the environment, prints to stderr for debugging. */
static inline void py_log(pe_log_level level, const char *message, void *ud) {
  pe_test_log_fn(level, message, ud);
  if (getenv("PE_TEST_VERBOSE"))
    fprintf(stderr, "[pe %d] %s\n", (int)level, message);
}

static inline void py_metrics(const pe_step_event *ev, void *ud) {
  (void)ud;
  atomic_fetch_add(&py_outcomes[ev->outcome], 1);
}

static inline void py_outcomes_clear(void) {
  for (int i = 0; i < 5; i++)
    atomic_store(&py_outcomes[i], 0);
}

typedef struct py_config {
  const char *worker;            /* NULL: the real worker */
  unsigned workers;              /* 0: 1 */
  size_t max_in_flight;          /* 0: default */
  uint32_t backoff_ms;           /* initial back-off */
  int cpu_affinity;              /* pin workers to CPUs */
  uint32_t default_timeout_ms;   /* 0: the library's default */
  uint32_t create_timeout_ms;    /* 0: the library's default */
  const char *extra_module_path; /* NULL: none */
  size_t worker_max_in_flight;   /* 0: default */
  const char *virtualenv;        /* NULL: none */
} py_config;

/* An engine (counting allocator, log and metrics recorders) whose pool is
 * started with the sample and test policy directories. */
static inline pe_engine *py_engine_with(pe_test_alloc *a, py_config cfg) {
  pe_engine_options *opts = NULL;
  pe_engine *e = NULL;
  ck_assert_int_eq(pe_engine_options_new(&opts), PE_OK);
  if (a) {
    pe_mem m = pe_test_mem(a);
    ck_assert_int_eq(pe_engine_options_set_mem(opts, &m), PE_OK);
  }
  ck_assert_int_eq(pe_engine_options_set_log(opts, py_log, NULL), PE_OK);
  ck_assert_int_eq(pe_engine_options_set_log_level(opts, PE_LOG_DEBUG), PE_OK);
  ck_assert_int_eq(pe_engine_options_set_metrics(opts, py_metrics, NULL), PE_OK);
  ck_assert_int_eq(pe_engine_new(&e, opts), PE_OK);
  pe_engine_options_free(opts);

  pe_python_options *po = NULL;
  ck_assert_int_eq(pe_python_options_new(&po), PE_OK);
  ck_assert_int_eq(pe_python_options_set_workers(po, cfg.workers ? cfg.workers : 1), PE_OK);
  ck_assert_int_eq(pe_python_options_set_worker_path(po, cfg.worker ? cfg.worker : PE_PYWORKER),
                   PE_OK);
  ck_assert_int_eq(pe_python_options_add_module_path(po, PE_PY_SAMPLES), PE_OK);
  ck_assert_int_eq(pe_python_options_add_module_path(po, PE_PY_TEST_POLICIES), PE_OK);
  if (cfg.max_in_flight)
    ck_assert_int_eq(pe_python_options_set_max_in_flight(po, cfg.max_in_flight), PE_OK);
  ck_assert_int_eq(pe_python_options_set_restart_backoff(po, cfg.backoff_ms, 2000), PE_OK);
  ck_assert_int_eq(pe_python_options_set_cpu_affinity(po, cfg.cpu_affinity), PE_OK);
  if (cfg.worker_max_in_flight)
    ck_assert_int_eq(pe_python_options_set_worker_max_in_flight(po, cfg.worker_max_in_flight),
                     PE_OK);
  if (cfg.virtualenv)
    ck_assert_int_eq(pe_python_options_set_virtualenv(po, cfg.virtualenv), PE_OK);
  if (cfg.default_timeout_ms)
    ck_assert_int_eq(pe_python_options_set_default_timeout(po, cfg.default_timeout_ms), PE_OK);
  if (cfg.create_timeout_ms)
    ck_assert_int_eq(pe_python_options_set_create_timeout(po, cfg.create_timeout_ms), PE_OK);
  if (cfg.extra_module_path)
    ck_assert_int_eq(pe_python_options_add_module_path(po, cfg.extra_module_path), PE_OK);
  int rc = pe_engine_start_python(e, po);
  ck_assert_msg(rc == PE_OK, "pe_engine_start_python: %s: %s", pe_errname(rc), pe_engine_errmsg(e));
  pe_python_options_free(po);
  py_outcomes_clear();
  return e;
}

static inline pe_engine *py_engine(unsigned workers) {
  py_config cfg = {.workers = workers};
  return py_engine_with(NULL, cfg);
}

static inline pe_chain *py_chain(pe_engine *e, const char *json) {
  pe_chain *c = NULL;
  char err[256] = "";
  int rc = pe_chain_new_from_json(&c, e, pe_str(json), err, sizeof err);
  ck_assert_msg(rc == PE_OK, "chain %s: %s: %s", json, pe_errname(rc), err);
  return c;
}

static inline pe_exchange *py_exchange(pe_engine *e) {
  pe_exchange *ex = NULL;
  ck_assert_int_eq(pe_exchange_new(&ex, e), PE_OK);
  ck_assert_int_eq(pe_exchange_set_method(ex, PE_LIT("POST")), PE_OK);
  ck_assert_int_eq(pe_exchange_set_path(ex, PE_LIT("/items?id=3")), PE_OK);
  ck_assert_int_eq(pe_exchange_set_authority(ex, PE_LIT("example.test")), PE_OK);
  ck_assert_int_eq(pe_exchange_header_add(ex, PE_REQUEST, PE_LIT("host"), PE_LIT("example.test")),
                   PE_OK);
  return ex;
}

/* The first worker's pid (0 if down). */
static inline int py_worker_pid(pe_engine *e, size_t index) {
  int pids[16] = {0};
  size_t n = pe_engine_python_worker_pids(e, pids, 16);
  ck_assert_uint_gt(n, index);
  return pids[index];
}

/* 1 if a process (or zombie) with this pid exists. */
static inline int py_process_exists(int pid) {
  char path[64];
  snprintf(path, sizeof path, "/proc/%d", pid);
  struct stat st;
  return stat(path, &st) == 0;
}

/* Waits up to timeout_ms for a process to be dead with all its threads
 * (so its fds are closed). For a child of this process (a worker), asks
 * waitid without reaping it (the engine reaps it): /proc shows a
 * multi-threaded process's leader as a zombie while its other threads still
 * hold its sockets. For another process, waits until /proc shows it gone or
 * a zombie. Returns 1 if it is dead. */
static inline int py_wait_dead(int pid, int timeout_ms) {
  for (int waited = 0; waited < timeout_ms; waited += 10) {
    siginfo_t info;
    memset(&info, 0, sizeof info);
    if (waitid(P_PID, (id_t)pid, &info, WEXITED | WNOHANG | WNOWAIT) == 0) {
      if (info.si_pid == pid)
        return 1;
    } else {
      char path[64], buf[256];
      snprintf(path, sizeof path, "/proc/%d/stat", pid);
      FILE *f = fopen(path, "r");
      if (!f)
        return 1;
      size_t n = fread(buf, 1, sizeof buf - 1, f);
      fclose(f);
      buf[n] = '\0';
      const char *paren = strrchr(buf, ')');
      if (paren && paren[1] == ' ' && paren[2] == 'Z')
        return 1;
    }
    struct timespec ts = {0, 10000000L};
    nanosleep(&ts, NULL);
  }
  return 0;
}

/* The --socket argument of a worker, from its command line. */
static inline void py_worker_socket(int pid, char *out, size_t size) {
  char path[64], buf[4096];
  snprintf(path, sizeof path, "/proc/%d/cmdline", pid);
  FILE *f = fopen(path, "rb");
  ck_assert_ptr_nonnull(f);
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = '\0';
  out[0] = '\0';
  for (size_t i = 0; i < n;) {
    const char *arg = buf + i;
    i += strlen(arg) + 1;
    if (!strcmp(arg, "--socket") && i < n)
      snprintf(out, size, "%s", buf + i);
  }
  ck_assert_msg(out[0], "worker %d has no --socket argument", pid);
}

static inline void py_sleep_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

/* Polls the dispatcher's fd and dispatches until `*flag` is set or
 * timeout_ms passes. */
static inline void py_drive(pe_dispatcher *d, atomic_int *flag, int timeout_ms) {
  for (int waited = 0; !atomic_load(flag) && waited < timeout_ms; waited += 10) {
    struct pollfd p = {.fd = pe_dispatcher_fd(d), .events = POLLIN};
    if (poll(&p, 1, 10) > 0)
      pe_dispatcher_dispatch(d);
  }
  ck_assert_msg(atomic_load(flag), "run did not complete within %d ms", timeout_ms);
}

#endif
