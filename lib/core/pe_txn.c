/* Per-step snapshot and rollback, so that a fail-open step that fails
 * leaves no partial effects. Only the parts a step actually touches are
 * copied, on first write (pe__txn_touch), into snapshot memory that is kept
 * across steps and requests: after warm-up a snapshot allocates nothing. */
#include "pe_internal.h"

void pe__txn_begin(pe_exchange *ex) {
  ex->txn_active = true;
  ex->snap.saved = 0;
  ex->snap.status = ex->status;
  ex->snap.verdict = ex->verdict;
  ex->snap.changes = ex->changes;
}

static int save_part(pe_exchange *ex, unsigned part) {
  pe__snapshot *s = &ex->snap;
  const pe_mem *mem = ex->mem;
  int rc = PE_OK;
  switch (part) {
  case PE__PART_REQUEST_LINE:
    rc = pe__buf_set(&s->method, mem, ex->method.data, ex->method.len);
    if (rc == PE_OK)
      rc = pe__buf_set(&s->path, mem, ex->path.data, ex->path.len);
    if (rc == PE_OK)
      rc = pe__buf_set(&s->authority, mem, ex->authority.data, ex->authority.len);
    break;
  case PE__PART_REQ_HEADERS:
    rc = pe__fields_copy(&s->headers[PE_REQUEST], &ex->headers[PE_REQUEST], mem);
    break;
  case PE__PART_RESP_HEADERS:
    rc = pe__fields_copy(&s->headers[PE_RESPONSE], &ex->headers[PE_RESPONSE], mem);
    break;
  case PE__PART_REQ_BODY:
    rc =
        pe__buf_set(&s->body[PE_REQUEST], mem, ex->body[PE_REQUEST].data, ex->body[PE_REQUEST].len);
    break;
  case PE__PART_RESP_BODY:
    rc = pe__buf_set(&s->body[PE_RESPONSE], mem, ex->body[PE_RESPONSE].data,
                     ex->body[PE_RESPONSE].len);
    break;
  case PE__PART_META:
    rc = pe__fields_copy(&s->meta, &ex->meta, mem);
    break;
  default:
    return PE_ERR_INVALID_ARGUMENT;
  }
  if (rc == PE_OK)
    s->saved |= part;
  return rc;
}

int pe__txn_save(pe_exchange *ex, unsigned part) {
  if (!ex->txn_active)
    return PE_OK;
  /* Accept several parts at once, saving each one not yet saved. */
  for (unsigned bit = 1; bit <= PE__PART_META; bit <<= 1) {
    if (!(part & bit) || (ex->snap.saved & bit))
      continue;
    int rc = save_part(ex, bit);
    if (rc != PE_OK)
      return rc;
  }
  return PE_OK;
}

static void swap_buf(pe__buf *a, pe__buf *b) {
  pe__buf t = *a;
  *a = *b;
  *b = t;
}

void pe__txn_rollback(pe_exchange *ex) {
  pe__snapshot *s = &ex->snap;
  if (!ex->txn_active)
    return; /* nothing was saved: the snapshot is stale */
  /* Swapping hands the step's version to the snapshot, whose memory is then
   * reused by the next save. */
  if (s->saved & PE__PART_REQUEST_LINE) {
    swap_buf(&ex->method, &s->method);
    swap_buf(&ex->path, &s->path);
    swap_buf(&ex->authority, &s->authority);
  }
  if (s->saved & PE__PART_REQ_HEADERS)
    pe__fields_swap(&ex->headers[PE_REQUEST], &s->headers[PE_REQUEST]);
  if (s->saved & PE__PART_RESP_HEADERS)
    pe__fields_swap(&ex->headers[PE_RESPONSE], &s->headers[PE_RESPONSE]);
  if (s->saved & PE__PART_REQ_BODY)
    swap_buf(&ex->body[PE_REQUEST], &s->body[PE_REQUEST]);
  if (s->saved & PE__PART_RESP_BODY)
    swap_buf(&ex->body[PE_RESPONSE], &s->body[PE_RESPONSE]);
  if (s->saved & PE__PART_META)
    pe__fields_swap(&ex->meta, &s->meta);
  ex->status = s->status;
  ex->verdict = s->verdict;
  ex->changes = s->changes; /* the edits are undone: so are their bits */
  s->saved = 0;
  ex->txn_active = false;
}

void pe__txn_commit(pe_exchange *ex) {
  ex->snap.saved = 0;
  ex->txn_active = false;
}

void pe__snapshot_free(pe__snapshot *s, const pe_mem *mem) {
  pe__buf_free(&s->method, mem);
  pe__buf_free(&s->path, mem);
  pe__buf_free(&s->authority, mem);
  for (int dir = PE_REQUEST; dir <= PE_RESPONSE; dir++) {
    pe__fields_free(&s->headers[dir], mem);
    pe__buf_free(&s->body[dir], mem);
  }
  pe__fields_free(&s->meta, mem);
  s->saved = 0;
}
