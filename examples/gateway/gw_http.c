/*
 * HTTP/1.x parsing (see gw_http.h). Strict where leniency would let a
 * request mean different things to the gateway and the upstream (request
 * smuggling): no obs-fold, no whitespace before the colon, one agreed
 * Content-Length, Transfer-Encoding only "chunked", never both.
 */
#include "gw_http.h"

#include <string.h>
#include <strings.h>

static int is_tchar(unsigned char c) {
  /* RFC 9110 token characters */
  static const char extra[] = "!#$%&'*+-.^_`|~";
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         (c && memchr(extra, c, sizeof extra - 1));
}

size_t gw_http_head_end(const char *buf, size_t len, size_t *scanned) {
  size_t i = *scanned > 3 ? *scanned - 3 : 0;
  for (; i < len; i++) {
    if (buf[i] != '\n')
      continue;
    if (i + 1 < len && buf[i + 1] == '\n')
      return i + 2;
    if (i + 2 < len && buf[i + 1] == '\r' && buf[i + 2] == '\n')
      return i + 3;
  }
  *scanned = len;
  return 0;
}

/* One line starting at @p p (before @p end): sets *line_len (without the
 * CR LF or LF) and returns the start of the next line, or NULL if the line
 * does not end within the buffer. */
static const char *next_line(const char *p, const char *end, size_t *line_len) {
  const char *lf = memchr(p, '\n', (size_t)(end - p));
  if (!lf)
    return NULL;
  const char *stop = lf > p && lf[-1] == '\r' ? lf - 1 : lf;
  *line_len = (size_t)(stop - p);
  return lf + 1;
}

static int parse_version(const char *p, size_t len, int *minor) {
  if (len != 8 || memcmp(p, "HTTP/1.", 7) != 0 || (p[7] != '0' && p[7] != '1'))
    return -1;
  *minor = p[7] - '0';
  return 0;
}

/* Fields from @p p up to the blank line at @p end. */
static ssize_t parse_fields(const char *start, const char *p, const char *end, gw_head *head) {
  head->field_count = 0;
  for (;;) {
    size_t n;
    const char *next = next_line(p, end, &n);
    if (!next)
      return GW_HTTP_INCOMPLETE;
    if (n == 0)
      return next - start;
    if (p[0] == ' ' || p[0] == '\t')
      return GW_HTTP_BAD; /* obs-fold */
    size_t name_len = 0;
    while (name_len < n && is_tchar((unsigned char)p[name_len]))
      name_len++;
    if (name_len == 0 || name_len == n || p[name_len] != ':')
      return GW_HTTP_BAD;
    const char *v = p + name_len + 1, *v_end = p + n;
    while (v < v_end && (*v == ' ' || *v == '\t'))
      v++;
    while (v_end > v && (v_end[-1] == ' ' || v_end[-1] == '\t'))
      v_end--;
    for (const char *c = v; c < v_end; c++) /* CTLs and DEL (RFC 9110 field-value) */
      if (((unsigned char)*c < 0x20 && *c != '\t') || (unsigned char)*c == 0x7f)
        return GW_HTTP_BAD;
    if (head->field_count == head->field_cap)
      return GW_HTTP_TOO_MANY_FIELDS;
    gw_field *f = &head->fields[head->field_count++];
    f->name = p;
    f->name_len = name_len;
    f->value = v;
    f->value_len = (size_t)(v_end - v);
    p = next;
  }
}

