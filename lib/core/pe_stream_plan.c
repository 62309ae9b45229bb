/* Streamed bodies: the per-body plan of a chain (pe_chain_body_plan), made
 * when the chain is built from what each enabled step can do with each
 * body (stream.h, DECISIONS "Streamed bodies" and "Streamed Python
 * steps"). */
#include "pe_backend.h"

static pe_phase body_phase(pe_dir dir) {
  return dir == PE_REQUEST ? PE_PHASE_REQUEST_BODY : PE_PHASE_RESPONSE_BODY;
}

static unsigned needs_bit(pe_dir dir) {
  return dir == PE_REQUEST ? PE_NEEDS_REQUEST_BODY : PE_NEEDS_RESPONSE_BODY;
}

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

/* Whether step s of a chain of e can take body dir in chunks: a native
 * chunk callback, or a policy that advertised chunks for it on an executor
 * that streams (pe__backend_ops.stream_chunk; the gRPC transport does not:
 * its steps stay buffered). */
static bool streamable(const pe_engine *e, const pe__step *s, pe_dir dir) {
  const pe__policy *p = s->policy;
  if (p->buffers & needs_bit(dir))
    return false;
  if (p->kind == PE__KIND_NATIVE)
    return p->on_chunk[dir] != NULL;
  const pe__executor *x = (p->streams & needs_bit(dir)) ? pe__step_executor(e, s) : NULL;
  return x && x->ops->stream_chunk && x->ops->stream_free;
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
      plan = streamable(c->engine, s, (pe_dir)dir) ? PE_BODY_STREAM : PE_BODY_BUFFER;
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
