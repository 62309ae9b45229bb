/* Bodies in shared memory, the worker's side (see ShmRef in
 * executor.proto): a large body arrives as a sealed memfd that the policy
 * reads in place (policyexec.Body over a read-only mmap), and a large
 * replacement body leaves in a memfd this worker fills and seals. */
#ifndef PW_SHM_H
#define PW_SHM_H

#include "pw_arena.h"
#include "pw_conn.h"
#include "pw_python.h"

#include <policyexec/v1/executor.pb-c.h>

/* Claims the fds of @p req's shared bodies from @p c, in order, after
 * checking each (a sealed memfd holding the referenced range). Returns 0,
 * or -1 (logged) when the engine's frame does not match its fds. */
int pw_shm_take(pw_conn *c, const Policyexec__V1__Request *req);
/* The body of @p side (0 request, 1 response) claimed by pw_shm_take as a
 * policyexec.Body, or NULL with a Python exception set. */
PyObject *pw_shm_body(const pw_python *py, int side, const Policyexec__V1__ShmRef *ref);
/* Closes the claimed fds not turned into bodies. */
void pw_shm_release(void);
/* Moves each replacement body of @p resp of at least c->shm_threshold bytes
 * into a sealed memfd that goes with the reply frame. Returns 0, or -1
 * (then the bodies stay inline, or the reply cannot be built: logged). */
int pw_shm_reply(pw_conn *c, Policyexec__V1__Response *resp, pw_arena *a);

#endif
