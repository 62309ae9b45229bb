/* pe_exchange_header_* and pe_exchange_meta_*: the same rules for every
 * caller (host, native policy, Python reply). Names and values are checked
 * before anything changes, so a refused call leaves the exchange as it was
 * and says why in pe_exchange_errmsg(). */
#include "pe_internal.h"
#include "pe_escape.h"

static const char *side(pe_dir dir) {
  return dir == PE_REQUEST ? "request" : "response";
}

static unsigned header_part(pe_dir dir) {
  return dir == PE_REQUEST ? PE__PART_REQ_HEADERS : PE__PART_RESP_HEADERS;
}

static unsigned header_change(pe_dir dir) {
  return dir == PE_REQUEST ? PE_CHANGE_REQUEST_HEADERS : PE_CHANGE_RESPONSE_HEADERS;
}

/* Policies may not touch the headers that frame the message or the hop
 * (pe__is_framing_header): the host sets those for the connection it
 * writes, and a policy changing them (say, Content-Length on a streamed
 * response) would desync it. Checked only while a policy runs, so the host
 * itself keeps full control outside a run. */
static int refuse_framing(pe_exchange *ex, pe_dir dir, pe_slice name, const char *what) {
  char shown[PE__ESCAPE_SIZE];
  return pe__exchange_fail(ex, PE_ERR_FRAMING_HEADER,
                           "a policy may not %s the %s header '%s': framing and hop-by-hop "
                           "headers belong to the proxy",
                           what, side(dir), pe__escape(shown, sizeof shown, name));
}

/* Shared tail of set and add: checks, snapshot, then the fields call. */
static int write_header(pe_exchange *ex, pe_dir dir, pe_slice name, pe_slice value, bool replace) {
  if (!ex || !pe__dir_ok(dir) || !pe__slice_ok(name) || !pe__slice_ok(value))
    return PE_ERR_INVALID_ARGUMENT;
  char shown[PE__ESCAPE_SIZE];
  if (!pe__is_token(name))
    return pe__exchange_fail(ex, PE_ERR_HEADER_NAME, "%s header name '%s' is not a valid token",
                             side(dir), pe__escape(shown, sizeof shown, name));
  if (!pe__is_field_value(value)) {
    size_t at = pe__field_value_bad_at(value);
    return pe__exchange_fail(ex, PE_ERR_HEADER_VALUE,
                             "value of %s header '%s' contains %s at byte %zu", side(dir),
                             pe__escape(shown, sizeof shown, name),
                             value.ptr[at] == '\r'   ? "CR"
                             : value.ptr[at] == '\n' ? "LF"
                             : value.ptr[at] == '\0' ? "NUL"
                                                     : "DEL",
                             at);
  }
  if (ex->run.in_step && pe__is_framing_header(name))
    return refuse_framing(ex, dir, name, "set");
  int rc = pe__txn_touch(ex, header_part(dir));
  if (rc != PE_OK)
    return pe__exchange_fail(ex, rc, "out of memory saving %s headers", side(dir));
  pe__fields *f = &ex->headers[dir];
  size_t max_count = ex->limits[PE_LIMIT_HEADER_COUNT];
  size_t max_bytes = ex->limits[PE_LIMIT_HEADER_BYTES];
  rc = replace ? pe__fields_set(f, ex->mem, name, value, max_count, max_bytes)
               : pe__fields_add(f, ex->mem, name, value, max_count, max_bytes);
  switch (rc) {
  case PE_OK:
    pe__changed(ex, header_change(dir));
    return PE_OK;
  case PE_ERR_TOO_MANY_HEADERS:
    return pe__exchange_fail(ex, rc, "%s header '%s' refused: more than %zu %s headers", side(dir),
                             pe__escape(shown, sizeof shown, name), max_count, side(dir));
  case PE_ERR_HEADERS_TOO_LARGE:
    return pe__exchange_fail(ex, rc,
                             "%s header '%s' refused: %s headers would exceed %zu bytes "
                             "(names + values)",
                             side(dir), pe__escape(shown, sizeof shown, name), side(dir),
                             max_bytes);
  default:
    return pe__exchange_fail(ex, rc, "out of memory setting %s header '%s'", side(dir),
                             pe__escape(shown, sizeof shown, name));
  }
}

int pe_exchange_header_set(pe_exchange *ex, pe_dir dir, pe_slice name, pe_slice value) {
  return write_header(ex, dir, name, value, true);
}

int pe_exchange_header_add(pe_exchange *ex, pe_dir dir, pe_slice name, pe_slice value) {
  return write_header(ex, dir, name, value, false);
}

int pe_exchange_header_remove(pe_exchange *ex, pe_dir dir, pe_slice name) {
  if (!ex || !pe__dir_ok(dir) || !pe__slice_ok(name))
    return PE_ERR_INVALID_ARGUMENT;
  pe__fields *f = &ex->headers[dir];
  if (ex->run.in_step && pe__is_framing_header(name))
    return refuse_framing(ex, dir, name, "remove");
  if (pe__fields_find(f, name, 0) < 0)
    return 0; /* nothing to change, nothing to snapshot */
  int rc = pe__txn_touch(ex, header_part(dir));
  if (rc != PE_OK)
    return pe__exchange_fail(ex, rc, "out of memory saving %s headers", side(dir));
  rc = pe__fields_remove(f, name);
  if (rc > 0)
    pe__changed(ex, header_change(dir));
  return rc;
}

