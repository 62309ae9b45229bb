#include "pw_shm.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pw_log.h"

/* What this worker seals its own memfds with, and what the engine checks. */
#define SEALS (F_SEAL_WRITE | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL)
/* What the engine's memfds must have: no resizing (a mapping past the end
 * would fault), no writes but through the engine's own mapping (it reuses
 * them: F_SEAL_FUTURE_WRITE), so this side only ever reads. */
#define IN_SIZE_SEALS (F_SEAL_SHRINK | F_SEAL_GROW)
#define IN_WRITE_SEALS (F_SEAL_WRITE | F_SEAL_FUTURE_WRITE)

/* The fds claimed for the request being served (one at a time). */
static int claimed[2] = {-1, -1};

static int check(int fd, const Policyexec__V1__ShmRef *ref) {
  struct stat st;
  int seals = fcntl(fd, F_GET_SEALS);
  if (seals < 0 || (seals & IN_SIZE_SEALS) != IN_SIZE_SEALS || !(seals & IN_WRITE_SEALS) ||
      fstat(fd, &st) != 0 || st.st_size < 0 || ref->offset > (uint64_t)st.st_size ||
      ref->length > (uint64_t)st.st_size - ref->offset) {
    return -1;
  }
  return 0;
}

int pw_shm_take(pw_conn *c, const Policyexec__V1__Request *req) {
  pw_shm_release();
  if (req->body_case != POLICYEXEC__V1__REQUEST__BODY_RUN || req->run->data == NULL) {
    return 0;
  }
  const Policyexec__V1__HttpData *d = req->run->data;
  const Policyexec__V1__ShmRef *refs[2] = {d->request_body_shm, d->response_body_shm};
  for (int i = 0; i < 2; i++) {
    if (refs[i] == NULL) {
      continue;
    }
    claimed[i] = pw_conn_take_fd(c);
    if (claimed[i] < 0 || check(claimed[i], refs[i]) != 0) {
      PW_LOG("a shared body of request %llu has no valid memfd; closing the connection",
             (unsigned long long)req->id);
      pw_shm_release();
      return -1;
    }
  }
  return 0;
}

PyObject *pw_shm_body(const pw_python *py, int side, const Policyexec__V1__ShmRef *ref) {
  int fd = claimed[side];
  claimed[side] = -1;
  if (fd < 0) {
    PyErr_SetString(PyExc_RuntimeError, "shared body without its memfd");
    return NULL;
  }
  /* Python's mmap duplicates the fd; the Body keeps the mapping alive for
   * as long as the policy keeps a reference to it. */
  PyObject *body = PyObject_CallFunction(py->shm_body, "iKK", fd, (unsigned long long)ref->offset,
                                         (unsigned long long)ref->length);
  close(fd);
  return body;
}

void pw_shm_release(void) {
  for (int i = 0; i < 2; i++) {
    if (claimed[i] >= 0) {
      close(claimed[i]);
      claimed[i] = -1;
    }
  }
}

/* A sealed memfd holding @p data, or -1. */
static int memfd_of(ProtobufCBinaryData data) {
  int fd = memfd_create("policyexec-body", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (fd < 0) {
    return -1;
  }
  if (ftruncate(fd, (off_t)data.len) != 0) {
    close(fd);
    return -1;
  }
  size_t done = 0;
  while (done < data.len) {
    ssize_t n = pwrite(fd, data.data + done, data.len - done, (off_t)done);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      close(fd);
      return -1;
    }
    done += (size_t)n;
  }
  if (fcntl(fd, F_ADD_SEALS, SEALS) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

int pw_shm_reply(pw_conn *c, Policyexec__V1__Response *resp, pw_arena *a) {
  if (c->shm_threshold == 0 || resp->body_case != POLICYEXEC__V1__RESPONSE__BODY_RUN) {
    return 0;
  }
  Policyexec__V1__RunReply *r = resp->run;
  for (size_t i = 0; i < r->n_steps; i++) {
    Policyexec__V1__StepResult *s = r->steps[i];
    for (size_t j = 0; j < s->n_bodies; j++) {
      Policyexec__V1__BodyEdit *b = s->bodies[j];
      if (!b->replace || b->replacement.len < c->shm_threshold || c->n_fds_next == PW_CONN_FDS) {
        continue; /* small, or too many: inline is always correct */
      }
      Policyexec__V1__ShmRef *ref = pw_arena_alloc(a, sizeof(*ref));
      int fd = ref ? memfd_of(b->replacement) : -1;
      if (fd < 0) {
        continue;
      }
      policyexec__v1__shm_ref__init(ref);
      ref->length = b->replacement.len;
      if (pw_conn_give_fd(c, fd) != 0) {
        continue;
      }
      b->replacement_shm = ref;
      b->replacement.data = NULL;
      b->replacement.len = 0;
    }
  }
  return 0;
}
