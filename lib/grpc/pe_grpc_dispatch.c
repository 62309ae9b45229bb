/* Non-blocking runs over gRPC. Per dispatcher: one queue of the module
 * (a callback completion queue and an eventfd) watched on the dispatcher's
 * epoll set, and the calls in flight. Deadlines are gRPC's own (each call
 * carries its batch's), so the dispatcher's timer is never needed. */
#include "pe_grpc.h"

typedef struct gcall {
  pe_exchange *ex; /* NULL once forgotten: the reply is dropped */
  pe__batch batch;
  struct gcall *prev, *next;
} gcall;

typedef struct pe__grpc_dstate {
  pe__grpc_backend *be;
  pe_dispatcher *d;
  pe__grpc_queue *q;
  int fd;
  pe__watch watch;
  pe__grpc_scratch scratch; /* this thread's encode / decode room */
  gcall *live;
  gcall *spare;  /* finished calls, reused: a warm call allocates nothing here */
  int completed; /* runs completed in the current drain */
} pe__grpc_dstate;

static pe__grpc_dstate *gds(pe__dstate *ds) {
  return (pe__grpc_dstate *)(void *)ds;
}

static void unlink_call(pe__grpc_dstate *d, gcall *k) {
  if (k->prev)
    k->prev->next = k->next;
  else
    d->live = k->next;
  if (k->next)
    k->next->prev = k->prev;
}

/* A call finished (or was cancelled by detach): apply, complete the run. */
static void on_done(void *tag, pe__grpc_result *r, void *ud) {
  pe__grpc_dstate *d = ud;
  gcall *k = tag;
  unlink_call(d, k);
  pe__grpc_admit_give(d->be);
  pe_exchange *ex = k->ex;
  if (ex) {
    pe__grpc_finish(d->be, &d->scratch, ex, &k->batch, r);
    d->completed += pe__dispatch_complete(ex);
  }
  k->next = d->spare;
  d->spare = k;
}

static int ready(pe__watch *w, uint32_t events) {
  (void)events;
  pe__grpc_dstate *d = (pe__grpc_dstate *)(void *)((char *)w - offsetof(pe__grpc_dstate, watch));
  d->completed = 0;
  d->be->t->queue_drain(d->q, on_done, d);
  return d->completed;
}

int pe__grpc_submit(pe__backend *self, pe__dstate *ds, pe_exchange *ex, const pe__batch *b) {
  pe__grpc_backend *be = (pe__grpc_backend *)(void *)self;
  pe__grpc_dstate *d = gds(ds);
  if (pe__dispatcher_closing(d->d))
    return PE_ERR_STATE;
  if (pe__grpc_admit_take(be) != PE_OK)
    return PE_ERR_BUSY;
  char err[PE__ERRMSG_SIZE] = "";
  pe__grpc_channel *ch = pe__grpc_channel_get(be, err);
  gcall *k = d->spare;
  if (k)
    d->spare = k->next;
  else if (ch)
    k = pe__malloc(be->mem, sizeof *k);
  if (k)
    k->prev = k->next = NULL;
  const unsigned char *req;
  size_t len;
  int rc = !ch  ? PE_ERR_WORKER
           : !k ? PE_ERR_NOMEM
                : pe__grpc_encode(&d->scratch, ex, b, &req, &len);
  if (rc == PE_OK) {
    k->ex = ex;
    pe__batch_copy(&k->batch, b);
    char detail[PE__GRPC_DETAIL_SIZE] = "";
    if (be->t->call_start(ch, d->q, PE__GRPC_METHOD_CALL, req, len, pe__grpc_batch_timeout(b), k,
                          detail) == 0) {
      k->next = d->live;
      if (d->live)
        d->live->prev = k;
      d->live = k;
      return PE_PENDING;
    }
    pe__errmsg_set(err, "%s", detail);
    rc = PE_ERR_WORKER;
  }
  if (k) {
    k->next = d->spare;
    d->spare = k;
  }
  pe__grpc_admit_give(be);
  if (rc == PE_ERR_WORKER) {
    char why[PE__ERRMSG_SIZE];
    pe__errmsg_set(why, "gRPC executor '%s': %s", be->cfg.name, err);
    pe__py_fail_steps(ex, b, 0, PE_ERR_WORKER, PE_STEP_CRASHED, why);
    return PE_OK;
  }
  return rc;
}

int pe__grpc_dispatcher_attach(pe__backend *self, pe_dispatcher *dispatcher, pe__dstate **out) {
  pe__grpc_backend *be = (pe__grpc_backend *)(void *)self;
  char err[PE__ERRMSG_SIZE] = "";
  /* gRPC starts here (if not yet): the channel first, for its check that
   * this process did not inherit gRPC across a fork. */
  if (!pe__grpc_channel_get(be, err)) {
    pe__log(be->engine, PE_LOG_ERROR, "gRPC executor '%s': %s", be->cfg.name, err);
    return PE_ERR_WORKER;
  }
  pe__grpc_dstate *d = pe__calloc(be->mem, 1, sizeof *d);
  if (!d)
    return PE_ERR_NOMEM;
  d->be = be;
  d->d = dispatcher;
  d->watch.ready = ready;
  pe__py_conn_init(&d->scratch.conn, be->mem, be->max_message);
  char detail[PE__GRPC_DETAIL_SIZE] = "";
  if (be->t->queue_new(&d->q, &d->fd, detail) != 0) {
    pe__log(be->engine, PE_LOG_ERROR, "gRPC executor '%s': %s", be->cfg.name, detail);
    pe__py_conn_free(&d->scratch.conn);
    pe__free(be->mem, d);
    return PE_ERR_WORKER;
  }
  if (pe__dispatcher_watch(dispatcher, d->fd, EPOLLIN, &d->watch) != PE_OK) {
    be->t->queue_free(d->q, on_done, d);
    pe__py_conn_free(&d->scratch.conn);
    pe__free(be->mem, d);
    return PE_ERR_IO;
  }
  *out = (pe__dstate *)(void *)d;
  return PE_OK;
}

void pe__grpc_dispatcher_detach(pe__dstate *ds) {
  pe__grpc_dstate *d = gds(ds);
  pe__grpc_backend *be = d->be;
  pe__dispatcher_unwatch(d->d, d->fd);
  /* Cancels what is in flight; each run completes (CANCELLED: crashed). */
  be->t->queue_free(d->q, on_done, d);
  while (d->spare) {
    gcall *k = d->spare;
    d->spare = k->next;
    pe__free(be->mem, k);
  }
  pe__py_conn_free(&d->scratch.conn);
  pe__free(be->mem, d);
}

int pe__grpc_dispatcher_timer(pe__dstate *ds, uint64_t now_ns) {
  (void)ds;
  (void)now_ns;
  return 0;
}

bool pe__grpc_forget(pe__dstate *ds, pe_exchange *ex) {
  for (gcall *k = gds(ds)->live; k; k = k->next)
    if (k->ex == ex) {
      k->ex = NULL;
      return true;
    }
  return false;
}
