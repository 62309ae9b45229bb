/*
 * Between nginx's structures and the exchange: request line and headers in,
 * the policies' edits back out; the response status and headers both ways;
 * bodies from nginx buffers (memory or file) into the exchange and out.
 */
#include "ngx_http_policyexec.h"

static ngx_int_t ngx_http_pe_prefix_is(ngx_str_t *name, const char *lower, size_t len) {
  /* Header names are tokens (nginx's parser and the library both check):
   * OR-ing in 0x20 lower-cases their letters and maps no other token byte
   * onto a letter or '-', so this is an exact case-insensitive compare
   * with a lower-case literal, at a tenth of ngx_strncasecmp's cost. */
  for (size_t i = 0; i < len; i++)
    if ((name->data[i] | 0x20) != (u_char)lower[i])
      return 0;
  return 1;
}

static ngx_int_t ngx_http_pe_is(ngx_str_t *name, const char *lower) {
  return ngx_http_pe_prefix_is(name, lower, name->len);
}

/* Hop-by-hop fields (RFC 9110 section 7.6.1) and Expect, as the gateway:
 * they describe a connection, not the message, and nginx manages them.
 * Every field of both heads passes here, twice when a head is rebuilt:
 * the length decides first (one compare for most fields, none for the
 * rest), which callgrind showed to matter. */
static ngx_int_t ngx_http_pe_hop_by_hop(ngx_str_t *name) {
  if (name->len >= 6 && ngx_http_pe_prefix_is(name, "proxy-", 6))
    return 1;
  switch (name->len) {
  case 2:
    return ngx_http_pe_is(name, "te");
  case 6:
    return ngx_http_pe_is(name, "expect");
  case 7:
    return ngx_http_pe_is(name, "trailer") || ngx_http_pe_is(name, "upgrade");
  case 10:
    return ngx_http_pe_is(name, "connection") || ngx_http_pe_is(name, "keep-alive");
  case 14:
    return ngx_http_pe_is(name, "content-length");
  case 17:
    return ngx_http_pe_is(name, "transfer-encoding");
  default:
    return 0;
  }
}

static ngx_int_t ngx_http_pe_status_of(int rc) {
  if (rc == PE_ERR_TOO_MANY_HEADERS || rc == PE_ERR_HEADERS_TOO_LARGE)
    return NGX_HTTP_REQUEST_HEADER_TOO_LARGE;
  return rc == PE_ERR_NOMEM ? NGX_HTTP_INTERNAL_SERVER_ERROR : NGX_HTTP_BAD_REQUEST;
}

static int ngx_http_pe_add_list(ngx_list_t *list, pe_exchange *ex, pe_dir dir) {
  for (ngx_list_part_t *part = &list->part; part; part = part->next) {
    ngx_table_elt_t *h = part->elts;
    for (ngx_uint_t i = 0; i < part->nelts; i++) {
      if (h[i].hash == 0 || ngx_http_pe_hop_by_hop(&h[i].key))
        continue;
      int rc = pe_exchange_header_add(ex, dir, pe_bytes(h[i].key.data, h[i].key.len),
                                      pe_bytes(h[i].value.data, h[i].value.len));
      if (rc < 0)
        return rc;
    }
  }
  return PE_OK;
}

/* The chain sees r->uri, the URI nginx normalised and matched locations on
 * (decoded, dot segments and repeated slashes resolved), escaped again so it
 * is a valid request target, then the query string as the client sent it. */
ngx_int_t ngx_http_pe_fill_request(ngx_http_request_t *r, pe_exchange *ex) {
  size_t escape = 2 * ngx_escape_uri(NULL, r->uri.data, r->uri.len, NGX_ESCAPE_URI);
  size_t len = r->uri.len + escape + (r->args.len ? 1 + r->args.len : 0);
  u_char *path = ngx_pnalloc(r->pool, len ? len : 1), *p;
  if (path == NULL)
    return NGX_HTTP_INTERNAL_SERVER_ERROR;
  if (escape)
    p = (u_char *)ngx_escape_uri(path, r->uri.data, r->uri.len, NGX_ESCAPE_URI);
  else
    p = ngx_cpymem(path, r->uri.data, r->uri.len);
  if (r->args.len) {
    *p++ = '?';
    p = ngx_cpymem(p, r->args.data, r->args.len);
  }
  int rc = pe_exchange_set_method(ex, pe_bytes(r->method_name.data, r->method_name.len));
  if (rc == PE_OK)
    rc = pe_exchange_set_path(ex, pe_bytes(path, (size_t)(p - path)));
  if (rc == PE_OK && r->headers_in.server.len)
    rc = pe_exchange_set_authority(ex,
                                   pe_bytes(r->headers_in.server.data, r->headers_in.server.len));
  if (rc == PE_OK)
    rc = ngx_http_pe_add_list(&r->headers_in.headers, ex, PE_REQUEST);
  return rc == PE_OK ? NGX_OK : ngx_http_pe_status_of(rc);
}

