/* The sample policies that wait on I/O, against real services:
 * sample-python-lookup with a local HTTP service (up, slow, down) and
 * sample-python-rate-limit with a private redis-server (counting, 429, and
 * Redis restarted mid-test), all on a live worker that is never replaced. */
#include "test_python_util.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>

#define LOOKUP_SERVICE PE_PY_TEST_POLICIES "/../lookup_service.py"

static char tmpdir[64];

static void make_tmpdir(void) {
  snprintf(tmpdir, sizeof tmpdir, "/tmp/pe-io-XXXXXX");
  ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static void remove_tmpdir(void) {
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
  ck_assert_int_eq(system(cmd), 0);
}

/* Starts a service that dies with this process, even when an assertion
 * ends the test early; its output goes to /dev/null. */
static pid_t spawn(char *const argv[]) {
  pid_t parent = getpid();
  pid_t pid = fork();
  ck_assert_int_ge(pid, 0);
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
      _exit(1);
    int null = open("/dev/null", O_RDWR);
    dup2(null, 1);
    dup2(null, 2);
    execvp(argv[0], argv);
    _exit(127);
  }
  return pid;
}

static void stop(pid_t pid) {
  kill(pid, SIGTERM);
  int status;
  for (int i = 0; i < 300; i++) {
    if (waitpid(pid, &status, WNOHANG) == pid)
      return;
    py_sleep_ms(10);
  }
  kill(pid, SIGKILL);
  waitpid(pid, &status, 0);
}

static int can_connect(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET,
                          .sin_port = htons((uint16_t)port),
                          .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  int ok = connect(fd, (struct sockaddr *)&a, sizeof a) == 0;
  close(fd);
  return ok;
}

static int free_port(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  ck_assert_int_eq(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
  socklen_t len = sizeof a;
  ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&a, &len), 0);
  close(fd);
  return ntohs(a.sin_port);
}

/* Starts the lookup service answering after delay_ms; returns its port. */
static pid_t start_lookup(int delay_ms, int *port) {
  char port_file[128], delay[16];
  snprintf(port_file, sizeof port_file, "%s/lookup-%d.port", tmpdir, delay_ms);
  unlink(port_file);
  snprintf(delay, sizeof delay, "%d", delay_ms);
  char *argv[] = {"/usr/bin/python3", "-I",         LOOKUP_SERVICE, "--port-file",
                  port_file,          "--delay-ms", delay,          NULL};
  pid_t pid = spawn(argv);
  for (int i = 0; i < 1000; i++) {
    FILE *f = fopen(port_file, "r");
    if (f) {
      int ok = fscanf(f, "%d", port) == 1;
      fclose(f);
      if (ok)
        return pid;
    }
    py_sleep_ms(10);
  }
  ck_abort_msg("the lookup service did not start");
  return -1;
}

static pid_t start_redis(int port) {
  char port_s[16];
  snprintf(port_s, sizeof port_s, "%d", port);
  char *argv[] = {
      "redis-server", "--port", port_s,         "--bind", "127.0.0.1",   "--dir", tmpdir,
      "--save",       "",       "--appendonly", "no",     "--daemonize", "no",    "--loglevel",
      "warning",      NULL};
  pid_t pid = spawn(argv);
  for (int i = 0; i < 1000 && !can_connect(port); i++)
    py_sleep_ms(10);
  ck_assert_msg(can_connect(port), "redis-server did not start on port %d", port);
  return pid;
}

static void count_any(pe_exchange *ex, int rc, void *ud) {
  (void)ex;
  ck_assert_int_eq(rc, PE_OK);
  atomic_fetch_add((atomic_int *)ud, 1);
}

/* Runs request headers with the dispatcher (async) or blocking. */
static pe_exchange *run(pe_engine *e, pe_chain *c, pe_dispatcher *d, const char *user) {
  pe_exchange *ex = py_exchange(e);
  if (user)
    ck_assert_int_eq(pe_exchange_header_add(ex, PE_REQUEST, PE_LIT("x-user"), pe_str(user)), PE_OK);
  if (d) {
    atomic_int done = 0;
    int rc = pe_chain_run_async(c, ex, PE_PHASE_REQUEST_HEADERS, d, count_any, &done);
    ck_assert_int_eq(rc, PE_PENDING);
    py_drive(d, &done, 10000);
  } else {
    ck_assert_int_eq(pe_chain_run(c, ex, PE_PHASE_REQUEST_HEADERS), PE_OK);
  }
  return ex;
}

