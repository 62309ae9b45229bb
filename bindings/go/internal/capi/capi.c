#include "capi.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char native4[] =
    "[{\"name\": \"sample-native-response-header\", \"version\": \"1.0.0\"},"
    " {\"name\": \"sample-native-request-body\", \"version\": \"1.0.0\"},"
    " {\"name\": \"sample-native-response-header\", \"version\": \"1.0.0\"},"
    " {\"name\": \"sample-native-response-body\", \"version\": \"1.0.0\"}]";

int capi_engine_new(pe_engine **out, const char *plugin, const char *pyworker,
                    const char *pymodules, char *err, size_t errlen) {
  pe_engine *e = NULL;
  pe_python_options *po = NULL;
  int rc = pe_engine_new(&e, NULL);
  if (rc == PE_OK)
    rc = pe_engine_load_plugin(e, plugin);
  if (rc == PE_OK && pyworker) {
    rc = pe_python_options_new(&po);
    if (rc == PE_OK)
      rc = pe_python_options_set_workers(po, 1);
    if (rc == PE_OK)
      rc = pe_python_options_set_worker_path(po, pyworker);
    if (rc == PE_OK)
      rc = pe_python_options_add_module_path(po, pymodules);
    if (rc == PE_OK)
      rc = pe_engine_start_python(e, po);
    pe_python_options_free(po);
  }
  if (rc < 0) {
    snprintf(err, errlen, "%s: %s", pe_strerror(rc), e ? pe_engine_errmsg(e) : "");
    pe_engine_free(e);
    return rc;
  }
  *out = e;
  return PE_OK;
}

static int add_headers(pe_exchange *ex, pe_dir dir, const char *block, size_t len) {
  size_t off = 0;
  while (off < len) {
    const char *name = block + off;
    size_t nlen = strlen(name);
    const char *value = name + nlen + 1;
    size_t vlen = strlen(value);
    int rc = pe_exchange_header_add(ex, dir, pe_bytes(name, nlen), pe_bytes(value, vlen));
    if (rc < 0)
      return rc;
    off += nlen + vlen + 2;
  }
  return PE_OK;
}

/* Appends "tag len:bytes\n" to the growing buffer. */
typedef struct buf {
  char *p;
  size_t len, cap;
  int failed;
} buf;

static void put(buf *b, const char *tag, pe_slice s) {
  char head[64];
  int n = snprintf(head, sizeof head, "%s %zu:", tag, s.len);
  size_t need = b->len + (size_t)n + s.len + 1;
  if (need > b->cap) {
    size_t cap = need * 2;
    char *p = realloc(b->p, cap);
    if (!p) {
      b->failed = 1;
      return;
    }
    b->p = p;
    b->cap = cap;
  }
  memcpy(b->p + b->len, head, (size_t)n);
  b->len += (size_t)n;
  if (s.len)
    memcpy(b->p + b->len, s.ptr, s.len);
  b->len += s.len;
  b->p[b->len++] = '\n';
}

static void dump_side(buf *b, const pe_exchange *ex, pe_dir dir, const char *tag) {
  pe_slice name, value;
  for (size_t i = 0; pe_exchange_header_at(ex, dir, i, &name, &value) == PE_OK; i++) {
    put(b, tag, name);
    put(b, tag, value);
  }
}

static int dump(const pe_exchange *ex, char **out, size_t *out_len) {
  buf b = {0};
  char num[32];
  snprintf(num, sizeof num, "%d", pe_exchange_status(ex));
  put(&b, "status", pe_str(num));
  snprintf(num, sizeof num, "%d", (int)pe_exchange_verdict(ex));
  put(&b, "verdict", pe_str(num));
  put(&b, "method", pe_exchange_method(ex));
  put(&b, "path", pe_exchange_path(ex));
  put(&b, "authority", pe_exchange_authority(ex));
  dump_side(&b, ex, PE_REQUEST, "req-header");
  put(&b, "req-body", pe_exchange_body(ex, PE_REQUEST));
  dump_side(&b, ex, PE_RESPONSE, "resp-header");
  put(&b, "resp-body", pe_exchange_body(ex, PE_RESPONSE));
  pe_slice key, value;
  for (size_t i = 0; pe_exchange_meta_at(ex, i, &key, &value) == PE_OK; i++) {
    put(&b, "meta", key);
    put(&b, "meta", value);
  }
  if (b.failed) {
    free(b.p);
    return PE_ERR_NOMEM;
  }
  *out = b.p;
  *out_len = b.len;
  return PE_OK;
}

