/* The chain object: reference counting, the read-only queries, and the
 * teardown that destroys every policy instance. Building is pe_builder.c's
 * job, running pe_run.c's. */
#include "pe_backend.h"
#include "pe_private.h"

static void destroy_instance(pe_engine *e, pe__step *step) {
  if (!step->enabled)
    return; /* disabled steps never got an instance */
  const pe__policy *p = step->policy;
  if (p->kind == PE__KIND_NATIVE) {
    /* With no create callback there is no instance to hand back. */
    if (p->create && p->destroy)
      p->destroy(step->instance, p->user_data);
  } else {
    const pe__executor *x = pe__step_executor(e, step);
    if (x)
      x->ops->destroy_instance(x->be, step);
  }
}

void pe__chain_destroy(pe_chain *c) {
  pe_engine *e = c->engine;
  const pe_mem *mem = pe__engine_mem(e);
  /* Last step first, mirroring creation. */
  for (size_t i = c->step_count; i-- > 0;) {
    destroy_instance(e, &c->steps[i]);
    pe__free(mem, c->steps[i].params_json);
  }
  pe__free(mem, c->steps);
  pe__free(mem, c->order[0]); /* the block holding all four run orders */
  pe__free(mem, c);
  /* Last: the allocator hooks live in the engine this may free. */
  pe__engine_unref(e);
}

pe_chain *pe_chain_ref(pe_chain *chain) {
  if (chain)
    atomic_fetch_add_explicit(&chain->refs, 1, memory_order_relaxed);
  return chain;
}

void pe_chain_free(pe_chain *chain) {
  if (chain && atomic_fetch_sub_explicit(&chain->refs, 1, memory_order_acq_rel) == 1)
    pe__chain_destroy(chain);
}

size_t pe_chain_step_count(const pe_chain *chain) {
  return chain ? chain->step_count : 0;
}

unsigned pe_chain_phases(const pe_chain *chain) {
  return chain ? chain->phases : 0;
}

unsigned pe_chain_needs(const pe_chain *chain) {
  return chain ? chain->needs : 0;
}
