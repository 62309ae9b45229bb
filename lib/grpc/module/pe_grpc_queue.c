/*
 * Non-blocking calls for one dispatcher. A completion queue exposes no fd,
 * and in gRPC 1.51's C core a callback completion queue has no thread of
 * its own to drive network I/O (the epoll1 engine does not poll in the
 * background; only the 5 s backup poller would), so calls on one stall.
 * Hence gRPC's own remedy, as its C++ callback API does: one process-wide
 * completion queue polled by one thread of this module, started with the
 * first queue. That thread drives the I/O of every non-blocking call and,
 * when one ends, moves it to its dispatcher queue's finished list and writes
 * that queue's eventfd; the host thread, woken by the fd on its
 * dispatcher's epoll set, drains the list. One fd per host thread, whatever
 * the number of calls in flight.
 */
#include "pe_grpc_module.h"

#include <errno.h>
#include <grpc/support/time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

typedef struct qcall {
  grpc_completion_queue_functor fn; /* first: gRPC hands back &fn */
  pe__grpc_queue *q;
  pe__grpc_unary u;
  void *tag;
  struct qcall *prev, *next; /* live list: started, not drained */
  struct qcall *done_next;   /* finished list */
} qcall;

struct pe__grpc_queue {
  int efd;
  pthread_mutex_t lock; /* guards the lists and counts below */
  pthread_cond_t cond;
  qcall *live;
  qcall *done_head, *done_tail;
  size_t running; /* started, functor not yet run */
};

/* The process-wide completion queue of non-blocking calls and its thread. */
static pthread_mutex_t poller_lock = PTHREAD_MUTEX_INITIALIZER;
static grpc_completion_queue *poll_cq;

static void *poller_main(void *arg) {
  (void)arg;
  for (;;) {
    grpc_event ev = grpc_completion_queue_next(poll_cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    if (ev.type != GRPC_OP_COMPLETE)
      return NULL; /* never shut down: lives as long as the process */
    grpc_completion_queue_functor *fn = ev.tag;
    fn->functor_run(fn, ev.success);
  }
}

static int poller_start(char *err) {
  pthread_mutex_lock(&poller_lock);
  int rc = 0;
  if (!poll_cq) {
    poll_cq = grpc_completion_queue_create_for_next(NULL);
    pthread_t t;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    if (!poll_cq || pthread_create(&t, &attr, poller_main, NULL) != 0) {
      snprintf(err, PE__GRPC_DETAIL_SIZE, "cannot start the gRPC poller thread");
      if (poll_cq)
        grpc_completion_queue_destroy(poll_cq);
      poll_cq = NULL;
      rc = -1;
    }
    pthread_attr_destroy(&attr);
  }
  pthread_mutex_unlock(&poller_lock);
  return rc;
}

static void wake(pe__grpc_queue *q) {
  uint64_t one = 1;
  /* EAGAIN only when the counter is huge: the fd is readable anyway. */
  while (write(q->efd, &one, sizeof one) < 0 && errno == EINTR) {
  }
}

static void call_done(grpc_completion_queue_functor *fn, int ok) {
  (void)ok; /* the call's status says what happened */
  qcall *c = (qcall *)(void *)fn;
  pe__grpc_queue *q = c->q;
  pthread_mutex_lock(&q->lock);
  c->done_next = NULL;
  if (q->done_tail)
    q->done_tail->done_next = c;
  else
    q->done_head = c;
  q->done_tail = c;
  q->running--;
  pthread_cond_broadcast(&q->cond);
  pthread_mutex_unlock(&q->lock);
  wake(q);
}

int pe__grpc_queue_new(pe__grpc_queue **out, int *fd, char *err) {
  if (pe__grpc_started(err) != 0 || poller_start(err) != 0)
    return -1;
  pe__grpc_queue *q = calloc(1, sizeof *q);
  if (!q) {
    snprintf(err, PE__GRPC_DETAIL_SIZE, "out of memory");
    return -1;
  }
  q->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (q->efd < 0) {
    snprintf(err, PE__GRPC_DETAIL_SIZE, "eventfd: %s", strerror(errno));
    free(q);
    return -1;
  }
  pthread_mutex_init(&q->lock, NULL);
  pthread_cond_init(&q->cond, NULL);
  *out = q;
  *fd = q->efd;
  return 0;
}

int pe__grpc_call_start(pe__grpc_channel *ch, pe__grpc_queue *q, const char *method,
                        const void *req, size_t len, int64_t timeout_ns, void *tag, char *err) {
  qcall *c = calloc(1, sizeof *c);
  if (!c) {
    snprintf(err, PE__GRPC_DETAIL_SIZE, "out of memory");
    return -1;
  }
  c->fn.functor_run = call_done;
  c->q = q;
  c->tag = tag;
  pthread_mutex_lock(&q->lock);
  q->running++;
  c->next = q->live;
  if (q->live)
    q->live->prev = c;
  q->live = c;
  pthread_mutex_unlock(&q->lock);
  if (pe__grpc_unary_begin(&c->u, ch, poll_cq, method, req, len, timeout_ns, &c->fn, err) != 0) {
    pthread_mutex_lock(&q->lock);
    q->running--;
    if (c->prev)
      c->prev->next = c->next;
    else
      q->live = c->next;
    if (c->next)
      c->next->prev = c->prev;
    pthread_mutex_unlock(&q->lock);
    free(c);
    return -1;
  }
  return 0;
}

size_t pe__grpc_queue_drain(pe__grpc_queue *q, pe__grpc_done_fn done, void *ud) {
  uint64_t count;
  while (read(q->efd, &count, sizeof count) < 0 && errno == EINTR) {
  }
  pthread_mutex_lock(&q->lock);
  qcall *c = q->done_head;
  q->done_head = q->done_tail = NULL;
  for (qcall *d = c; d; d = d->done_next) {
    if (d->prev)
      d->prev->next = d->next;
    else
      q->live = d->next;
    if (d->next)
      d->next->prev = d->prev;
  }
  pthread_mutex_unlock(&q->lock);
  size_t n = 0;
  while (c) {
    qcall *next = c->done_next;
    pe__grpc_result r;
    pe__grpc_unary_end(&c->u, &r);
    done(c->tag, &r, ud);
    pe__grpc_result_release(&r);
    free(c);
    c = next;
    n++;
  }
  return n;
}

void pe__grpc_queue_free(pe__grpc_queue *q, pe__grpc_done_fn done, void *ud) {
  if (!q)
    return;
  /* Only this thread changes the live list; the lock is not held while
   * gRPC cancels, in case it completes a call inline. */
  for (qcall *c = q->live; c; c = c->next)
    grpc_call_cancel(c->u.call, NULL);
  pthread_mutex_lock(&q->lock);
  while (q->running)
    pthread_cond_wait(&q->cond, &q->lock);
  pthread_mutex_unlock(&q->lock);
  pe__grpc_queue_drain(q, done, ud);
  close(q->efd);
  pthread_cond_destroy(&q->cond);
  pthread_mutex_destroy(&q->lock);
  free(q);
}
