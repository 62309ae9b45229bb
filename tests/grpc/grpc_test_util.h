/* Helpers of the gRPC executor suite: executor processes (policyexec-executor
 * or the python3-grpcio interop executor) on loopback ports, engines that
 * hold a local Python pool and a gRPC executor, and a byte-exact dump of an
 * exchange. Header-only: one suite. */
#ifndef GRPC_TEST_UTIL_H
#define GRPC_TEST_UTIL_H

#include "test_python_util.h"

#include <sys/prctl.h>
#include <sys/wait.h>

static inline uint64_t pe_test_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

typedef struct gx {
  pid_t pid;
  int port;
  char target[160];
  int interop; /* the python3-grpcio executor */
} gx;

/* Optional settings of gx_start_with. */
typedef struct gx_opts {
  const char *unix_path;                      /* listen there instead of 127.0.0.1 */
  const char *tls_cert, *tls_key, *client_ca; /* PEM files */
  const char *max_age_ms;                     /* --max-connection-age-ms */
} gx_opts;

/* Starts an executor on 127.0.0.1:port (0: any free port) or o->unix_path,
 * and waits for its "listening ... port N" line. */
static inline void gx_start_with(gx *x, int port, int interop, const gx_opts *o) {
  int p[2];
  ck_assert_int_eq(pipe(p), 0);
  char listen[160];
  if (o && o->unix_path)
    snprintf(listen, sizeof listen, "unix://%s", o->unix_path);
  else
    snprintf(listen, sizeof listen, "127.0.0.1:%d", port);
  pid_t pid = fork();
  ck_assert_int_ge(pid, 0);
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive the test */
    dup2(p[1], 1);
    close(p[0]);
    close(p[1]);
    const char *argv[24] = {PE_EXECUTOR,         "--listen",      listen,
                            "--module-path",     PE_PY_SAMPLES,   "--module-path",
                            PE_PY_TEST_POLICIES, "--module-path", PE_GRPC_TEST_POLICIES,
                            "--drain-ms",        "3000"};
    int n = 11;
    if (o && o->tls_cert) {
      argv[n++] = "--tls-cert";
      argv[n++] = o->tls_cert;
      argv[n++] = "--tls-key";
      argv[n++] = o->tls_key;
    }
    if (o && o->max_age_ms) {
      argv[n++] = "--max-connection-age-ms";
      argv[n++] = o->max_age_ms;
    }
    if (o && o->client_ca) {
      argv[n++] = "--tls-client-ca";
      argv[n++] = o->client_ca;
    }
    if (interop)
      execl(PE_SYSTEM_PYTHON, PE_SYSTEM_PYTHON, PE_INTEROP_EXECUTOR, "--listen", listen,
            "--gen-dir", PE_PY_GEN_DIR, (char *)NULL);
    else
      execv(PE_EXECUTOR, (char *const *)argv);
    _exit(127);
  }
  close(p[1]);
  char line[256];
  size_t n = 0;
  line[0] = '\0';
  for (int waited = 0; waited < 20000 && !strchr(line, '\n');) {
    struct pollfd pfd = {.fd = p[0], .events = POLLIN};
    if (poll(&pfd, 1, 100) <= 0) {
      waited += 100;
      continue;
    }
    ssize_t r = read(p[0], line + n, sizeof line - 1 - n);
    if (r <= 0)
      break;
    n += (size_t)r;
    line[n] = '\0';
  }
  close(p[0]);
  const char *at = strstr(line, " port ");
  ck_assert_msg(at, "executor did not start: '%s'", line);
  x->pid = pid;
  x->port = atoi(at + 6);
  x->interop = interop;
  if (o && o->unix_path) {
    snprintf(x->target, sizeof x->target, "unix://%s", o->unix_path);
  } else {
    ck_assert_int_gt(x->port, 0);
    snprintf(x->target, sizeof x->target, "ipv4:127.0.0.1:%d", x->port);
  }
}

static inline void gx_start(gx *x, int port, int interop) {
  gx_start_with(x, port, interop, NULL);
}

/* Stops x with sig and reaps it; returns its wait status. */
static inline int gx_stop(gx *x, int sig) {
  int status = 0;
  if (x->pid > 0) {
    kill(x->pid, sig);
    while (waitpid(x->pid, &status, 0) < 0 && errno == EINTR) {
    }
  }
  x->pid = 0;
  return status;
}

static inline pe_engine *gx_bare_engine(void) {
  pe_engine_options *opts = NULL;
  pe_engine *e = NULL;
  ck_assert_int_eq(pe_engine_options_new(&opts), PE_OK);
  ck_assert_int_eq(pe_engine_options_set_log(opts, py_log, NULL), PE_OK);
  ck_assert_int_eq(pe_engine_options_set_log_level(opts, PE_LOG_DEBUG), PE_OK);
  ck_assert_int_eq(pe_engine_options_set_metrics(opts, py_metrics, NULL), PE_OK);
  ck_assert_int_eq(pe_engine_new(&e, opts), PE_OK);
  pe_engine_options_free(opts);
  return e;
}

