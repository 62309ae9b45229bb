/* Streamed bodies (include/policyexec/stream.h): the per-body plan of a
 * chain, the chunk object a streamed step writes to, pushing a host's
 * chunks through the streamed steps, and running a streamed step over a
 * buffered body when some other step made the body buffered.
 *
 * Per exchange and body, a pe__stream keeps what lives across chunks: for
 * each streamed step the bytes it holds back (its carry) and its state
 * slot, plus two work buffers that the steps' outputs alternate between.
 * Its memory is kept across pe_exchange_reset, as the exchange's own is. */
#include "pe_backend.h"

struct pe_body_chunk {
  pe_slice data;
  /* A step whose output starts as one run of its own input (most often:
   * all of it, passed on unchanged) gets that run as a view, not a copy;
   * the copy is made only if it writes more after it. */
  pe_slice view;
  bool has_view;
  bool allow_view; /* the input outlives the call unchanged */
  pe__buf *out;
  const pe_mem *mem;
  size_t limit; /* bytes one call may write */
  size_t keep;
  void **state;
  pe_dir dir;
  bool last;
};

typedef struct stream_step {
  const pe__step *step;
  pe__buf carry; /* bytes held back (pe_body_chunk_keep), fed again first */
  void *state;
  bool bypassed; /* failed open: skipped for the rest of the body */
} stream_step;

typedef struct pe__stream {
  pe_chain *chain; /* a reference, while the body is under way */
  pe_stream_state state;
  bool emitted; /* some output byte was handed to the host */
  stream_step *steps;
  size_t n, cap;
  pe__buf work[2];
} pe__stream;

static pe_phase body_phase(pe_dir dir) {
  return dir == PE_REQUEST ? PE_PHASE_REQUEST_BODY : PE_PHASE_RESPONSE_BODY;
}

static unsigned needs_bit(pe_dir dir) {
  return dir == PE_REQUEST ? PE_NEEDS_REQUEST_BODY : PE_NEEDS_RESPONSE_BODY;
}

/* ---- plans ---- */

void pe__policy_add_streamed(pe__policy *p, unsigned flags) {
  unsigned flagged = flags & (PE_NEEDS_REQUEST_BODY | PE_NEEDS_RESPONSE_BODY);
  p->buffers = flagged;
  for (int dir = PE_REQUEST; dir <= PE_RESPONSE; dir++) {
    pe_phase ph = body_phase((pe_dir)dir);
    if (p->on_chunk[dir]) {
      p->phases |= PE_PHASE_BIT(ph);
      p->needs |= needs_bit((pe_dir)dir);
    } else if (p->on[ph]) {
      p->buffers |= needs_bit((pe_dir)dir);
    }
  }
}

/* Whether step s can take body dir in chunks. Out-of-process steps cannot
 * yet (pe__backend_ops.stream_chunk is reserved): they are buffered. */
static bool streamable(const pe__step *s, pe_dir dir) {
  const pe__policy *p = s->policy;
  return p->kind == PE__KIND_NATIVE && p->on_chunk[dir] && !(p->buffers & needs_bit(dir));
}

void pe__stream_plan(pe_chain *c) {
  for (int dir = PE_REQUEST; dir <= PE_RESPONSE; dir++) {
    pe_body_plan plan = PE_BODY_PASS;
    for (size_t i = 0; i < c->step_count && plan != PE_BODY_BUFFER; i++) {
      const pe__step *s = &c->steps[i];
      const pe__policy *p = s->policy;
      if (!s->enabled ||
          !((p->needs & needs_bit((pe_dir)dir)) || (p->phases & PE_PHASE_BIT(body_phase(dir)))))
        continue;
      plan = streamable(s, (pe_dir)dir) ? PE_BODY_STREAM : PE_BODY_BUFFER;
    }
    c->plan[dir] = (unsigned char)plan;
    /* pe_chain_needs() keeps meaning "some step sees this body" for hosts
     * that do not stream. */
    if (plan != PE_BODY_PASS)
      c->needs |= needs_bit((pe_dir)dir);
  }
}

pe_body_plan pe_chain_body_plan(const pe_chain *chain, pe_dir dir) {
  if (!chain || !pe__dir_ok(dir))
    return PE_BODY_PASS;
  return (pe_body_plan)chain->plan[dir];
}

/* ---- the chunk object ---- */

pe_slice pe_body_chunk_data(const pe_body_chunk *chunk) {
  return chunk && chunk->data.len ? chunk->data : PE_LIT("");
}

int pe_body_chunk_is_last(const pe_body_chunk *chunk) {
  return chunk && chunk->last;
}

pe_dir pe_body_chunk_dir(const pe_body_chunk *chunk) {
  return chunk ? chunk->dir : PE_REQUEST;
}

