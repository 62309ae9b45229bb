/* The gRPC executor backend (lib/grpc/): policyexec-executor and an
 * executor written with python3-grpcio answer the engine exactly as the
 * local pool does; deadlines, dead executors, balancing, forks and drains. */
#include "grpc_test_util.h"

#include <pthread.h>
#include <stdbool.h>

#define STEP(name, extra) "{\"name\":\"" name "\",\"version\":\"1.0.0\"" extra "}"
#define REMOTE ",\"executor\":\"remote\""

typedef struct profile {
  const char *name;
  const char *local, *remote; /* the same chain on the pool and over gRPC */
} profile;

#define PY(role) "sample-python-" role
#define NAT(role) "sample-native-" role
#define FOUR(k, x)                                                                                 \
  "[" STEP(k("response-header"), x) "," STEP(k("request-body"), x) "," STEP(                       \
      k("response-header"), x) "," STEP(k("response-body"), x) "]"
#define MIX(x)                                                                                     \
  "[" STEP(NAT("response-header"), "") "," STEP(PY("request-body"), x) "," STEP(                   \
      NAT("response-body"), "") "," STEP(PY("response-header"), x) "]"
#define ONE(role) "[" STEP(PY(role), "") "]", "[" STEP(PY(role), REMOTE) "]"

/* The brief's profiles, and each Python hook alone. */
static const profile profiles[] = {
    {"python-4", FOUR(PY, ""), FOUR(PY, REMOTE)}, {"mix-4", MIX(""), MIX(REMOTE)},
    {"native-4", FOUR(NAT, ""), FOUR(NAT, "")},   {"request-header", ONE("request-header")},
    {"request-body", ONE("request-body")},        {"response-header", ONE("response-header")},
    {"response-body", ONE("response-body")},
};

static void on_done_ok(pe_exchange *ex, int rc, void *ud) {
  (void)ex;
  ck_assert_int_eq(rc, PE_OK);
  atomic_fetch_add((atomic_int *)ud, 1);
}

/* Every phase through a dispatcher: the request phases, then the
 * response's two as one run. */
static void run_all_async(const pe_chain *c, pe_exchange *ex, pe_dispatcher *d) {
  atomic_int done = 0;
  int rc = pe_chain_run_phases_async(c, ex, PE_PHASE_REQUEST_HEADERS, PE_PHASE_REQUEST_BODY, d,
                                     on_done_ok, &done);
  ck_assert_msg(rc == PE_OK || rc == PE_PENDING, "async: %s", pe_errname(rc));
  if (rc == PE_PENDING)
    py_drive(d, &done, 10000);
  gx_set_response(ex);
  atomic_store(&done, 0);
  rc = pe_chain_run_phases_async(c, ex, PE_PHASE_RESPONSE_HEADERS, PE_PHASE_RESPONSE_BODY, d,
                                 on_done_ok, &done);
  ck_assert_msg(rc == PE_OK || rc == PE_PENDING, "async: %s", pe_errname(rc));
  if (rc == PE_PENDING)
    py_drive(d, &done, 10000);
}

/* Runs every profile (skip: those an interop executor does not serve) on
 * the pool and on the gRPC executor, blocking and async, and compares. */
static void compare_profiles(pe_engine *e) {
  pe_dispatcher *d = NULL;
  ck_assert_int_eq(pe_dispatcher_new(&d, e), PE_OK);
  for (size_t i = 0; i < sizeof profiles / sizeof profiles[0]; i++) {
    const profile *p = &profiles[i];
    pe_chain *lc = py_chain(e, p->local), *rc = py_chain(e, p->remote);
    pe_exchange *lx = gx_exchange(e), *rx = gx_exchange(e), *ax = gx_exchange(e);
    gx_run_all(lc, lx);
    gx_run_all(rc, rx);
    run_all_async(rc, ax, d);
    char want[4096], got[4096], got_async[4096];
    gx_dump(lx, want, sizeof want);
    gx_dump(rx, got, sizeof got);
    gx_dump(ax, got_async, sizeof got_async);
    ck_assert_msg(strstr(want, "[sample-") || !strcmp(p->name, "request-header") ||
                      !strcmp(p->name, "response-header"),
                  "%s: the local run did nothing:\n%s", p->name, want);
    ck_assert_msg(!strcmp(want, got), "%s differs over gRPC:\n--- unix\n%s--- grpc\n%s", p->name,
                  want, got);
    ck_assert_msg(!strcmp(want, got_async),
                  "%s differs over gRPC (async):\n--- unix\n%s--- grpc\n%s", p->name, want,
                  got_async);
    pe_exchange_free(lx);
    pe_exchange_free(rx);
    pe_exchange_free(ax);
    pe_chain_free(lc);
    pe_chain_free(rc);
  }
  pe_dispatcher_free(d);
  ck_assert_int_eq(atomic_load(&py_outcomes[PE_STEP_FAILED]), 0);
  ck_assert_int_eq(atomic_load(&py_outcomes[PE_STEP_CRASHED]), 0);
}