ssize_t gw_http_parse_request(const char *buf, size_t len, gw_head *head) {
  const char *end = buf + len, *p = buf;
  size_t n;
  const char *next = next_line(p, end, &n);
  if (!next)
    return GW_HTTP_INCOMPLETE;
  const char *line_end = p + n;
  const char *sp1 = memchr(p, ' ', n);
  if (!sp1 || sp1 == p)
    return GW_HTTP_BAD;
  for (const char *c = p; c < sp1; c++)
    if (!is_tchar((unsigned char)*c))
      return GW_HTTP_BAD;
  const char *target = sp1 + 1;
  const char *sp2 = memchr(target, ' ', (size_t)(line_end - target));
  if (!sp2 || sp2 == target)
    return GW_HTTP_BAD;
  for (const char *c = target; c < sp2; c++)
    if ((unsigned char)*c <= 0x20 || (unsigned char)*c == 0x7f)
      return GW_HTTP_BAD;
  if (parse_version(sp2 + 1, (size_t)(line_end - sp2 - 1), &head->minor) < 0)
    return GW_HTTP_BAD;
  head->method = p;
  head->method_len = (size_t)(sp1 - p);
  head->target = target;
  head->target_len = (size_t)(sp2 - target);
  head->status = 0;
  return parse_fields(buf, next, end, head);
}

ssize_t gw_http_parse_response(const char *buf, size_t len, gw_head *head) {
  const char *end = buf + len;
  size_t n;
  const char *next = next_line(buf, end, &n);
  if (!next)
    return GW_HTTP_INCOMPLETE;
  if (n < 12 || parse_version(buf, 8, &head->minor) < 0 || buf[8] != ' ')
    return GW_HTTP_BAD;
  int status = 0;
  for (int i = 9; i < 12; i++) {
    if (buf[i] < '0' || buf[i] > '9')
      return GW_HTTP_BAD;
    status = status * 10 + (buf[i] - '0');
  }
  if (status < 100 || (n > 12 && buf[12] != ' '))
    return GW_HTTP_BAD;
  head->status = status;
  head->method = head->target = NULL;
  head->method_len = head->target_len = 0;
  return parse_fields(buf, next, end, head);
}

int gw_http_name_is(const char *name, size_t len, const char *lower) {
  for (size_t i = 0; i < len; i++) {
    char c = name[i];
    if (c >= 'A' && c <= 'Z')
      c = (char)(c + 32);
    if (c != lower[i] || lower[i] == '\0')
      return 0;
  }
  return lower[len] == '\0';
}

size_t gw_http_count(const gw_head *head, const char *lower) {
  size_t n = 0;
  for (size_t i = 0; i < head->field_count; i++)
    n += (size_t)gw_http_name_is(head->fields[i].name, head->fields[i].name_len, lower);
  return n;
}

const gw_field *gw_http_find(const gw_head *head, const char *lower) {
  for (size_t i = 0; i < head->field_count; i++)
    if (gw_http_name_is(head->fields[i].name, head->fields[i].name_len, lower))
      return &head->fields[i];
  return NULL;
}

static int value_is(const gw_field *f, const char *lower) {
  return gw_http_name_is(f->value, f->value_len, lower);
}

int gw_http_framing(const gw_head *head, int is_request, gw_framing *framing, uint64_t *length) {
  int have_length = 0, chunked = 0;
  uint64_t value = 0;
  for (size_t i = 0; i < head->field_count; i++) {
    const gw_field *f = &head->fields[i];
    if (gw_http_name_is(f->name, f->name_len, "content-length")) {
      uint64_t v = 0;
      if (f->value_len == 0 || f->value_len > 18)
        return -1;
      for (size_t k = 0; k < f->value_len; k++) {
        if (f->value[k] < '0' || f->value[k] > '9')
          return -1;
        v = v * 10 + (uint64_t)(f->value[k] - '0');
      }
      if (have_length && v != value)
        return -1;
      have_length = 1;
      value = v;
    } else if (gw_http_name_is(f->name, f->name_len, "transfer-encoding")) {
      if (chunked || !value_is(f, "chunked"))
        return -1; /* other codings (or chunked twice) are not forwarded */
      chunked = 1;
    }
  }
  if (chunked && have_length)
    return -1;
  if (chunked) {
    *framing = GW_BODY_CHUNKED;
  } else if (have_length) {
    *framing = value ? GW_BODY_LENGTH : GW_BODY_NONE;
    *length = value;
  } else {
    *framing = is_request ? GW_BODY_NONE : GW_BODY_CLOSE;
  }
  return 0;
}

