/*
 * CPU time spent on the benchmark's work: this process and its children
 * (the local pool's workers, the remote executors). Latency on a shared
 * machine moves with other processes' load; CPU time per request moves much
 * less, so it is reported beside it.
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bh.h"

static uint64_t clock_ns(clockid_t c) {
  struct timespec ts;
  if (clock_gettime(c, &ts) != 0)
    return 0;
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* The parent of pid, from /proc/pid/stat ("pid (comm) state ppid ..."; comm
 * may hold spaces and parentheses, so parse after the last ')'). */
static pid_t parent_of(const char *pid) {
  char path[64], buf[512];
  snprintf(path, sizeof path, "/proc/%s/stat", pid);
  FILE *f = fopen(path, "r");
  if (!f)
    return -1;
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = '\0';
  char *close = strrchr(buf, ')');
  int ppid;
  if (!close || sscanf(close + 1, " %*c %d", &ppid) != 1)
    return -1;
  return (pid_t)ppid;
}

uint64_t bh_cpu_ns(uint64_t *children_ns) {
  uint64_t kids = 0;
  pid_t me = getpid();
  DIR *d = opendir("/proc");
  for (struct dirent *e; d && (e = readdir(d));) {
    if (e->d_name[0] < '1' || e->d_name[0] > '9' || parent_of(e->d_name) != me)
      continue;
    clockid_t c;
    if (clock_getcpuclockid((pid_t)atoi(e->d_name), &c) == 0)
      kids += clock_ns(c);
  }
  if (d)
    closedir(d);
  if (children_ns)
    *children_ns = kids;
  return clock_ns(CLOCK_PROCESS_CPUTIME_ID) + kids;
}