START_TEST(profiles_identical_over_grpc_and_unix) {
  gx x;
  gx_start(&x, 0, 0);
  pe_engine *e = gx_engine(x.target);
  compare_profiles(e);
  size_t alive = 0;
  ck_assert_int_eq(pe_engine_grpc_ping(e, "remote", &alive), PE_OK);
  ck_assert_uint_eq(alive, 1);
  ck_assert_int_eq(pe_engine_grpc_ping(e, "python", &alive), PE_ERR_STATE);
  pe_engine_free(e);
  /* An orchestrator's probe: grpc.health.v1.Health/Check says SERVING. */
  char cmd[512];
  snprintf(cmd, sizeof cmd, "%s %s 127.0.0.1:%d", PE_SYSTEM_PYTHON, PE_HEALTH_CHECK, x.port);
  ck_assert_int_eq(system(cmd), 0);
  gx_stop(&x, SIGKILL);
}
END_TEST

/* Any gRPC server of the proto is an executor: python3-grpcio's. */
START_TEST(interop_executor_answers_the_engine) {
  gx x;
  gx_start(&x, 0, 1);
  pe_engine *e = gx_engine(x.target);
  compare_profiles(e);
  pe_engine_free(e);
  gx_stop(&x, SIGKILL);
}
END_TEST

static int run_header_phase(pe_engine *e, const char *json, pe_exchange **out) {
  pe_chain *c = py_chain(e, json);
  pe_exchange *ex = gx_exchange(e);
  int rc = pe_chain_run(c, ex, PE_PHASE_REQUEST_HEADERS);
  pe_chain_free(c);
  *out = ex;
  return rc;
}

START_TEST(deadline_exceeded_is_a_timeout) {
  gx x;
  gx_start(&x, 0, 0);
  pe_engine *e = gx_engine(x.target);
  pe_exchange *ex;
  uint64_t t0 = pe_test_now_ms();
  ck_assert_int_eq(run_header_phase(e,
                                    "[" STEP("test-sleep", ",\"params\":{\"seconds\":1.5},"
                                                           "\"timeout_ms\":200" REMOTE) "]",
                                    &ex),
                   PE_OK);
  ck_assert_int_eq(pe_exchange_verdict(ex), PE_VERDICT_RESPOND);
  ck_assert_int_eq(pe_exchange_status(ex), 504);
  ck_assert_int_eq(atomic_load(&py_outcomes[PE_STEP_TIMEOUT]), 1);
  ck_assert_uint_lt(pe_test_now_ms() - t0, 1400); /* did not wait for the policy */
  pe_exchange_free(ex);
  /* Fail open: skipped, nothing of it kept. */
  ck_assert_int_eq(run_header_phase(e,
                                    "[" STEP("test-sleep", ",\"params\":{\"seconds\":1.5},"
                                                           "\"failure_mode\":\"open\","
                                                           "\"timeout_ms\":200" REMOTE) "]",
                                    &ex),
                   PE_OK);
  ck_assert_int_eq(pe_exchange_verdict(ex), PE_VERDICT_CONTINUE);
  pe_slice v;
  ck_assert_int_ne(pe_exchange_header_get(ex, PE_REQUEST, PE_LIT("x-slept"), &v), PE_OK);
  ck_assert_int_eq(atomic_load(&py_outcomes[PE_STEP_TIMEOUT]), 2);
  pe_exchange_free(ex);
  /* Behind a stuck step (one the executor cannot interrupt at its own
   * timeout): a call whose deadline passes while it waits in the executor
   * is dropped there, never run. (Chains first: building one
   * checks its params on the executor, which would wait for the sleeper.) */
  pe_chain *sleep1 =
      py_chain(e, "[" STEP("test-sleep-blocked",
                           ",\"params\":{\"seconds\":1},\"timeout_ms\":200" REMOTE) "]");
  pe_chain *count_short = py_chain(e, "[" STEP("test-count", ",\"timeout_ms\":200" REMOTE) "]");
  pe_chain *count_long = py_chain(e, "[" STEP("test-count", ",\"timeout_ms\":5000" REMOTE) "]");
  ex = gx_exchange(e);
  ck_assert_int_eq(pe_chain_run(sleep1, ex, PE_PHASE_REQUEST_HEADERS), PE_OK);
  ck_assert_int_eq(pe_exchange_status(ex), 504);
  pe_exchange_free(ex);
  ex = gx_exchange(e);
  ck_assert_int_eq(pe_chain_run(count_short, ex, PE_PHASE_REQUEST_HEADERS), PE_OK);
  ck_assert_int_eq(pe_exchange_status(ex), 504);
  pe_exchange_free(ex);
  ex = gx_exchange(e);
  ck_assert_int_eq(pe_chain_run(count_long, ex, PE_PHASE_REQUEST_HEADERS), PE_OK);
  pe_slice n;
  ck_assert_int_eq(pe_exchange_header_get(ex, PE_REQUEST, PE_LIT("x-count"), &n), PE_OK);
  ck_assert_msg(n.len == 1 && n.ptr[0] == '1', "the expired call ran: x-count %.*s", (int)n.len,
                n.ptr);
  pe_chain_free(sleep1);
  pe_chain_free(count_short);
  pe_chain_free(count_long);
  pe_exchange_free(ex);
  pe_engine_free(e);
  gx_stop(&x, SIGKILL);
}
END_TEST