int gw_http_connection_has(const gw_head *head, const char *token, size_t len) {
  for (size_t i = 0; i < head->field_count; i++) {
    const gw_field *f = &head->fields[i];
    if (!gw_http_name_is(f->name, f->name_len, "connection"))
      continue;
    /* a list: comma-separated tokens with optional white space */
    const char *p = f->value, *end = f->value + f->value_len;
    while (p < end) {
      while (p < end && (*p == ' ' || *p == '\t' || *p == ','))
        p++;
      const char *tok = p;
      while (p < end && *p != ',' && *p != ' ' && *p != '\t')
        p++;
      size_t tok_len = (size_t)(p - tok);
      if (tok_len == len && tok_len > 0 && strncasecmp(tok, token, len) == 0)
        return 1;
    }
  }
  return 0;
}

int gw_http_keep_alive(const gw_head *head) {
  if (gw_http_connection_has(head, "close", 5))
    return 0;
  return head->minor >= 1 || gw_http_connection_has(head, "keep-alive", 10);
}

enum {
  CH_SIZE,    /* hex digits */
  CH_EXT,     /* chunk extension, up to LF */
  CH_DATA,    /* payload bytes */
  CH_DATA_CR, /* CR after the payload */
  CH_DATA_LF, /* LF after the payload */
  CH_TRAILER, /* start of a trailer line (or the final blank line) */
  CH_TRAILER_LINE,
  CH_DONE
};

/* Longest chunk-size line or trailer line accepted. */
#define CHUNK_LINE_MAX 4096

ssize_t gw_chunked_decode(gw_chunked *c, const char *data, size_t len, gw_sink_fn sink, void *arg,
                          int *done) {
  size_t i = 0;
  *done = 0;
  while (i < len) {
    unsigned char ch = (unsigned char)data[i];
    switch (c->state) {
    case CH_SIZE: {
      int digit = ch >= '0' && ch <= '9'   ? ch - '0'
                  : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10
                  : ch >= 'A' && ch <= 'F' ? ch - 'A' + 10
                                           : -1;
      if (digit >= 0) {
        if (c->remaining >> 56)
          return -1; /* absurd size */
        c->remaining = c->remaining * 16 + (uint64_t)digit;
        c->line_bytes++;
        i++;
        break;
      }
      if (c->line_bytes == 0 || (ch != ';' && ch != '\r' && ch != '\n' && ch != ' ' && ch != '\t'))
        return -1;
      c->state = CH_EXT;
      break;
    }
    case CH_EXT:
      i++;
      if (++c->line_bytes > CHUNK_LINE_MAX)
        return -1;
      if (ch == '\n') {
        c->line_bytes = 0;
        c->state = c->remaining ? CH_DATA : CH_TRAILER;
      }
      break;
    case CH_DATA: {
      size_t n = len - i < c->remaining ? len - i : (size_t)c->remaining;
      if (sink(arg, data + i, n) != 0)
        return -2;
      i += n;
      c->remaining -= n;
      if (c->remaining == 0)
        c->state = CH_DATA_CR;
      break;
    }
    case CH_DATA_CR:
      i++;
      if (ch == '\r')
        c->state = CH_DATA_LF;
      else if (ch == '\n')
        c->state = CH_SIZE;
      else
        return -1;
      break;
    case CH_DATA_LF:
      i++;
      if (ch != '\n')
        return -1;
      c->state = CH_SIZE;
      break;
    case CH_TRAILER:
      i++;
      if (ch == '\n') {
        c->state = CH_DONE;
        *done = 1;
        return (ssize_t)i;
      }
      if (ch != '\r') {
        c->line_bytes = 1;
        c->state = CH_TRAILER_LINE; /* trailers are dropped, like hop-by-hop fields */
      }
      break;
    case CH_TRAILER_LINE:
      i++;
      if (++c->line_bytes > CHUNK_LINE_MAX)
        return -1;
      if (ch == '\n')
        c->state = CH_TRAILER;
      break;
    default:
      *done = 1;
      return (ssize_t)i;
    }
  }
  if (c->state == CH_DONE)
    *done = 1;
  return (ssize_t)i;
}
