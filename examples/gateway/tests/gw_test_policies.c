/*
 * Native policies for the gateway's end-to-end tests only (not installed):
 * the behaviours the gateway must stay safe against, whatever a policy
 * does.
 *
 *   gw-test-deny         answers 403 in the request-headers phase
 *   gw-test-set-length   sets the response's Content-Length to 0
 *   gw-test-drop-length  removes the response's Content-Length
 */
#include <policyexec/policyexec.h>

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

PE_PLUGIN_EXPORT int pe_plugin_init(pe_engine *engine, int abi);

PE_PLUGIN_EXPORT int pe_plugin_init(pe_engine *engine, int abi) {
  if (abi < PE_POLICY_ABI)
    return PE_ERR_UNSUPPORTED;
  pe_policy_def defs[3] = {
      {.abi = PE_POLICY_ABI, .name = "gw-test-deny", .on_request_headers = deny},
      {.abi = PE_POLICY_ABI, .name = "gw-test-set-length", .on_response_headers = set_length},
      {.abi = PE_POLICY_ABI, .name = "gw-test-drop-length", .on_response_headers = drop_length},
  };
  for (int i = 0; i < 3; i++) {
    defs[i].version = "1.0.0";
    int rc = pe_engine_register_policy(engine, &defs[i]);
    if (rc < 0)
      return rc;
  }
  return PE_OK;
}