#define HDR_CLOSED "[" STEP(PY("request-header"), REMOTE) "]"
#define HDR_OPEN "[" STEP(PY("request-header"), ",\"failure_mode\":\"open\"" REMOTE) "]"

static bool has_phase_header(const pe_exchange *ex) {
  pe_slice v;
  return pe_exchange_header_get(ex, PE_REQUEST, PE_LIT("x-sample-policy-phase"), &v) == PE_OK;
}

typedef struct load {
  atomic_int done, ok, failed;
} load;

static void on_load_done(pe_exchange *ex, int rc, void *ud) {
  load *l = ud;
  ck_assert_int_eq(rc, PE_OK);
  if (has_phase_header(ex))
    atomic_fetch_add(&l->ok, 1);
  else
    atomic_fetch_add(&l->failed, 1);
  atomic_fetch_add(&l->done, 1);
}

START_TEST(killed_executor_fails_per_mode_then_recovers) {
  gx x;
  gx_start(&x, 0, 0);
  int port = x.port;
  pe_engine *e = gx_engine(x.target);
  pe_chain *open = py_chain(e, HDR_OPEN), *closed = py_chain(e, HDR_CLOSED);
  pe_dispatcher *d = NULL;
  ck_assert_int_eq(pe_dispatcher_new(&d, e), PE_OK);

  /* Mid-load: runs in flight when the executor dies all end, none hangs. */
  enum { N = 32 };
  pe_exchange *exs[N];
  load l = {0};
  for (int i = 0; i < N; i++) {
    exs[i] = gx_exchange(e);
    int rc = pe_chain_run_async(open, exs[i], PE_PHASE_REQUEST_HEADERS, d, on_load_done, &l);
    ck_assert_int_eq(rc, PE_PENDING);
    if (i == N / 2)
      gx_stop(&x, SIGKILL);
  }
  for (int waited = 0; atomic_load(&l.done) < N && waited < 10000; waited += 10) {
    struct pollfd p = {.fd = pe_dispatcher_fd(d), .events = POLLIN};
    if (poll(&p, 1, 10) > 0)
      pe_dispatcher_dispatch(d);
  }
  ck_assert_int_eq(atomic_load(&l.done), N);
  ck_assert_int_gt(atomic_load(&l.failed), 0);
  for (int i = 0; i < N; i++)
    pe_exchange_free(exs[i]);

  /* While it is down: closed answers 500 at once, open skips the step. */
  uint64_t t0 = pe_test_now_ms();
  pe_exchange *ex = gx_exchange(e);
  ck_assert_int_eq(pe_chain_run(closed, ex, PE_PHASE_REQUEST_HEADERS), PE_OK);
  ck_assert_int_eq(pe_exchange_verdict(ex), PE_VERDICT_RESPOND);
  ck_assert_int_eq(pe_exchange_status(ex), 500);
  pe_exchange_free(ex);
  ex = gx_exchange(e);
  ck_assert_int_eq(pe_chain_run(open, ex, PE_PHASE_REQUEST_HEADERS), PE_OK);
  ck_assert_int_eq(pe_exchange_verdict(ex), PE_VERDICT_CONTINUE);
  ck_assert(!has_phase_header(ex));
  pe_exchange_free(ex);
  ck_assert_uint_lt(pe_test_now_ms() - t0, 5000);
  ck_assert_int_gt(atomic_load(&py_outcomes[PE_STEP_CRASHED]), 0);
  size_t alive = 1;
  ck_assert_int_eq(pe_engine_grpc_ping(e, "remote", &alive), PE_ERR_WORKER);
  ck_assert_uint_eq(alive, 0);

  /* Back on the same port: traffic resumes by itself (reconnect back-off). */
  gx_start(&x, port, 0);
  bool back = false;
  for (int i = 0; i < 200 && !back; i++) {
    ex = gx_exchange(e);
    ck_assert_int_eq(pe_chain_run(open, ex, PE_PHASE_REQUEST_HEADERS), PE_OK);
    back = has_phase_header(ex);
    pe_exchange_free(ex);
    if (!back)
      py_sleep_ms(50);
  }
  ck_assert_msg(back, "traffic did not resume after the executor came back");
  /* And on the dispatcher's path too. */
  memset(&l, 0, sizeof l);
  ex = gx_exchange(e);
  int rc = pe_chain_run_async(closed, ex, PE_PHASE_REQUEST_HEADERS, d, on_load_done, &l);
  ck_assert_int_eq(rc, PE_PENDING);
  py_drive(d, &l.done, 10000);
  ck_assert_int_eq(atomic_load(&l.ok), 1);
  pe_exchange_free(ex);

  pe_dispatcher_free(d);
  pe_chain_free(open);
  pe_chain_free(closed);
  pe_engine_free(e);
  gx_stop(&x, SIGKILL);
}
END_TEST

