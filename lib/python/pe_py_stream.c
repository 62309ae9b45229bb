/* Streamed body steps on the Python pool (the table's stream_chunk and
 * stream_free; the non-blocking stream_submit is in pe_py_dispatch.c;
 * DECISIONS "Streamed Python steps").
 *
 * Each chunk of a body is one RunPhase round trip for one step,
 * carrying the step's input (the bytes it held back, then the chunk: the
 * core owns held-back bytes, as for native steps) as the phase's body,
 * inline or in a memfd like a buffered body, plus a StreamChunk naming the
 * body. The step's per-body state lives in the worker, so every chunk of a
 * body goes to the worker that got its first chunk: the state slot of the
 * step records which process that was. A worker replaced in the middle of
 * a body has lost the state: the step fails by its failure mode. The worker
 * drops the state itself after the last chunk and after a failure; an
 * exchange reset or freed before that sends a StreamAbort. */
#include "pe_py.h"

#include <stdio.h>

static atomic_ullong next_body_id;

pe_phase pe__py_body_phase(pe_dir dir) {
  return dir == PE_REQUEST ? PE_PHASE_REQUEST_BODY : PE_PHASE_RESPONSE_BODY;
}

/* The output and the held-back count of a checked StepResult, written to
 * chunk. PE_OK; PE_ERR_WORKER (pieces or keep outside the input: the
 * worker lied); the write's error (output past the limit). */
static int write_output(pe_exchange *ex, pe_body_chunk *chunk,
                        const Policyexec__V1__StepResult *r) {
  pe_slice in = pe_body_chunk_data(chunk);
  for (size_t i = 0; i < r->n_chunk_out; i++) {
    const Policyexec__V1__ChunkPiece *p = r->chunk_out[i];
    pe_slice piece;
    if (p->input) {
      if (p->offset > in.len || p->length > in.len - p->offset)
        return pe__exchange_fail(
            ex, PE_ERR_WORKER, "worker returned input bytes [%llu, +%llu) of a chunk of %zu",
            (unsigned long long)p->offset, (unsigned long long)p->length, in.len);
      piece = pe_bytes(in.ptr + p->offset, (size_t)p->length);
    } else {
      piece = pe_bytes(p->data.data, p->data.len);
    }
    int rc = pe_body_chunk_write(chunk, piece);
    if (rc != PE_OK)
      return pe__exchange_fail(ex, rc, "the step's output of a chunk %s",
                               rc == PE_ERR_BODY_TOO_LARGE ? "exceeds the body limit"
                                                           : "cannot be stored");
  }
  if (r->chunk_keep > in.len || (r->chunk_keep && pe_body_chunk_is_last(chunk)))
    return pe__exchange_fail(ex, PE_ERR_WORKER, "worker held back %llu bytes of a%s chunk of %zu",
                             (unsigned long long)r->chunk_keep,
                             pe_body_chunk_is_last(chunk) ? " last" : "", in.len);
  return r->chunk_keep ? pe_body_chunk_keep(chunk, (size_t)r->chunk_keep) : PE_OK;
}

/* Applies the answer to one chunk. Returns PE_OK or the step's failure;
 * *lied says the worker broke the protocol (it is then replaced). */
