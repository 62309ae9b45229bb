/* Rendering untrusted bytes (header names, methods) inside error messages. */
#ifndef PE_ESCAPE_H
#define PE_ESCAPE_H

#include <policyexec/common.h>

/* Room for a short escaped excerpt in a PE__ERRMSG_SIZE message. */
#define PE__ESCAPE_SIZE 72

/* Writes a NUL-terminated, printable rendering of s into out (out_size
 * bytes, at least 8): printable ASCII as is, backslash as "\\", other bytes
 * as "\xNN"; ends with "..." when s does not fit. Returns out. */
const char *pe__escape(char *out, size_t out_size, pe_slice s);

#endif /* PE_ESCAPE_H */