START_TEST(two_executors_behind_one_target_both_serve) {
  gx a, b;
  gx_start(&a, 0, 0);
  gx_start(&b, 0, 0);
  char target[128];
  snprintf(target, sizeof target, "ipv4:127.0.0.1:%d,127.0.0.1:%d", a.port, b.port);
  pe_engine *e = gx_engine(target);
  pe_chain *c = py_chain(e, "[" STEP("test-executor-pid", REMOTE) "]");
  int seen_a = 0, seen_b = 0;
  /* round_robin picks among the connected executors: on a loaded machine
   * the second may connect a little after the first. */
  for (int i = 0; i < 400 && (i < 40 || !seen_a || !seen_b); i++) {
    if (i >= 40)
      py_sleep_ms(10);
    pe_exchange *ex = gx_exchange(e);
    ck_assert_int_eq(pe_chain_run(c, ex, PE_PHASE_REQUEST_HEADERS), PE_OK);
    pe_slice v;
    ck_assert_int_eq(pe_exchange_header_get(ex, PE_REQUEST, PE_LIT("x-executor-pid"), &v), PE_OK);
    char digits[16];
    snprintf(digits, sizeof digits, "%.*s", (int)v.len, v.ptr); /* a slice: not terminated */
    int pid = atoi(digits);
    seen_a += pid == a.pid;
    seen_b += pid == b.pid;
    ck_assert(pid == a.pid || pid == b.pid);
    pe_exchange_free(ex);
  }
  ck_assert_msg(seen_a > 0 && seen_b > 0, "round robin: a %d, b %d", seen_a, seen_b);
  pe_chain_free(c);
  pe_engine_free(e);
  gx_stop(&a, SIGKILL);
  gx_stop(&b, SIGKILL);
}
END_TEST

static int threads_of_self(void) {
  FILE *f = fopen("/proc/self/status", "r");
  char line[256];
  int n = -1;
  while (f && fgets(line, sizeof line, f))
    if (!strncmp(line, "Threads:", 8))
      n = atoi(line + 8);
  if (f)
    fclose(f);
  return n;
}

/* One "nginx master": engine and chain first, then two forked children
 * that each run the chain, blocking and async; then the master itself.
 * gRPC must not have started (no new thread) before the fork. Returns 0
 * when all of it worked. Runs in a fresh process (this program, exec'd with
 * --master), so that no earlier test has started gRPC in it. */
/* An exchange, without Check's asserts (the master is no test process). */
static pe_exchange *plain_exchange(pe_engine *e) {
  pe_exchange *ex = NULL;
  if (pe_exchange_new(&ex, e) != PE_OK)
    _exit(3);
  pe_exchange_set_method(ex, PE_LIT("GET"));
  pe_exchange_set_path(ex, PE_LIT("/"));
  return ex;
}

static void master_done(pe_exchange *ex, int rc, void *ud) {
  (void)ex;
  if (rc == PE_OK)
    atomic_fetch_add((atomic_int *)ud, 1);
}

