/* One request in, one reply out: decodes a Request, serves it, and appends
 * the framed Response to the connection's output. */
#ifndef PW_REQUESTS_H
#define PW_REQUESTS_H

#include "pw_arena.h"
#include "pw_async.h"
#include "pw_conn.h"
#include "pw_python.h"

typedef struct pw_handler {
  pw_python *py;
  pw_arena arena; /* decoded request + reply under construction; reset per request */
  /* Why the start-up failed (malloc'ed), or NULL. When set, every request is
   * answered with an Error carrying it, so that the engine's handshake (and
   * pe_engine_start_python's message) says why instead of only seeing the
   * connection close. */
  char *startup_error;
  pw_async async; /* coroutine steps in flight */
} pw_handler;

/* Serves the message @p msg of @p len bytes received on @p c. Returns 0 when a
 * reply was queued (or is due later: a pending coroutine batch, a Cancel), -1 when the message does
 * not parse or the reply cannot be built (the caller closes the connection). */
int pw_handle_request(pw_handler *h, pw_conn *c, const uint8_t *msg, size_t len);

/* Queues on @p c the reply to RunPhase @p id whose coroutine batch ended
 * with @p result (its result list, or the exception that ended it). Returns
 * 0, or -1 when the reply cannot be built (the caller closes @p c). */
int pw_reply_ended(pw_handler *h, pw_conn *c, uint64_t id, PyObject *result);

/* Imports the policy modules of @p paths (command-line module paths) at
 * start-up. Returns 0, or -1 after logging why and keeping it in
 * h->startup_error. */
int pw_preload_modules(pw_handler *h, char **paths, size_t n);

#endif