int pe__py_stream_apply(pe_exchange *ex, pe_body_chunk *chunk, const pe__py_response *resp,
                        pe__py_body *sb, bool *lied) {
  *lied = false;
  if (resp->body_case == POLICYEXEC__V1__RESPONSE__BODY_ERROR) {
    sb->worker_done = true; /* refused before the step ran: no state kept */
    return pe__exchange_fail(ex, PE_ERR_WORKER, "worker refused the chunk: %s",
                             resp->error->message);
  }
  if (resp->body_case != POLICYEXEC__V1__RESPONSE__BODY_RUN || resp->run->partial ||
      resp->run->n_steps != 1) {
    *lied = true;
    return pe__exchange_fail(ex, PE_ERR_WORKER, "worker answered a chunk with a malformed reply");
  }
  const Policyexec__V1__StepResult *r = resp->run->steps[0];
  switch (r->outcome) {
  case POLICYEXEC__V1__STEP_RESULT__OUTCOME__OUTCOME_OK:
    break;
  case POLICYEXEC__V1__STEP_RESULT__OUTCOME__OUTCOME_FAILED:
    sb->worker_done = true; /* the worker dropped the state */
    return pe__exchange_fail(ex, PE_ERR_POLICY, "%s",
                             r->error && r->error[0] ? r->error : "python policy failed");
  case POLICYEXEC__V1__STEP_RESULT__OUTCOME__OUTCOME_TIMEOUT:
    sb->worker_done = true;
    return pe__exchange_fail(ex, PE_ERR_TIMEOUT, "%s",
                             r->error && r->error[0] ? r->error
                                                     : "python step exceeded its timeout");
  default:
    *lied = true;
    return pe__exchange_fail(ex, PE_ERR_WORKER, "worker returned unknown outcome %d",
                             (int)r->outcome);
  }
  if (r->n_bodies) {
    *lied = true;
    return pe__exchange_fail(ex, PE_ERR_WORKER, "worker returned a body edit for a chunk");
  }
  if (pe_body_chunk_is_last(chunk) || r->respond)
    sb->worker_done = true; /* the worker keeps no state past either */
  int rc = write_output(ex, chunk, r);
  if (rc == PE_ERR_WORKER) {
    *lied = true;
    return rc;
  }
  if (rc != PE_OK)
    return rc;
  /* Headers, metadata and an answer, through the setters (as for buffered
   * steps: a worker cannot inject a header). */
  rc = pe__py_apply_edits(ex, pe__py_body_phase(pe_body_chunk_dir(chunk)), r);
  if (rc < 0 && !ex->errmsg[0])
    pe__errmsg_set(ex->errmsg, "edit from the worker refused: %s", pe_strerror(rc));
  return rc < 0 ? rc : PE_OK;
}

/* The body's worker for this chunk: the one of its first chunk, or one
 * picked now. PE_OK or PE_ERR_WORKER (errmsg set). */
static int body_worker(pe__py_backend *be, pe_exchange *ex, pe_body_chunk *chunk,
                       pe__py_body **out) {
  void **slot = pe_body_chunk_state(chunk);
  pe__py_body *sb = *slot;
  if (sb) {
    if (atomic_load(&sb->w->gen) != sb->gen) {
      sb->worker_done = true;
      return pe__exchange_fail(ex, PE_ERR_WORKER,
                               "python worker %zu was replaced in the middle of the body (its "
                               "state of the body is lost)",
                               sb->w->index);
    }
    *out = sb;
    return PE_OK;
  }
  pe__py_worker *w = pe__py_pick_worker(be);
  if (!w)
    return pe__exchange_fail(ex, PE_ERR_WORKER,
                             "no python worker is available (restarting after failures)");
  if (!(sb = pe__calloc(be->mem, 1, sizeof *sb)))
    return pe__exchange_fail(ex, PE_ERR_NOMEM, "out of memory");
  sb->w = w;
  sb->gen = atomic_load(&w->gen);
  sb->body_id = atomic_fetch_add(&next_body_id, 1) + 1;
  *slot = sb;
  *out = sb;
  return PE_OK;
}

int pe__py_stream_worker(pe__py_backend *be, pe_exchange *ex, pe_body_chunk *chunk,
                         pe__py_body **out) {
  int rc = body_worker(be, ex, chunk, out);
  if (rc == PE_OK && (rc = pe__py_inflight_take(be, (*out)->w)) != PE_OK)
    return pe__exchange_fail(ex, rc, "too many python batches in flight");
  return rc;
}