static int master(const char *target) {
  int before = threads_of_self();
  pe_engine *e = NULL;
  pe_grpc_options *o = NULL;
  pe_chain *c = NULL;
  if (pe_engine_new(&e, NULL) != PE_OK || pe_grpc_options_new(&o) != PE_OK ||
      pe_grpc_options_set_name(o, "remote") != PE_OK ||
      pe_grpc_options_set_target(o, target) != PE_OK ||
      pe_grpc_options_set_module_path(o, PE_GRPC_MODULE) != PE_OK)
    return 10;
  int rc = pe_engine_start_grpc(e, o);
  pe_grpc_options_free(o);
  if (rc != PE_OK) {
    fprintf(stderr, "master: %s\n", pe_engine_errmsg(e));
    return 11;
  }
  const char *json = "[" STEP(PY("request-header"), REMOTE) "]";
  char err[256];
  if (pe_chain_new_from_json(&c, e, pe_str(json), err, sizeof err) != PE_OK) {
    fprintf(stderr, "master: %s\n", err);
    return 12;
  }
  if (threads_of_self() != before)
    return 13;
  for (int round = 0; round < 2; round++) {
    pid_t pid = fork();
    if (pid < 0)
      return 12;
    if (pid == 0) {
      pe_exchange *ex = plain_exchange(e);
      int ok = pe_chain_run(c, ex, PE_PHASE_REQUEST_HEADERS) == PE_OK && has_phase_header(ex);
      pe_exchange_free(ex);
      pe_dispatcher *d = NULL;
      atomic_int done = 0;
      ex = plain_exchange(e);
      ok = ok && pe_dispatcher_new(&d, e) == PE_OK &&
           pe_chain_run_async(c, ex, PE_PHASE_REQUEST_HEADERS, d, master_done, &done) == PE_PENDING;
      for (int waited = 0; ok && !atomic_load(&done) && waited < 10000; waited += 10) {
        struct pollfd p = {.fd = pe_dispatcher_fd(d), .events = POLLIN};
        if (poll(&p, 1, 10) > 0)
          pe_dispatcher_dispatch(d);
      }
      ok = ok && atomic_load(&done) && has_phase_header(ex);
      _exit(ok ? 0 : 1);
    }
    int status;
    if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
      return 20 + round;
  }
  /* The master may start using it after its children did. */
  pe_exchange *ex = plain_exchange(e);
  int ok = pe_chain_run(c, ex, PE_PHASE_REQUEST_HEADERS) == PE_OK && has_phase_header(ex);
  pe_exchange_free(ex);
  pe_chain_free(c);
  pe_engine_free(e);
  return ok ? 0 : 30;
}

/* nginx's way: engine and chains in the master, requests in forked
 * children. */
START_TEST(fork_after_engine_works_in_the_child) {
  gx x;
  gx_start(&x, 0, 0);
  pid_t pid = fork();
  ck_assert_int_ge(pid, 0);
  if (pid == 0) {
    execl("/proc/self/exe", "test_grpc", "--master", x.target, (char *)NULL);
    _exit(127);
  }
  int status;
  ck_assert_int_eq(waitpid(pid, &status, 0), pid);
  ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "master: status %d",
                WIFEXITED(status) ? WEXITSTATUS(status) : -1);
  gx_stop(&x, SIGKILL);
}
END_TEST

START_TEST(sigterm_drains_calls_in_flight) {
  gx x;
  gx_start(&x, 0, 0);
  pe_engine *e = gx_engine(x.target);
  pe_chain *c = py_chain(
      e, "[" STEP("test-sleep", ",\"params\":{\"seconds\":0.5},\"timeout_ms\":5000" REMOTE) "]");
  pe_dispatcher *d = NULL;
  ck_assert_int_eq(pe_dispatcher_new(&d, e), PE_OK);
  pe_exchange *ex = gx_exchange(e);
  atomic_int done = 0;
  ck_assert_int_eq(pe_chain_run_async(c, ex, PE_PHASE_REQUEST_HEADERS, d, on_done_ok, &done),
                   PE_PENDING);
  py_sleep_ms(150); /* the call is in the executor */
  kill(x.pid, SIGTERM);
  py_drive(d, &done, 10000);
  pe_slice v;
  ck_assert_int_eq(pe_exchange_header_get(ex, PE_REQUEST, PE_LIT("x-slept"), &v), PE_OK);
  ck_assert_int_eq(pe_exchange_verdict(ex), PE_VERDICT_CONTINUE);
  int status;
  ck_assert_int_eq(waitpid(x.pid, &status, 0), x.pid);
  ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  pe_exchange_free(ex);
  pe_dispatcher_free(d);
  pe_chain_free(c);
  pe_engine_free(e);
}
END_TEST

/* Runs the request-header sample on the executor "remote" of e. */
static bool header_runs(pe_engine *e) {
  pe_chain *c = py_chain(e, HDR_CLOSED);
  pe_exchange *ex = gx_exchange(e);
  bool ok = pe_chain_run(c, ex, PE_PHASE_REQUEST_HEADERS) == PE_OK && has_phase_header(ex);
  pe_exchange_free(ex);
  pe_chain_free(c);
  return ok;
}

