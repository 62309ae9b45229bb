/* Between an exchange and the protocol: what a phase sends (HttpData, only
 * what the phase's steps read), and how a worker's StepResults are applied.
 * Every edit goes through the public pe_exchange_* setters, so the worker
 * is held to the same rules as a native policy (tokens, no CR/LF/NUL,
 * limits): a buggy or hostile worker cannot inject a header. */
#include "pe_py.h"

#include <stdio.h>

typedef Policyexec__V1__StepResult step_result;

static ProtobufCBinaryData bin(const char *p, size_t len) {
  /* The encoder only reads: the cast drops const for protobuf-c's type. */
  ProtobufCBinaryData b = {len, (uint8_t *)(uintptr_t)p};
  return b;
}

static ProtobufCBinaryData bin_slice(pe_slice s) {
  return bin(s.ptr, s.len);
}

/* Grows an encoding scratch array of (struct, pointer) pairs to `need`. */
static int grow_pairs(const pe_mem *mem, void **items, void ***ptrs, size_t *cap, size_t need,
                      size_t item_size) {
  if (need <= *cap)
    return PE_OK;
  size_t cap2 = *cap ? *cap : 16;
  while (cap2 < need)
    cap2 *= 2;
  void *it = pe__realloc(mem, *items, cap2 * item_size);
  if (!it)
    return PE_ERR_NOMEM;
  *items = it;
  void **p = pe__realloc(mem, *ptrs, cap2 * sizeof *p);
  if (!p)
    return PE_ERR_NOMEM;
  *ptrs = p;
  *cap = cap2;
  return PE_OK;
}

static int reserve_scratch(pe__py_conn *c, size_t headers, size_t meta, size_t steps) {
  int rc = grow_pairs(c->mem, (void **)&c->hdrs, (void ***)&c->hdr_ptrs, &c->hdr_cap, headers,
                      sizeof *c->hdrs);
  if (rc == PE_OK)
    rc = grow_pairs(c->mem, (void **)&c->meta, (void ***)&c->meta_ptrs, &c->meta_cap, meta,
                    sizeof *c->meta);
  if (rc == PE_OK && steps > c->step_cap) {
    uint64_t *ids = pe__realloc(c->mem, c->ids, steps * sizeof *ids);
    if (!ids)
      return PE_ERR_NOMEM;
    c->ids = ids;
    protobuf_c_boolean *fo = pe__realloc(c->mem, c->fail_open, steps * sizeof *fo);
    if (!fo)
      return PE_ERR_NOMEM;
    c->fail_open = fo;
    uint32_t *to = pe__realloc(c->mem, c->timeouts, steps * sizeof *to);
    if (!to)
      return PE_ERR_NOMEM;
    c->timeouts = to;
    Policyexec__V1__Phase *ph = pe__realloc(c->mem, c->step_phases, steps * sizeof *ph);
    if (!ph)
      return PE_ERR_NOMEM;
    c->step_phases = ph;
    c->step_cap = steps;
  }
  return rc;
}

/* Points scratch entries [first, first+f->count) at the fields' bytes. */
static void fill_headers(pe__py_conn *c, size_t first, const pe__fields *f) {
  for (size_t i = 0; i < f->count; i++) {
    Policyexec__V1__Header *h = &c->hdrs[first + i];
    policyexec__v1__header__init(h);
    h->name = bin_slice(pe__fields_name(f, i));
    h->value = bin_slice(pe__fields_value(f, i));
    c->hdr_ptrs[first + i] = h;
  }
}

/* A body inline, or (large, on a transport that passes fds) in a memfd. */
static int put_body(pe__py_conn *c, pe_slice body, ProtobufCBinaryData *inline_out,
                    Policyexec__V1__ShmRef *ref, Policyexec__V1__ShmRef **ref_out) {
  if (!pe__py_shm_wanted(c, body.len)) {
    *inline_out = bin_slice(body);
    return PE_OK;
  }
  int rc = pe__py_shm_put(c, body.ptr, body.len, ref);
  if (rc == PE_OK)
    *ref_out = ref;
  return rc;
}