static ngx_int_t ngx_http_pe_apply_path(ngx_http_request_t *r, pe_slice path);

static ngx_int_t ngx_http_pe_copy(ngx_pool_t *pool, ngx_str_t *dst, pe_slice src) {
  dst->len = src.len;
  dst->data = ngx_pnalloc(pool, src.len ? src.len : 1);
  if (dst->data == NULL)
    return NGX_ERROR;
  ngx_memcpy(dst->data, src.ptr, src.len);
  return NGX_OK;
}

/* Walks the fields of a list as ngx_http_pe_add_list filled the exchange
 * from it, so a rebuilt list can take the fields that came back unchanged
 * as they were (no copy, no lower-casing, no hashing: most of a rebuild's
 * cost, callgrind showed). */
typedef struct {
  ngx_list_part_t *part;
  ngx_uint_t i;
} ngx_http_pe_cursor_t;

static ngx_table_elt_t *ngx_http_pe_cursor_peek(ngx_http_pe_cursor_t *c) {
  for (; c->part; c->part = c->part->next, c->i = 0) {
    ngx_table_elt_t *h = c->part->elts;
    for (; c->i < c->part->nelts; c->i++)
      if (h[c->i].hash != 0 && !ngx_http_pe_hop_by_hop(&h[c->i].key))
        return &h[c->i];
  }
  return NULL;
}

static ngx_int_t ngx_http_pe_same(ngx_str_t *s, pe_slice b) {
  return s->len == b.len && (b.len == 0 || ngx_memcmp(s->data, b.ptr, b.len) == 0);
}

/* Replaces @p list with a fresh list of the exchange's headers of side
 * @p dir, skipping the fields nginx writes itself. On entry @p list is the
 * list the exchange was filled from: a field that comes back unchanged, in
 * its place, is taken from it. */
static ngx_int_t ngx_http_pe_make_list(ngx_http_request_t *r, pe_exchange *ex, pe_dir dir,
                                       ngx_list_t *list, ngx_str_t *content_type) {
  size_t n = pe_exchange_header_count(ex, dir);
  ngx_list_t old = *list;
  ngx_http_pe_cursor_t cursor = {&old.part, 0};
  pe_slice name, value;
  if (ngx_list_init(list, r->pool, n ? n : 1, sizeof(ngx_table_elt_t)) != NGX_OK)
    return NGX_ERROR;
  for (size_t i = 0; pe_exchange_header_at(ex, dir, i, &name, &value) == PE_OK; i++) {
    ngx_str_t key = {name.len, (u_char *)name.ptr};
    if (ngx_http_pe_hop_by_hop(&key))
      continue;
    if (content_type && name.len == 12 && ngx_http_pe_is(&key, "content-type")) {
      if (ngx_http_pe_same(&r->headers_out.content_type, value))
        *content_type = r->headers_out.content_type;
      else if (ngx_http_pe_copy(r->pool, content_type, value) != NGX_OK)
        return NGX_ERROR;
      continue;
    }
    ngx_table_elt_t *h = ngx_list_push(list), *o = ngx_http_pe_cursor_peek(&cursor);
    if (h == NULL)
      return NGX_ERROR;
    if (o && ngx_http_pe_same(&o->key, name)) {
      cursor.i++; /* this field, kept or with a new value */
      if (o->lowcase_key && ngx_http_pe_same(&o->value, value)) {
        *h = *o;
        continue;
      }
    }
    if (ngx_http_pe_copy(r->pool, &h->key, name) != NGX_OK ||
        ngx_http_pe_copy(r->pool, &h->value, value) != NGX_OK)
      return NGX_ERROR;
    h->lowcase_key = ngx_pnalloc(r->pool, name.len ? name.len : 1);
    if (h->lowcase_key == NULL)
      return NGX_ERROR;
    h->hash = ngx_hash_strlow(h->lowcase_key, h->key.data, h->key.len);
    if (h->hash == 0)
      h->hash = 1; /* 0 marks a deleted field */
  }
  return NGX_OK;
}

/* Only the parts the request phases changed (pe_exchange_changes()) are
 * written back: an untouched request costs nothing here. */
