/* Loading libpolicyexec-grpc.so, this process's channel, and control calls.
 *
 * gRPC cannot cross a fork: grpc_init starts threads, and a child forked
 * after it holds gRPC state without them. A host such as nginx builds its
 * engine and chains in a master process and runs requests in forked
 * children, so the calls made before any run (Hello when the executor
 * starts, Create while a chain is built, a ping) are made from a
 * short-lived child process of our own while this process has not started
 * gRPC: the child starts it, calls, writes the reply to a pipe and exits.
 * gRPC then starts in this process only with its first run. */
#include "pe_grpc.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef PE_GRPC_MODULE_DEFAULT_PATH
#define PE_GRPC_MODULE_DEFAULT_PATH "libpolicyexec-grpc.so.0"
#endif
#define MODULE_NAME "libpolicyexec-grpc.so.0"

static pthread_mutex_t load_lock = PTHREAD_MUTEX_INITIALIZER;
static const pe__grpc_transport *loaded; /* the first module loaded stays */
/* Whether this process (by pid) has made a gRPC call of its own. */
static atomic_int started_pid;

/* Beside the library that holds this code, else the installed path. */
static void default_path(char *out, size_t cap) {
  Dl_info info;
  if (dladdr((void *)default_path, &info) && info.dli_fname) {
    const char *slash = strrchr(info.dli_fname, '/');
    int n = slash ? snprintf(out, cap, "%.*s/%s", (int)(slash - info.dli_fname), info.dli_fname,
                             MODULE_NAME)
                  : -1;
    if (n > 0 && (size_t)n < cap && access(out, R_OK) == 0)
      return;
  }
  snprintf(out, cap, "%s", PE_GRPC_MODULE_DEFAULT_PATH);
}

int pe__grpc_load(const char *path, const pe__grpc_transport **out, char *err) {
  pthread_mutex_lock(&load_lock);
  int rc = PE_OK;
  if (!loaded) {
    char buf[PATH_MAX];
    if (!path) {
      default_path(buf, sizeof buf);
      path = buf;
    }
    /* Never closed: gRPC cannot be unloaded from a process. */
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    pe__grpc_transport_init_fn init =
        h ? (pe__grpc_transport_init_fn)(uintptr_t)dlsym(h, PE__GRPC_TRANSPORT_INIT) : NULL;
    if (!h) {
      pe__errmsg_set(err, "cannot load the gRPC module (was libpolicyexec built with gRPC?): %s",
                     dlerror());
      rc = PE_ERR_UNSUPPORTED;
    } else if (!init || init(PE__GRPC_TRANSPORT_ABI, &loaded) != 0) {
      pe__errmsg_set(err, "%s is not a gRPC module of this library version", path);
      rc = PE_ERR_UNSUPPORTED;
      loaded = NULL;
    }
  }
  *out = loaded;
  pthread_mutex_unlock(&load_lock);
  return rc;
}

pe__grpc_channel *pe__grpc_channel_get(pe__grpc_backend *be, char *err) {
  pid_t me = getpid();
  pthread_mutex_lock(&be->lock);
  pe__grpc_channel *ch = be->channel;
  if (ch && be->channel_pid != me) {
    pe__errmsg_set(err, "the gRPC channel was made by process %d before it forked",
                   (int)be->channel_pid);
    ch = NULL;
  } else if (!ch) {
    char detail[PE__GRPC_DETAIL_SIZE] = "";
    if (be->t->channel_new(&be->settings, &ch, detail) == 0) {
      be->channel = ch;
      be->channel_pid = me;
      atomic_store(&started_pid, (int)me);
    } else {
      pe__errmsg_set(err, "%s", detail);
      ch = NULL;
    }
  }
  pthread_mutex_unlock(&be->lock);
  return ch;
}

static int64_t startup_ns(const pe__grpc_backend *be) {
  return (int64_t)be->cfg.startup_timeout_ms * 1000000;
}

/* The call, made in this process (gRPC started here). */
static int call_here(pe__grpc_backend *be, const unsigned char *req, size_t len, pe__grpc_result *r,
                     char *err) {
  pe__grpc_channel *ch = pe__grpc_channel_get(be, err);
  if (!ch)
    return PE_ERR_WORKER;
  be->t->call(ch, PE__GRPC_METHOD_CALL, req, len, startup_ns(be), r);
  return PE_OK;
}

/* What the child writes: status, detail, length, then the reply. */
typedef struct child_head {
  int32_t status;
  char detail[PE__GRPC_DETAIL_SIZE];
  uint64_t len;
} child_head;

static bool write_all(int fd, const void *p, size_t n) {
  const char *c = p;
  while (n) {
    ssize_t w = write(fd, c, n);
    if (w < 0 && errno == EINTR)
      continue;
    if (w <= 0)
      return false;
    c += w;
    n -= (size_t)w;
  }
  return true;
}

