/* Starting one worker process: stdin from /dev/null, stdout and stderr
 * shared with the host (tracebacks go where the host's own errors go), the
 * lifeline as fd 3, no other host fd, default signal dispositions and an
 * empty mask, and a process group of its own.
 *
 * posix_spawn (glibc: clone with CLONE_VM | CLONE_VFORK) is the fast way.
 * Sanitizer builds use fork + exec instead: AddressSanitizer cannot follow
 * a child that runs in the parent's memory, and reported rare false
 * positives on the parent's stack after a spawn (the vfork problem of
 * google/sanitizers#925). Both paths set up the same child. */
#include "pe_py.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

/* Signals a host may block or ignore that the worker must see normally: it
 * must die on SIGTERM and see SIGPIPE. */
static const int worker_default_signals[] = {SIGPIPE, SIGTERM, SIGINT,  SIGHUP,
                                             SIGQUIT, SIGCHLD, SIGUSR1, SIGUSR2};
#define N_DEFAULT_SIGNALS (sizeof worker_default_signals / sizeof worker_default_signals[0])

#ifndef PE_SPAWN_FORK

int pe__py_spawn(const char *path, char *const argv[], int lifeline_fd, pid_t *pid) {
  posix_spawn_file_actions_t fa;
  posix_spawnattr_t attr;
  posix_spawn_file_actions_init(&fa);
  posix_spawnattr_init(&attr);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  /* fd 3: the lifeline's read end; the worker exits when it reads EOF,
   * i.e. when this process (which alone holds the write end) is gone. */
  posix_spawn_file_actions_adddup2(&fa, lifeline_fd, 3);
  posix_spawn_file_actions_addclosefrom_np(&fa, 4);
  sigset_t none, defaults;
  sigemptyset(&none);
  sigemptyset(&defaults);
  for (size_t s = 0; s < N_DEFAULT_SIGNALS; s++)
    sigaddset(&defaults, worker_default_signals[s]);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &defaults);
  /* A process group of its own: Ctrl-C in the host's terminal, or a signal
   * to the host's group, must not kill the workers while the host drains
   * its in-flight requests. The engine ends them (SIGTERM at shutdown, the
   * lifeline if the host dies). */
  posix_spawnattr_setpgroup(&attr, 0);
  posix_spawnattr_setflags(&attr,
                           POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETPGROUP);
  int rc = posix_spawn(pid, path, &fa, &attr, argv, environ);
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  return rc;
}

#else /* PE_SPAWN_FORK */

/* In the child: only async-signal-safe calls. Reports exec's errno on
 * report_fd (close-on-exec, so a successful exec just closes it). The
 * lifeline and the report pipe are first moved above the fds being set up,
 * so that no dup2 meets its own source (dup2 onto itself would keep
 * FD_CLOEXEC, and exec would close the lifeline). */
static void child(const char *path, char *const argv[], int lifeline_fd, int report_fd) {
  int err = 0;
  int lifeline = fcntl(lifeline_fd, F_DUPFD_CLOEXEC, 10);
  int report = fcntl(report_fd, F_DUPFD_CLOEXEC, 10);
  if (report < 0)
    _exit(127);
  int null_fd = open("/dev/null", O_RDONLY);
  if (lifeline < 0 || null_fd < 0 || (null_fd != 0 && dup2(null_fd, 0) < 0) ||
      dup2(lifeline, 3) < 0 || dup3(report, 4, O_CLOEXEC) < 0)
    err = errno;
  if (!err) {
    report = 4;
    closefrom(5);
    struct sigaction dfl = {.sa_handler = SIG_DFL};
    for (size_t s = 0; s < N_DEFAULT_SIGNALS; s++)
      sigaction(worker_default_signals[s], &dfl, NULL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    if (setpgid(0, 0) != 0)
      err = errno;
  }
  if (!err) {
    execve(path, argv, environ);
    err = errno;
  }
  ssize_t n = write(report, &err, sizeof err);
  (void)n;
  _exit(127);
}

int pe__py_spawn(const char *path, char *const argv[], int lifeline_fd, pid_t *pid) {
  int report[2];
  if (pipe2(report, O_CLOEXEC) != 0)
    return errno;
  pid_t p = fork();
  if (p < 0) {
    int err = errno;
    close(report[0]);
    close(report[1]);
    return err;
  }
  if (p == 0)
    child(path, argv, lifeline_fd, report[1]);
  close(report[1]);
  int err = 0;
  ssize_t n;
  while ((n = read(report[0], &err, sizeof err)) < 0 && errno == EINTR) {
  }
  close(report[0]);
  if (n == (ssize_t)sizeof err && err) {
    while (waitpid(p, NULL, 0) < 0 && errno == EINTR) {
    }
    return err;
  }
  *pid = p;
  return 0;
}

#endif /* PE_SPAWN_FORK */
