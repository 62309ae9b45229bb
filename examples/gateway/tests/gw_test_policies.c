/*
 * Native policies for the gateway's end-to-end tests only (not installed):
 * the behaviours the gateway must stay safe against, whatever a policy
 * does.
 *
 *   gw-test-deny         answers 403 in the request-headers phase
 *   gw-test-set-length   sets the response's Content-Length to 0
 *   gw-test-drop-length  removes the response's Content-Length
 *   gw-test-stream-tag   streamed (both bodies): appends "[tag]" at the end
 *   gw-test-stream-fail  streamed (both bodies): fails once it has seen more
 *                        than params.after bytes
 */
#include <policyexec/policyexec.h>

#include <stdlib.h>

static int deny(pe_exchange *ex, void *instance, void *user_data) {
  (void)instance;
  (void)user_data;
  return pe_exchange_respond(ex, 403, PE_LIT("forbidden by policy\n"));
}

/* A policy editing framing fields: the library may refuse the edit (then
 * the step fails); either way the gateway's framing must stay right. */
static int set_length(pe_exchange *ex, void *instance, void *user_data) {
  (void)instance;
  (void)user_data;
  pe_exchange_header_set(ex, PE_RESPONSE, PE_LIT("content-length"), PE_LIT("0"));
  return PE_OK;
}

static int drop_length(pe_exchange *ex, void *instance, void *user_data) {
  (void)instance;
  (void)user_data;
  pe_exchange_header_remove(ex, PE_RESPONSE, PE_LIT("content-length"));
  return PE_OK;
}

static int stream_tag(pe_exchange *ex, pe_body_chunk *chunk, void *instance, void *user_data) {
  (void)ex;
  (void)instance;
  (void)user_data;
  int rc = pe_body_chunk_write(chunk, pe_body_chunk_data(chunk));
  if (rc == PE_OK && pe_body_chunk_is_last(chunk))
    rc = pe_body_chunk_write(chunk, PE_LIT("[tag]"));
  return rc;
}

static const pe_param_spec fail_params[] = {{"after", PE_PARAM_INT, 1}};

static int fail_create(void **instance, pe_params *params, void *user_data) {
  (void)user_data;
  int64_t after = 0;
  pe_params_get_int(params, "after", &after);
  int64_t *p = malloc(sizeof *p);
  if (!p)
    return PE_ERR_NOMEM;
  *p = after;
  *instance = p;
  return PE_OK;
}

static void fail_destroy(void *instance, void *user_data) {
  (void)user_data;
  free(instance);
}

/* Its state is the count of bytes seen, in the pointer itself (+1, so that
 * it is never NULL once set): nothing to free. */
static int stream_fail(pe_exchange *ex, pe_body_chunk *chunk, void *instance, void *user_data) {
  (void)user_data;
  void **state = pe_body_chunk_state(chunk);
  pe_slice data = pe_body_chunk_data(chunk);
  uintptr_t seen = (*state ? (uintptr_t)*state - 1 : 0) + data.len;
  *state = (void *)(seen + 1);
  if ((int64_t)seen > *(const int64_t *)instance) {
    pe_exchange_set_errmsg(ex, "gw-test-stream-fail: %zu bytes seen", (size_t)seen);
    return PE_ERR_POLICY;
  }
  return pe_body_chunk_write(chunk, data);
}

PE_PLUGIN_EXPORT int pe_plugin_init(pe_engine *engine, int abi);

PE_PLUGIN_EXPORT int pe_plugin_init(pe_engine *engine, int abi) {
  if (abi < PE_POLICY_ABI)
    return PE_ERR_UNSUPPORTED;
  pe_policy_def defs[5] = {
      {.abi = PE_POLICY_ABI, .name = "gw-test-deny", .on_request_headers = deny},
      {.abi = PE_POLICY_ABI, .name = "gw-test-set-length", .on_response_headers = set_length},
      {.abi = PE_POLICY_ABI, .name = "gw-test-drop-length", .on_response_headers = drop_length},
      {.abi = PE_POLICY_ABI,
       .name = "gw-test-stream-tag",
       .on_request_body_chunk = stream_tag,
       .on_response_body_chunk = stream_tag},
      {.abi = PE_POLICY_ABI,
       .name = "gw-test-stream-fail",
       .params = fail_params,
       .param_count = 1,
       .create = fail_create,
       .destroy = fail_destroy,
       .on_request_body_chunk = stream_fail,
       .on_response_body_chunk = stream_fail},
  };
  for (int i = 0; i < 5; i++) {
    defs[i].version = "1.0.0";
    int rc = pe_engine_register_policy(engine, &defs[i]);
    if (rc < 0)
      return rc;
  }
  return PE_OK;
}
