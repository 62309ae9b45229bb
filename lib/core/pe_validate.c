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
  /* The three bytes that could end or split a header line are refused, and
   * DEL (0x7f), which RFC 9110 excludes from field-vchar and which some
   * parsers treat as a separator. HTAB, obs-text (>= 0x80) and the other
   * controls pass through unchanged, as proxies forward them. */
  for (size_t i = 0; i < s.len; i++) {
    char c = s.ptr[i];
    if (c == '\r' || c == '\n' || c == '\0' || c == '\x7f')
      return false;
  }
  return true;
}

/* Case-insensitive equality of s and a lower-case literal. */
static bool name_is(pe_slice s, const char *lower, size_t len) {
  if (s.len != len)
    return false;
  for (size_t i = 0; i < len; i++) {
    char c = s.ptr[i];
    if (c >= 'A' && c <= 'Z')
      c = (char)(c - 'A' + 'a');
    if (c != lower[i])
      return false;
  }
  return true;
}

bool pe__is_framing_header(pe_slice name) {
  /* Content-Length and Transfer-Encoding say where the message ends; the
   * others are RFC 9110 section 7.6.1's connection-specific fields (plus
   * the de facto Keep-Alive and Proxy-Connection), which describe the hop,
   * not the message. The proxy writes them for the connection it frames; a
   * policy changing them desyncs that connection. Dispatching on the length
   * first keeps the common (non-framing) name to one or two compares. */
#define IS(lit) name_is(name, lit, sizeof lit - 1)
  switch (name.len) {
  case 2:
    return IS("te");
  case 7:
    return IS("trailer") || IS("upgrade");
  case 10:
    return IS("connection") || IS("keep-alive");
  case 14:
    return IS("content-length");
  case 16:
    return IS("proxy-connection");
  case 17:
    return IS("transfer-encoding");
  default:
    return false;
  }
#undef IS
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
