/* Running a phase of a chain on an exchange: the step order, the failure
 * modes, metrics, and the resumable run state that lets an out-of-process
 * batch complete later.
 *
 * This is the hot path. For native steps it allocates nothing, takes no
 * lock, reads no clock unless a metrics callback is set, and formats text
 * only when a step fails. */
#include "pe_backend.h"

#include "pe_clock.h"

uint64_t pe__now_ns(void) {
  return pe__clock_ns(CLOCK_MONOTONIC);
}

void pe__step_report(pe_exchange *ex, const pe__step *step, pe_phase phase,
                     pe_step_outcome outcome) {
  const pe_engine *e = ex->engine;
  if (!e->opts.metrics)
    return;
  pe_step_event ev = {
      .policy_name = pe_str(step->policy->name),
      .policy_version = pe_str(step->policy->version),
      .step_index = step->index,
      .phase = phase,
      .outcome = outcome,
      .failure_open = step->mode == PE_FAIL_OPEN,
      .duration_ns = pe__now_ns() - ex->run.started_ns,
  };
  e->opts.metrics(&ev, e->opts.metrics_ud);
}

/* Answers 500 (504 on a timeout) with no headers and an empty body. Written
 * directly, not through pe_exchange_respond, because this must not fail:
 * shrinking never allocates and never meets a limit. */
static void respond_failure(pe_exchange *ex, int rc) {
  pe__fields_clear(&ex->headers[PE_RESPONSE]);
  ex->body[PE_RESPONSE].len = 0;
  ex->status = rc == PE_ERR_TIMEOUT ? 504 : 500;
  ex->verdict = PE_VERDICT_RESPOND;
  ex->changes |= PE__CHANGE_ANSWER; /* a step's failure: the chain changed them */
}

void pe__step_failed(pe_exchange *ex, const pe__step *step, pe_phase phase, int rc,
                     pe_step_outcome outcome, const char *why) {
  const pe__policy *p = step->policy;
  bool open = step->mode == PE_FAIL_OPEN;
  /* why often is ex->errmsg itself (pe_exchange_set_errmsg): copy it first. */
  char reason[PE__ERRMSG_SIZE];
  pe__errmsg_set(reason, "%s", why && why[0] ? why : pe_strerror(rc));
  pe__errmsg_set(ex->errmsg, "step %zu (%s@%s) failed in %s: %s", step->index, p->name, p->version,
                 pe_phase_name(phase), reason);
  pe__log(ex->engine, PE_LOG_ERROR, "step %zu (%s@%s) failed in %s: %s [%s; %s]", step->index,
          p->name, p->version, pe_phase_name(phase), reason, pe_errname(rc),
          open ? "failure mode open: step skipped, its changes discarded"
               : (rc == PE_ERR_TIMEOUT ? "failure mode closed: answering 504"
                                       : "failure mode closed: answering 500"));
  pe__step_report(ex, step, phase, outcome);
  if (open) {
    if (ex->txn_active)
      pe__txn_rollback(ex);
    return;
  }
  if (ex->txn_active)
    pe__txn_commit(ex); /* the step's changes give way to the error answer anyway */
  respond_failure(ex, rc);
}

/* A native callback returned rc < 0. Whatever it returned, the failure is
 * the policy's (PE_ERR_POLICY), not the library's: a callback returning -1
 * must not read as "invalid argument". Only PE_ERR_TIMEOUT keeps its
 * meaning (504 when fail-closed). Without the policy's own explanation the
 * message names the value it returned. */
static void policy_failed(pe_exchange *ex, const pe__step *step, pe_phase phase, int rc) {
  int failure = rc == PE_ERR_TIMEOUT ? PE_ERR_TIMEOUT : PE_ERR_POLICY;
  if (ex->errmsg[0]) {
    pe__step_failed(ex, step, phase, failure, PE_STEP_FAILED, ex->errmsg);
    return;
  }
  char why[PE__ERRMSG_SIZE];
  const char *name = pe_errname(rc);
  if (strcmp(name, "PE_ERR_UNKNOWN"))
    pe__errmsg_set(why, "policy returned %d (%s: %s)", rc, name, pe_strerror(rc));
  else
    pe__errmsg_set(why, "policy returned %d", rc);
  pe__step_failed(ex, step, phase, failure, PE_STEP_FAILED, why);
}