int pe__py_encode_run(pe__py_conn *c, const pe_exchange *ex, const pe__batch *b, uint64_t *id_out) {
  size_t n = b->n;
  pe_phase first = b->phase[0], last = b->phase[n - 1];
  bool response_phase = last >= PE_PHASE_RESPONSE_HEADERS;
  const pe__fields *req_h = &ex->headers[PE_REQUEST];
  const pe__fields *resp_h = &ex->headers[PE_RESPONSE];
  size_t nreq = req_h->count, nresp = response_phase ? resp_h->count : 0;
  int rc = reserve_scratch(c, nreq + nresp, ex->meta.count, n);
  if (rc != PE_OK)
    return rc;

  Policyexec__V1__HttpData data = POLICYEXEC__V1__HTTP_DATA__INIT;
  data.method = bin(ex->method.data, ex->method.len);
  data.path = bin(ex->path.data, ex->path.len);
  data.authority = bin(ex->authority.data, ex->authority.len);
  data.status = ex->status;
  fill_headers(c, 0, req_h);
  data.n_request_headers = nreq;
  data.request_headers = c->hdr_ptrs;
  /* Request phases cannot read a response that does not exist yet. */
  if (response_phase) {
    fill_headers(c, nreq, resp_h);
    data.n_response_headers = nresp;
    data.response_headers = c->hdr_ptrs + nreq;
  }
  /* A body travels only with the body phase of its side; a streamed
   * chunk (pe_py_stream.c) in place of its body. */
  Policyexec__V1__ShmRef shm[2];
  pe_slice bodies[2] = {pe__buf_slice(&ex->body[PE_REQUEST]),
                        pe__buf_slice(&ex->body[PE_RESPONSE])};
  if (c->stream)
    bodies[first == PE_PHASE_REQUEST_BODY ? PE_REQUEST : PE_RESPONSE] = c->stream_data;
  if (first <= PE_PHASE_REQUEST_BODY && last >= PE_PHASE_REQUEST_BODY) {
    data.has_request_body = 1;
    rc = put_body(c, bodies[PE_REQUEST], &data.request_body, &shm[0], &data.request_body_shm);
  }
  if (rc == PE_OK && last == PE_PHASE_RESPONSE_BODY) {
    data.has_response_body = 1;
    rc = put_body(c, bodies[PE_RESPONSE], &data.response_body, &shm[1], &data.response_body_shm);
  }
  if (rc != PE_OK) {
    pe__py_shm_mark(c, SIZE_MAX); /* closes the memfds made */
    return rc;
  }
  for (size_t i = 0; i < ex->meta.count; i++) {
    Policyexec__V1__MetaEntry *m = &c->meta[i];
    policyexec__v1__meta_entry__init(m);
    m->key = bin_slice(pe__fields_name(&ex->meta, i));
    m->value = bin_slice(pe__fields_value(&ex->meta, i));
    c->meta_ptrs[i] = m;
  }
  data.n_metadata = ex->meta.count;
  data.metadata = c->meta_ptrs;

  bool progress = false;
  for (size_t i = 0; i < n; i++) {
    c->ids[i] = ((const pe__py_instance *)b->step[i]->instance)->id;
    c->fail_open[i] = b->step[i]->mode == PE_FAIL_OPEN;
    c->timeouts[i] = b->step[i]->timeout_ms;
    c->step_phases[i] = (Policyexec__V1__Phase)b->phase[i];
    /* Worth a progress report only before a fail-open step that follows
     * others: if its worker dies, the steps before keep their outcome. */
    progress = progress || (i > 0 && c->fail_open[i]);
  }
  Policyexec__V1__RunPhase run = POLICYEXEC__V1__RUN_PHASE__INIT;
  run.phase = (Policyexec__V1__Phase)first;
  if (first != last) { /* one phase needs no per-step list */
    run.n_step_phases = n;
    run.step_phases = c->step_phases;
  }
  run.n_instance_ids = n;
  run.instance_ids = c->ids;
  run.n_fail_open = n;
  run.fail_open = c->fail_open;
  run.n_timeout_ms = n;
  run.timeout_ms = c->timeouts;
  /* A remote call has exactly one reply: no partial ones. */
  run.report_progress = progress && !c->specs;
  run.data = &data;
  run.stream = c->stream;
  if (c->specs) {
    run.n_instances = n;
    run.instances = c->specs;
  }
  pe__py_request req = POLICYEXEC__V1__REQUEST__INIT;
  req.body_case = POLICYEXEC__V1__REQUEST__BODY_RUN;
  req.run = &run;
  rc = pe__py_conn_queue(c, &req);
  *id_out = req.id;
  return rc;
}

