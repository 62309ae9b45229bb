/* Deadlines of coroutine steps. A step whose phase method is a coroutine
 * (the worker says so in its CreateReply) waits on its worker's event loop
 * without blocking it, so at the step's deadline the engine does not kill
 * the worker: it reports the timeout at once, as for any step, and sends a
 * Cancel; the worker cancels the coroutine (the policy sees CancelledError)
 * and answers the batch, whose reply is then dropped. Only a worker that
 * does not answer within PE__PY_CANCEL_GRACE_MS (a synchronous step of the
 * same batch blocking) is killed, as before. A batch of synchronous steps
 * only is killed at its deadline, as before. */
#include "pe_py.h"

bool pe__py_batch_may_wait(const pe__batch *b) {
  for (size_t i = 0; i < b->n; i++) {
    const pe__py_instance *inst = b->step[i]->instance;
    if (inst &&
        (atomic_load_explicit(&inst->async_phases, memory_order_relaxed) & (1u << b->phase[i])))
      return true;
  }
  return false;
}

int pe__py_queue_cancel(pe__py_conn *c, uint64_t id) {
  Policyexec__V1__Cancel cancel = POLICYEXEC__V1__CANCEL__INIT;
  cancel.request_id = id;
  pe__py_request req = POLICYEXEC__V1__REQUEST__INIT;
  req.body_case = POLICYEXEC__V1__REQUEST__BODY_CANCEL;
  req.cancel = &cancel;
  return pe__py_conn_queue(c, &req);
}