static int start_tls(pe_engine *e, const char *target, const char *dir, bool client_cert) {
  char ca[256], cert[256], key[256];
  snprintf(ca, sizeof ca, "%s/ca.pem", dir);
  snprintf(cert, sizeof cert, "%s/client.pem", dir);
  snprintf(key, sizeof key, "%s/client.key", dir);
  pe_grpc_options *o = NULL;
  ck_assert_int_eq(pe_grpc_options_new(&o), PE_OK);
  ck_assert_int_eq(pe_grpc_options_set_name(o, "remote"), PE_OK);
  ck_assert_int_eq(pe_grpc_options_set_target(o, target), PE_OK);
  ck_assert_int_eq(pe_grpc_options_set_module_path(o, PE_GRPC_MODULE), PE_OK);
  ck_assert_int_eq(pe_grpc_options_set_startup_timeout(o, 10000), PE_OK);
  ck_assert_int_eq(
      pe_grpc_options_set_tls(o, ca, client_cert ? cert : NULL, client_cert ? key : NULL), PE_OK);
  int rc = pe_engine_start_grpc(e, o);
  pe_grpc_options_free(o);
  return rc;
}

/* A CA, a server certificate for 127.0.0.1 and a client certificate. */
static void make_certs(const char *dir) {
  char cmd[2048];
  snprintf(cmd, sizeof cmd,
           "cd %s && K='-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes' && "
           "openssl req -x509 $K -keyout ca.key -out ca.pem -days 1 -subj /CN=test-ca && "
           "printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\\n' > san.ext && "
           "for who in server client; do "
           "openssl req $K -keyout $who.key -out $who.csr -subj /CN=$who && "
           "openssl x509 -req -in $who.csr -CA ca.pem -CAkey ca.key -CAcreateserial "
           "-out $who.pem -days 1 -extfile san.ext || exit 1; done",
           dir);
  char quiet[2200];
  snprintf(quiet, sizeof quiet, "(%s) >/dev/null 2>&1", cmd);
  ck_assert_int_eq(system(quiet), 0);
}

START_TEST(tls_and_mutual_tls) {
  char dir[] = "/tmp/pe-grpc-tls-XXXXXX";
  ck_assert_ptr_nonnull(mkdtemp(dir));
  make_certs(dir);
  char cert[256], key[256], ca[256];
  snprintf(cert, sizeof cert, "%s/server.pem", dir);
  snprintf(key, sizeof key, "%s/server.key", dir);
  snprintf(ca, sizeof ca, "%s/ca.pem", dir);

  /* TLS: the engine checks the executor's certificate against the CA. */
  gx x;
  gx_opts tls = {.tls_cert = cert, .tls_key = key};
  gx_start_with(&x, 0, 0, &tls);
  char target[64];
  snprintf(target, sizeof target, "grpc://127.0.0.1:%d", x.port);
  pe_engine *e = gx_bare_engine();
  ck_assert_int_eq(start_tls(e, target, dir, false), PE_OK);
  ck_assert(header_runs(e));
  pe_engine_free(e);
  /* A plaintext engine gets no answer from a TLS port. */
  e = gx_bare_engine();
  ck_assert_int_eq(gx_start_grpc(e, "remote", x.target, 0), PE_ERR_WORKER);
  pe_engine_free(e);
  gx_stop(&x, SIGKILL);

  /* mTLS: the executor wants a client certificate signed by the CA. */
  gx_opts mtls = {.tls_cert = cert, .tls_key = key, .client_ca = ca};
  gx_start_with(&x, 0, 0, &mtls);
  snprintf(target, sizeof target, "grpc://127.0.0.1:%d", x.port);
  e = gx_bare_engine();
  ck_assert_int_eq(start_tls(e, target, dir, false), PE_ERR_WORKER);
  pe_engine_free(e);
  e = gx_bare_engine();
  ck_assert_int_eq(start_tls(e, target, dir, true), PE_OK);
  ck_assert(header_runs(e));
  pe_engine_free(e);
  gx_stop(&x, SIGKILL);
  char rm[128];
  snprintf(rm, sizeof rm, "rm -rf %s", dir);
  ck_assert_int_eq(system(rm), 0);
}
END_TEST

