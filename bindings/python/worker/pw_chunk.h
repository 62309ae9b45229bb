/* Streamed body steps, the worker's side: a RunPhase carrying a StreamChunk
 * runs one chunk of a body through one step's chunk method
 * (policyexec._worker.run_chunk), and a StreamAbort drops a body's state. */
#ifndef PW_CHUNK_H
#define PW_CHUNK_H

#include "pw_convert.h"

/* Runs the chunk of @p req (req->stream set, one instance) and fills
 * @p reply (initialised by the caller) with its one StepResult: outcome,
 * edits, the output pieces and the bytes held back. Returns the Python
 * result the reply points into (release it after packing), or NULL with a
 * Python exception set (nothing ran: a malformed request or an unknown
 * instance). */
PyObject *pw_run_chunk(const pw_python *py, const Policyexec__V1__RunPhase *req,
                       Policyexec__V1__RunReply *reply, pw_arena *a);

/* Drops the per-body states of body @p body_id (StreamAbort). Errors are
 * logged: there is no reply. */
void pw_abort_body(const pw_python *py, uint64_t body_id);

#endif