int capi_exchange(pe_engine *engine, const char *chain_json, const char *method, const char *path,
                  const char *authority, const char *req_headers, size_t rhlen,
                  const char *req_body, size_t rblen, int status, const char *resp_headers,
                  size_t shlen, const char *resp_body, size_t sblen, char **dump_out,
                  size_t *dump_len, char *err, size_t errlen) {
  pe_chain *chain = NULL;
  pe_exchange *ex = NULL;
  int rc = pe_chain_new_from_json(&chain, engine, pe_str(chain_json), err, errlen);
  if (rc < 0)
    return rc;
  rc = pe_exchange_new(&ex, engine);
  if (rc == PE_OK)
    rc = pe_exchange_set_method(ex, pe_str(method));
  if (rc == PE_OK)
    rc = pe_exchange_set_path(ex, pe_str(path));
  if (rc == PE_OK)
    rc = pe_exchange_set_authority(ex, pe_str(authority));
  if (rc == PE_OK)
    rc = add_headers(ex, PE_REQUEST, req_headers, rhlen);
  if (rc == PE_OK)
    rc = pe_exchange_body_set(ex, PE_REQUEST, pe_bytes(req_body, rblen));
  if (rc == PE_OK)
    rc = pe_chain_run(chain, ex, PE_PHASE_REQUEST_HEADERS);
  if (rc == PE_OK && pe_exchange_verdict(ex) == PE_VERDICT_CONTINUE)
    rc = pe_chain_run(chain, ex, PE_PHASE_REQUEST_BODY);
  if (rc == PE_OK && pe_exchange_verdict(ex) == PE_VERDICT_CONTINUE) {
    rc = pe_exchange_set_status(ex, status);
    if (rc == PE_OK)
      rc = add_headers(ex, PE_RESPONSE, resp_headers, shlen);
    if (rc == PE_OK)
      rc = pe_exchange_body_set(ex, PE_RESPONSE, pe_bytes(resp_body, sblen));
    if (rc == PE_OK)
      rc = pe_chain_run(chain, ex, PE_PHASE_RESPONSE_HEADERS);
    if (rc == PE_OK && pe_exchange_verdict(ex) == PE_VERDICT_CONTINUE)
      rc = pe_chain_run(chain, ex, PE_PHASE_RESPONSE_BODY);
  }
  if (rc == PE_OK)
    rc = dump(ex, dump_out, dump_len);
  else
    snprintf(err, errlen, "%s: %s", pe_strerror(rc), ex ? pe_exchange_errmsg(ex) : "");
  pe_exchange_free(ex);
  pe_chain_free(chain);
  return rc;
}

struct capi_native4 {
  pe_engine *engine;
  pe_chain *chain;
  pe_exchange *ex;
  char out[256]; /* where the response body is copied to, as a host would */
};

int capi_native4_new(capi_native4 **out, const char *plugin, char *err, size_t errlen) {
  capi_native4 *b = calloc(1, sizeof *b);
  if (!b)
    return PE_ERR_NOMEM;
  int rc = capi_engine_new(&b->engine, plugin, NULL, NULL, err, errlen);
  if (rc == PE_OK)
    rc = pe_chain_new_from_json(&b->chain, b->engine, PE_LIT(native4), err, errlen);
  if (rc == PE_OK)
    rc = pe_exchange_new(&b->ex, b->engine);
  if (rc < 0) {
    capi_native4_free(b);
    return rc;
  }
  *out = b;
  return PE_OK;
}

/* Keep in step with native4Once in the Go benchmark: same calls, same data. */
int capi_native4_run(capi_native4 *b, long n) {
  static const char body[] = "hello";
  pe_exchange *ex = b->ex;
  for (long i = 0; i < n; i++) {
    int rc = pe_exchange_reset(ex);
    rc = rc ? rc : pe_exchange_set_method(ex, PE_LIT("POST"));
    rc = rc ? rc : pe_exchange_set_path(ex, PE_LIT("/echo"));
    rc = rc ? rc : pe_exchange_set_authority(ex, PE_LIT("example.test"));
    rc = rc ? rc
            : pe_exchange_header_add(ex, PE_REQUEST, PE_LIT("content-type"), PE_LIT("text/plain"));
    rc = rc ? rc : pe_exchange_body_set(ex, PE_REQUEST, PE_LIT(body));
    rc = rc ? rc
            : pe_chain_run_phases(b->chain, ex, PE_PHASE_REQUEST_HEADERS, PE_PHASE_REQUEST_BODY);
    rc = rc ? rc : pe_exchange_set_status(ex, 200);
    rc = rc ? rc : pe_exchange_body_set(ex, PE_RESPONSE, PE_LIT(body));
    rc = rc ? rc
            : pe_chain_run_phases(b->chain, ex, PE_PHASE_RESPONSE_HEADERS, PE_PHASE_RESPONSE_BODY);
    if (rc < 0)
      return rc;
    pe_slice v, out = pe_exchange_body(ex, PE_RESPONSE);
    if (pe_exchange_status(ex) != 200 ||
        pe_exchange_header_get(ex, PE_RESPONSE, PE_LIT("x-sample-policy-phase"), &v) != PE_OK ||
        out.len > sizeof b->out)
      return PE_ERR_STATE;
    memcpy(b->out, out.ptr, out.len);
  }
  return PE_OK;
}

void capi_native4_free(capi_native4 *b) {
  if (!b)
    return;
  pe_exchange_free(b->ex);
  pe_chain_free(b->chain);
  pe_engine_free(b->engine);
  free(b);
}
