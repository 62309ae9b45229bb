/* RunPhase: one call into Python for all steps of a phase (or of
 * consecutive phases, see step_phases), and the net effect of each step back
 * as StepResults. */
#ifndef PW_RUN_H
#define PW_RUN_H

#include "pw_convert.h"

/* Runs @p req and fills @p reply (initialised by the caller) from the result.
 * @p progress (or NULL) is the callable that sends progress reports
 * (pw_progress.h) when the engine asked for them; the reply then holds the
 * results of the steps after those reported.
 * On success returns the Python result list that the reply points into
 * (release it after packing), or, when a coroutine step made the batch
 * pending, the asyncio task that will give that list (reply left empty; see
 * pw_async.h). On failure (unknown instance, unknown or
 * decreasing phases, step_phases not one per step, ...) returns NULL with a
 * Python exception set; nothing ran when an instance or a phase is bad. */
PyObject *pw_run_phase(const pw_python *py, const Policyexec__V1__RunPhase *req,
                       Policyexec__V1__RunReply *reply, pw_arena *a, PyObject *progress);

/* Fills @p reply from a result list of policyexec._worker.run (the reply
 * points into @p results: keep it alive until packed). Returns 0, or -1
 * with a Python exception set. */
int pw_run_reply(PyObject *results, Policyexec__V1__RunReply *reply, pw_arena *a);

#endif