START_TEST(unix_socket_target) {
  char dir[] = "/tmp/pe-grpc-unix-XXXXXX", path[64];
  ck_assert_ptr_nonnull(mkdtemp(dir));
  snprintf(path, sizeof path, "%s/executor.sock", dir);
  gx x;
  gx_opts o = {.unix_path = path};
  gx_start_with(&x, 0, 0, &o);
  pe_engine *e = gx_bare_engine();
  /* Here with gRPC's retries off, the other setting. */
  pe_grpc_options *g = NULL;
  ck_assert_int_eq(pe_grpc_options_new(&g), PE_OK);
  ck_assert_int_eq(pe_grpc_options_set_name(g, "remote"), PE_OK);
  ck_assert_int_eq(pe_grpc_options_set_target(g, x.target), PE_OK);
  ck_assert_int_eq(pe_grpc_options_set_module_path(g, PE_GRPC_MODULE), PE_OK);
  ck_assert_int_eq(pe_grpc_options_set_retries(g, 0), PE_OK);
  ck_assert_int_eq(pe_engine_start_grpc(e, g), PE_OK);
  pe_grpc_options_free(g);
  ck_assert(header_runs(e));
  pe_engine_free(e);
  gx_stop(&x, SIGKILL);
  unlink(path);
  rmdir(dir);
}
END_TEST

START_TEST(connection_age_recycles_connections_without_failures) {
  gx x;
  gx_opts o = {.max_age_ms = "300"};
  gx_start_with(&x, 0, 0, &o);
  pe_engine *e = gx_bare_engine();
  ck_assert_int_eq(gx_start_grpc(e, "remote", x.target, 0), PE_OK);
  py_outcomes_clear();
  /* Over 1.5 s the executor closes the connection about five times. */
  for (int i = 0; i < 30; i++) {
    ck_assert_msg(header_runs(e), "run %d failed", i);
    py_sleep_ms(50);
  }
  ck_assert_int_eq(atomic_load(&py_outcomes[PE_STEP_CRASHED]), 0);
  pe_engine_free(e);
  gx_stop(&x, SIGKILL);
}
END_TEST

/* Past gRPC's default 4 MiB limit: the engine sets its own from its body
 * limit, the executor accepts 40 MiB. */
START_TEST(large_body_passes) {
  gx x;
  gx_start(&x, 0, 0);
  pe_engine *e = gx_engine(x.target);
  pe_chain *c = py_chain(e, "[" STEP(PY("request-body"), REMOTE) "]");
  size_t n = 6u << 20;
  char *body = malloc(n);
  ck_assert_ptr_nonnull(body);
  memset(body, 'a', n);
  pe_exchange *ex = gx_exchange(e);
  ck_assert_int_eq(pe_exchange_body_set(ex, PE_REQUEST, pe_bytes(body, n)), PE_OK);
  ck_assert_int_eq(pe_chain_run(c, ex, PE_PHASE_REQUEST_BODY), PE_OK);
  ck_assert_int_eq(pe_exchange_verdict(ex), PE_VERDICT_CONTINUE);
  pe_slice got = pe_exchange_body(ex, PE_REQUEST);
  static const char prefix[] = "[sample-request-body]";
  ck_assert_uint_eq(got.len, n + sizeof prefix - 1);
  ck_assert(!memcmp(got.ptr, prefix, sizeof prefix - 1));
  ck_assert(!memcmp(got.ptr + sizeof prefix - 1, body, n));
  free(body);
  pe_exchange_free(ex);
  pe_chain_free(c);
  pe_engine_free(e);
  gx_stop(&x, SIGKILL);
}
END_TEST

/* A pending exchange freed (its reply is dropped when it comes), and a
 * dispatcher freed with a call in flight (the run completes, crashed). */
START_TEST(freeing_while_calls_are_in_flight) {
  gx x;
  gx_start(&x, 0, 0);
  pe_engine *e = gx_engine(x.target);
  pe_chain *c = py_chain(
      e, "[" STEP("test-sleep", ",\"params\":{\"seconds\":0.3},\"timeout_ms\":5000" REMOTE) "]");
  pe_dispatcher *d = NULL;
  ck_assert_int_eq(pe_dispatcher_new(&d, e), PE_OK);
  atomic_int done = 0;
  pe_exchange *ex = gx_exchange(e);
  ck_assert_int_eq(pe_chain_run_async(c, ex, PE_PHASE_REQUEST_HEADERS, d, on_done_ok, &done),
                   PE_PENDING);
  pe_exchange_free(ex); /* forgotten: done is never called for it */
  ex = gx_exchange(e);
  ck_assert_int_eq(pe_chain_run_async(c, ex, PE_PHASE_REQUEST_HEADERS, d, on_done_ok, &done),
                   PE_PENDING);
  pe_dispatcher_free(d); /* cancels the second call: its run completes now */
  ck_assert_int_eq(atomic_load(&done), 1);
  ck_assert_int_eq(pe_exchange_verdict(ex), PE_VERDICT_RESPOND);
  ck_assert_int_eq(pe_exchange_status(ex), 500);
  pe_exchange_free(ex);
  pe_chain_free(c);
  pe_engine_free(e);
  gx_stop(&x, SIGKILL);
}
END_TEST