static pe_chain *lookup_chain(pe_engine *e, int port, const char *mode, int timeout_ms) {
  char json[512];
  snprintf(json, sizeof json,
           "[{\"name\":\"sample-python-lookup\",\"version\":\"1.0.0\",\"failure_mode\":\"%s\","
           "\"timeout_ms\":%d,\"params\":{\"url\":\"http://127.0.0.1:%d/v1/users\","
           "\"key_header\":\"x-user\",\"header\":\"x-user-name\"}}]",
           mode, timeout_ms, port);
  return py_chain(e, json);
}

START_TEST(lookup_up_slow_down) {
  make_tmpdir();
  pe_engine *e = py_engine(1);
  pe_dispatcher *d = NULL;
  ck_assert_int_eq(pe_dispatcher_new(&d, e), PE_OK);
  int port, slow_port;
  pid_t svc = start_lookup(0, &port);
  pid_t slow = start_lookup(3000, &slow_port);
  pe_chain *closed = lookup_chain(e, port, "closed", 2000);
  pe_chain *open = lookup_chain(e, port, "open", 2000);

  /* Up: the answer's field lands in the header, on both kinds of run. */
  for (int i = 0; i < 3; i++) {
    pe_exchange *ex = run(e, closed, i == 1 ? NULL : d, "ada");
    pe_slice v;
    ck_assert_int_eq(pe_exchange_verdict(ex), PE_VERDICT_CONTINUE);
    ck_assert_int_eq(pe_exchange_header_get(ex, PE_REQUEST, PE_LIT("x-user-name"), &v), PE_OK);
    ck_assert_slice_eq(v, "user-ada");
    pe_exchange_free(ex);
  }

  /* Slow: the step's timeout, never a hang: 504 (closed) or skipped (open). */
  pe_chain *slow_closed = lookup_chain(e, slow_port, "closed", 300);
  pe_chain *slow_open = lookup_chain(e, slow_port, "open", 300);
  pe_exchange *ex = run(e, slow_closed, d, "bob");
  ck_assert_int_eq(pe_exchange_status(ex), 504);
  pe_exchange_free(ex);
  ex = run(e, slow_open, NULL, "bob");
  ck_assert_int_eq(pe_exchange_verdict(ex), PE_VERDICT_CONTINUE);
  pe_slice v;
  ck_assert_int_eq(pe_exchange_header_get(ex, PE_REQUEST, PE_LIT("x-user-name"), &v),
                   PE_ERR_NOT_FOUND);
  pe_exchange_free(ex);

  /* Down: connection refused -> the failure mode at once. */
  stop(svc);
  ex = run(e, closed, d, "cy");
  ck_assert_int_eq(pe_exchange_status(ex), 500);
  ck_assert_msg(strstr(pe_exchange_errmsg(ex), "sample-python-lookup") != NULL, "%s",
                pe_exchange_errmsg(ex));
  pe_exchange_free(ex);
  ex = run(e, open, NULL, "cy");
  ck_assert_int_eq(pe_exchange_verdict(ex), PE_VERDICT_CONTINUE);
  pe_exchange_free(ex);

  ck_assert_uint_eq(pe_engine_python_restarts(e), 0);
  stop(slow);
  pe_chain_free(closed);
  pe_chain_free(open);
  pe_chain_free(slow_closed);
  pe_chain_free(slow_open);
  pe_dispatcher_free(d);
  pe_engine_free(e);
  remove_tmpdir();
}
END_TEST

static pe_chain *limit_chain(pe_engine *e, int port, const char *mode, int limit,
                             const char *prefix) {
  char json[512];
  snprintf(json, sizeof json,
           "[{\"name\":\"sample-python-rate-limit\",\"version\":\"1.0.0\",\"failure_mode\":\"%s\","
           "\"timeout_ms\":3000,\"params\":{\"redis_url\":\"redis://127.0.0.1:%d/0\","
           "\"limit\":%d,\"window\":86400,\"key_header\":\"x-user\",\"prefix\":\"%s\","
           "\"redis_timeout\":0.5}}]",
           mode, port, limit, prefix);
  return py_chain(e, json);
}

