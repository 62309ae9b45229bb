/*
 * Moving header fields between the wire and the exchange, minus the
 * hop-by-hop fields that describe one connection rather than the message.
 */
#ifndef GW_HEADERS_H
#define GW_HEADERS_H

#include "gw_buf.h"
#include "gw_http.h"

#include <policyexec/policyexec.h>

/* Copies the end-to-end fields of @p head into side @p dir of @p ex.
 * Returns PE_OK or the exchange's error (limits, invalid name/value). */
int gw_headers_to_exchange(const gw_head *head, pe_exchange *ex, pe_dir dir);

/* Appends "name: value\r\n" for each field of side @p dir of @p ex,
 * leaving out hop-by-hop fields and, unless @p keep_length, Content-Length
 * (the writer states the real length). Returns 0 or -1 (out of memory). */
int gw_headers_write(const pe_exchange *ex, pe_dir dir, gw_buf *out, int keep_length);

/* Whether side @p dir of @p ex has a field @p lower. */
int gw_headers_has(const pe_exchange *ex, pe_dir dir, const char *lower);

#endif /* GW_HEADERS_H */
