/* Bodies in shared memory (local transport only): a body of at least the
 * pool's threshold goes to a worker in a memfd passed with SCM_RIGHTS, and
 * a worker's replacement body comes back the same way.
 *
 * To the worker: each connection keeps a pool of memfds, mapped writable
 * here and then sealed so that nobody else can write or resize them
 * (F_SEAL_FUTURE_WRITE | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL; the
 * worker gets a read-only view). A memfd is written again only once the
 * request that used it is answered: creating one per request costs tmpfs
 * page allocation and freeing (measured 59 us for 64 KiB, 0.95 ms for
 * 1 MiB here), reusing one costs the memcpy.
 *
 * The worker is not trusted: an fd it sends must be a memfd sealed against
 * writes, shrinking and growing (so its size cannot change under the
 * mapping: no SIGBUS, no change while we copy), the referenced range must
 * lie within the file, and it is mapped read-only and private. Anything
 * else ends the connection (the caller fails the worker). */
#include "pe_py.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define SEALS (F_SEAL_WRITE | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL)

static int fail(pe__py_conn *c, int rc, const char *what) {
  snprintf(c->why, sizeof c->why, "%s: %s", what, strerror(errno));
  return rc;
}

/* Bodies up to this stay mapped in the pool for the next request; a bigger
 * one's memfd is dropped once answered (its pages given back). */
#define KEEP_CAP ((size_t)17 << 20)
/* A body to the worker: it may neither write nor resize it (the engine
 * writes through the mapping it made before sealing). */
#define OUT_SEALS (F_SEAL_FUTURE_WRITE | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL)

static void buf_close(pe__py_shmbuf *b) {
  if (b->map)
    munmap(b->map, b->cap);
  if (b->fd >= 0)
    close(b->fd);
  b->map = NULL;
  b->fd = -1;
  b->cap = 0;
  b->busy = 0;
}

/* A new memfd of at least len bytes in *b: sized, mapped, sealed. Pages
 * are allocated as they are first written, so the rounding costs nothing. */
