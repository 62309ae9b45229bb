/* policyexec-executor: Python policies served over gRPC, for engines on
 * other hosts (pe_engine_start_grpc). One process, one interpreter; run one
 * per CPU and let gRPC balance (see doc/REMOTE.md).
 *
 *   policyexec-executor --listen ADDR... --module-path DIR... [--max-message BYTES]
 *                       [--tls-cert PEM --tls-key PEM [--tls-client-ca PEM]]
 *                       [--drain-ms MS] [--max-connection-age-ms MS]
 *
 * ADDR is grpc://host:port, host:port, or unix:///path (gRPC's own forms);
 * port 0 binds any free port, printed on stdout as "listening ADDR port N".
 * SIGTERM or SIGINT: stop accepting calls, finish those in flight (up to
 * --drain-ms, default 5000), exit 0.
 */
#include <errno.h>
#include <limits.h>
#include <malloc.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pw_paths.h"
#include "pw_python.h"
#include "pw_requests.h"
#include "px_server.h"

#define MAX_LISTEN 16
#define MAX_MODULE_PATHS 64

static volatile sig_atomic_t stop_requested;

#if defined(__SANITIZE_ADDRESS__)
/* Sanitizer builds: CPython keeps a few blocks past Py_FinalizeEx (its own,
 * known); every other leak still fails the run. */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void) {
  return "leak:libpython3\n";
}
#endif

static void on_stop(int sig) {
  (void)sig;
  stop_requested = 1;
}

static void usage(FILE *f) {
  fputs("usage: policyexec-executor --listen ADDR... --module-path DIR... [--max-message BYTES]\n"
        "                           [--tls-cert PEM --tls-key PEM [--tls-client-ca PEM]]\n"
        "                           [--drain-ms MS] [--max-connection-age-ms MS]\n",
        f);
}

static int number(const char *s, unsigned long long max, unsigned long long *out) {
  char *end;
  errno = 0;
  unsigned long long v = strtoull(s, &end, 10);
  if (errno || end == s || *end || v > max || s[0] == '-')
    return -1;
  *out = v;
  return 0;
}

int main(int argc, char **argv) {
  const char *listen[MAX_LISTEN];
  char *modules[MAX_MODULE_PATHS];
  size_t n_modules = 0;
  px_config cfg = {.listen = listen, .max_message = PW_DEFAULT_MAX_MESSAGE, .drain_ms = 5000};
  for (int i = 1; i < argc; i++) {
    const char *opt = argv[i];
    if (!strcmp(opt, "--help")) {
      usage(stdout);
      return 0;
    }
    if (i + 1 >= argc) {
      fprintf(stderr, "policyexec-executor: %s: missing value\n", opt);
      usage(stderr);
      return 2;
    }
    char *val = argv[++i];
    unsigned long long n;
    if (!strcmp(opt, "--listen") && cfg.n_listen < MAX_LISTEN) {
      /* grpc://host:port is what engines write; gRPC servers bind host:port. */
      listen[cfg.n_listen++] = strncmp(val, "grpc://", 7) ? val : val + 7;
    } else if (!strcmp(opt, "--module-path") && n_modules < MAX_MODULE_PATHS) {
      modules[n_modules++] = val;
    } else if (!strcmp(opt, "--max-message") && number(val, INT32_MAX, &n) == 0 && n >= 4096) {
      cfg.max_message = (size_t)n;
    } else if (!strcmp(opt, "--drain-ms") && number(val, 3600000, &n) == 0) {
      cfg.drain_ms = (unsigned)n;
    } else if (!strcmp(opt, "--max-connection-age-ms") && number(val, INT32_MAX, &n) == 0) {
      cfg.max_connection_age_ms = (unsigned)n;
    } else if (!strcmp(opt, "--tls-cert")) {
      cfg.tls_cert = val;
    } else if (!strcmp(opt, "--tls-key")) {
      cfg.tls_key = val;
    } else if (!strcmp(opt, "--tls-client-ca")) {
      cfg.tls_client_ca = val;
    } else {
      fprintf(stderr, "policyexec-executor: bad option %s %s\n", opt, val);
      usage(stderr);
      return 2;
    }
  }
  if (cfg.n_listen == 0 || n_modules == 0 || !cfg.tls_cert != !cfg.tls_key ||
      (cfg.tls_client_ca && !cfg.tls_cert)) {
    fprintf(stderr, "policyexec-executor: give --listen and --module-path (and TLS cert and key "
                    "together)\n");
    usage(stderr);
    return 2;
  }
  /* As the worker: bodies come from the heap, not a fresh mmap each time. */
  mallopt(M_MMAP_THRESHOLD, 32 * 1024 * 1024);
  mallopt(M_TRIM_THRESHOLD, 64 * 1024 * 1024);
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_stop;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  signal(SIGPIPE, SIG_IGN);

  char exe[PATH_MAX] = "", package_dir[PATH_MAX];
  if (pw_self_exe(exe, sizeof exe) != 0 ||
      pw_find_package_dir(exe, package_dir, sizeof package_dir) != 0) {
    fprintf(stderr, "policyexec-executor: cannot find the policyexec Python package near %s\n",
            exe);
    return 1;
  }
  pw_python py;
  pw_handler handler = {.py = &py};
  if (pw_arena_init(&handler.arena) != 0 || pw_python_init(&py, package_dir) != 0 ||
      pw_async_start(&handler.async) != 0 || pw_preload_modules(&handler, modules, n_modules) != 0)
    return 1;
  int rc = px_serve(&cfg, &handler, &stop_requested);
  pw_python_finalize(&py);
  pw_arena_destroy(&handler.arena);
  return rc == 0 ? 0 : 1;
}
