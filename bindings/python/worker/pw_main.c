/* policyexec-pyworker: runs Python policies for libpolicyexec.
 *
 *   policyexec-pyworker (--socket PATH | --fd N)... [--max-message BYTES]
 *                       [--module-path DIR]... [--parent-fd N]
 *                       [--cleanup-dir DIR]
 *                       [--virtualenv DIR]
 *
 * --socket PATH  create a Unix stream socket at PATH and accept connections
 * --fd N         an inherited socket: a listening one (connections are
 *                accepted on it) or a connected one (served as is)
 * --virtualenv DIR  a virtualenv whose site-packages policies may import
 *                (added to sys.path after the system's; the interpreter
 *                stays the isolated system one)
 * Several --socket/--fd may be given. The worker exits when the last
 * connection closes after at least one was made, on SIGTERM/SIGINT, or when
 * the lifeline --parent-fd reaches end of file: the read end of a pipe whose
 * write end only the engine process holds, so it closes when the engine dies
 * however it dies. A thread of its own watches it, so a policy stuck in a
 * loop cannot delay the exit. (PR_SET_PDEATHSIG is not used: it fires when
 * the spawning *thread* exits, and the engine may spawn from any thread.)
 * --cleanup-dir DIR  on exit, after removing its sockets, also remove DIR if
 *                it is empty by then: the engine's private socket directory,
 *                which the engine cannot remove itself when it is killed
 *                (SIGKILL); whichever worker leaves last removes it.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <malloc.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "pw_log.h"
#include "pw_paths.h"
#include "pw_python.h"
#include "pw_requests.h"
#include "pw_server.h"

#define PW_MAX_SOCKETS 16
#define PW_MAX_MODULE_PATHS 64

typedef struct pw_args {
  const char *socket_paths[PW_MAX_SOCKETS];
  size_t n_socket_paths;
  int fds[PW_MAX_SOCKETS];
  size_t n_fds;
  char *module_paths[PW_MAX_MODULE_PATHS];
  size_t n_module_paths;
  const char *virtualenv; /* NULL: none */
  size_t max_message;
  int parent_fd; /* lifeline; -1: not given */
  const char *cleanup_dir;
} pw_args;

static volatile sig_atomic_t stop_requested;
/* The socket paths we created, removed on exit (also from the signal handler). */
static const char *created_paths[PW_MAX_SOCKETS];
/* Atomic: the lifeline thread and signal handlers read it while the main
 * thread may still be creating sockets (the engine can die during start-up);
 * a path is stored before the count that publishes it. */
static atomic_size_t n_created_paths;
/* --cleanup-dir: removed (if empty) after the sockets; set before any
 * thread or handler that reads it exists. */
static const char *cleanup_dir;

static void usage(FILE *f) {
  fputs("usage: policyexec-pyworker (--socket PATH | --fd N)... [--max-message BYTES]\n"
        "                           [--module-path DIR]... [--parent-fd N]\n"
        "                           [--cleanup-dir DIR] [--virtualenv DIR]\n",
        f);
}

static int parse_number(const char *s, unsigned long long max, unsigned long long *out) {
  char *end;
  errno = 0;
  unsigned long long v = strtoull(s, &end, 10);
  if (errno != 0 || end == s || *end != '\0' || v > max || s[0] == '-') {
    return -1;
  }
  *out = v;
  return 0;
}