size_t pe_exchange_header_count(const pe_exchange *ex, pe_dir dir) {
  return ex && pe__dir_ok(dir) ? ex->headers[dir].count : 0;
}

int pe_exchange_header_at(const pe_exchange *ex, pe_dir dir, size_t index, pe_slice *name,
                          pe_slice *value) {
  if (!ex || !pe__dir_ok(dir) || !name || !value)
    return PE_ERR_INVALID_ARGUMENT;
  const pe__fields *f = &ex->headers[dir];
  if (index >= f->count)
    return PE_ERR_NOT_FOUND;
  *name = pe__fields_name(f, index);
  *value = pe__fields_value(f, index);
  return PE_OK;
}

int pe_exchange_header_get_nth(const pe_exchange *ex, pe_dir dir, pe_slice name, size_t nth,
                               pe_slice *value) {
  if (!ex || !pe__dir_ok(dir) || !pe__slice_ok(name) || !value)
    return PE_ERR_INVALID_ARGUMENT;
  long i = pe__fields_find(&ex->headers[dir], name, nth);
  if (i < 0)
    return PE_ERR_NOT_FOUND;
  *value = pe__fields_value(&ex->headers[dir], (size_t)i);
  return PE_OK;
}

int pe_exchange_header_get(const pe_exchange *ex, pe_dir dir, pe_slice name, pe_slice *value) {
  return pe_exchange_header_get_nth(ex, dir, name, 0, value);
}

/* ---- metadata ---- */

size_t pe_exchange_meta_count(const pe_exchange *ex) {
  return ex ? ex->meta.count : 0;
}

int pe_exchange_meta_at(const pe_exchange *ex, size_t index, pe_slice *key, pe_slice *value) {
  if (!ex || !key || !value)
    return PE_ERR_INVALID_ARGUMENT;
  if (index >= ex->meta.count)
    return PE_ERR_NOT_FOUND;
  *key = pe__fields_name(&ex->meta, index);
  *value = pe__fields_value(&ex->meta, index);
  return PE_OK;
}

int pe_exchange_meta_get(const pe_exchange *ex, pe_slice key, pe_slice *value) {
  if (!ex || !pe__slice_ok(key) || !value)
    return PE_ERR_INVALID_ARGUMENT;
  long i = pe__fields_find(&ex->meta, key, 0);
  if (i < 0)
    return PE_ERR_NOT_FOUND;
  *value = pe__fields_value(&ex->meta, (size_t)i);
  return PE_OK;
}

int pe_exchange_meta_set(pe_exchange *ex, pe_slice key, pe_slice value) {
  if (!ex || !pe__slice_ok(key) || !pe__slice_ok(value))
    return PE_ERR_INVALID_ARGUMENT;
  if (key.len == 0)
    return pe__exchange_fail(ex, PE_ERR_INVALID_ARGUMENT, "metadata key must not be empty");
  char shown[PE__ESCAPE_SIZE];
  int rc = pe__txn_touch(ex, PE__PART_META);
  if (rc != PE_OK)
    return pe__exchange_fail(ex, rc, "out of memory saving metadata");
  size_t max_count = ex->limits[PE_LIMIT_META_COUNT];
  size_t max_bytes = ex->limits[PE_LIMIT_META_BYTES];
  rc = pe__fields_set(&ex->meta, ex->mem, key, value, max_count, max_bytes);
  switch (rc) {
  case PE_OK:
    pe__changed(ex, PE_CHANGE_METADATA);
    return PE_OK;
  case PE_ERR_TOO_MANY_HEADERS:
    return pe__exchange_fail(ex, rc, "metadata '%s' refused: more than %zu entries",
                             pe__escape(shown, sizeof shown, key), max_count);
  case PE_ERR_HEADERS_TOO_LARGE:
    return pe__exchange_fail(ex, rc,
                             "metadata '%s' refused: metadata would exceed %zu bytes "
                             "(keys + values)",
                             pe__escape(shown, sizeof shown, key), max_bytes);
  default:
    return pe__exchange_fail(ex, rc, "out of memory setting metadata '%s'",
                             pe__escape(shown, sizeof shown, key));
  }
}

int pe_exchange_meta_remove(pe_exchange *ex, pe_slice key) {
  if (!ex || !pe__slice_ok(key))
    return PE_ERR_INVALID_ARGUMENT;
  if (pe__fields_find(&ex->meta, key, 0) < 0)
    return 0;
  int rc = pe__txn_touch(ex, PE__PART_META);
  if (rc != PE_OK)
    return pe__exchange_fail(ex, rc, "out of memory saving metadata");
  if (pe__fields_remove(&ex->meta, key) <= 0)
    return 0;
  pe__changed(ex, PE_CHANGE_METADATA);
  return 1;
}