static int buf_open(pe__py_conn *c, pe__py_shmbuf *b, size_t len) {
  size_t cap = 64u * 1024u;
  while (cap < len && cap < ((size_t)1 << 40))
    cap *= 2;
  int fd = memfd_create("policyexec-body", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (fd < 0)
    return fail(c, errno == ENOMEM ? PE_ERR_NOMEM : PE_ERR_IO, "memfd_create");
  void *map = MAP_FAILED;
  if (ftruncate(fd, (off_t)cap) != 0 ||
      (map = mmap(NULL, cap, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)) == MAP_FAILED ||
      fcntl(fd, F_ADD_SEALS, OUT_SEALS) != 0) {
    int rc = fail(c, PE_ERR_IO, "cannot prepare a memfd for a body");
    if (map != MAP_FAILED)
      munmap(map, cap);
    close(fd);
    return rc;
  }
  *b = (pe__py_shmbuf){.fd = fd, .map = map, .cap = cap};
  return PE_OK;
}

int pe__py_shm_put(pe__py_conn *c, const void *data, size_t len, Policyexec__V1__ShmRef *ref) {
  if (c->n_next >= sizeof c->next_bufs / sizeof c->next_bufs[0]) {
    snprintf(c->why, sizeof c->why, "too many shared bodies in one request");
    return PE_ERR_IO;
  }
  /* The smallest free memfd that fits, else a free one to replace, else a
   * new entry. */
  size_t pick = SIZE_MAX, spare = SIZE_MAX;
  for (size_t i = 0; i < c->n_bufs; i++) {
    pe__py_shmbuf *b = &c->bufs[i];
    if (b->busy || (c->n_next == 1 && c->next_bufs[0] == i))
      continue;
    if (b->cap >= len && (pick == SIZE_MAX || b->cap < c->bufs[pick].cap))
      pick = i;
    else if (spare == SIZE_MAX)
      spare = i;
  }
  if (pick == SIZE_MAX) {
    if (spare == SIZE_MAX) {
      if (c->n_bufs == c->bufs_cap) {
        size_t cap = c->bufs_cap ? 2 * c->bufs_cap : 4;
        pe__py_shmbuf *nb = pe__realloc(c->mem, c->bufs, cap * sizeof *nb);
        if (!nb)
          return PE_ERR_NOMEM;
        c->bufs = nb;
        c->bufs_cap = cap;
      }
      spare = c->n_bufs++;
      c->bufs[spare] = (pe__py_shmbuf){.fd = -1};
    }
    buf_close(&c->bufs[spare]);
    int rc = buf_open(c, &c->bufs[spare], len);
    if (rc != PE_OK)
      return rc;
    pick = spare;
  }
  memcpy(c->bufs[pick].map, data, len);
  c->next_bufs[c->n_next++] = pick;
  policyexec__v1__shm_ref__init(ref);
  ref->length = len;
  return PE_OK;
}

int pe__py_shm_mark(pe__py_conn *c, size_t off) {
  size_t n = c->n_next;
  c->n_next = 0;
  if (n == 0 || off == SIZE_MAX)
    return n == 0 ? PE_OK : PE_ERR_NOMEM;
  if (c->n_fds_out + n > c->fds_out_cap) {
    size_t cap = c->fds_out_cap ? 2 * c->fds_out_cap : 8;
    pe__py_fdmark *m = pe__realloc(c->mem, c->fds_out, cap * sizeof *m);
    if (!m)
      return PE_ERR_NOMEM;
    c->fds_out = m;
    c->fds_out_cap = cap;
  }
  /* Each frame sends its own duplicate (closed once sent): the pool keeps
   * its fd for the next request. */
  int dups[2];
  for (size_t i = 0; i < n; i++) {
    dups[i] = fcntl(c->bufs[c->next_bufs[i]].fd, F_DUPFD_CLOEXEC, 0);
    if (dups[i] < 0) {
      while (i-- > 0)
        close(dups[i]);
      return fail(c, PE_ERR_IO, "dup of a body memfd");
    }
  }
  for (size_t i = 0; i < n; i++) {
    c->bufs[c->next_bufs[i]].busy = c->next_id;
    c->fds_out[c->n_fds_out++] = (pe__py_fdmark){.off = off, .fd = dups[i]};
  }
  return PE_OK;
}

/* The request id answered for good: its memfds may be written again. */
static void bufs_release(pe__py_conn *c, uint64_t id) {
  for (size_t i = 0; i < c->n_bufs; i++) {
    pe__py_shmbuf *b = &c->bufs[i];
    if (b->busy == id) {
      b->busy = 0;
      if (b->cap > KEEP_CAP)
        buf_close(b);
    }
  }
}

/* Maps the range ref of fd (checked) into c->maps; *out points at it. */
static int map_one(pe__py_conn *c, int fd, const Policyexec__V1__ShmRef *ref,
                   ProtobufCBinaryData *out) {
  struct stat st;
  int seals = fcntl(fd, F_GET_SEALS);
  if (seals < 0) /* EINVAL: not a memfd (a pipe, a file, a socket) */
    return fail(c, PE_ERR_WORKER, "worker sent a body fd that is not a memfd");
  if ((seals & SEALS) != SEALS) {
    snprintf(c->why, sizeof c->why, "worker sent a memfd without the seals (0x%x)", seals);
    return PE_ERR_WORKER;
  }
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size < 0)
    return fail(c, PE_ERR_WORKER, "worker sent a body fd that cannot be checked");
  uint64_t size = (uint64_t)st.st_size;
  if (ref->offset > size || ref->length > size - ref->offset) {
    snprintf(c->why, sizeof c->why,
             "worker's shared body [%llu, +%llu) lies beyond its memfd of %llu bytes",
             (unsigned long long)ref->offset, (unsigned long long)ref->length,
             (unsigned long long)size);
    return PE_ERR_WORKER;
  }
  if (ref->length > c->max_message) {
    snprintf(c->why, sizeof c->why, "worker's shared body of %llu bytes exceeds the limit",
             (unsigned long long)ref->length);
    return PE_ERR_WORKER;
  }
  if (ref->length == 0) {
    *out = (ProtobufCBinaryData){0};
    return PE_OK;
  }
  if (c->n_maps == c->maps_cap) {
    size_t cap = c->maps_cap ? 2 * c->maps_cap : 4;
    pe__py_map *m = pe__realloc(c->mem, c->maps, cap * sizeof *m);
    if (!m) {
      snprintf(c->why, sizeof c->why, "out of memory mapping a body");
      return PE_ERR_WORKER;
    }
    c->maps = m;
    c->maps_cap = cap;
  }
  /* Read-only and private: nothing the engine does can reach the worker's
   * pages, nor the worker the engine's. */
  void *addr = mmap(NULL, (size_t)size, PROT_READ, MAP_PRIVATE, fd, 0);
  if (addr == MAP_FAILED)
    return fail(c, PE_ERR_WORKER, "cannot map the worker's body");
  c->maps[c->n_maps++] = (pe__py_map){.addr = addr, .len = (size_t)size};
  out->data = (uint8_t *)addr + ref->offset;
  out->len = (size_t)ref->length;
  return PE_OK;
}