static bool is_failure(Policyexec__V1__StepResult__Outcome o) {
  return o == POLICYEXEC__V1__STEP_RESULT__OUTCOME__OUTCOME_FAILED ||
         o == POLICYEXEC__V1__STEP_RESULT__OUTCOME__OUTCOME_TIMEOUT;
}

bool pe__py_reply_partial(const pe__py_response *resp) {
  return resp->body_case == POLICYEXEC__V1__RESPONSE__BODY_RUN && resp->run->partial;
}

int pe__py_check_reply(const pe__py_response *resp, const pe__batch *b, size_t first, char *why) {
  size_t n = b->n - first;
  if (resp->body_case == POLICYEXEC__V1__RESPONSE__BODY_ERROR)
    return PE_OK; /* a refused request, not a broken worker */
  if (resp->body_case != POLICYEXEC__V1__RESPONSE__BODY_RUN) {
    pe__errmsg_set(why, "worker answered RunPhase with message kind %d", (int)resp->body_case);
    return PE_ERR_WORKER;
  }
  size_t k = resp->run->n_steps;
  if (k > n || (resp->run->partial && k >= n)) {
    pe__errmsg_set(why, "worker returned %zu %sresults for %zu steps", k,
                   resp->run->partial ? "partial " : "", n);
    return PE_ERR_WORKER;
  }
  for (size_t i = 0; i < k; i++) {
    Policyexec__V1__StepResult__Outcome o = resp->run->steps[i]->outcome;
    if (o != POLICYEXEC__V1__STEP_RESULT__OUTCOME__OUTCOME_OK && !is_failure(o)) {
      pe__errmsg_set(why, "worker returned unknown outcome %d", (int)o);
      return PE_ERR_WORKER;
    }
    /* Only the last result of a reply may stop the batch. */
    const step_result *r = resp->run->steps[i];
    bool stops = r->respond || (is_failure(o) && b->step[first + i]->mode == PE_FAIL_CLOSED);
    if (stops && (i + 1 < k || resp->run->partial)) {
      pe__errmsg_set(why, "worker went on after step %zu stopped the batch", first + i);
      return PE_ERR_WORKER;
    }
  }
  if (k < n && !resp->run->partial) {
    /* Only an answer or a fail-closed failure may cut a batch short. */
    const step_result *last = k ? resp->run->steps[k - 1] : NULL;
    bool stops = last && (last->respond || (is_failure(last->outcome) &&
                                            b->step[first + k - 1]->mode == PE_FAIL_CLOSED));
    if (!stops) {
      pe__errmsg_set(why, "worker returned %zu results for %zu steps without stopping", k, n);
      return PE_ERR_WORKER;
    }
  }
  return PE_OK;
}

static int check_side(pe_exchange *ex, int side) {
  if (side == POLICYEXEC__V1__SIDE__SIDE_REQUEST || side == POLICYEXEC__V1__SIDE__SIDE_RESPONSE)
    return PE_OK;
  return pe__exchange_fail(ex, PE_ERR_WORKER, "unknown side %d", side);
}

static pe_slice slice_of(ProtobufCBinaryData b) {
  return pe_bytes(b.data, b.len);
}

static int apply_header_edit(pe_exchange *ex, const Policyexec__V1__HeaderEdit *h) {
  int rc = check_side(ex, h->side);
  if (rc != PE_OK)
    return rc;
  pe_dir dir = (pe_dir)h->side;
  pe_slice name = slice_of(h->name);
  if (h->n_values == 0) {
    if (!pe__is_token(name))
      return pe__exchange_fail(ex, PE_ERR_HEADER_NAME, "header name to remove is not a token");
    rc = pe_exchange_header_remove(ex, dir, name);
    return rc < 0 ? rc : PE_OK;
  }
  rc = pe_exchange_header_set(ex, dir, name, slice_of(h->values[0]));
  for (size_t v = 1; v < h->n_values && rc == PE_OK; v++)
    rc = pe_exchange_header_add(ex, dir, name, slice_of(h->values[v]));
  return rc;
}

/* A step edits a body only in that body's phase: a batch spanning phases
 * carries the body for its body steps, not for the others. */
