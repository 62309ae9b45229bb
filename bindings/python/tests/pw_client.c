#include "pw_client.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PW_MAX_ARGS 32

static void exec_worker(const pw_spawn_options *opt, int fd) {
  const char *argv[PW_MAX_ARGS];
  size_t n = 0;
  char fdbuf[16];
  argv[n++] = PW_WORKER_PATH;
  if (opt->socket_path) {
    argv[n++] = "--socket";
    argv[n++] = opt->socket_path;
  } else {
    snprintf(fdbuf, sizeof(fdbuf), "%d", fd);
    argv[n++] = "--fd";
    argv[n++] = fdbuf;
  }
  argv[n++] = "--module-path";
  argv[n++] = PW_SAMPLES_DIR;
  argv[n++] = "--module-path";
  argv[n++] = PW_TEST_POLICIES_DIR;
  for (size_t i = 0; opt->extra_args && opt->extra_args[i] && n < PW_MAX_ARGS - 1; i++) {
    argv[n++] = opt->extra_args[i];
  }
  argv[n] = NULL;
  /* Under AddressSanitizer, CPython's memory still held at exit would be
   * reported as leaks and change the worker's exit status; the worker's own
   * buffers are freed on exit, and this process is still checked. */
  setenv("ASAN_OPTIONS", "detect_leaks=0", 1);
  if (opt->hostile_env) {
    const char *path = getenv("PATH");
    char newpath[4096];
    snprintf(newpath, sizeof(newpath), "/root/.pyenv/shims:/root/.pyenv/bin:%s",
             path ? path : "/usr/bin:/bin");
    setenv("PATH", newpath, 1);
    setenv("PYTHONHOME", "/nonexistent/pythonhome", 1);
    setenv("PYTHONPATH", "/nonexistent/pythonpath", 1);
    setenv("PYENV_VERSION", "3.11.7", 1);
  }
  execv(argv[0], (char *const *)argv);
  _exit(127);
}

int pw_worker_start(pw_worker *w, const pw_spawn_options *opt) {
  int sv[2] = {-1, -1};
  if (opt->socket_path == NULL && socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
    return -1;
  }
  pid_t pid = fork();
  if (pid < 0) {
    if (sv[0] >= 0) {
      close(sv[0]);
      close(sv[1]);
    }
    return -1;
  }
  if (pid == 0) {
    int fd = -1;
    if (sv[1] >= 0) {
      /* dup2 clears FD_CLOEXEC on the copy: the worker inherits fd 3 only. */
      fd = dup2(sv[1], 3);
      if (fd < 0) {
        _exit(127);
      }
    }
    exec_worker(opt, fd);
  }
  w->pid = pid;
  if (opt->socket_path == NULL) {
    close(sv[1]);
    w->fd = sv[0];
  } else {
    w->fd = pw_connect(opt->socket_path);
    if (w->fd < 0) {
      pw_worker_kill(w);
      return -1;
    }
  }
  return 0;
}

int pw_connect(const char *path) {
  struct sockaddr_un addr = {.sun_family = AF_UNIX};
  if (strlen(path) >= sizeof(addr.sun_path)) {
    errno = ENAMETOOLONG;
    return -1;
  }
  strcpy(addr.sun_path, path);
  for (int attempt = 0; attempt < 500; attempt++) {
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
      return -1;
    }
    if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) == 0) {
      return fd;
    }
    close(fd);
    struct timespec ts = {0, 10 * 1000 * 1000};
    nanosleep(&ts, NULL);
  }
  return -1;
}

void pw_worker_kill(pw_worker *w) {
  if (w->fd >= 0) {
    close(w->fd);
    w->fd = -1;
  }
  if (w->pid > 0) {
    kill(w->pid, SIGKILL);
    while (waitpid(w->pid, NULL, 0) < 0 && errno == EINTR) {
    }
    w->pid = 0;
  }
}

int pw_worker_wait(pw_worker *w, int timeout_ms, int *status) {
  for (int waited = 0;; waited += 5) {
    pid_t r = waitpid(w->pid, status, WNOHANG);
    if (r == w->pid) {
      w->pid = 0;
      return 1;
    }
    if (waited >= timeout_ms) {
      return 0;
    }
    struct timespec ts = {0, 5 * 1000 * 1000};
    nanosleep(&ts, NULL);
  }
}

int pw_send(int fd, const pw_request *req) {
  size_t size = policyexec__v1__request__get_packed_size(req);
  uint8_t *buf = malloc(size ? size : 1);
  if (buf == NULL) {
    return -1;
  }
  policyexec__v1__request__pack(req, buf);
  int rc = pw_frame_write(fd, buf, size);
  free(buf);
  return rc;
}

int pw_receive(int fd, pw_buf *buf, int timeout_ms, pw_response **out) {
  *out = NULL;
  if (timeout_ms >= 0) {
    struct pollfd p = {.fd = fd, .events = POLLIN};
    int n = poll(&p, 1, timeout_ms);
    if (n == 0) {
      return -2;
    }
    if (n < 0) {
      return -1;
    }
  }
  int rc = pw_frame_read(fd, buf, UINT32_MAX);
  if (rc != 0) {
    return rc == 1 ? 1 : -1;
  }
  *out = policyexec__v1__response__unpack(NULL, buf->len, buf->data);
  return *out ? 0 : -1;
}

int pw_call(int fd, pw_buf *buf, const pw_request *req, pw_response **out) {
  *out = NULL;
  if (pw_send(fd, req) != 0) {
    return -1;
  }
  return pw_receive(fd, buf, -1, out);
}

void pw_response_free(pw_response *resp) {
  if (resp) {
    policyexec__v1__response__free_unpacked(resp, NULL);
  }
}

int pw_hello(int fd, pw_buf *buf, uint64_t id, pw_response **out) {
  Policyexec__V1__Hello hello = POLICYEXEC__V1__HELLO__INIT;
  hello.protocol_version = POLICYEXEC__V1__PROTOCOL_VERSION__PROTOCOL_VERSION_CURRENT;
  pw_request req = POLICYEXEC__V1__REQUEST__INIT;
  req.id = id;
  req.body_case = POLICYEXEC__V1__REQUEST__BODY_HELLO;
  req.hello = &hello;
  return pw_call(fd, buf, &req, out);
}

int pw_create(int fd, pw_buf *buf, uint64_t id, uint64_t instance, const char *name,
              const char *params_json, pw_response **out) {
  Policyexec__V1__CreateInstance c = POLICYEXEC__V1__CREATE_INSTANCE__INIT;
  c.instance_id = instance;
  c.name = (char *)name;
  c.version = "1.0.0";
  c.params_json = (char *)params_json;
  pw_request req = POLICYEXEC__V1__REQUEST__INIT;
  req.id = id;
  req.body_case = POLICYEXEC__V1__REQUEST__BODY_CREATE;
  req.create = &c;
  return pw_call(fd, buf, &req, out);
}