ngx_int_t ngx_http_pe_apply_request(ngx_http_request_t *r, pe_exchange *ex) {
  unsigned changes = pe_exchange_changes(ex);
  pe_slice method = pe_exchange_method(ex);
  if ((changes & PE_CHANGE_METHOD) &&
      (method.len != r->method_name.len ||
       ngx_memcmp(method.ptr, r->method_name.data, method.len) != 0)) {
    if (ngx_http_pe_copy(r->pool, &r->method_name, method) != NGX_OK)
      return NGX_ERROR;
  }
  if ((changes & PE_CHANGE_PATH) && ngx_http_pe_apply_path(r, pe_exchange_path(ex)) != NGX_OK)
    return NGX_ERROR;
  if ((changes & PE_CHANGE_REQUEST_HEADERS) &&
      ngx_http_pe_make_list(r, ex, PE_REQUEST, &r->headers_in.headers, NULL) != NGX_OK)
    return NGX_ERROR;
  return NGX_OK;
}

static ngx_int_t ngx_http_pe_apply_path(ngx_http_request_t *r, pe_slice path) {
  /* A changed target changes what the upstream receives (proxy_pass then
   * sends r->uri and r->args, not the client's original URI); location
   * matching is not run again. */
  const char *q = memchr(path.ptr, '?', path.len);
  size_t plen = q ? (size_t)(q - path.ptr) : path.len;
  size_t escape = 2 * ngx_escape_uri(NULL, r->uri.data, r->uri.len, NGX_ESCAPE_URI);
  ngx_int_t same_args =
      q ? (r->args.len == path.len - plen - 1 && ngx_memcmp(r->args.data, q + 1, r->args.len) == 0)
        : r->args.len == 0;
  ngx_int_t same_uri =
      escape == 0 && plen == r->uri.len && ngx_memcmp(r->uri.data, path.ptr, plen) == 0;
  if (!same_uri && escape) { /* compare in escaped form */
    u_char *tmp = ngx_pnalloc(r->pool, r->uri.len + escape);
    if (tmp == NULL)
      return NGX_ERROR;
    ngx_escape_uri(tmp, r->uri.data, r->uri.len, NGX_ESCAPE_URI);
    same_uri = plen == r->uri.len + escape && ngx_memcmp(tmp, path.ptr, plen) == 0;
  }
  if (!same_uri || !same_args) {
    u_char *dst = ngx_pnalloc(r->pool, plen ? plen : 1), *src = (u_char *)path.ptr;
    if (dst == NULL)
      return NGX_ERROR;
    r->uri.data = dst;
    ngx_unescape_uri(&dst, &src, plen, 0);
    r->uri.len = (size_t)(dst - r->uri.data);
    if (q) {
      if (ngx_http_pe_copy(r->pool, &r->args, pe_bytes(q + 1, path.len - plen - 1)) != NGX_OK)
        return NGX_ERROR;
    } else {
      ngx_str_null(&r->args);
    }
    r->valid_unparsed_uri = 0;
    r->quoted_uri = 1; /* proxy_pass escapes r->uri again */
  }
  return NGX_OK;
}

ngx_int_t ngx_http_pe_fill_response(ngx_http_request_t *r, pe_exchange *ex) {
  ngx_http_headers_out_t *h = &r->headers_out;
  int rc = pe_exchange_set_status(ex, h->status >= 100 && h->status <= 999 ? (int)h->status : 502);
  if (rc == PE_OK && h->content_type.len)
    rc = pe_exchange_header_set(ex, PE_RESPONSE, PE_LIT("content-type"),
                                pe_bytes(h->content_type.data, h->content_type.len));
  if (rc == PE_OK)
    rc = ngx_http_pe_add_list(&h->headers, ex, PE_RESPONSE);
  return rc == PE_OK ? NGX_OK : NGX_ERROR;
}

/* Replaces the response head with the exchange's. @p length is the body's
 * length when the body is the exchange's, -1 when it passes unchanged.
 * When no policy changed the status or the response headers (and the
 * exchange is not an answer of its own), nginx's head stays as it is: only
 * the length is set. */
