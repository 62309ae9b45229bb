/* Progress reports of a RunPhase (RunPhase.report_progress): the results of
 * the steps done so far, sent as a partial RunReply before a fail-open step
 * runs, so that the engine keeps them if the worker dies in that step. */
#ifndef PW_PROGRESS_H
#define PW_PROGRESS_H

#include "pw_conn.h"
#include "pw_convert.h"

typedef struct pw_progress {
  pw_conn *conn;
  uint64_t id; /* the RunPhase's request id */
  pw_arena *a; /* the request's arena: the partial replies' memory */
  int failed;  /* a report could not be sent: send no more */
} pw_progress;

/* A Python callable progress(results) sending results (a list of step
 * result tuples) as one partial reply, written before it returns. @p p must
 * outlive the callable's use (the RunPhase). New reference, or NULL with an
 * exception set. */
PyObject *pw_progress_callable(pw_progress *p);

#endif
