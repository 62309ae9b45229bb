/* Error codes as text (pe_strerror, pe_errname), phase names, and the
 * fixed-size message buffers every object keeps for its last failure. */
#include "pe_internal.h"

#include <stdio.h>

typedef struct error_text {
  int code;
  const char *name;
  const char *text;
} error_text;

/* One row per pe_error code, in the order of common.h. */
static const error_text error_table[] = {
    {PE_OK, "PE_OK", "success"},
    {PE_PENDING, "PE_PENDING", "operation pending"},
    {PE_ERR_INVALID_ARGUMENT, "PE_ERR_INVALID_ARGUMENT", "invalid argument"},
    {PE_ERR_NOMEM, "PE_ERR_NOMEM", "out of memory"},
    {PE_ERR_NOT_FOUND, "PE_ERR_NOT_FOUND", "not found"},
    {PE_ERR_EXISTS, "PE_ERR_EXISTS", "policy name@version already registered"},
    {PE_ERR_JSON, "PE_ERR_JSON", "invalid JSON"},
    {PE_ERR_PARAM, "PE_ERR_PARAM", "invalid policy parameter"},
    {PE_ERR_UNKNOWN_POLICY, "PE_ERR_UNKNOWN_POLICY", "unknown policy"},
    {PE_ERR_PLUGIN, "PE_ERR_PLUGIN", "plugin could not be loaded or initialised"},
    {PE_ERR_HEADER_NAME, "PE_ERR_HEADER_NAME", "header name is not a valid token"},
    {PE_ERR_HEADER_VALUE, "PE_ERR_HEADER_VALUE", "header value contains CR, LF, NUL or DEL"},
    {PE_ERR_TOO_MANY_HEADERS, "PE_ERR_TOO_MANY_HEADERS", "too many headers"},
    {PE_ERR_HEADERS_TOO_LARGE, "PE_ERR_HEADERS_TOO_LARGE", "headers too large"},
    {PE_ERR_BODY_TOO_LARGE, "PE_ERR_BODY_TOO_LARGE", "body too large"},
    {PE_ERR_POLICY, "PE_ERR_POLICY", "policy failed"},
    {PE_ERR_TIMEOUT, "PE_ERR_TIMEOUT", "timed out"},
    {PE_ERR_WORKER, "PE_ERR_WORKER", "worker died or broke the protocol"},
    {PE_ERR_BUSY, "PE_ERR_BUSY", "too many calls in flight"},
    {PE_ERR_STATE, "PE_ERR_STATE", "call not valid in this state"},
    {PE_ERR_UNSUPPORTED, "PE_ERR_UNSUPPORTED", "not supported"},
    {PE_ERR_IO, "PE_ERR_IO", "system call failed"},
    {PE_ERR_INVALID_VALUE, "PE_ERR_INVALID_VALUE", "invalid method, path, authority or status"},
    {PE_ERR_FRAMING_HEADER, "PE_ERR_FRAMING_HEADER",
     "framing or hop-by-hop header may not be changed by a policy"},
};

static const error_text *find_error(int code) {
  for (size_t i = 0; i < sizeof error_table / sizeof error_table[0]; i++)
    if (error_table[i].code == code)
      return &error_table[i];
  return NULL;
}

const char *pe_strerror(int code) {
  const error_text *e = find_error(code);
  return e ? e->text : "unknown error code";
}

const char *pe_errname(int code) {
  const error_text *e = find_error(code);
  return e ? e->name : "PE_ERR_UNKNOWN";
}

const char *pe_phase_name(pe_phase phase) {
  switch (phase) {
  case PE_PHASE_REQUEST_HEADERS:
    return "request_headers";
  case PE_PHASE_REQUEST_BODY:
    return "request_body";
  case PE_PHASE_RESPONSE_HEADERS:
    return "response_headers";
  case PE_PHASE_RESPONSE_BODY:
    return "response_body";
  }
  return "unknown";
}

void pe__errmsg_vset(char *buf, const char *fmt, va_list ap) {
  /* vsnprintf truncates and always terminates; a failed format leaves "". */
  if (vsnprintf(buf, PE__ERRMSG_SIZE, fmt, ap) < 0)
    buf[0] = '\0';
}

void pe__errmsg_set(char *buf, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  pe__errmsg_vset(buf, fmt, ap);
  va_end(ap);
}
