/*
 * Request-target normalisation (see gw_path.h).
 *
 * Two passes over the path: decoding (into @p out), then segment
 * resolution in place. Decoding comes first so that "%2e%2e" is a ".."
 * segment like any other; an encoded '/' is refused rather than decoded,
 * since decoding it would change the segments and keeping it would let the
 * upstream decode it after routing.
 */
#include "gw_path.h"

#include <string.h>

static int hex_value(unsigned char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

static int is_unreserved(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '.' || c == '_' || c == '~';
}

/* Pass one: percent-decoding of the path. Returns the decoded length, or 0. */
static size_t decode(const char *in, size_t len, char *out) {
  static const char hex[] = "0123456789ABCDEF";
  size_t o = 0;
  for (size_t i = 0; i < len; i++) {
    unsigned char c = (unsigned char)in[i];
    if (c == '\\' || c == '#' || c == '\0')
      return 0;
    if (c != '%') {
      out[o++] = (char)c;
      continue;
    }
    if (len - i < 3)
      return 0;
    int hi = hex_value((unsigned char)in[i + 1]), lo = hex_value((unsigned char)in[i + 2]);
    if (hi < 0 || lo < 0)
      return 0;
    unsigned char v = (unsigned char)(hi * 16 + lo);
    if (v == '/' || v == '\\' || v == '\0')
      return 0;
    if (is_unreserved(v)) {
      out[o++] = (char)v;
    } else {
      out[o++] = '%';
      out[o++] = hex[v >> 4];
      out[o++] = hex[v & 15];
    }
    i += 2;
  }
  return o;
}

/* Pass two, in place over the decoded path @p p (starting with '/'):
 * drops empty and "." segments, resolves "..". Returns the new length, or
 * 0 for ".." above the root. */
static size_t resolve(char *p, size_t len) {
  size_t o = 0, i = 0;
  int trailing = 0; /* the path ends in a directory: keep its slash */
  while (i < len) {
    while (i < len && p[i] == '/')
      i++;
    size_t start = i;
    while (i < len && p[i] != '/')
      i++;
    size_t n = i - start;
    trailing = i == len ? (n == 0 || (n == 1 && p[start] == '.') ||
                           (n == 2 && p[start] == '.' && p[start + 1] == '.'))
                        : trailing;
    if (n == 0 || (n == 1 && p[start] == '.'))
      continue;
    if (n == 2 && p[start] == '.' && p[start + 1] == '.') {
      if (o == 0)
        return 0;
      while (o > 0 && p[o - 1] != '/')
        o--;
      o--; /* the slash before the dropped segment */
      continue;
    }
    p[o++] = '/';
    memmove(p + o, p + start, n); /* o <= start - 1: never overlaps forwards */
    o += n;
  }
  if (o == 0 || trailing)
    p[o++] = '/';
  return o;
}

size_t gw_path_normalize(const char *in, size_t len, char *out) {
  if (len == 0 || in[0] != '/')
    return 0;
  const char *q = memchr(in, '?', len);
  size_t path_len = q ? (size_t)(q - in) : len;
  size_t n = decode(in, path_len, out);
  if (n == 0 || (n = resolve(out, n)) == 0)
    return 0;
  if (q) {
    if (memchr(q, '#', len - path_len))
      return 0;
    memcpy(out + n, q, len - path_len);
    n += len - path_len;
  }
  return n;
}

int gw_path_context_ok(const char *context) {
  static const char extra[] = "-._~!$&'()*+,;=:@/%";
  size_t len = strlen(context);
  if (len == 0 || context[0] != '/' || len > 4096)
    return 0;
  for (size_t i = 0; i < len; i++) {
    unsigned char c = (unsigned char)context[i];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
          memchr(extra, c, sizeof extra - 1)))
      return 0;
  }
  char normal[4096];
  size_t n = gw_path_normalize(context, len, normal);
  return n == len && memcmp(normal, context, len) == 0;
}