static bool within(pe_slice outer, pe_slice inner) {
  return inner.ptr >= outer.ptr && inner.len <= outer.len &&
         (size_t)(inner.ptr - outer.ptr) <= outer.len - inner.len;
}

int pe_body_chunk_write(pe_body_chunk *chunk, pe_slice data) {
  if (!chunk || !pe__slice_ok(data))
    return PE_ERR_INVALID_ARGUMENT;
  size_t have = chunk->has_view ? chunk->view.len : chunk->out->len;
  if (data.len > chunk->limit || have > chunk->limit - data.len)
    return PE_ERR_BODY_TOO_LARGE;
  if (data.len == 0)
    return PE_OK;
  if (chunk->allow_view && have == 0 && within(chunk->data, data)) {
    chunk->view = data;
    chunk->has_view = true;
    return PE_OK;
  }
  if (chunk->has_view && data.ptr == chunk->view.ptr + chunk->view.len &&
      within(chunk->data, data)) {
    chunk->view.len += data.len; /* the next run of the input: still a view */
    return PE_OK;
  }
  if (chunk->has_view) {
    if (pe__buf_set(chunk->out, chunk->mem, chunk->view.ptr, chunk->view.len) != PE_OK)
      return PE_ERR_NOMEM;
    chunk->has_view = false;
  }
  /* data may point into the input, never into out (the output buffer is
   * not the input's), so growing out cannot move it. */
  return pe__buf_append(chunk->out, chunk->mem, data.ptr, data.len);
}

int pe_body_chunk_keep(pe_body_chunk *chunk, size_t n) {
  if (!chunk || n > chunk->data.len)
    return PE_ERR_INVALID_ARGUMENT;
  if (chunk->last)
    return PE_ERR_STATE;
  chunk->keep = n;
  return PE_OK;
}

void **pe_body_chunk_state(pe_body_chunk *chunk) {
  return chunk ? chunk->state : NULL;
}

/* ---- failures (as pe_run.c's, for a chunk callback) ---- */

static void free_state(const pe__step *s, void **state) {
  const pe__policy *p = s->policy;
  if (*state && p->free_body_state)
    p->free_body_state(*state, s->instance, p->user_data);
  *state = NULL;
}

/* A chunk callback returned rc < 0: the policy's failure (PE_ERR_POLICY,
 * or PE_ERR_TIMEOUT), with its own message or one naming rc. Returns the
 * failure code. Applies the step's mode through pe__step_failed. */
static int chunk_failed(pe_exchange *ex, const pe__step *s, pe_phase phase, int rc) {
  int failure = rc == PE_ERR_TIMEOUT ? PE_ERR_TIMEOUT : PE_ERR_POLICY;
  char why[PE__ERRMSG_SIZE];
  if (ex->errmsg[0])
    pe__errmsg_set(why, "%s", ex->errmsg);
  else
    pe__errmsg_set(why, "policy returned %d (%s) on a body chunk", rc, pe_errname(rc));
  pe__step_failed(ex, s, phase, failure, PE_STEP_FAILED, why);
  return failure;
}

/* ---- a streamed step over a buffered body (the body phase) ---- */

int pe__stream_run_whole(pe_exchange *ex, const pe__step *step, pe_phase phase) {
  pe_dir dir = phase == PE_PHASE_REQUEST_BODY ? PE_REQUEST : PE_RESPONSE;
  const pe__policy *p = step->policy;
  if (ex->stream[dir] && ex->stream[dir]->state != PE_STREAM_IDLE)
    return PE_OK;   /* this body was streamed: the step has seen it already */
  if (p->on[phase]) /* it has a buffered callback too: the body is whole */
    return p->on[phase](ex, step->instance, p->user_data);
  pe__buf out = {0};
  void *state = NULL;
  pe_body_chunk chunk = {.data = pe__buf_slice(&ex->body[dir]),
                         .out = &out,
                         .mem = ex->mem,
                         .limit = ex->limits[PE_LIMIT_BODY_BYTES],
                         .state = &state,
                         .dir = dir,
                         .last = true};
  int rc = p->on_chunk[dir](ex, &chunk, step->instance, p->user_data);
  free_state(step, &state);
  if (rc >= 0)
    rc = pe_exchange_body_set(ex, dir, pe__buf_slice(&out));
  pe__buf_free(&out, ex->mem);
  return rc;
}

/* ---- streaming ---- */

static void stream_end(pe__stream *s, pe_stream_state state) {
  for (size_t i = 0; i < s->n; i++) {
    free_state(s->steps[i].step, &s->steps[i].state);
    s->steps[i].carry.len = 0;
  }
  s->state = state;
  pe_chain_free(s->chain);
  s->chain = NULL;
}