static int apply_body_edit(pe_exchange *ex, pe_phase phase, const Policyexec__V1__BodyEdit *b) {
  int rc = check_side(ex, b->side);
  if (rc != PE_OK)
    return rc;
  pe_dir dir = (pe_dir)b->side;
  if (phase != (dir == PE_REQUEST ? PE_PHASE_REQUEST_BODY : PE_PHASE_RESPONSE_BODY))
    return pe__exchange_fail(ex, PE_ERR_WORKER, "a %s body edit in the %s phase",
                             dir == PE_REQUEST ? "request" : "response", pe_phase_name(phase));
  if (b->replace)
    return pe_exchange_body_set(ex, dir, slice_of(b->replacement));
  if (b->prefix.len && (rc = pe_exchange_body_prepend(ex, dir, slice_of(b->prefix))) != PE_OK)
    return rc;
  if (b->suffix.len)
    rc = pe_exchange_body_append(ex, dir, slice_of(b->suffix));
  return rc;
}

static int apply_respond(pe_exchange *ex, const Policyexec__V1__ImmediateResponse *r) {
  int rc = pe_exchange_respond(ex, r->status, slice_of(r->body));
  for (size_t i = 0; i < r->n_headers && rc == PE_OK; i++)
    rc = pe_exchange_header_add(ex, PE_RESPONSE, slice_of(r->headers[i]->name),
                                slice_of(r->headers[i]->value));
  return rc;
}

/* Applies one step's net edits; returns the first refusal. */
int pe__py_apply_edits(pe_exchange *ex, pe_phase phase, const step_result *r) {
  int rc = PE_OK;
  for (size_t i = 0; i < r->n_headers && rc == PE_OK; i++)
    rc = apply_header_edit(ex, r->headers[i]);
  for (size_t i = 0; i < r->n_bodies && rc == PE_OK; i++)
    rc = apply_body_edit(ex, phase, r->bodies[i]);
  for (size_t i = 0; i < r->n_metadata && rc == PE_OK; i++) {
    const Policyexec__V1__MetaEdit *m = r->metadata[i];
    if (m->remove) {
      int removed = pe_exchange_meta_remove(ex, slice_of(m->key));
      rc = removed < 0 ? removed : PE_OK;
    } else {
      rc = pe_exchange_meta_set(ex, slice_of(m->key), slice_of(m->value));
    }
  }
  if (rc == PE_OK && r->status)
    rc = pe_exchange_set_status(ex, r->status);
  if (rc == PE_OK && r->method.len)
    rc = pe_exchange_set_method(ex, slice_of(r->method));
  if (rc == PE_OK && r->path.len)
    rc = pe_exchange_set_path(ex, slice_of(r->path));
  if (rc == PE_OK && r->respond)
    rc = apply_respond(ex, r->respond);
  return rc;
}

static void apply_step(pe_exchange *ex, pe_phase phase, const pe__step *step,
                       const step_result *r) {
  bool open = step->mode == PE_FAIL_OPEN;
  if (open)
    pe__txn_begin(ex);
  if (r->outcome == POLICYEXEC__V1__STEP_RESULT__OUTCOME__OUTCOME_FAILED) {
    pe__step_failed(ex, step, phase, PE_ERR_POLICY, PE_STEP_FAILED,
                    r->error && r->error[0] ? r->error : "python policy failed");
    return;
  }
  if (r->outcome == POLICYEXEC__V1__STEP_RESULT__OUTCOME__OUTCOME_TIMEOUT) {
    /* The worker interrupted the step at its own timeout and lives on. */
    pe__step_failed(ex, step, phase, PE_ERR_TIMEOUT, PE_STEP_TIMEOUT,
                    r->error && r->error[0] ? r->error : "python step exceeded its timeout");
    return;
  }
  /* As for native steps: a refusal's own message is told apart from an
   * older one, which comes back when the step succeeds. */
  char kept = ex->errmsg[0];
  ex->errmsg[0] = '\0';
  ex->run.in_step = true; /* the worker's edits are a policy's edits */
  int rc = pe__py_apply_edits(ex, phase, r);
  ex->run.in_step = false;
  if (rc < 0) {
    char why[PE__ERRMSG_SIZE];
    pe__errmsg_set(why, "edit from the worker refused: %s",
                   ex->errmsg[0] ? ex->errmsg : pe_strerror(rc));
    pe__step_failed(ex, step, phase, rc, PE_STEP_FAILED, why);
    return;
  }
  if (!ex->errmsg[0])
    ex->errmsg[0] = kept;
  if (open)
    pe__txn_commit(ex);
  pe__step_report(ex, step, phase,
                  ex->verdict == PE_VERDICT_RESPOND ? PE_STEP_RESPONDED : PE_STEP_OK);
}

