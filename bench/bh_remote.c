/*
 * bench_hooks --executor grpc|interop: an executor process on a loopback
 * port (policyexec-executor, or the python3-grpcio executor written in the
 * published gateway's style), and the floor of that transport: an empty
 * round trip (grpc.health.v1.Health/Check, answered without Python) made
 * exactly as the engine makes its calls (non-blocking: what the Python
 * profiles use; blocking: for comparison), through the same module, on a
 * channel to the same executor.
 */
#include <dlfcn.h>
#include <pthread.h>
#include <sched.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bh.h"
#include "bh_remote.h"
#include "pe_grpc_transport.h"

int bh_remote_spawn(const char *kind, const char *python_path, int cpu, bh_remote *out, char *err,
                    size_t errlen) {
  int p[2];
  if (pipe(p) != 0) {
    snprintf(err, errlen, "pipe: %s", strerror(errno));
    return -1;
  }
  pid_t pid = fork();
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    bh_pin(pthread_self(), cpu); /* inherited by the executor's threads */
    dup2(p[1], 1);
    close(p[0]);
    close(p[1]);
    if (!strcmp(kind, "interop"))
      execl(BH_SYSTEM_PYTHON, BH_SYSTEM_PYTHON, BH_INTEROP_EXECUTOR, "--listen", "127.0.0.1:0",
            "--gen-dir", BH_PY_GEN_DIR, (char *)NULL);
    else
      execl(BH_EXECUTOR_BUILD, BH_EXECUTOR_BUILD, "--listen", "127.0.0.1:0", "--module-path",
            python_path, (char *)NULL);
    _exit(127);
  }
  close(p[1]);
  if (pid < 0) {
    close(p[0]);
    snprintf(err, errlen, "fork: %s", strerror(errno));
    return -1;
  }
  char line[256] = "";
  size_t n = 0;
  struct pollfd pfd = {.fd = p[0], .events = POLLIN};
  while (!strchr(line, '\n') && n < sizeof line - 1 && poll(&pfd, 1, 20000) > 0) {
    ssize_t r = read(p[0], line + n, sizeof line - 1 - n);
    if (r <= 0)
      break;
    n += (size_t)r;
    line[n] = '\0';
  }
  close(p[0]);
  const char *at = strstr(line, " port ");
  if (!at) {
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    snprintf(err, errlen, "the %s executor did not start", kind);
    return -1;
  }
  out->pid = pid;
  snprintf(out->target, sizeof out->target, "ipv4:127.0.0.1:%d", atoi(at + 6));
  snprintf(out->name, sizeof out->name, "%s", kind);
  return 0;
}

void bh_remote_stop(bh_remote *r) {
  if (r->pid > 0) {
    kill(r->pid, SIGTERM);
    waitpid(r->pid, NULL, 0);
  }
  r->pid = 0;
}

typedef struct floor_state {
  int done;
  int status;
} floor_state;

static void floor_done(void *tag, pe__grpc_result *r, void *ud) {
  (void)tag;
  floor_state *f = ud;
  f->done = 1;
  f->status = r->status;
}

int bh_grpc_floor(const char *target, uint64_t iterations, bool blocking, int cpu, uint64_t *p50_ns,
                  uint64_t *p99_ns, uint64_t *cpu_ns) {
  void *h = dlopen(BH_GRPC_MODULE_BUILD, RTLD_NOW | RTLD_LOCAL);
  pe__grpc_transport_init_fn init =
      h ? (pe__grpc_transport_init_fn)(uintptr_t)dlsym(h, PE__GRPC_TRANSPORT_INIT) : NULL;
  const pe__grpc_transport *t = NULL;
  if (!init || init(PE__GRPC_TRANSPORT_ABI, &t) != 0)
    return -1;
  pe__grpc_settings s = {.target = target,
                         .backoff_initial_ms = 100,
                         .backoff_max_ms = 2000,
                         .max_message = 64u << 20,
                         .lb_policy = "round_robin"};
  char err[PE__GRPC_DETAIL_SIZE];
  pe__grpc_channel *ch = NULL;
  pe__grpc_queue *q = NULL;
  int fd;
  if (t->channel_new(&s, &ch, err) != 0)
    return -1;
  if (t->queue_new(&q, &fd, err) != 0) {
    t->channel_free(ch);
    return -1;
  }
  bh_hist *hist = calloc(1, sizeof *hist);
  int rc = hist ? 0 : -1;
  floor_state f;
  cpu_set_t saved;
  int have_saved = pthread_getaffinity_np(pthread_self(), sizeof saved, &saved) == 0;
  bh_pin(pthread_self(), cpu);
  uint64_t cpu0 = 0;
  for (uint64_t i = 0; rc == 0 && i < iterations + iterations / 10; i++) {
    if (i == iterations / 10)
      cpu0 = bh_cpu_ns(NULL);
    uint64_t t0 = bh_now_ns();
    f.done = 0;
    if (blocking) {
      pe__grpc_result r;
      t->call(ch, "/grpc.health.v1.Health/Check", "", 0, 5000000000, &r);
      f.done = 1;
      f.status = r.status;
      t->result_release(&r);
    } else if (t->call_start(ch, q, "/grpc.health.v1.Health/Check", "", 0, 5000000000, &f, err) !=
               0) {
      rc = -1;
      break;
    }
    while (!f.done) {
      struct pollfd pfd = {.fd = fd, .events = POLLIN};
      if (poll(&pfd, 1, 5000) > 0)
        t->queue_drain(q, floor_done, &f);
    }
    if (f.status != 0)
      rc = -1;
    else if (i >= iterations / 10) /* the first tenth warms up */
      bh_hist_record(hist, bh_now_ns() - t0);
  }
  if (rc == 0) {
    *cpu_ns = (bh_cpu_ns(NULL) - cpu0) / iterations;
    *p50_ns = bh_hist_percentile(hist, 50);
    *p99_ns = bh_hist_percentile(hist, 99);
  }
  if (have_saved)
    pthread_setaffinity_np(pthread_self(), sizeof saved, &saved);
  free(hist);
  t->queue_free(q, floor_done, &f);
  t->channel_free(ch);
  return rc;
}