static int take_fd(pe__py_conn *c) {
  if (c->n_fds_in == 0)
    return -1;
  int fd = c->fds_in[0];
  memmove(c->fds_in, c->fds_in + 1, --c->n_fds_in * sizeof c->fds_in[0]);
  return fd;
}

int pe__py_shm_resolve(pe__py_conn *c, pe__py_response *resp) {
  bool partial =
      resp->body_case == POLICYEXEC__V1__RESPONSE__BODY_RUN && resp->run && resp->run->partial;
  if (c->n_bufs && !partial)
    bufs_release(c, resp->id);
  if (resp->body_case != POLICYEXEC__V1__RESPONSE__BODY_RUN || !resp->run)
    return PE_OK;
  const Policyexec__V1__RunReply *r = resp->run;
  for (size_t i = 0; i < r->n_steps; i++) {
    const Policyexec__V1__StepResult *s = r->steps[i];
    for (size_t j = 0; s && j < s->n_bodies; j++) {
      Policyexec__V1__BodyEdit *b = s->bodies[j];
      if (!b || !b->replacement_shm)
        continue;
      if (!b->replace || b->replacement.len) {
        snprintf(c->why, sizeof c->why, "worker sent a shared body that is not a replacement");
        return PE_ERR_WORKER;
      }
      int fd = take_fd(c);
      if (fd < 0) {
        snprintf(c->why, sizeof c->why, "worker referred to a shared body without an fd");
        return PE_ERR_WORKER;
      }
      int rc = map_one(c, fd, b->replacement_shm, &b->replacement);
      close(fd);
      if (rc != PE_OK)
        return rc;
    }
  }
  return PE_OK;
}

void pe__py_shm_unmap(pe__py_conn *c) {
  for (size_t i = 0; i < c->n_maps; i++)
    munmap(c->maps[i].addr, c->maps[i].len);
  c->n_maps = 0;
}

void pe__py_shm_drop(pe__py_conn *c) {
  pe__py_shm_unmap(c);
  c->n_next = 0;
  for (size_t i = 0; i < c->n_bufs; i++)
    buf_close(&c->bufs[i]);
  c->n_bufs = 0;
  for (size_t i = c->fds_out_head; i < c->n_fds_out; i++)
    close(c->fds_out[i].fd);
  c->fds_out_head = c->n_fds_out = 0;
  for (size_t i = 0; i < c->n_fds_in; i++)
    close(c->fds_in[i]);
  c->n_fds_in = 0;
}

void pe__py_shm_free(pe__py_conn *c) {
  pe__free(c->mem, c->fds_out);
  pe__free(c->mem, c->maps);
  pe__free(c->mem, c->bufs);
  c->fds_out = NULL;
  c->maps = NULL;
  c->bufs = NULL;
  c->fds_out_cap = c->maps_cap = c->bufs_cap = 0;
}
