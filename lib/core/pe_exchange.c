/* The exchange object: lifecycle, request line, status, verdict and the
 * last-error message. Headers, bodies and metadata live in their own files
 * (pe_headers.c, pe_body.c). */
#include "pe_internal.h"
#include "pe_escape.h"

static pe_slice buf_view(const pe__buf *b) {
  return b->len ? pe__buf_slice(b) : PE_LIT("");
}

int pe__exchange_fail(pe_exchange *ex, int rc, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  pe__errmsg_vset(ex->errmsg, fmt, ap);
  va_end(ap);
  return rc;
}

int pe_exchange_new(pe_exchange **out, pe_engine *engine) {
  if (!out || !engine)
    return PE_ERR_INVALID_ARGUMENT;
  const pe_mem *mem = pe__engine_mem(engine);
  pe_exchange *ex = pe__calloc(mem, 1, sizeof *ex);
  if (!ex)
    return PE_ERR_NOMEM;
  pe__engine_ref(engine);
  ex->engine = engine;
  ex->mem = mem; /* the engine outlives ex: we hold a reference */
  memcpy(ex->limits, engine->opts.limits, sizeof ex->limits);
  for (int dir = PE_REQUEST; dir <= PE_RESPONSE; dir++) {
    pe__fields_init(&ex->headers[dir], true);
    pe__fields_init(&ex->snap.headers[dir], true);
  }
  pe__fields_init(&ex->meta, false);
  pe__fields_init(&ex->snap.meta, false);
  ex->verdict = PE_VERDICT_CONTINUE;
  *out = ex;
  return PE_OK;
}

void pe_exchange_free(pe_exchange *ex) {
  if (!ex)
    return;
  if (ex->run.pending && !pe__dispatch_forget(ex)) {
    /* A reply would still write into ex, and nothing can stop it: leaking
     * it is the only safe answer. */
    pe__log(ex->engine, PE_LOG_ERROR,
            "pe_exchange_free called while a phase is pending: exchange leaked");
    return;
  }
  const pe_mem *mem = ex->mem;
  pe_engine *engine = ex->engine;
  pe__stream_release(ex, true);
  pe__buf_free(&ex->method, mem);
  pe__buf_free(&ex->path, mem);
  pe__buf_free(&ex->authority, mem);
  for (int dir = PE_REQUEST; dir <= PE_RESPONSE; dir++) {
    pe__fields_free(&ex->headers[dir], mem);
    pe__buf_free(&ex->body[dir], mem);
  }
  pe__fields_free(&ex->meta, mem);
  pe__snapshot_free(&ex->snap, mem);
  pe__free(mem, ex);
  pe__engine_unref(engine); /* last: it may free the allocator's owner */
}

int pe_exchange_reset(pe_exchange *ex) {
  if (!ex)
    return PE_ERR_INVALID_ARGUMENT;
  if (ex->run.pending)
    return pe__exchange_fail(ex, PE_ERR_STATE, "pe_exchange_reset: a phase is pending");
  if (ex->run.in_step) /* the run would go on with an emptied exchange, forever */
    return pe__exchange_fail(ex, PE_ERR_STATE,
                             "pe_exchange_reset: called from a policy running on this exchange");
  /* Lengths to zero, capacities kept: the next request reuses the memory. */
  pe__stream_release(ex, false);
  ex->method.len = ex->path.len = ex->authority.len = 0;
  for (int dir = PE_REQUEST; dir <= PE_RESPONSE; dir++) {
    pe__fields_clear(&ex->headers[dir]);
    ex->body[dir].len = 0;
  }
  pe__fields_clear(&ex->meta);
  ex->status = 0;
  ex->verdict = PE_VERDICT_CONTINUE;
  ex->changes = 0;
  ex->errmsg[0] = '\0';
  ex->txn_active = false;
  ex->snap.saved = 0;
  ex->snap.status = 0;
  ex->snap.verdict = PE_VERDICT_CONTINUE;
  memset(&ex->run, 0, sizeof ex->run);
  return PE_OK;
}

pe_engine *pe_exchange_engine(const pe_exchange *ex) {
  return ex ? ex->engine : NULL;
}

/* ---- request line ---- */

static int set_request_part(pe_exchange *ex, pe__buf *dst, pe_slice v, unsigned change) {
  int rc = pe__txn_touch(ex, PE__PART_REQUEST_LINE);
  if (rc == PE_OK)
    rc = pe__buf_set(dst, ex->mem, v.ptr, v.len);
  if (rc != PE_OK)
    return pe__exchange_fail(ex, rc, "out of memory setting the request line");
  pe__changed(ex, change);
  return PE_OK;
}

int pe_exchange_set_method(pe_exchange *ex, pe_slice method) {
  if (!ex || !pe__slice_ok(method))
    return PE_ERR_INVALID_ARGUMENT;
  if (!pe__is_token(method)) {
    char shown[PE__ESCAPE_SIZE];
    return pe__exchange_fail(ex, PE_ERR_INVALID_VALUE, "method '%s' is not a valid token",
                             pe__escape(shown, sizeof shown, method));
  }
  return set_request_part(ex, &ex->method, method, PE_CHANGE_METHOD);
}