static void run_native_step(pe_exchange *ex, const pe__step *step, pe_phase phase) {
  const pe__policy *p = step->policy;
  bool timed = ex->engine->opts.metrics != NULL;
  bool open = step->mode == PE_FAIL_OPEN;
  if (timed)
    ex->run.started_ns = pe__now_ns();
  if (open)
    pe__txn_begin(ex);
  /* Empty the message so that a failing step's own explanation can be told
   * apart from an older one; the older one comes back if the step says
   * nothing (a one-byte save, as the rest of the buffer is untouched). */
  char kept = ex->errmsg[0];
  ex->errmsg[0] = '\0';
  ex->run.in_step = true;
  int rc = pe__stream_takes(p, phase) ? pe__stream_run_whole(ex, step, phase)
                                      : p->on[phase](ex, step->instance, p->user_data);
  ex->run.in_step = false;
  if (rc < 0) {
    policy_failed(ex, step, phase, rc);
    return;
  }
  if (!ex->errmsg[0])
    ex->errmsg[0] = kept;
  if (open)
    pe__txn_commit(ex);
  if (timed)
    pe__step_report(ex, step, phase,
                    ex->verdict == PE_VERDICT_RESPOND ? PE_STEP_RESPONDED : PE_STEP_OK);
}

/* Sends the run of consecutive steps for one executor starting at
 * ex->run.pos as one batch, crossing into the following phases of the run
 * while they start with such steps too (moving phase / pos past it first,
 * so that a pending batch resumes after it). Returns PE_OK or PE_PENDING. */
static int run_backend_batch(pe_exchange *ex) {
  const pe_chain *c = ex->run.chain;
  pe_engine *e = ex->engine;
  const pe__executor *x = pe__step_executor(e, &c->steps[c->order[ex->run.phase][ex->run.pos]]);
  pe__batch b;
  b.n = 0;
  for (;;) {
    pe_phase phase = ex->run.phase;
    while (ex->run.pos < c->order_len[phase] && b.n < PE__BATCH_MAX) {
      const pe__step *s = &c->steps[c->order[phase][ex->run.pos]];
      if (s->policy->kind == PE__KIND_NATIVE || pe__step_executor(e, s) != x ||
          pe__stream_skips(ex, phase))
        break;
      b.step[b.n] = s;
      b.phase[b.n++] = phase;
      ex->run.pos++;
    }
    if (ex->run.pos < c->order_len[phase] || phase >= ex->run.last || b.n == PE__BATCH_MAX)
      break;
    ex->run.phase = phase + 1;
    ex->run.pos = 0;
  }
  if (e->opts.metrics)
    ex->run.started_ns = pe__now_ns();
  int rc = PE_ERR_UNSUPPORTED;
  if (x) {
    ex->run.exec = x;
    rc = ex->run.dispatcher ? pe__dispatch_submit(ex, x, &b) : x->ops->run_batch(x->be, ex, &b);
    if (rc == PE_PENDING) {
      ex->run.pending = true;
      return PE_PENDING;
    }
    if (rc >= 0)
      return PE_OK;
  }
  /* No step of the batch ran: each one fails, following its own mode. */
  for (size_t i = 0; i < b.n && ex->verdict != PE_VERDICT_RESPOND; i++)
    pe__step_failed(ex, b.step[i], b.phase[i], rc, PE_STEP_FAILED,
                    x ? NULL : "no backend for out-of-process policies is running");
  return PE_OK;
}

int pe__run_continue(pe_exchange *ex) {
  const pe_chain *c = ex->run.chain;
  while (ex->verdict != PE_VERDICT_RESPOND) {
    pe_phase phase = ex->run.phase;
    if (ex->run.pos == c->order_len[phase]) {
      if (phase >= ex->run.last)
        break;
      ex->run.phase = phase + 1;
      ex->run.pos = 0;
      continue;
    }
    const pe__step *step = &c->steps[c->order[phase][ex->run.pos]];
    if (step->policy->kind == PE__KIND_NATIVE) {
      ex->run.pos++;
      run_native_step(ex, step, phase);
    } else if (pe__stream_skips(ex, phase)) {
      ex->run.pos++; /* it saw this body chunk by chunk */
    } else if (run_backend_batch(ex) == PE_PENDING) {
      return PE_PENDING;
    }
  }
  return PE_OK;
}

int pe_chain_run_phases(const pe_chain *chain, pe_exchange *ex, pe_phase first, pe_phase last) {
  if (!chain || !ex || (unsigned)first >= PE_PHASE_COUNT || (unsigned)last >= PE_PHASE_COUNT ||
      first > last || ex->engine != chain->engine)
    return PE_ERR_INVALID_ARGUMENT;
  if (ex->run.pending)
    return pe__exchange_fail(ex, PE_ERR_STATE,
                             "pe_chain_run_phases: a phase of this exchange is pending");
  if (ex->run.in_step)
    return pe__exchange_fail(ex, PE_ERR_STATE,
                             "pe_chain_run_phases: called from a policy running on this exchange");
  if (ex->verdict == PE_VERDICT_RESPOND)
    return PE_OK; /* answered already: later phases do nothing */
  ex->run.chain = chain;
  ex->run.phase = first;
  ex->run.last = last;
  ex->run.pos = 0;
  ex->run.dispatcher = NULL; /* blocking: the backend answers before returning */
  return pe__run_continue(ex);
}

int pe_chain_run(const pe_chain *chain, pe_exchange *ex, pe_phase phase) {
  return pe_chain_run_phases(chain, ex, phase, phase);
}
