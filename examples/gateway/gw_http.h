/*
 * HTTP/1.x message heads and body framing, as pure functions over bytes:
 * no I/O, no allocation. Field slices point into the caller's buffer.
 */
#ifndef GW_HTTP_H
#define GW_HTTP_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct gw_field {
  const char *name;
  size_t name_len;
  const char *value;
  size_t value_len;
} gw_field;

typedef struct gw_head {
  const char *method; /* requests */
  size_t method_len;
  const char *target;
  size_t target_len;
  int status; /* responses */
  int minor;  /* HTTP/1.<minor> */
  gw_field *fields;
  size_t field_count;
  size_t field_cap; /* set by the caller: size of fields[] */
} gw_head;

#define GW_HTTP_INCOMPLETE 0
#define GW_HTTP_BAD (-1)
#define GW_HTTP_TOO_MANY_FIELDS (-2)

/* Parses a request head at the start of @p buf. Returns the head's length
 * in bytes (including the blank line), GW_HTTP_INCOMPLETE, GW_HTTP_BAD or
 * GW_HTTP_TOO_MANY_FIELDS. */
ssize_t gw_http_parse_request(const char *buf, size_t len, gw_head *head);
/* The same for a response head. */
ssize_t gw_http_parse_response(const char *buf, size_t len, gw_head *head);

/* Where a head ends: the index just past its blank line, or 0 if @p len
 * bytes hold no complete head. @p scanned remembers progress across calls
 * so that a head arriving in pieces is not rescanned from the start. */
size_t gw_http_head_end(const char *buf, size_t len, size_t *scanned);

/* Case-insensitive comparison of a field name with a lower-case literal. */
int gw_http_name_is(const char *name, size_t len, const char *lower);

/* How many fields are named @p lower. */
size_t gw_http_count(const gw_head *head, const char *lower);

/* The first field named @p lower, or NULL. */
const gw_field *gw_http_find(const gw_head *head, const char *lower);

/* How a body is delimited. */
typedef enum gw_framing {
  GW_BODY_NONE,    /* no body */
  GW_BODY_LENGTH,  /* Content-Length bytes */
  GW_BODY_CHUNKED, /* chunked transfer coding */
  GW_BODY_CLOSE    /* until the connection closes (responses only) */
} gw_framing;

/* The framing of a message with @p head. @p is_request: requests have no
 * close-delimited bodies. Returns 0 and sets *framing / *length, or -1 for
 * a conflicting or invalid Content-Length / Transfer-Encoding. */
int gw_http_framing(const gw_head *head, int is_request, gw_framing *framing, uint64_t *length);

/* Whether a Connection field of @p head lists @p token (case-insensitive). */
int gw_http_connection_has(const gw_head *head, const char *token, size_t len);

/* Whether the head asks to keep the connection open afterwards. */
int gw_http_keep_alive(const gw_head *head);

/* Receives decoded body bytes; returns 0 to go on, non-zero to stop. */
typedef int (*gw_sink_fn)(void *arg, const char *data, size_t len);

/* Incremental decoder of the chunked transfer coding. Zero-initialise. */
typedef struct gw_chunked {
  int state;
  uint64_t remaining;
  size_t line_bytes; /* bytes of the current size or trailer line */
} gw_chunked;

/* Decodes from @p data, passing payload runs to @p sink. Returns the bytes
 * consumed (all of @p len unless the end was reached or the sink stopped),
 * sets *done at the last chunk's end, or returns -1 for a malformed coding
 * and -2 when the sink stopped. */
ssize_t gw_chunked_decode(gw_chunked *c, const char *data, size_t len, gw_sink_fn sink, void *arg,
                          int *done);

#endif /* GW_HTTP_H */
