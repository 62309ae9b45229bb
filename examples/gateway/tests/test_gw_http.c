/*
 * Unit tests of the gateway's HTTP parsing (gw_http.c): heads, framing and
 * the chunked decoder, including input split at every byte.
 */
#include "gw_buf.h"
#include "gw_http.h"

#include <stdio.h>
#include <string.h>

static int failures;

#define CHECK(cond)                                                                                \
  do {                                                                                             \
    if (!(cond)) {                                                                                 \
      fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);                     \
      failures++;                                                                                  \
    }                                                                                              \
  } while (0)

static gw_field fields[8];

static ssize_t parse_request(const char *text, gw_head *head) {
  memset(head, 0, sizeof *head);
  head->fields = fields;
  head->field_cap = 8;
  return gw_http_parse_request(text, strlen(text), head);
}

static void test_request_head(void) {
  gw_head h;
  const char *req = "POST /a?b=1 HTTP/1.1\r\nHost: x\r\nContent-Length:  5 \r\n\r\nhello";
  ssize_t n = parse_request(req, &h);
  CHECK(n == (ssize_t)(strlen(req) - 5));
  CHECK(h.method_len == 4 && memcmp(h.method, "POST", 4) == 0);
  CHECK(h.target_len == 6 && memcmp(h.target, "/a?b=1", 6) == 0);
  CHECK(h.minor == 1 && h.field_count == 2);
  CHECK(h.fields[1].value_len == 1 && h.fields[1].value[0] == '5'); /* OWS trimmed */
  gw_framing f;
  uint64_t len = 0;
  CHECK(gw_http_framing(&h, 1, &f, &len) == 0 && f == GW_BODY_LENGTH && len == 5);
  CHECK(gw_http_keep_alive(&h));

  CHECK(parse_request("GET / HTTP/1.1\r\nHost: x\r\n", &h) == GW_HTTP_INCOMPLETE);
  CHECK(parse_request("GET / HTTP/1.0\n\n", &h) > 0 && !gw_http_keep_alive(&h));
  CHECK(parse_request("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", &h) > 0 &&
        gw_http_keep_alive(&h));
  CHECK(parse_request("GET / HTTP/1.1\r\nConnection: close\r\n\r\n", &h) > 0 &&
        !gw_http_keep_alive(&h));
}

static void test_bad_requests(void) {
  static const char *const bad[] = {
      "NONSENSE\r\n\r\n",
      "GET /\r\n\r\n",
      "GET / HTTP/2.0\r\n\r\n",
      "G(T / HTTP/1.1\r\n\r\n",
      "GET /a b HTTP/1.1\r\n\r\n",
      "GET / HTTP/1.1\r\nbad header\r\n\r\n",
      "GET / HTTP/1.1\r\nName : v\r\n\r\n",        /* space before the colon */
      "GET / HTTP/1.1\r\nName: a\x7f b\r\n\r\n",   /* DEL in a value */
      "GET / HTTP/1.1\r\nA: b\r\n folded\r\n\r\n", /* obs-fold */
      "GET / HTTP/1.1\r\nA: b\x01\r\n\r\n",
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    gw_head h;
    if (parse_request(bad[i], &h) != GW_HTTP_BAD) {
      fprintf(stderr, "accepted: %s\n", bad[i]);
      failures++;
    }
  }
  gw_head h;
  CHECK(parse_request("GET / HTTP/1.1\r\na:1\r\nb:2\r\nc:3\r\nd:4\r\ne:5\r\nf:6\r\ng:7\r\n"
                      "h:8\r\ni:9\r\n\r\n",
                      &h) == GW_HTTP_TOO_MANY_FIELDS);
}

static void test_framing(void) {
  gw_head h;
  gw_framing f;
  uint64_t len;
  parse_request("POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n", &h);
  CHECK(gw_http_framing(&h, 1, &f, &len) < 0);
  parse_request("POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", &h);
  CHECK(gw_http_framing(&h, 1, &f, &len) < 0); /* smuggling shape */
  parse_request("POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", &h);
  CHECK(gw_http_framing(&h, 1, &f, &len) < 0);
  parse_request("POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", &h);
  CHECK(gw_http_framing(&h, 1, &f, &len) < 0);
  parse_request("POST / HTTP/1.1\r\nTransfer-Encoding: Chunked\r\n\r\n", &h);
  CHECK(gw_http_framing(&h, 1, &f, &len) == 0 && f == GW_BODY_CHUNKED);
  parse_request("GET / HTTP/1.1\r\n\r\n", &h);
  CHECK(gw_http_framing(&h, 1, &f, &len) == 0 && f == GW_BODY_NONE);
  CHECK(gw_http_framing(&h, 0, &f, &len) == 0 && f == GW_BODY_CLOSE);

  gw_head r = {.fields = fields, .field_cap = 8};
  const char *resp = "HTTP/1.1 204 No Content\r\nX: y\r\n\r\n";
  CHECK(gw_http_parse_response(resp, strlen(resp), &r) == (ssize_t)strlen(resp));
  CHECK(r.status == 204 && r.field_count == 1);
  const char *bad = "HTTP/1.1 2x0 OK\r\n\r\n";
  CHECK(gw_http_parse_response(bad, strlen(bad), &r) == GW_HTTP_BAD);
}

static int collect(void *arg, const char *data, size_t len) {
  return gw_buf_append(arg, data, len) < 0;
}

/* Decodes @p text fed in pieces of @p step bytes. */
static int decode(const char *text, size_t step, gw_buf *out) {
  gw_chunked c = {0};
  size_t len = strlen(text), pos = 0;
  int done = 0;
  out->off = out->len = 0;
  while (pos < len && !done) {
    size_t n = len - pos < step ? len - pos : step;
    ssize_t used = gw_chunked_decode(&c, text + pos, n, collect, out, &done);
    if (used < 0)
      return -1;
    pos += (size_t)used;
    if ((size_t)used < n && !done)
      return -1;
  }
  return done ? 0 : 1;
}

static void test_chunked(void) {
  const char *body = "6\r\nalpha-\r\nA;ext=1\r\n0123456789\r\n0\r\nTrailer: x\r\n\r\n";
  gw_buf out = {0};
  for (size_t step = 1; step <= strlen(body); step++) {
    int rc = decode(body, step, &out);
    if (rc != 0 || out.len != 16 || memcmp(gw_buf_ptr(&out), "alpha-0123456789", 16) != 0) {
      fprintf(stderr, "chunked decode failed with step %zu\n", step);
      failures++;
    }
  }
  CHECK(decode("5\r\nabc", 100, &out) == 1); /* incomplete */
  CHECK(decode("zz\r\n", 100, &out) < 0);
  CHECK(decode("3\r\nabcX\r\n", 100, &out) < 0); /* no CRLF after the data */
  gw_buf_free(&out);
}

static void test_buf(void) {
  gw_buf b = {0};
  CHECK(gw_buf_append_dec(&b, 0) == 0 && gw_buf_append_dec(&b, 18446744073709551615ull) == 0);
  CHECK(b.len == 21 && memcmp(gw_buf_ptr(&b), "018446744073709551615", 21) == 0);
  gw_buf_consume(&b, 1);
  CHECK(gw_buf_append_hex(&b, 255) == 0 && memcmp(gw_buf_ptr(&b) + 20, "ff", 2) == 0);
  gw_buf_free(&b);
}

int main(void) {
  test_request_head();
  test_bad_requests();
  test_framing();
  test_chunked();
  test_buf();
  if (failures)
    fprintf(stderr, "%d failures\n", failures);
  else
    printf("gw_http: all checks passed\n");
  return failures ? 1 : 0;
}
