/*
 * Fuzzes the gateway's HTTP/1.1 parser (examples/gateway/gw_http.c): the
 * bytes a client or an upstream sends. Input: one control byte, then the
 * message. The control byte picks request or response head, the size of the
 * field array and how the input is split into pieces, because the gateway
 * reads sockets in arbitrary pieces and both the head scanner and the
 * chunked decoder keep state across them.
 *
 * Besides crashes and sanitizer reports, two differential checks trap:
 * a head scanned piecewise must end where a one-shot scan says, and a
 * chunked body decoded piecewise must give the same bytes and result as a
 * one-shot decode.
 */
#include "gw_buf.h"
#include "gw_http.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* libFuzzer's entry points (declared here for -Wmissing-prototypes). */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_FIELDS 16

static size_t piece(size_t want, size_t left) {
  return want < left ? want : left;
}

/* Head end found by feeding growing prefixes, as the gateway's reads do. */
static size_t head_end_piecewise(const char *buf, size_t len, size_t step) {
  size_t scanned = 0;
  for (size_t have = 0; have < len;) {
    have += piece(step, len - have);
    size_t end = gw_http_head_end(buf, have, &scanned);
    if (end)
      return end;
  }
  return 0;
}

static int collect(void *arg, const char *data, size_t len) {
  return gw_buf_append(arg, data, len) < 0;
}

typedef struct decoded {
  int rc; /* 1 done, 0 incomplete, -1 malformed, -2 out of memory */
  size_t consumed;
  gw_buf out;
} decoded;

static void decode(const char *data, size_t len, size_t step, decoded *d) {
  gw_chunked c = {0};
  size_t pos = 0;
  d->rc = 0;
  while (pos < len) {
    size_t n = piece(step, len - pos);
    int done = 0;
    ssize_t used = gw_chunked_decode(&c, data + pos, n, collect, &d->out, &done);
    if (used < 0) {
      d->rc = (int)used == -2 ? -2 : -1;
      break;
    }
    if ((size_t)used > n)
      __builtin_trap(); /* consumed more than it was given */
    pos += (size_t)used;
    if (done) {
      d->rc = 1;
      break;
    }
    if ((size_t)used < n)
      __builtin_trap(); /* stopped early without being done or failing */
  }
  d->consumed = pos;
}

static void check_head(const char *buf, size_t len, const gw_head *h, ssize_t n) {
  if ((size_t)n > len || h->field_count > h->field_cap)
    __builtin_trap();
  for (size_t i = 0; i < h->field_count; i++) {
    const gw_field *f = &h->fields[i];
    if (f->name < buf || f->name + f->name_len > buf + n || f->value < buf ||
        f->value + f->value_len > buf + n)
      __builtin_trap(); /* a field slice outside the head */
  }
}

static void body(const char *data, size_t len, size_t step) {
  decoded whole = {0}, split = {0};
  decode(data, len, len ? len : 1, &whole);
  decode(data, len, step, &split);
  if (whole.rc != -2 && split.rc != -2) {
    if (whole.rc != split.rc || whole.out.len != split.out.len ||
        (whole.out.len && memcmp(gw_buf_ptr(&whole.out), gw_buf_ptr(&split.out), whole.out.len)))
      __builtin_trap(); /* the result depends on how the input was split */
    if (whole.rc == 1 && whole.consumed != split.consumed)
      __builtin_trap();
  }
  gw_buf_free(&whole.out);
  gw_buf_free(&split.out);
}

/* Parses a head of exactly @p len bytes and uses it as the gateway does. */
static ssize_t head(const char *buf, size_t len, int response, size_t cap, size_t step) {
  gw_field fields[MAX_FIELDS];
  gw_head h = {.fields = fields, .field_cap = cap};
  ssize_t n = response ? gw_http_parse_response(buf, len, &h) : gw_http_parse_request(buf, len, &h);
  if (n <= 0) {
    if (n != GW_HTTP_INCOMPLETE && n != GW_HTTP_BAD && n != GW_HTTP_TOO_MANY_FIELDS)
      __builtin_trap();
    return n;
  }
  check_head(buf, len, &h, n);
  gw_framing framing;
  uint64_t length = 0;
  (void)gw_http_keep_alive(&h);
  (void)gw_http_find(&h, "host");
  (void)gw_http_connection_has(&h, "upgrade", 7);
  if (gw_http_framing(&h, !response, &framing, &length) == 0 && framing == GW_BODY_CHUNKED)
    body(buf + n, len - (size_t)n, step);
  return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1)
    return 0;
  static const size_t caps[] = {1, 4, 8, MAX_FIELDS};
  unsigned ctl = data[0];
  int response = ctl & 1;
  size_t cap = caps[(ctl >> 1) & 3];
  size_t step = 1 + (ctl >> 4) * 3; /* 1..46 bytes per read */
  /* The message ends where libFuzzer's buffer ends: ASan sees overreads. */
  const char *buf = (const char *)data + 1;
  size_t len = size - 1;

  size_t scanned = 0;
  size_t end = gw_http_head_end(buf, len, &scanned);
  if (end > len || head_end_piecewise(buf, len, step) != end)
    __builtin_trap();

  /* The whole input as a head (trailing bytes as the chunked body). */
  head(buf, len, response, cap, step);
  /* As the gateway does: parse exactly the bytes up to the head's end, in a
   * buffer of that size so that a read past the head is an ASan report. */
  if (end) {
    char *copy = malloc(end);
    if (copy) {
      memcpy(copy, buf, end);
      ssize_t n = head(copy, end, response, cap, step);
      if (n > 0 && (size_t)n != end)
        __builtin_trap(); /* parser and scanner disagree on where the head ends */
      free(copy);
    }
  }
  /* The decoder also meets bytes no head vouched for: decode them all. */
  if (ctl & 0x08)
    body(buf, len, step);
  return 0;
}