ngx_int_t ngx_http_pe_apply_response(ngx_http_request_t *r, pe_exchange *ex, off_t length) {
  ngx_http_headers_out_t *h = &r->headers_out;
  ngx_str_t content_type = ngx_null_string;
  off_t old_length = h->content_length_n;
  if (pe_exchange_verdict(ex) == PE_VERDICT_CONTINUE &&
      !(pe_exchange_changes(ex) & (PE_CHANGE_STATUS | PE_CHANGE_RESPONSE_HEADERS))) {
    if (length >= 0 && length != old_length) {
      ngx_http_clear_content_length(r); /* the upstream's field no longer holds */
      h->content_length_n = length;
    }
    if (length >= 0)
      r->allow_ranges = 0;
    return NGX_OK;
  }
  if (ngx_http_pe_make_list(r, ex, PE_RESPONSE, &h->headers, &content_type) != NGX_OK)
    return NGX_ERROR;
  h->status = (ngx_uint_t)pe_exchange_status(ex);
  ngx_str_null(&h->status_line);
  /* The old list is gone: so are the fields nginx keeps pointers to. */
  h->server = NULL;
  h->date = NULL;
  h->content_length = NULL;
  h->content_encoding = NULL;
  h->location = NULL;
  h->refresh = NULL;
  h->last_modified = NULL;
  h->content_range = NULL;
  h->accept_ranges = NULL;
  h->www_authenticate = NULL;
  h->expires = NULL;
  h->etag = NULL;
  h->last_modified_time = -1;
  h->content_type = content_type;
  h->content_type_len = content_type.len;
  h->content_type_lowcase = NULL;
  h->content_type_hash = 0;
  ngx_str_null(&h->charset);
  /* Point nginx at the fields its later filters read. */
  for (ngx_list_part_t *part = &h->headers.part; part; part = part->next) {
    ngx_table_elt_t *e = part->elts;
    for (ngx_uint_t i = 0; i < part->nelts; i++) {
      if (e[i].key.len == 8 && ngx_strncmp(e[i].lowcase_key, "location", 8) == 0)
        h->location = &e[i];
      else if (e[i].key.len == 16 && ngx_strncmp(e[i].lowcase_key, "content-encoding", 16) == 0)
        h->content_encoding = &e[i];
      else if (e[i].key.len == 4 && ngx_strncmp(e[i].lowcase_key, "etag", 4) == 0)
        h->etag = &e[i];
      /* so that nginx does not add its own beside them */
      else if (e[i].key.len == 6 && ngx_strncmp(e[i].lowcase_key, "server", 6) == 0)
        h->server = &e[i];
      else if (e[i].key.len == 4 && ngx_strncmp(e[i].lowcase_key, "date", 4) == 0)
        h->date = &e[i];
    }
  }
  h->content_length_n = length >= 0 ? length : old_length;
  if (length >= 0) /* a body we rewrote: no byte ranges of the old one */
    r->allow_ranges = 0;
  return NGX_OK;
}

ngx_chain_t *ngx_http_pe_body_chain(ngx_http_request_t *r, pe_slice body) {
  ngx_chain_t *cl = ngx_alloc_chain_link(r->pool);
  ngx_buf_t *b = ngx_calloc_buf(r->pool);
  if (cl == NULL || b == NULL)
    return NULL;
  /* The exchange outlives the output: it goes back in the request pool's
   * cleanup, after the last byte is sent. */
  if (body.len) {
    b->pos = (u_char *)body.ptr;
    b->last = b->pos + body.len;
    b->memory = 1;
  }
  b->last_buf = 1;
  b->last_in_chain = 1;
  cl->buf = b;
  cl->next = NULL;
  return cl;
}

/* Appends the bytes of @p b (in memory or in a file, as a temp file of a
 * large request body or a static file) to the body of side @p dir.
 * Returns PE_OK or a PE_ERR_* code (PE_ERR_IO for a failed read). */
int ngx_http_pe_append_buf(ngx_http_request_t *r, pe_exchange *ex, pe_dir dir, ngx_buf_t *b) {
  if (ngx_buf_in_memory(b))
    return b->last > b->pos
               ? pe_exchange_body_append(ex, dir, pe_bytes(b->pos, (size_t)(b->last - b->pos)))
               : PE_OK;
  if (!b->in_file || b->file == NULL)
    return PE_OK;
  u_char chunk[65536];
  for (off_t at = b->file_pos; at < b->file_last;) {
    size_t want = (size_t)ngx_min((off_t)sizeof chunk, b->file_last - at);
    ssize_t n = ngx_read_file(b->file, chunk, want, at);
    if (n <= 0) {
      ngx_log_error(NGX_LOG_ERR, r->connection->log, 0, "policyexec: reading \"%V\" failed",
                    &b->file->name);
      return PE_ERR_IO;
    }
    int rc = pe_exchange_body_append(ex, dir, pe_bytes(chunk, (size_t)n));
    if (rc < 0)
      return rc;
    at += n;
  }
  return PE_OK;
}