/* Starts a gRPC executor named name at target on e. */
static inline int gx_start_grpc(pe_engine *e, const char *name, const char *target,
                                uint32_t backoff_max_ms) {
  pe_grpc_options *o = NULL;
  ck_assert_int_eq(pe_grpc_options_new(&o), PE_OK);
  ck_assert_int_eq(pe_grpc_options_set_name(o, name), PE_OK);
  ck_assert_int_eq(pe_grpc_options_set_target(o, target), PE_OK);
  ck_assert_int_eq(pe_grpc_options_set_module_path(o, PE_GRPC_MODULE), PE_OK);
  if (backoff_max_ms)
    ck_assert_int_eq(pe_grpc_options_set_reconnect_backoff(o, 50, backoff_max_ms), PE_OK);
  int rc = pe_grpc_options_set_startup_timeout(o, 10000);
  ck_assert_int_eq(rc, PE_OK);
  rc = pe_engine_start_grpc(e, o);
  pe_grpc_options_free(o);
  return rc;
}

/* An engine with the native samples, a local pool "python" and a gRPC
 * executor "remote" at target. */
static inline pe_engine *gx_engine(const char *target) {
  pe_engine *e = gx_bare_engine();
  ck_assert_int_eq(pe_engine_load_plugin(e, PE_SAMPLE_PLUGIN), PE_OK);
  pe_python_options *po = NULL;
  ck_assert_int_eq(pe_python_options_new(&po), PE_OK);
  ck_assert_int_eq(pe_python_options_set_workers(po, 1), PE_OK);
  ck_assert_int_eq(pe_python_options_set_worker_path(po, PE_PYWORKER), PE_OK);
  ck_assert_int_eq(pe_python_options_add_module_path(po, PE_PY_SAMPLES), PE_OK);
  ck_assert_int_eq(pe_python_options_add_module_path(po, PE_PY_TEST_POLICIES), PE_OK);
  ck_assert_int_eq(pe_python_options_add_module_path(po, PE_GRPC_TEST_POLICIES), PE_OK);
  ck_assert_int_eq(pe_engine_start_python(e, po), PE_OK);
  pe_python_options_free(po);
  int rc = gx_start_grpc(e, "remote", target, 500);
  ck_assert_msg(rc == PE_OK, "pe_engine_start_grpc: %s: %s", pe_errname(rc), pe_engine_errmsg(e));
  py_outcomes_clear();
  return e;
}

/* Everything a host can see of ex, in order, as bytes. */
static inline size_t gx_dump(const pe_exchange *ex, char *out, size_t cap) {
  size_t n = 0;
#define PUT(fmt, ...) n += (size_t)snprintf(out + n, n < cap ? cap - n : 0, fmt, ##__VA_ARGS__)
  pe_slice m = pe_exchange_method(ex), p = pe_exchange_path(ex), a = pe_exchange_authority(ex);
  PUT("%.*s %.*s %.*s status=%d verdict=%d\n", (int)m.len, m.ptr, (int)p.len, p.ptr, (int)a.len,
      a.ptr, pe_exchange_status(ex), (int)pe_exchange_verdict(ex));
  for (int dir = PE_REQUEST; dir <= PE_RESPONSE; dir++) {
    for (size_t i = 0; i < pe_exchange_header_count(ex, (pe_dir)dir); i++) {
      pe_slice hn, hv;
      pe_exchange_header_at(ex, (pe_dir)dir, i, &hn, &hv);
      PUT("%d %.*s: %.*s\n", dir, (int)hn.len, hn.ptr, (int)hv.len, hv.ptr);
    }
    pe_slice b = pe_exchange_body(ex, (pe_dir)dir);
    PUT("%d body[%zu]=%.*s\n", dir, b.len, (int)b.len, b.ptr);
  }
  for (size_t i = 0; i < pe_exchange_meta_count(ex); i++) {
    pe_slice k, v;
    pe_exchange_meta_at(ex, i, &k, &v);
    PUT("meta %.*s=%.*s\n", (int)k.len, k.ptr, (int)v.len, v.ptr);
  }
#undef PUT
  return n;
}

/* A POST with a request body; the response parts are set before the
 * response phases by gx_run_all. */
static inline pe_exchange *gx_exchange(pe_engine *e) {
  pe_exchange *ex = py_exchange(e);
  ck_assert_int_eq(pe_exchange_body_set(ex, PE_REQUEST, PE_LIT("payload-in")), PE_OK);
  return ex;
}

static inline void gx_set_response(pe_exchange *ex) {
  if (pe_exchange_verdict(ex) == PE_VERDICT_RESPOND)
    return;
  ck_assert_int_eq(pe_exchange_set_status(ex, 200), PE_OK);
  ck_assert_int_eq(
      pe_exchange_header_add(ex, PE_RESPONSE, PE_LIT("content-type"), PE_LIT("text/plain")), PE_OK);
  ck_assert_int_eq(pe_exchange_body_set(ex, PE_RESPONSE, PE_LIT("payload-out")), PE_OK);
}

/* Runs the four phases, blocking. */
static inline void gx_run_all(const pe_chain *c, pe_exchange *ex) {
  for (int ph = PE_PHASE_REQUEST_HEADERS; ph < PE_PHASE_COUNT; ph++) {
    if (ph == PE_PHASE_RESPONSE_HEADERS)
      gx_set_response(ex);
    if (pe_exchange_verdict(ex) == PE_VERDICT_RESPOND && ph < PE_PHASE_RESPONSE_HEADERS)
      continue;
    ck_assert_int_eq(pe_chain_run(c, ex, (pe_phase)ph), PE_OK);
  }
}

#endif