void pe__stream_release(pe_exchange *ex, bool free_memory) {
  for (int dir = PE_REQUEST; dir <= PE_RESPONSE; dir++) {
    pe__stream *s = ex->stream[dir];
    if (!s)
      continue;
    if (s->chain)
      stream_end(s, PE_STREAM_IDLE);
    s->state = PE_STREAM_IDLE;
    s->emitted = false;
    s->n = 0;
    if (!free_memory)
      continue;
    for (size_t i = 0; i < s->cap; i++)
      pe__buf_free(&s->steps[i].carry, ex->mem);
    pe__free(ex->mem, s->steps);
    pe__buf_free(&s->work[0], ex->mem);
    pe__buf_free(&s->work[1], ex->mem);
    pe__free(ex->mem, s);
    ex->stream[dir] = NULL;
  }
}

/* The first chunk of body dir: lists the chain's streamed steps for it
 * (the body phase's run order) and takes a chain reference. */
static int stream_begin(pe_exchange *ex, const pe_chain *c, pe_dir dir) {
  pe__stream *s = ex->stream[dir];
  if (!s && !(s = ex->stream[dir] = pe__calloc(ex->mem, 1, sizeof *s)))
    return PE_ERR_NOMEM;
  pe_phase ph = body_phase(dir);
  size_t n = c->order_len[ph];
  if (n > s->cap) {
    stream_step *steps = pe__realloc(ex->mem, s->steps, n * sizeof *steps);
    if (!steps)
      return PE_ERR_NOMEM;
    memset(steps + s->cap, 0, (n - s->cap) * sizeof *steps);
    s->steps = steps;
    s->cap = n;
  }
  for (size_t k = 0; k < n; k++) {
    stream_step *ss = &s->steps[k];
    ss->step = &c->steps[c->order[ph][k]];
    ss->carry.len = 0;
    ss->state = NULL;
    ss->bypassed = false;
  }
  s->n = n;
  s->emitted = false;
  s->chain = pe_chain_ref((pe_chain *)c);
  s->state = PE_STREAM_OPEN;
  return PE_OK;
}

/* Stops the stream at a step that failed closed or answered; rc is what
 * pe_chain_stream_body returns. */
static int stream_stop(pe_exchange *ex, pe__stream *s, int rc) {
  if (ex->verdict != PE_VERDICT_RESPOND) /* out of memory: as a closed failure */
    pe_exchange_respond(ex, 500, PE_LIT(""));
  stream_end(s, s->emitted ? PE_STREAM_STOPPED_CUT : PE_STREAM_STOPPED_CLEAN);
  return rc;
}

/* Step ss failed with rc on input a + b (its held-back bytes, then the
 * chunk). Open: skipped from now on, a + b goes on unchanged in out;
 * returns PE_OK. Closed: returns the code that stops the stream. */
static int step_failed(pe_exchange *ex, stream_step *ss, pe_slice a, pe_slice b, pe__buf *out,
                       pe_dir dir, int rc) {
  int failure = chunk_failed(ex, ss->step, body_phase(dir), rc);
  if (ss->step->mode != PE_FAIL_OPEN)
    return failure;
  out->len = 0;
  if (pe__buf_append(out, ex->mem, a.ptr, a.len) != PE_OK ||
      pe__buf_append(out, ex->mem, b.ptr, b.len) != PE_OK)
    return PE_ERR_NOMEM;
  ss->carry.len = 0;
  free_state(ss->step, &ss->state);
  ss->bypassed = true;
  return PE_OK;
}

/* Runs one step of the stream over cur, writing to out. Returns PE_OK
 * (*res is what goes on: in out, or a view into cur when *viewed), or the
 * code that stops the stream. */
