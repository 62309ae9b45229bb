/* pe_exchange_body_*: buffered bodies under PE_LIMIT_BODY_BYTES. The limit
 * is checked before anything changes, so a refused call keeps the body. */
#include "pe_internal.h"

static const char *side(pe_dir dir) {
  return dir == PE_REQUEST ? "request" : "response";
}

typedef enum body_op { BODY_SET, BODY_PREPEND, BODY_APPEND } body_op;

static int change_body(pe_exchange *ex, pe_dir dir, pe_slice data, body_op op) {
  if (!ex || !pe__dir_ok(dir) || !pe__slice_ok(data))
    return PE_ERR_INVALID_ARGUMENT;
  pe__buf *body = &ex->body[dir];
  size_t limit = ex->limits[PE_LIMIT_BODY_BYTES];
  size_t kept = op == BODY_SET ? 0 : body->len;
  if (data.len > limit || kept > limit - data.len)
    return pe__exchange_fail(ex, PE_ERR_BODY_TOO_LARGE,
                             "%s body of %zu + %zu bytes exceeds the limit of %zu bytes", side(dir),
                             kept, data.len, limit);
  int rc = pe__txn_touch(ex, dir == PE_REQUEST ? PE__PART_REQ_BODY : PE__PART_RESP_BODY);
  if (rc == PE_OK) {
    switch (op) {
    case BODY_SET:
      rc = pe__buf_set(body, ex->mem, data.ptr, data.len);
      break;
    case BODY_PREPEND:
      rc = pe__buf_prepend(body, ex->mem, data.ptr, data.len);
      break;
    case BODY_APPEND:
      rc = pe__buf_append(body, ex->mem, data.ptr, data.len);
      break;
    }
  }
  if (rc != PE_OK)
    return pe__exchange_fail(ex, rc, "out of memory for a %s body of %zu bytes", side(dir),
                             kept + data.len);
  pe__changed(ex, dir == PE_REQUEST ? PE_CHANGE_REQUEST_BODY : PE_CHANGE_RESPONSE_BODY);
  return PE_OK;
}

pe_slice pe_exchange_body(const pe_exchange *ex, pe_dir dir) {
  if (!ex || !pe__dir_ok(dir) || ex->body[dir].len == 0)
    return PE_LIT("");
  return pe__buf_slice(&ex->body[dir]);
}

int pe_exchange_body_set(pe_exchange *ex, pe_dir dir, pe_slice data) {
  return change_body(ex, dir, data, BODY_SET);
}

int pe_exchange_body_prepend(pe_exchange *ex, pe_dir dir, pe_slice data) {
  return change_body(ex, dir, data, BODY_PREPEND);
}

int pe_exchange_body_append(pe_exchange *ex, pe_dir dir, pe_slice data) {
  return change_body(ex, dir, data, BODY_APPEND);
}
