/* Escaping for error messages: a refused header name may hold CR, LF, NUL or
 * arbitrary bytes, and must neither break a log line nor hide what it was. */
#include "pe_escape.h"

#include <stdbool.h>

static size_t escaped_len(unsigned char c) {
  if (c == '\\')
    return 2;
  return c >= 0x20 && c < 0x7f ? 1 : 4;
}

const char *pe__escape(char *out, size_t out_size, pe_slice s) {
  static const char hex[] = "0123456789abcdef";
  size_t total = 0;
  for (size_t i = 0; i < s.len; i++)
    total += escaped_len((unsigned char)s.ptr[i]);
  size_t room = out_size - 1; /* the terminator */
  bool cut = total > room;
  if (cut)
    room -= 3; /* "..." */
  size_t at = 0;
  for (size_t i = 0; i < s.len; i++) {
    unsigned char c = (unsigned char)s.ptr[i];
    size_t n = escaped_len(c);
    if (at + n > room)
      break;
    if (n == 1) {
      out[at] = (char)c;
    } else if (n == 2) {
      out[at] = out[at + 1] = '\\';
    } else {
      out[at] = '\\';
      out[at + 1] = 'x';
      out[at + 2] = hex[c >> 4];
      out[at + 3] = hex[c & 15];
    }
    at += n;
  }
  if (cut) {
    memcpy(out + at, "...", 3);
    at += 3;
  }
  out[at] = '\0';
  return out;
}