static int stream_step_run(pe_exchange *ex, stream_step *ss, pe_slice cur, bool last, pe__buf *out,
                           pe_dir dir, pe_slice *res, bool *viewed) {
  const pe__step *step = ss->step;
  const pe__policy *p = step->policy;
  size_t limit = ex->limits[PE_LIMIT_BODY_BYTES];
  pe_slice data = cur;
  out->len = 0;
  if (ss->carry.len) {
    if (cur.len > limit - ss->carry.len) {
      pe__errmsg_set(ex->errmsg, "held back %zu bytes + a chunk of %zu exceed the limit of %zu",
                     ss->carry.len, cur.len, limit);
      *viewed = false;
      int rc = step_failed(ex, ss, pe__buf_slice(&ss->carry), cur, out, dir, PE_ERR_BODY_TOO_LARGE);
      *res = pe__buf_slice(out);
      return rc;
    }
    if (pe__buf_append(&ss->carry, ex->mem, cur.ptr, cur.len) != PE_OK)
      return PE_ERR_NOMEM;
    data = pe__buf_slice(&ss->carry);
  }
  /* Not over held-back bytes: the carry changes below, and a view into it
   * would change with it. */
  pe_body_chunk chunk = {.data = data,
                         .allow_view = data.ptr != ss->carry.data,
                         .out = out,
                         .mem = ex->mem,
                         .limit = limit,
                         .state = &ss->state,
                         .dir = dir,
                         .last = last};
  ex->errmsg[0] = '\0';
  *viewed = false;
  ex->run.in_step = true; /* no re-entrant run, no framing edits (pe_internal.h) */
  int rc = p->on_chunk[dir](ex, &chunk, step->instance, p->user_data);
  ex->run.in_step = false;
  if (rc < 0) {
    rc = step_failed(ex, ss, data, PE_LIT(""), out, dir, rc);
    *res = pe__buf_slice(out);
    return rc;
  }
  *viewed = chunk.has_view;
  *res = chunk.has_view ? chunk.view : pe__buf_slice(out);
  if (ex->verdict == PE_VERDICT_RESPOND)
    return PE_ERR_POLICY; /* the step answered: the stream stops */
  if (chunk.keep == 0) {
    ss->carry.len = 0;
  } else if (data.ptr == ss->carry.data) {
    memmove(ss->carry.data, ss->carry.data + ss->carry.len - chunk.keep, chunk.keep);
    ss->carry.len = chunk.keep;
  } else if (pe__buf_set(&ss->carry, ex->mem, data.ptr + data.len - chunk.keep, chunk.keep) !=
             PE_OK) {
    return PE_ERR_NOMEM;
  }
  if (last)
    free_state(step, &ss->state);
  return PE_OK;
}

int pe_chain_stream_body(const pe_chain *chain, pe_exchange *ex, pe_dir dir, pe_slice chunk,
                         int last, pe_slice *out) {
  if (out)
    *out = PE_LIT("");
  if (!chain || !ex || !out || !pe__dir_ok(dir) || !pe__slice_ok(chunk) ||
      ex->engine != chain->engine)
    return PE_ERR_INVALID_ARGUMENT;
  if (ex->run.in_step)
    return pe__exchange_fail(ex, PE_ERR_STATE,
                             "pe_chain_stream_body: called from a policy running on this exchange");
  if (chain->plan[dir] == PE_BODY_PASS) {
    *out = chunk; /* no streamed step: nothing to track */
    return PE_OK;
  }
  if (chain->plan[dir] == PE_BODY_BUFFER)
    return pe__exchange_fail(ex, PE_ERR_STATE,
                             "pe_chain_stream_body: this chain needs the %s body buffered",
                             dir == PE_REQUEST ? "request" : "response");
  pe__stream *s = ex->stream[dir];
  if (ex->run.pending || (s && s->state != PE_STREAM_IDLE && s->state != PE_STREAM_OPEN) ||
      ((!s || s->state == PE_STREAM_IDLE) && ex->verdict == PE_VERDICT_RESPOND))
    return pe__exchange_fail(ex, PE_ERR_STATE,
                             "pe_chain_stream_body: the body has ended, or the exchange is "
                             "answered or has a phase pending");
  if (!s || s->state == PE_STREAM_IDLE) {
    int rc = stream_begin(ex, chain, dir);
    if (rc != PE_OK) { /* nothing went out yet: the host may answer */
      pe_exchange_respond(ex, 500, PE_LIT(""));
      ex->changes |= PE__CHANGE_ANSWER; /* the chain's answer, not the host's */
      if (ex->stream[dir])
        ex->stream[dir]->state = PE_STREAM_STOPPED_CLEAN;
      return pe__exchange_fail(ex, rc, "pe_chain_stream_body: out of memory");
    }
    s = ex->stream[dir];
  } else if (s->chain != chain) {
    return pe__exchange_fail(ex, PE_ERR_INVALID_ARGUMENT,
                             "pe_chain_stream_body: the body began with another chain");
  }
  pe_slice cur = chunk;
  int in_buf = -1; /* which work buffer holds cur (-1: the host's chunk) */
  for (size_t k = 0; k < s->n; k++) {
    stream_step *ss = &s->steps[k];
    if (ss->bypassed)
      continue;
    int w = in_buf == 0 ? 1 : 0;
    bool viewed;
    pe_slice res;
    int rc = stream_step_run(ex, ss, cur, last != 0, &s->work[w], dir, &res, &viewed);
    if (rc != PE_OK)
      return stream_stop(ex, s, rc);
    cur = res;
    if (!viewed) /* a view stays where its input is */
      in_buf = w;
  }
  if (cur.len)
    s->emitted = true;
  if (last)
    stream_end(s, PE_STREAM_ENDED);
  *out = cur.len ? cur : PE_LIT("");
  return PE_OK;
}

pe_stream_state pe_exchange_stream_state(const pe_exchange *ex, pe_dir dir) {
  if (!ex || !pe__dir_ok(dir) || !ex->stream[dir])
    return PE_STREAM_IDLE;
  return ex->stream[dir]->state;
}