size_t pe__py_apply_reply(pe_exchange *ex, const pe__batch *b, size_t first,
                          const pe__py_response *resp) {
  if (resp->body_case == POLICYEXEC__V1__RESPONSE__BODY_ERROR) {
    char why[PE__ERRMSG_SIZE];
    pe__errmsg_set(why, "worker refused the batch: %s", resp->error->message);
    pe__py_fail_steps(ex, b, first, PE_ERR_WORKER, PE_STEP_FAILED, why);
    return b->n - first;
  }
  const Policyexec__V1__RunReply *run = resp->run;
  for (size_t i = 0; i < run->n_steps && ex->verdict != PE_VERDICT_RESPOND; i++)
    apply_step(ex, b->phase[first + i], b->step[first + i], run->steps[i]);
  return run->n_steps;
}

void pe__py_fail_steps(pe_exchange *ex, const pe__batch *b, size_t first, int rc,
                       pe_step_outcome outcome, const char *why) {
  for (size_t i = first; i < b->n && ex->verdict != PE_VERDICT_RESPOND; i++)
    pe__step_failed(ex, b->step[i], b->phase[i], rc, outcome, why);
}

int pe__py_collect_policies(pe_engine *e, const Policyexec__V1__HelloReply *hello,
                            pe__advertised *out, char *err) {
  const pe_mem *mem = pe__engine_mem(e);
  out->items = pe__calloc(mem, hello->n_policies ? hello->n_policies : 1, sizeof *out->items);
  if (!out->items)
    goto nomem;
  for (size_t i = 0; i < hello->n_policies; i++) {
    const Policyexec__V1__PolicyInfo *info = hello->policies[i];
    unsigned phases = info->phases & ((1u << PE_PHASE_COUNT) - 1);
    if (!info->name[0] || !info->version[0] || !phases) {
      pe__log(e, PE_LOG_WARN, "python policy '%s@%s' skipped: %s", info->name, info->version,
              phases ? "empty name or version" : "implements no phase");
      continue;
    }
    pe__policy *p = pe__calloc(mem, 1, sizeof *p);
    if (!p)
      goto nomem;
    out->items[out->count++] = p;
    p->kind = PE__KIND_EXECUTOR;
    p->phases = phases;
    /* A body phase needs its body buffered, whatever the flags say. */
    p->needs = (info->needs_request_body || (phases & PE_PHASE_BIT(PE_PHASE_REQUEST_BODY))
                    ? PE_NEEDS_REQUEST_BODY
                    : 0) |
               (info->needs_response_body || (phases & PE_PHASE_BIT(PE_PHASE_RESPONSE_BODY))
                    ? PE_NEEDS_RESPONSE_BODY
                    : 0);
    /* Bodies it takes in chunks (an older executor sends 0): streamed
     * unless it also asked for them whole (the needs flags). */
    unsigned chunked = info->chunk_phases & phases;
    p->streams = (chunked & PE_PHASE_BIT(PE_PHASE_REQUEST_BODY) ? PE_NEEDS_REQUEST_BODY : 0) |
                 (chunked & PE_PHASE_BIT(PE_PHASE_RESPONSE_BODY) ? PE_NEEDS_RESPONSE_BODY : 0);
    p->buffers = (info->needs_request_body ? PE_NEEDS_REQUEST_BODY : 0) |
                 (info->needs_response_body ? PE_NEEDS_RESPONSE_BODY : 0);
    p->name = pe__strndup(mem, info->name, strlen(info->name));
    p->version = pe__strndup(mem, info->version, strlen(info->version));
    if (!p->name || !p->version)
      goto nomem;
  }
  return PE_OK;
nomem:
  pe__errmsg_set(err, "out of memory");
  return PE_ERR_NOMEM;
}