static void child_main(pe__grpc_backend *be, const unsigned char *req, size_t len, int fd) {
  pe__grpc_channel *ch = NULL;
  pe__grpc_result r;
  memset(&r, 0, sizeof r);
  r.status = PE__GRPC_STATUS_LOCAL;
  if (be->t->channel_new(&be->settings, &ch, r.detail) == 0)
    be->t->call(ch, PE__GRPC_METHOD_CALL, req, len, startup_ns(be), &r);
  child_head h;
  memset(&h, 0, sizeof h);
  h.status = r.status;
  memcpy(h.detail, r.detail, sizeof h.detail);
  h.len = r.len;
  bool ok = write_all(fd, &h, sizeof h) && write_all(fd, r.data, r.len);
  /* No clean-up: the child leaves at once, gRPC threads and all. */
  _exit(ok ? 0 : 1);
}

/* Reads n bytes from fd before deadline (CLOCK_MONOTONIC ns). */
static bool read_all(int fd, void *p, size_t n, uint64_t deadline) {
  char *c = p;
  while (n) {
    uint64_t now = pe__now_ns();
    if (now >= deadline)
      return false;
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    int ms = (int)((deadline - now) / 1000000u) + 1;
    int pr = poll(&pfd, 1, ms);
    if (pr < 0 && errno == EINTR)
      continue;
    if (pr <= 0)
      return false;
    ssize_t r = read(fd, c, n);
    if (r < 0 && errno == EINTR)
      continue;
    if (r <= 0)
      return false;
    c += r;
    n -= (size_t)r;
  }
  return true;
}

/* The call, made by a child process; the reply lands in s->conn.in. */
static int call_in_child(pe__grpc_backend *be, pe__grpc_scratch *s, const unsigned char *req,
                         size_t len, pe__grpc_result *r, char *err) {
  int p[2];
  if (pipe2(p, O_CLOEXEC) != 0) {
    pe__errmsg_set(err, "pipe: %s", strerror(errno));
    return PE_ERR_IO;
  }
  pid_t pid = fork();
  if (pid == 0) {
    close(p[0]);
    child_main(be, req, len, p[1]);
  }
  close(p[1]);
  if (pid < 0) {
    close(p[0]);
    pe__errmsg_set(err, "fork: %s", strerror(errno));
    return PE_ERR_IO;
  }
  /* The child's own deadline is the start-up timeout; allow for its start. */
  uint64_t deadline = pe__now_ns() + (uint64_t)startup_ns(be) + 5000000000u;
  child_head h;
  int rc = PE_ERR_WORKER;
  if (!read_all(p[0], &h, sizeof h, deadline)) {
    pe__errmsg_set(err, "the gRPC helper process gave no answer");
  } else if (h.len > be->max_message) {
    pe__errmsg_set(err, "reply of %llu bytes exceeds the message limit", (unsigned long long)h.len);
  } else if (s->conn.in.len = 0, pe__buf_reserve(&s->conn.in, be->mem, (size_t)h.len + 1) != 0) {
    rc = PE_ERR_NOMEM;
  } else if (!read_all(p[0], s->conn.in.data, (size_t)h.len, deadline)) {
    pe__errmsg_set(err, "the gRPC helper process died before answering");
  } else {
    memset(r, 0, sizeof *r);
    r->status = h.status;
    memcpy(r->detail, h.detail, sizeof r->detail);
    r->detail[sizeof r->detail - 1] = '\0';
    r->data = (const unsigned char *)s->conn.in.data;
    r->len = (size_t)h.len;
    rc = PE_OK;
  }
  close(p[0]);
  if (rc != PE_OK)
    kill(pid, SIGKILL);
  while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {
  }
  return rc;
}

int pe__grpc_control(pe__grpc_backend *be, pe__grpc_scratch *s, pe__py_request *req,
                     pe__py_response **resp, char *err) {
  pe__py_conn *c = &s->conn;
  c->out.len = c->out_off = 0;
  int rc = pe__py_conn_queue(c, req);
  if (rc != PE_OK)
    return rc;
  const unsigned char *bytes = (const unsigned char *)c->out.data + 4;
  size_t len = c->out.len - 4;
  pe__grpc_result r;
  bool here = atomic_load(&started_pid) == (int)getpid();
  rc = here ? call_here(be, bytes, len, &r, err) : call_in_child(be, s, bytes, len, &r, err);
  if (rc != PE_OK)
    return rc;
  if (r.status != PE__GRPC_STATUS_OK) {
    pe__errmsg_set(err, "no executor answered at %s: %s (gRPC status %d)", be->target, r.detail,
                   r.status);
    rc = PE_ERR_WORKER;
  } else {
    pe__py_arena_reset(&c->arena);
    *resp = policyexec__v1__response__unpack(&c->arena.pc, r.len, r.data);
    if (!*resp) {
      pe__errmsg_set(err, "the executor's reply does not parse");
      rc = PE_ERR_WORKER;
    } else if ((*resp)->body_case == POLICYEXEC__V1__RESPONSE__BODY_ERROR) {
      pe__errmsg_set(err, "the executor refused: %s", (*resp)->error->message);
      rc = PE_ERR_WORKER;
    }
  }
  if (here)
    be->t->result_release(&r);
  return rc;
}