int pe_exchange_set_path(pe_exchange *ex, pe_slice path) {
  if (!ex || !pe__slice_ok(path))
    return PE_ERR_INVALID_ARGUMENT;
  if (!pe__is_request_target(path, false)) {
    char shown[PE__ESCAPE_SIZE];
    return pe__exchange_fail(ex, PE_ERR_INVALID_VALUE,
                             "path '%s' is empty or has a control, space or non-ASCII byte",
                             pe__escape(shown, sizeof shown, path));
  }
  return set_request_part(ex, &ex->path, path, PE_CHANGE_PATH);
}

int pe_exchange_set_authority(pe_exchange *ex, pe_slice authority) {
  if (!ex || !pe__slice_ok(authority))
    return PE_ERR_INVALID_ARGUMENT;
  if (!pe__is_request_target(authority, true)) {
    char shown[PE__ESCAPE_SIZE];
    return pe__exchange_fail(ex, PE_ERR_INVALID_VALUE,
                             "authority '%s' has a control, space or non-ASCII byte",
                             pe__escape(shown, sizeof shown, authority));
  }
  return set_request_part(ex, &ex->authority, authority, PE_CHANGE_AUTHORITY);
}

pe_slice pe_exchange_method(const pe_exchange *ex) {
  return ex ? buf_view(&ex->method) : PE_LIT("");
}

pe_slice pe_exchange_path(const pe_exchange *ex) {
  return ex ? buf_view(&ex->path) : PE_LIT("");
}

pe_slice pe_exchange_authority(const pe_exchange *ex) {
  return ex ? buf_view(&ex->authority) : PE_LIT("");
}

/* ---- status, verdict, immediate response ---- */

static bool status_ok(int status) {
  return status >= 100 && status <= 999;
}

/* Status and verdict are scalars saved by pe__txn_begin: no touch needed. */
int pe_exchange_set_status(pe_exchange *ex, int status) {
  if (!ex)
    return PE_ERR_INVALID_ARGUMENT;
  if (!status_ok(status))
    return pe__exchange_fail(ex, PE_ERR_INVALID_VALUE, "status %d is outside 100..999", status);
  ex->status = status;
  pe__changed(ex, PE_CHANGE_STATUS);
  return PE_OK;
}

int pe_exchange_status(const pe_exchange *ex) {
  return ex ? ex->status : 0;
}

int pe_exchange_respond(pe_exchange *ex, int status, pe_slice body) {
  if (!ex || !pe__slice_ok(body))
    return PE_ERR_INVALID_ARGUMENT;
  if (!status_ok(status))
    return pe__exchange_fail(ex, PE_ERR_INVALID_VALUE, "status %d is outside 100..999", status);
  size_t limit = ex->limits[PE_LIMIT_BODY_BYTES];
  if (body.len > limit)
    return pe__exchange_fail(ex, PE_ERR_BODY_TOO_LARGE,
                             "response body of %zu bytes exceeds the limit of %zu bytes", body.len,
                             limit);
  /* Every step that can fail comes before the first change. */
  int rc = pe__txn_touch(ex, PE__PART_RESP_HEADERS);
  if (rc == PE_OK)
    rc = pe__txn_touch(ex, PE__PART_RESP_BODY);
  if (rc == PE_OK)
    rc = pe__buf_set(&ex->body[PE_RESPONSE], ex->mem, body.ptr, body.len);
  if (rc != PE_OK)
    return pe__exchange_fail(ex, rc, "out of memory building the immediate response");
  pe__fields_clear(&ex->headers[PE_RESPONSE]);
  ex->status = status;
  ex->verdict = PE_VERDICT_RESPOND;
  pe__changed(ex, PE__CHANGE_ANSWER);
  return PE_OK;
}

pe_verdict pe_exchange_verdict(const pe_exchange *ex) {
  return ex ? ex->verdict : PE_VERDICT_CONTINUE;
}

/* ---- what the chain changed ---- */

unsigned pe_exchange_changes(const pe_exchange *ex) {
  return ex ? ex->changes : 0;
}

int pe_exchange_changes_clear(pe_exchange *ex, unsigned mask) {
  if (!ex)
    return PE_ERR_INVALID_ARGUMENT;
  ex->changes &= ~mask;
  return PE_OK;
}

/* ---- errors ---- */

const char *pe_exchange_errmsg(const pe_exchange *ex) {
  return ex ? ex->errmsg : "";
}

int pe_exchange_set_errmsg(pe_exchange *ex, const char *fmt, ...) {
  if (!ex || !fmt)
    return PE_ERR_INVALID_ARGUMENT;
  va_list ap;
  va_start(ap, fmt);
  pe__errmsg_vset(ex->errmsg, fmt, ap);
  va_end(ap);
  return PE_OK;
}
