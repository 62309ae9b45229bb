/* Create on miss, for self-describing runs (RunPhase.instances, sent by
 * remote engines whose calls may land on any executor): an instance id not
 * seen yet is created from its description before the run. */
#ifndef PW_INSTANCES_H
#define PW_INSTANCES_H

#include "policyexec/v1/executor.pb-c.h"
#include "pw_python.h"

/* Creates every instance of @p req->instances this process has not made
 * yet. Returns 0, or -1 with a Python exception set (unknown policy, params
 * refused: nothing runs). */
int pw_ensure_instances(const pw_python *py, const Policyexec__V1__RunPhase *req);

#endif