int pe__py_stream_chunk(pe__backend *self, pe_exchange *ex, const pe__step *step,
                        pe_body_chunk *chunk) {
  pe__py_backend *be = (pe__py_backend *)(void *)self;
  pe__py_body *sb = NULL;
  int rc = pe__py_stream_worker(be, ex, chunk, &sb);
  if (rc != PE_OK)
    return rc;
  pe__py_worker *w = sb->w;
  pe__py_conn *c = pe__py_pool_take(be, w);
  if (!c || c->gen != sb->gen) {
    if (c)
      pe__py_pool_put(be, w, c);
    pe__py_inflight_give(be, w);
    sb->worker_done = true;
    return pe__exchange_fail(ex, PE_ERR_WORKER, "python worker %zu cannot be reached%s", w->index,
                             c ? " (replaced in the middle of the body)" : "");
  }
  pe__batch b = {.n = 1};
  b.step[0] = step;
  b.phase[0] = pe__py_body_phase(pe_body_chunk_dir(chunk));
  Policyexec__V1__StreamChunk sc = POLICYEXEC__V1__STREAM_CHUNK__INIT;
  sc.body_id = sb->body_id;
  sc.last = pe_body_chunk_is_last(chunk) != 0;
  c->stream = &sc;
  c->stream_data = pe_body_chunk_data(chunk);
  uint64_t id;
  uint64_t start = pe__now_ns();
  uint64_t deadline = pe__py_batch_deadline(&b, start);
  rc = pe__py_encode_run(c, ex, &b, &id);
  c->stream = NULL;
  if (rc != PE_OK) {
    char why[PE__ERRMSG_SIZE];
    pe__errmsg_set(why, "%s", c->why);
    pe__py_inflight_give(be, w);
    pe__py_pool_put(be, w, c); /* nothing was written */
    return pe__exchange_fail(ex, rc, "cannot send the chunk: %s", why);
  }
  pe__py_response *resp = NULL;
  bool unsent;
  rc = pe__py_conn_wait(c, id, deadline, &resp, &unsent);
  pe__py_inflight_give(be, w);
  if (rc == PE_OK) {
    bool lied;
    rc = pe__py_stream_apply(ex, chunk, resp, sb, &lied);
    pe__py_conn_consume(c);
    if (!lied) {
      pe__py_pool_put(be, w, c);
      return rc;
    }
    char why[PE__ERRMSG_SIZE];
    pe__errmsg_set(why, "%s", ex->errmsg);
    pe__py_conn_discard(be, c);
    pe__py_worker_fail(w, sb->gen, why);
    sb->worker_done = true;
    return PE_ERR_WORKER;
  }
  /* No answer: the worker could not interrupt the step, or died. Either
   * way it is replaced and the body's state is gone with it. */
  char why[PE__ERRMSG_SIZE];
  pe__errmsg_set(why, "%s", c->why);
  pe__py_conn_discard(be, c);
  sb->worker_done = true;
  if (rc == PE_ERR_TIMEOUT) {
    pe__py_worker_fail(w, sb->gen, "a streamed python step exceeded its timeout");
    return pe__exchange_fail(ex, PE_ERR_TIMEOUT,
                             "no answer from python worker %zu within %llu ms, the step's "
                             "timeout and a grace (worker replaced)",
                             w->index, (unsigned long long)((deadline - start) / 1000000u));
  }
  pe__py_worker_fail(w, sb->gen, why);
  return pe__exchange_fail(ex, PE_ERR_WORKER, "python worker %zu crashed or broke the protocol: %s",
                           w->index, why);
}

void pe__py_stream_free(pe__backend *self, const pe__step *step, void *state) {
  pe__py_backend *be = (pe__py_backend *)(void *)self;
  pe__py_body *sb = state;
  (void)step;
  if (!sb->worker_done && atomic_load(&sb->w->gen) == sb->gen) {
    /* The body was abandoned while the worker may hold state of it. */
    pe__py_conn *c = pe__py_pool_take(be, sb->w);
    if (c) {
      Policyexec__V1__StreamAbort abort_msg = POLICYEXEC__V1__STREAM_ABORT__INIT;
      abort_msg.body_id = sb->body_id;
      pe__py_request req = POLICYEXEC__V1__REQUEST__INIT;
      req.body_case = POLICYEXEC__V1__REQUEST__BODY_STREAM_ABORT;
      req.stream_abort = &abort_msg;
      /* Answered by nothing: the connection is clean once it is written. */
      if (c->gen == sb->gen && pe__py_conn_queue(c, &req) == PE_OK && pe__py_conn_flush(c) == PE_OK)
        pe__py_pool_put(be, sb->w, c);
      else
        pe__py_conn_discard(be, c);
    }
  }
  pe__free(be->mem, sb);
}