static int parse_args(int argc, char **argv, pw_args *a) {
  memset(a, 0, sizeof(*a));
  a->max_message = PW_DEFAULT_MAX_MESSAGE;
  a->parent_fd = -1;
  for (int i = 1; i < argc; i++) {
    const char *opt = argv[i];
    if (strcmp(opt, "--help") == 0) {
      usage(stdout);
      exit(0);
    }
    if (i + 1 >= argc) {
      PW_LOG("%s: missing value", opt);
      return -1;
    }
    const char *val = argv[++i];
    unsigned long long n;
    if (strcmp(opt, "--socket") == 0 && a->n_socket_paths < PW_MAX_SOCKETS) {
      a->socket_paths[a->n_socket_paths++] = val;
    } else if (strcmp(opt, "--fd") == 0 && a->n_fds < PW_MAX_SOCKETS &&
               parse_number(val, INT_MAX, &n) == 0) {
      a->fds[a->n_fds++] = (int)n;
    } else if (strcmp(opt, "--module-path") == 0 && a->n_module_paths < PW_MAX_MODULE_PATHS) {
      a->module_paths[a->n_module_paths++] = argv[i];
    } else if (strcmp(opt, "--virtualenv") == 0 && val[0] != '\0') {
      a->virtualenv = val;
    } else if (strcmp(opt, "--max-message") == 0 && parse_number(val, UINT32_MAX, &n) == 0 &&
               n > 0) {
      a->max_message = (size_t)n;
    } else if (strcmp(opt, "--parent-fd") == 0 && parse_number(val, INT_MAX, &n) == 0) {
      a->parent_fd = (int)n;
    } else if (strcmp(opt, "--cleanup-dir") == 0 && val[0] != '\0') {
      a->cleanup_dir = val;
    } else {
      PW_LOG("bad option %s %s", opt, val);
      return -1;
    }
  }
  if (a->n_socket_paths + a->n_fds == 0) {
    PW_LOG("give --socket PATH or --fd N");
    return -1;
  }
  return 0;
}

static void remove_created_paths(void) {
  size_t n = atomic_load_explicit(&n_created_paths, memory_order_acquire);
  for (size_t i = 0; i < n; i++) {
    unlink(created_paths[i]);
  }
  /* Fails harmlessly (ENOTEMPTY) while another worker's socket is there. */
  if (cleanup_dir != NULL) {
    rmdir(cleanup_dir);
  }
}

static void on_stop_signal(int sig) {
  (void)sig;
  /* Python may be running a policy that never returns to the loop, so do not
   * wait for it: clean up what is ours and leave (both calls are
   * async-signal-safe). */
  stop_requested = 1;
  remove_created_paths();
  _exit(0);
}

/* Blocks on the lifeline; its end of file means the engine is gone. */
static void *lifeline_watcher(void *arg) {
  int fd = (int)(intptr_t)arg;
  /* Signals are for the main thread (this one starts with all blocked): a
   * step's timer (SIGALRM) must interrupt the Python code there, which it
   * would not if this thread took it. */
  char byte;
  ssize_t n;
  while ((n = read(fd, &byte, 1)) != 0) {
    if (n < 0 && errno != EINTR) {
      break;
    }
  }
  remove_created_paths();
  _exit(0);
}

static int watch_lifeline(int fd) {
  if (fcntl(fd, F_GETFD) < 0) {
    PW_LOG("--parent-fd %d: %s", fd, strerror(errno));
    return -1;
  }
  /* Not inherited by anything a policy might start. */
  fcntl(fd, F_SETFD, FD_CLOEXEC);
  pthread_t tid;
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  pthread_attr_setstacksize(&attr, 64 * 1024);
  /* Created with every signal blocked (it inherits this thread's mask). */
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, &old);
  int rc = pthread_create(&tid, &attr, lifeline_watcher, (void *)(intptr_t)fd);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  pthread_attr_destroy(&attr);
  if (rc != 0) {
    PW_LOG("cannot watch the lifeline: %s", strerror(rc));
    return -1;
  }
  return 0;
}

static int setup_process(const pw_args *a) {
  /* Bodies are copied a few times per request (decoded message, bytes
   * object, the policy's new body). With glibc's defaults each such block is
   * a fresh mmap and every page faults in again on each request: with these,
   * blocks up to 32 MiB come from the heap, and up to 64 MiB of free heap is
   * kept for the next request instead of being returned at once. */
  mallopt(M_MMAP_THRESHOLD, 32 * 1024 * 1024);
  mallopt(M_TRIM_THRESHOLD, 64 * 1024 * 1024);
  /* Die with the engine: a policy stuck in a loop must not outlive it. */
  if (a->parent_fd >= 0 && watch_lifeline(a->parent_fd) != 0) {
    return -1;
  }
  struct sigaction sa;
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  signal(SIGPIPE, SIG_IGN);
  return 0;
}

static int set_nonblocking_cloexec(int fd) {
  int fl = fcntl(fd, F_GETFL);
  int fdfl = fcntl(fd, F_GETFD);
  if (fl < 0 || fdfl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0 ||
      fcntl(fd, F_SETFD, fdfl | FD_CLOEXEC) < 0) {
    return -1;
  }
  return 0;
}