/* A connection whose HTTP/2 handshake is slow is not a failure. gRPC 1.51
 * takes GRPC_ARG_MIN_RECONNECT_BACKOFF_MS as its connection timeout, so with
 * the reconnect back-off (50-100 ms) passed there, an executor whose
 * SETTINGS frame came later (a loaded host, a TLS handshake over a WAN)
 * failed every call ("connection attempt timed out before receiving
 * SETTINGS frame") until the back-off had grown. Here the executor sleeps
 * 400 ms (SIGSTOP; the kernel still accepts the TCP connection). */
START_TEST(slow_handshake_is_not_a_failure) {
  gx x;
  gx_start(&x, 0, 0);
  ck_assert_int_eq(kill(x.pid, SIGSTOP), 0);
  pid_t waker = fork();
  ck_assert_int_ge(waker, 0);
  if (waker == 0) {
    usleep(400 * 1000);
    kill(x.pid, SIGCONT);
    _exit(0);
  }
  pe_engine *e = gx_bare_engine();
  int rc = gx_start_grpc(e, "remote", x.target, 500);
  while (waitpid(waker, NULL, 0) < 0 && errno == EINTR) {
  }
  kill(x.pid, SIGCONT);
  ck_assert_msg(rc == PE_OK, "pe_engine_start_grpc: %s: %s", pe_errname(rc), pe_engine_errmsg(e));
  size_t alive = 0;
  ck_assert_int_eq(pe_engine_grpc_ping(e, "remote", &alive), PE_OK);
  ck_assert_uint_eq(alive, 1);
  pe_engine_free(e);
  gx_stop(&x, SIGKILL);
}
END_TEST

START_TEST(start_errors) {
  pe_engine *e = gx_bare_engine();
  pe_grpc_options *o = NULL;
  ck_assert_int_eq(pe_grpc_options_new(&o), PE_OK);
  /* No target. */
  ck_assert_int_eq(pe_engine_start_grpc(e, o), PE_ERR_INVALID_ARGUMENT);
  ck_assert_int_eq(pe_grpc_options_set_target(o, ""), PE_ERR_INVALID_ARGUMENT);
  ck_assert_int_eq(pe_grpc_options_set_tls(o, NULL, "cert.pem", NULL), PE_ERR_INVALID_ARGUMENT);
  ck_assert_int_eq(pe_grpc_options_set_reconnect_backoff(o, 10, 5), PE_ERR_INVALID_ARGUMENT);
  ck_assert_int_eq(pe_grpc_options_set_max_message(o, 100), PE_ERR_INVALID_ARGUMENT);
  ck_assert_int_eq(pe_grpc_options_set_keepalive(o, 1000, 0), PE_ERR_INVALID_ARGUMENT);
  /* Nobody listening: PE_ERR_WORKER within the start-up timeout. */
  ck_assert_int_eq(pe_grpc_options_set_target(o, "grpc://127.0.0.1:1"), PE_OK);
  ck_assert_int_eq(pe_grpc_options_set_module_path(o, PE_GRPC_MODULE), PE_OK);
  ck_assert_int_eq(pe_grpc_options_set_startup_timeout(o, 1000), PE_OK);
  uint64_t t0 = pe_test_now_ms();
  ck_assert_int_eq(pe_engine_start_grpc(e, o), PE_ERR_WORKER);
  ck_assert_uint_lt(pe_test_now_ms() - t0, 8000);
  ck_assert_ptr_nonnull(strstr(pe_engine_errmsg(e), "no executor answered"));
  pe_grpc_options_free(o);
  pe_engine_free(e);
}
END_TEST

int main(int argc, char **argv) {
  if (argc == 3 && !strcmp(argv[1], "--master"))
    return master(argv[2]);
  Suite *s = suite_create("grpc");
  TCase *tc = tcase_create("grpc");
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, profiles_identical_over_grpc_and_unix);
  tcase_add_test(tc, interop_executor_answers_the_engine);
  tcase_add_test(tc, deadline_exceeded_is_a_timeout);
  tcase_add_test(tc, killed_executor_fails_per_mode_then_recovers);
  tcase_add_test(tc, two_executors_behind_one_target_both_serve);
  tcase_add_test(tc, fork_after_engine_works_in_the_child);
  tcase_add_test(tc, sigterm_drains_calls_in_flight);
  tcase_add_test(tc, tls_and_mutual_tls);
  tcase_add_test(tc, unix_socket_target);
  tcase_add_test(tc, connection_age_recycles_connections_without_failures);
  tcase_add_test(tc, large_body_passes);
  tcase_add_test(tc, freeing_while_calls_are_in_flight);
  tcase_add_test(tc, start_errors);
  tcase_add_test(tc, slow_handshake_is_not_a_failure);
  suite_add_tcase(s, tc);
  return pe_test_run_suite(s);
}
