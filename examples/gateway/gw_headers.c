/*
 * Header plumbing between the wire and the exchange (see gw_headers.h).
 */
#include "gw_headers.h"

#include <string.h>

/* Hop-by-hop fields (RFC 9110 section 7.6.1, and any Proxy-*), plus Expect:
 * the gateway has the whole request body before it talks to the upstream,
 * and an interim 100 Continue would only confuse the exchange. */
static int is_hop_by_hop(const char *name, size_t len) {
  static const char *const fields[] = {"connection",        "keep-alive", "te",    "trailer",
                                       "transfer-encoding", "upgrade",    "expect"};
  if (len >= 6 && gw_http_name_is(name, 6, "proxy-"))
    return 1;
  for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++)
    if (gw_http_name_is(name, len, fields[i]))
      return 1;
  return 0;
}

/* Connection values that only say close / keep-alive name no field: the
 * common case, checked once so that the per-field test is skipped. */
static int connection_names_fields(const gw_head *head) {
  for (size_t i = 0; i < head->field_count; i++) {
    const gw_field *f = &head->fields[i];
    if (gw_http_name_is(f->name, f->name_len, "connection") &&
        !gw_http_name_is(f->value, f->value_len, "close") &&
        !gw_http_name_is(f->value, f->value_len, "keep-alive"))
      return 1;
  }
  return 0;
}

int gw_headers_to_exchange(const gw_head *head, pe_exchange *ex, pe_dir dir) {
  int check_connection = connection_names_fields(head);
  for (size_t i = 0; i < head->field_count; i++) {
    const gw_field *f = &head->fields[i];
    if (is_hop_by_hop(f->name, f->name_len) ||
        (check_connection && gw_http_connection_has(head, f->name, f->name_len)))
      continue;
    int rc = pe_exchange_header_add(ex, dir, pe_bytes(f->name, f->name_len),
                                    pe_bytes(f->value, f->value_len));
    if (rc < 0)
      return rc;
  }
  return PE_OK;
}

int gw_headers_write(const pe_exchange *ex, pe_dir dir, gw_buf *out, int keep_length) {
  pe_slice name, value;
  for (size_t i = 0; pe_exchange_header_at(ex, dir, i, &name, &value) == PE_OK; i++) {
    if (is_hop_by_hop(name.ptr, name.len) ||
        (!keep_length && gw_http_name_is(name.ptr, name.len, "content-length")))
      continue;
    if (gw_buf_reserve(out, name.len + value.len + 4) < 0)
      return -1;
    gw_buf_append(out, name.ptr, name.len);
    gw_buf_append(out, ": ", 2);
    gw_buf_append(out, value.ptr, value.len);
    gw_buf_append(out, "\r\n", 2);
  }
  return 0;
}

int gw_headers_has(const pe_exchange *ex, pe_dir dir, const char *lower) {
  pe_slice name, value;
  for (size_t i = 0; pe_exchange_header_at(ex, dir, i, &name, &value) == PE_OK; i++)
    if (gw_http_name_is(name.ptr, name.len, lower))
      return 1;
  return 0;
}
