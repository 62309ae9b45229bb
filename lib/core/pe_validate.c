/* The character rules that keep a policy from injecting headers or breaking
 * the request line, whoever sets the value. */
#include "pe_internal.h"

/* RFC 9110 section 5.6.2: tchar = "!" / "#" / "$" / "%" / "&" / "'" / "*" /
 * "+" / "-" / "." / "^" / "_" / "`" / "|" / "~" / DIGIT / ALPHA. A table
 * keeps the per-byte test to one load on the header hot path. */
static const bool tchar[256] = {
    ['!'] = true, ['#'] = true, ['$'] = true, ['%'] = true, ['&'] = true, ['\''] = true,
    ['*'] = true, ['+'] = true, ['-'] = true, ['.'] = true, ['^'] = true, ['_'] = true,
    ['`'] = true, ['|'] = true, ['~'] = true, ['0'] = true, ['1'] = true, ['2'] = true,
    ['3'] = true, ['4'] = true, ['5'] = true, ['6'] = true, ['7'] = true, ['8'] = true,
    ['9'] = true, ['A'] = true, ['B'] = true, ['C'] = true, ['D'] = true, ['E'] = true,
    ['F'] = true, ['G'] = true, ['H'] = true, ['I'] = true, ['J'] = true, ['K'] = true,
    ['L'] = true, ['M'] = true, ['N'] = true, ['O'] = true, ['P'] = true, ['Q'] = true,
    ['R'] = true, ['S'] = true, ['T'] = true, ['U'] = true, ['V'] = true, ['W'] = true,
    ['X'] = true, ['Y'] = true, ['Z'] = true, ['a'] = true, ['b'] = true, ['c'] = true,
    ['d'] = true, ['e'] = true, ['f'] = true, ['g'] = true, ['h'] = true, ['i'] = true,
    ['j'] = true, ['k'] = true, ['l'] = true, ['m'] = true, ['n'] = true, ['o'] = true,
    ['p'] = true, ['q'] = true, ['r'] = true, ['s'] = true, ['t'] = true, ['u'] = true,
    ['v'] = true, ['w'] = true, ['x'] = true, ['y'] = true, ['z'] = true,
};

bool pe__is_token(pe_slice s) {
  if (s.len == 0 || !s.ptr)
    return false;
  const unsigned char *p = (const unsigned char *)s.ptr;
  for (size_t i = 0; i < s.len; i++)
    if (!tchar[p[i]])
      return false;
  return true;
}

bool pe__is_field_value(pe_slice s) {
  if (s.len && !s.ptr)
    return false;
  /* Only the three bytes that could end or split a header line are refused:
   * HTAB, obs-text (>= 0x80) and other controls pass through unchanged, as
   * proxies forward them. */
  for (size_t i = 0; i < s.len; i++) {
    char c = s.ptr[i];
    if (c == '\r' || c == '\n' || c == '\0')
      return false;
  }
  return true;
}

bool pe__is_request_target(pe_slice s, bool allow_empty) {
  if (s.len == 0)
    return allow_empty;
  if (!s.ptr)
    return false;
  const unsigned char *p = (const unsigned char *)s.ptr;
  for (size_t i = 0; i < s.len; i++)
    if (p[i] < 0x21 || p[i] > 0x7e)
      return false;
  return true;
}
