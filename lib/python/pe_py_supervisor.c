/* The pool's supervisor: one thread that brings replaced workers back to
 * READY (their handshake waits for a fresh interpreter, tens of
 * milliseconds) and respawns dead ones once their back-off has passed.
 *
 * Without it a replacement finished its start-up only when some caller
 * needed it, which meant either never (the other workers kept serving, so
 * the pool ran short of a worker until the next chain build or ping) or
 * inside a host's event loop, blocking it. The thread only ever runs the
 * same pe__py_worker_ensure_ready() that callers use, under the same locks. */
#include "pe_py.h"

#include <errno.h>
#include <time.h>

/* How often workers that are still down are tried again. */
#define RETRY_MS 50

static bool all_ready(pe__py_backend *be) {
  for (size_t i = 0; i < be->nworkers; i++)
    if (atomic_load(&be->workers[i].state) != PE__PY_READY)
      return false;
  return true;
}

static void *supervise(void *arg) {
  pe__py_backend *be = arg;
  pe__py_supervisor *s = &be->supervisor;
  pthread_mutex_lock(&s->lock);
  while (!s->stop) {
    s->poked = false;
    pthread_mutex_unlock(&s->lock);
    for (size_t i = 0; i < be->nworkers; i++)
      if (atomic_load(&be->workers[i].state) != PE__PY_READY)
        pe__py_worker_ensure_ready(&be->workers[i]); /* failures are logged there */
    bool ready = all_ready(be);
    pthread_mutex_lock(&s->lock);
    if (s->stop || s->poked)
      continue;
    if (ready) {
      pthread_cond_wait(&s->wake, &s->lock);
    } else {
      struct timespec at;
      clock_gettime(CLOCK_MONOTONIC, &at);
      at.tv_nsec += RETRY_MS * 1000000L;
      if (at.tv_nsec >= 1000000000L) {
        at.tv_sec++;
        at.tv_nsec -= 1000000000L;
      }
      pthread_cond_timedwait(&s->wake, &s->lock, &at);
    }
  }
  pthread_mutex_unlock(&s->lock);
  return NULL;
}

int pe__py_supervisor_start(pe__py_backend *be, char *err) {
  pe__py_supervisor *s = &be->supervisor;
  pthread_condattr_t attr;
  if (pthread_condattr_init(&attr) != 0) {
    pe__errmsg_set(err, "supervisor: out of resources");
    return PE_ERR_NOMEM;
  }
  pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
  int rc = pthread_cond_init(&s->wake, &attr);
  pthread_condattr_destroy(&attr);
  if (rc != 0 || pthread_mutex_init(&s->lock, NULL) != 0) {
    if (rc == 0)
      pthread_cond_destroy(&s->wake);
    pe__errmsg_set(err, "supervisor: out of resources");
    return PE_ERR_NOMEM;
  }
  s->stop = s->poked = false;
  s->running = true; /* before the thread exists: it shares a word with stop */
  if ((rc = pthread_create(&s->thread, NULL, supervise, be)) != 0) {
    s->running = false;
    pthread_cond_destroy(&s->wake);
    pthread_mutex_destroy(&s->lock);
    pe__errmsg_set(err, "supervisor thread: %s", strerror(rc));
    return PE_ERR_NOMEM;
  }
  return PE_OK;
}

void pe__py_supervisor_poke(pe__py_backend *be) {
  pe__py_supervisor *s = &be->supervisor;
  if (!s->running)
    return;
  pthread_mutex_lock(&s->lock);
  s->poked = true;
  pthread_cond_signal(&s->wake);
  pthread_mutex_unlock(&s->lock);
}

void pe__py_supervisor_stop(pe__py_backend *be) {
  pe__py_supervisor *s = &be->supervisor;
  if (!s->running)
    return;
  pthread_mutex_lock(&s->lock);
  s->stop = true;
  pthread_cond_signal(&s->wake);
  pthread_mutex_unlock(&s->lock);
  pthread_join(s->thread, NULL);
  pthread_cond_destroy(&s->wake);
  pthread_mutex_destroy(&s->lock);
  s->running = false;
}