static int listen_at(const char *path) {
  struct sockaddr_un addr = {.sun_family = AF_UNIX};
  if (strlen(path) >= sizeof(addr.sun_path)) {
    PW_LOG("socket path too long: %s", path);
    return -1;
  }
  strcpy(addr.sun_path, path);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    PW_LOG("socket: %s", strerror(errno));
    return -1;
  }
  /* A socket file left by a killed worker would make bind() fail. */
  struct stat st;
  if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode)) {
    unlink(path);
  }
  if (bind(fd, (struct sockaddr *)&addr, sizeof(addr)) != 0 || listen(fd, SOMAXCONN) != 0) {
    PW_LOG("cannot listen at %s: %s", path, strerror(errno));
    close(fd);
    return -1;
  }
  size_t n = atomic_load_explicit(&n_created_paths, memory_order_relaxed);
  created_paths[n] = path;
  atomic_store_explicit(&n_created_paths, n + 1, memory_order_release);
  return fd;
}

/* Sorts the sockets into listening and connected ones. */
static int open_sockets(const pw_args *a, int *listen_fds, size_t *n_listen, int *conn_fds,
                        size_t *n_conn) {
  *n_listen = *n_conn = 0;
  for (size_t i = 0; i < a->n_socket_paths; i++) {
    int fd = listen_at(a->socket_paths[i]);
    if (fd < 0) {
      return -1;
    }
    listen_fds[(*n_listen)++] = fd;
  }
  for (size_t i = 0; i < a->n_fds; i++) {
    int fd = a->fds[i];
    int listening = 0;
    socklen_t len = sizeof(listening);
    if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) != 0 ||
        set_nonblocking_cloexec(fd) != 0) {
      PW_LOG("--fd %d is not a usable socket: %s", fd, strerror(errno));
      return -1;
    }
    if (listening) {
      listen_fds[(*n_listen)++] = fd;
    } else {
      conn_fds[(*n_conn)++] = fd;
    }
  }
  return 0;
}

int main(int argc, char **argv) {
  pw_args args;
  if (parse_args(argc, argv, &args) != 0) {
    usage(stderr);
    return 2;
  }
  cleanup_dir = args.cleanup_dir;
  if (setup_process(&args) != 0) {
    return 1;
  }
  /* Sockets first: the engine may connect while Python starts; its requests
   * wait in the socket buffer. */
  int listen_fds[2 * PW_MAX_SOCKETS], conn_fds[PW_MAX_SOCKETS];
  size_t n_listen, n_conn;
  if (open_sockets(&args, listen_fds, &n_listen, conn_fds, &n_conn) != 0) {
    remove_created_paths();
    return 1;
  }

  char exe[PATH_MAX] = "", package_dir[PATH_MAX];
  if (pw_self_exe(exe, sizeof(exe)) != 0 ||
      pw_find_package_dir(exe, package_dir, sizeof(package_dir)) != 0) {
    PW_LOG("cannot find the policyexec Python package next to %s", exe);
    remove_created_paths();
    return 1;
  }
  pw_python py;
  pw_handler handler = {.py = &py};
  if (pw_arena_init(&handler.arena) != 0 || pw_python_init(&py, package_dir) != 0 ||
      pw_python_add_virtualenv(args.virtualenv) != 0 || pw_async_start(&handler.async) != 0) {
    remove_created_paths();
    return 1;
  }
  /* A policy module that fails to import (syntax error, exception, exit,
   * a duplicate name@version) does not end the worker at once: it answers
   * every request, the engine's Hello first, with the reason, so that the
   * engine reports it (the socket is the one channel the engine reads), and
   * exits once the engine has closed its connections (or the lifeline). */
  int failed = pw_preload_modules(&handler, args.module_paths, args.n_module_paths) != 0;

  pw_server_config cfg = {.listen_fds = listen_fds,
                          .n_listen = n_listen,
                          .conn_fds = conn_fds,
                          .n_conn = n_conn,
                          .max_message = args.max_message};
  int rc = pw_server_run(&cfg, &handler, &stop_requested);
  if (failed) {
    rc = -1;
  }
  free(handler.startup_error);

  for (size_t i = 0; i < n_listen; i++) {
    close(listen_fds[i]);
  }
  remove_created_paths();
  pw_async_finalize(&handler.async); /* teardown() of every instance */
  pw_python_finalize(&py);
  pw_arena_destroy(&handler.arena);
  return rc == 0 ? 0 : 1;
}
