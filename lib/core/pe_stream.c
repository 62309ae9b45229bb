/* Streamed bodies (include/policyexec/stream.h): the chunk object a
 * streamed step writes to, pushing a host's
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
  /* The chunk under way, resumable (an out-of-process step may be pending
   * on a dispatcher): the next step, its input, which work buffer holds
   * that input (-1: the host's chunk), where the output goes, and the
   * chunk object of the step that runs (or is in flight). */
  pe_dir dir;
  size_t k;
  pe_slice cur;
  int in_buf;
  bool last;
  pe_slice *out;
  pe_body_chunk chunk;
} pe__stream;

static pe_phase body_phase(pe_dir dir) {
  return dir == PE_REQUEST ? PE_PHASE_REQUEST_BODY : PE_PHASE_RESPONSE_BODY;
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

/* The executor that streams step s (an out-of-process step of a streamed
 * body: the plan made sure it exists), or NULL for a native step. */
static const pe__executor *stream_executor(const pe_engine *e, const pe__step *s) {
  return s->policy->kind == PE__KIND_NATIVE ? NULL : pe__step_executor(e, s);
}

static void free_state(const pe_engine *e, const pe__step *s, void **state) {
  const pe__policy *p = s->policy;
  const pe__executor *x = *state ? stream_executor(e, s) : NULL;
  if (x)
    x->ops->stream_free(x->be, s, *state);
  else if (*state && p->free_body_state)
    p->free_body_state(*state, s->instance, p->user_data);
  *state = NULL;
}

/* A chunk callback returned rc < 0: the policy's failure (PE_ERR_POLICY,
 * or PE_ERR_TIMEOUT), with its own message or one naming rc. Returns the
 * failure code. Applies the step's mode through pe__step_failed. */
static int chunk_failed(pe_exchange *ex, const pe__step *s, pe_phase phase, int rc) {
  int failure = rc == PE_ERR_TIMEOUT ? PE_ERR_TIMEOUT : PE_ERR_POLICY;
  pe_step_outcome outcome = rc == PE_ERR_TIMEOUT  ? PE_STEP_TIMEOUT
                            : rc == PE_ERR_WORKER ? PE_STEP_CRASHED
                                                  : PE_STEP_FAILED;
  char why[PE__ERRMSG_SIZE];
  if (ex->errmsg[0])
    pe__errmsg_set(why, "%s", ex->errmsg);
  else
    pe__errmsg_set(why, "policy returned %d (%s) on a body chunk", rc, pe_errname(rc));
  pe__step_failed(ex, s, phase, failure, outcome, why);
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
  free_state(ex->engine, step, &state);
  if (rc >= 0)
    rc = pe_exchange_body_set(ex, dir, pe__buf_slice(&out));
  pe__buf_free(&out, ex->mem);
  return rc;
}

/* ---- streaming ---- */

static void stream_end(pe__stream *s, pe_stream_state state) {
  for (size_t i = 0; i < s->n; i++) {
    free_state(s->chain->engine, s->steps[i].step, &s->steps[i].state);
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
  free_state(ex->engine, ss->step, &ss->state);
  ss->bypassed = true;
  return PE_OK;
}

/* The input of step ss for this call (its held-back bytes, then cur) in
 * s->chunk, writing to out. PE_OK, or a failure already applied by
 * step_failed (*res / *viewed then say what goes on, rc what
 * step_failed returned). */
static int step_prepare(pe_exchange *ex, pe__stream *s, stream_step *ss, pe__buf *out,
                        pe_slice *res, bool *viewed, int *rc) {
  size_t limit = ex->limits[PE_LIMIT_BODY_BYTES];
  pe_slice data = s->cur;
  out->len = 0;
  *viewed = false;
  if (ss->carry.len) {
    if (s->cur.len > limit - ss->carry.len) {
      pe__errmsg_set(ex->errmsg, "held back %zu bytes + a chunk of %zu exceed the limit of %zu",
                     ss->carry.len, s->cur.len, limit);
      *rc = step_failed(ex, ss, pe__buf_slice(&ss->carry), s->cur, out, s->dir,
                        PE_ERR_BODY_TOO_LARGE);
      *res = pe__buf_slice(out);
      return PE_ERR_BODY_TOO_LARGE;
    }
    if (pe__buf_append(&ss->carry, ex->mem, s->cur.ptr, s->cur.len) != PE_OK) {
      *rc = PE_ERR_NOMEM;
      return PE_ERR_NOMEM;
    }
    data = pe__buf_slice(&ss->carry);
  }
  /* Not over held-back bytes: the carry changes below, and a view into it
   * would change with it. */
  s->chunk = (pe_body_chunk){.data = data,
                             .allow_view = data.ptr != ss->carry.data,
                             .out = out,
                             .mem = ex->mem,
                             .limit = limit,
                             .state = &ss->state,
                             .dir = s->dir,
                             .last = s->last};
  ex->errmsg[0] = '\0';
  return PE_OK;
}

/* Step ss returned rc for s->chunk. Returns PE_OK (*res is what goes on:
 * in out, or a view into its input when *viewed), or the code that stops
 * the stream. */
static int step_finish(pe_exchange *ex, pe__stream *s, stream_step *ss, int rc, pe_slice *res,
                       bool *viewed) {
  pe_body_chunk *chunk = &s->chunk;
  pe_slice data = chunk->data;
  *viewed = false;
  if (rc < 0) {
    rc = step_failed(ex, ss, data, PE_LIT(""), chunk->out, s->dir, rc);
    *res = pe__buf_slice(chunk->out);
    return rc;
  }
  *viewed = chunk->has_view;
  *res = chunk->has_view ? chunk->view : pe__buf_slice(chunk->out);
  if (ex->verdict == PE_VERDICT_RESPOND)
    return PE_ERR_POLICY; /* the step answered: the stream stops */
  if (chunk->keep == 0) {
    ss->carry.len = 0;
  } else if (data.ptr == ss->carry.data) {
    memmove(ss->carry.data, ss->carry.data + ss->carry.len - chunk->keep, chunk->keep);
    ss->carry.len = chunk->keep;
  } else if (pe__buf_set(&ss->carry, ex->mem, data.ptr + data.len - chunk->keep, chunk->keep) !=
             PE_OK) {
    return PE_ERR_NOMEM;
  }
  if (s->last)
    free_state(ex->engine, ss->step, &ss->state);
  return PE_OK;
}

/* The output of the step just run becomes the next step's input. */
static void step_advance(pe__stream *s, pe_slice res, bool viewed, int w) {
  s->cur = res;
  if (!viewed) /* a view stays where its input is */
    s->in_buf = w;
  s->k++;
}

/* Runs the stream's steps from s->k on over s->cur (a blocking run when
 * ex->run.dispatcher is NULL). Returns PE_OK (the output in *s->out),
 * PE_PENDING (an out-of-process step is in flight on the dispatcher), or
 * the code that stopped the stream. */
static int stream_run(pe_exchange *ex, pe__stream *s) {
  while (s->k < s->n) {
    stream_step *ss = &s->steps[s->k];
    if (ss->bypassed) {
      s->k++;
      continue;
    }
    int w = s->in_buf == 0 ? 1 : 0;
    bool viewed;
    pe_slice res;
    int rc;
    if (step_prepare(ex, s, ss, &s->work[w], &res, &viewed, &rc) != PE_OK) {
      if (rc != PE_OK)
        return stream_stop(ex, s, rc);
      step_advance(s, res, viewed, w); /* failed open: its input goes on */
      continue;
    }
    const pe__step *step = ss->step;
    const pe__policy *p = step->policy;
    const pe__executor *x = stream_executor(ex->engine, step);
    if (x && ex->run.dispatcher && pe__dispatch_can_stream(ex, x)) {
      rc = PE_OK;
      if (s->in_buf < 0 && s->chunk.data.ptr == s->cur.ptr && s->cur.len) {
        /* The step's input is still the host's chunk, which need not
         * outlive the call: move it to the free work buffer (w is 0 here),
         * where the output's views of it stay valid until the next call. */
        if (pe__buf_set(&s->work[1], ex->mem, s->cur.ptr, s->cur.len) != PE_OK)
          rc = pe__exchange_fail(ex, PE_ERR_NOMEM, "out of memory");
        s->cur = s->chunk.data = pe__buf_slice(&s->work[1]);
        s->in_buf = 1;
      }
      if (rc == PE_OK)
        rc = pe__dispatch_stream_submit(ex, x, step, &s->chunk);
      if (rc == PE_PENDING)
        return PE_PENDING;
    } else {
      ex->run.in_step = true; /* no re-entrant run, no framing edits (pe_internal.h) */
      rc = x ? x->ops->stream_chunk(x->be, ex, step, &s->chunk)
             : p->on_chunk[s->dir](ex, &s->chunk, step->instance, p->user_data);
      ex->run.in_step = false;
    }
    rc = step_finish(ex, s, ss, rc, &res, &viewed);
    if (rc != PE_OK)
      return stream_stop(ex, s, rc);
    step_advance(s, res, viewed, w);
  }
  if (s->cur.len)
    s->emitted = true;
  if (s->last)
    stream_end(s, PE_STREAM_ENDED);
  *s->out = s->cur.len ? s->cur : PE_LIT("");
  return PE_OK;
}

int pe__stream_resume(pe_exchange *ex, int step_rc) {
  pe__stream *s = ex->stream[ex->run.stream_dir - 1];
  stream_step *ss = &s->steps[s->k];
  int w = s->in_buf == 0 ? 1 : 0;
  bool viewed;
  pe_slice res;
  int rc = step_finish(ex, s, ss, step_rc, &res, &viewed);
  if (rc != PE_OK)
    return stream_stop(ex, s, rc);
  step_advance(s, res, viewed, w);
  return stream_run(ex, s);
}

/* Checks a pe_chain_stream_body* call and sets the chunk up in
 * ex->stream[dir] (PE_OK), or returns 1 when the plan passes the body
 * (*out is the chunk), or an error. */
static int chunk_begin(const pe_chain *chain, pe_exchange *ex, pe_dir dir, pe_slice chunk, int last,
                       pe_slice *out, const char *fn) {
  if (out)
    *out = PE_LIT("");
  if (!chain || !ex || !out || !pe__dir_ok(dir) || !pe__slice_ok(chunk) ||
      ex->engine != chain->engine)
    return PE_ERR_INVALID_ARGUMENT;
  if (ex->run.in_step)
    return pe__exchange_fail(ex, PE_ERR_STATE, "%s: called from a policy running on this exchange",
                             fn);
  if (chain->plan[dir] == PE_BODY_PASS) {
    *out = chunk; /* no streamed step: nothing to track */
    return 1;
  }
  if (chain->plan[dir] == PE_BODY_BUFFER)
    return pe__exchange_fail(ex, PE_ERR_STATE, "%s: this chain needs the %s body buffered", fn,
                             dir == PE_REQUEST ? "request" : "response");
  pe__stream *s = ex->stream[dir];
  if (ex->run.pending || (s && s->state != PE_STREAM_IDLE && s->state != PE_STREAM_OPEN) ||
      ((!s || s->state == PE_STREAM_IDLE) && ex->verdict == PE_VERDICT_RESPOND))
    return pe__exchange_fail(ex, PE_ERR_STATE,
                             "%s: the body has ended, or the exchange is answered or has a phase "
                             "pending",
                             fn);
  if (!s || s->state == PE_STREAM_IDLE) {
    int rc = stream_begin(ex, chain, dir);
    if (rc != PE_OK) { /* nothing went out yet: the host may answer */
      pe_exchange_respond(ex, 500, PE_LIT(""));
      ex->changes |= PE__CHANGE_ANSWER; /* the chain's answer, not the host's */
      if (ex->stream[dir])
        ex->stream[dir]->state = PE_STREAM_STOPPED_CLEAN;
      return pe__exchange_fail(ex, rc, "%s: out of memory", fn);
    }
    s = ex->stream[dir];
  } else if (s->chain != chain) {
    return pe__exchange_fail(ex, PE_ERR_INVALID_ARGUMENT, "%s: the body began with another chain",
                             fn);
  }
  s->dir = dir;
  s->cur = chunk;
  s->in_buf = -1; /* cur is the host's chunk */
  s->last = last != 0;
  s->k = 0;
  s->out = out;
  return PE_OK;
}

int pe_chain_stream_body(const pe_chain *chain, pe_exchange *ex, pe_dir dir, pe_slice chunk,
                         int last, pe_slice *out) {
  int rc = chunk_begin(chain, ex, dir, chunk, last, out, "pe_chain_stream_body");
  if (rc != PE_OK)
    return rc > 0 ? PE_OK : rc;
  ex->run.dispatcher = NULL; /* blocking: out-of-process steps answer before returning */
  return stream_run(ex, ex->stream[dir]);
}

int pe__stream_start_async(const pe_chain *chain, pe_exchange *ex, pe_dir dir, pe_slice chunk,
                           int last, pe_slice *out) {
  int rc = chunk_begin(chain, ex, dir, chunk, last, out, "pe_chain_stream_body_async");
  if (rc != PE_OK)
    return rc > 0 ? PE_OK : rc;
  ex->run.stream_dir = (unsigned char)(dir + 1);
  rc = stream_run(ex, ex->stream[dir]);
  if (rc != PE_PENDING)
    ex->run.stream_dir = 0;
  return rc;
}

bool pe__stream_skips(const pe_exchange *ex, pe_phase phase) {
  if (phase != PE_PHASE_REQUEST_BODY && phase != PE_PHASE_RESPONSE_BODY)
    return false;
  const pe__stream *s = ex->stream[phase == PE_PHASE_REQUEST_BODY ? PE_REQUEST : PE_RESPONSE];
  return s && s->state != PE_STREAM_IDLE;
}

pe_stream_state pe_exchange_stream_state(const pe_exchange *ex, pe_dir dir) {
  if (!ex || !pe__dir_ok(dir) || !ex->stream[dir])
    return PE_STREAM_IDLE;
  return ex->stream[dir]->state;
}
