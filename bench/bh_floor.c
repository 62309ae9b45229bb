/*
 * The physical floor of an out-of-process policy call on this machine: a
 * 64-byte request and reply over a Unix stream socket to another process,
 * measured in the same run as the profiles so the two can be compared.
 */
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bh.h"

static int full_io(int fd, char *buf, size_t len, int writing) {
  size_t done = 0;
  while (done < len) {
    ssize_t n = writing ? write(fd, buf + done, len - done) : read(fd, buf + done, len - done);
    if (n <= 0)
      return -1;
    done += (size_t)n;
  }
  return 0;
}

int bh_uds_roundtrip(uint64_t iterations, int cpu_self, int cpu_child, uint64_t *p50_ns,
                     uint64_t *p99_ns) {
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0)
    return -1;
  pid_t pid = fork();
  if (pid < 0) {
    close(sv[0]);
    close(sv[1]);
    return -1;
  }
  char buf[64] = {0};
  if (pid == 0) { /* echo child */
    bh_pin(pthread_self(), cpu_child);
    close(sv[0]);
    while (full_io(sv[1], buf, sizeof buf, 0) == 0 && full_io(sv[1], buf, sizeof buf, 1) == 0)
      ;
    _exit(0);
  }
  close(sv[1]);
  cpu_set_t saved;
  int have_saved = pthread_getaffinity_np(pthread_self(), sizeof saved, &saved) == 0;
  bh_pin(pthread_self(), cpu_self);
  bh_hist *h = calloc(1, sizeof *h);
  int rc = h ? 0 : -1;
  for (uint64_t i = 0; rc == 0 && i < iterations + iterations / 10; i++) {
    uint64_t t0 = bh_now_ns();
    if (full_io(sv[0], buf, sizeof buf, 1) != 0 || full_io(sv[0], buf, sizeof buf, 0) != 0)
      rc = -1;
    if (i >= iterations / 10) /* the first tenth warms up */
      bh_hist_record(h, bh_now_ns() - t0);
  }
  close(sv[0]);
  waitpid(pid, NULL, 0);
  if (have_saved)
    pthread_setaffinity_np(pthread_self(), sizeof saved, &saved);
  if (rc == 0) {
    *p50_ns = bh_hist_percentile(h, 50);
    *p99_ns = bh_hist_percentile(h, 99);
  }
  free(h);
  return rc;
}