START_TEST(rate_limit_with_redis_restart) {
  make_tmpdir();
  int port = free_port();
  pid_t redis = start_redis(port);
  pe_engine *e = py_engine(1);
  int pid = py_worker_pid(e, 0);
  pe_dispatcher *d = NULL;
  ck_assert_int_eq(pe_dispatcher_new(&d, e), PE_OK);
  char prefix[64];
  snprintf(prefix, sizeof prefix, "pe-test-%d:", (int)getpid());
  pe_chain *limited = limit_chain(e, port, "closed", 5, prefix);
  pe_chain *open = limit_chain(e, port, "open", 1000000, prefix);

  /* Five pass, counting down; the sixth gets 429; another user has its own. */
  for (int i = 0; i < 6; i++) {
    pe_exchange *ex = run(e, limited, i % 2 ? NULL : d, "ada");
    pe_slice v;
    if (i < 5) {
      ck_assert_int_eq(pe_exchange_verdict(ex), PE_VERDICT_CONTINUE);
      ck_assert_int_eq(pe_exchange_header_get(ex, PE_REQUEST, PE_LIT("x-ratelimit-remaining"), &v),
                       PE_OK);
      char want[8];
      snprintf(want, sizeof want, "%d", 4 - i);
      ck_assert_slice_eq(v, want);
    } else {
      ck_assert_int_eq(pe_exchange_verdict(ex), PE_VERDICT_RESPOND);
      ck_assert_int_eq(pe_exchange_status(ex), 429);
    }
    pe_exchange_free(ex);
  }
  pe_exchange *ex = run(e, limited, d, "bob");
  ck_assert_int_eq(pe_exchange_verdict(ex), PE_VERDICT_CONTINUE);
  pe_exchange_free(ex);

  /* Redis goes down: each request fails by its failure mode, promptly. */
  stop(redis);
  for (int i = 0; i < 3; i++) {
    ex = run(e, limited, i % 2 ? NULL : d, "cy");
    ck_assert_int_eq(pe_exchange_status(ex), 500);
    pe_exchange_free(ex);
    ex = run(e, open, d, "cy");
    ck_assert_int_eq(pe_exchange_verdict(ex), PE_VERDICT_CONTINUE);
    pe_slice v;
    ck_assert_int_eq(pe_exchange_header_get(ex, PE_REQUEST, PE_LIT("x-ratelimit-remaining"), &v),
                     PE_ERR_NOT_FOUND);
    pe_exchange_free(ex);
  }

  /* Back up: requests succeed again (the client reconnects), same worker. */
  redis = start_redis(port);
  int ok = 0;
  for (int i = 0; i < 50 && !ok; i++) {
    ex = run(e, limited, d, "dee");
    ok = pe_exchange_verdict(ex) == PE_VERDICT_CONTINUE;
    pe_exchange_free(ex);
    if (!ok)
      py_sleep_ms(100);
  }
  ck_assert_msg(ok, "requests did not succeed again after Redis came back");
  ex = run(e, limited, NULL, "dee");
  ck_assert_int_eq(pe_exchange_verdict(ex), PE_VERDICT_CONTINUE);
  pe_exchange_free(ex);
  ck_assert_uint_eq(pe_engine_python_restarts(e), 0);
  ck_assert_int_eq(py_worker_pid(e, 0), pid);

  pe_chain_free(limited);
  pe_chain_free(open);
  pe_dispatcher_free(d);
  pe_engine_free(e); /* teardown closes the Redis clients */
  stop(redis);
  remove_tmpdir();
}
END_TEST

int main(void) {
  Suite *s = suite_create("python_io_samples");
  TCase *tc = tcase_create("io");
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, lookup_up_slow_down);
  tcase_add_test(tc, rate_limit_with_redis_restart);
  suite_add_tcase(s, tc);
  return pe_test_run_suite(s);
}
