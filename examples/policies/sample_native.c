/*
 * The four sample-native-* policies of the design brief, as one plugin,
 * and the streamed sample-native-redact (sample_redact.c).
 *
 * They do the least a policy of each phase can do (set one header, prefix a
 * body), so that what a benchmark measures is the cost of running a policy,
 * not the policy's own work. The Python samples do exactly the same.
 */
#include "sample_redact.h"

static int set_request_phase_header(pe_exchange *ex, void *instance, void *user_data) {
  (void)instance;
  (void)user_data;
  return pe_exchange_header_set(ex, PE_REQUEST, PE_LIT("x-sample-policy-phase"),
                                PE_LIT("request-header"));
}

static int set_response_phase_header(pe_exchange *ex, void *instance, void *user_data) {
  (void)instance;
  (void)user_data;
  return pe_exchange_header_set(ex, PE_RESPONSE, PE_LIT("x-sample-policy-phase"),
                                PE_LIT("response-header"));
}

static int prefix_request_body(pe_exchange *ex, void *instance, void *user_data) {
  (void)instance;
  (void)user_data;
  return pe_exchange_body_prepend(ex, PE_REQUEST, PE_LIT("[sample-request-body]"));
}

static int prefix_response_body(pe_exchange *ex, void *instance, void *user_data) {
  (void)instance;
  (void)user_data;
  return pe_exchange_body_prepend(ex, PE_RESPONSE, PE_LIT("[sample-response-body]"));
}

PE_PLUGIN_EXPORT int pe_plugin_init(pe_engine *engine, int abi);

PE_PLUGIN_EXPORT int pe_plugin_init(pe_engine *engine, int abi) {
  if (abi < PE_POLICY_ABI)
    return PE_ERR_UNSUPPORTED;

  pe_policy_def defs[4] = {
      {.abi = PE_POLICY_ABI,
       .name = "sample-native-request-header",
       .on_request_headers = set_request_phase_header},
      {.abi = PE_POLICY_ABI,
       .name = "sample-native-response-header",
       .on_response_headers = set_response_phase_header},
      {.abi = PE_POLICY_ABI,
       .name = "sample-native-request-body",
       .flags = PE_POLICY_NEEDS_REQUEST_BODY,
       .on_request_body = prefix_request_body},
      {.abi = PE_POLICY_ABI,
       .name = "sample-native-response-body",
       .flags = PE_POLICY_NEEDS_RESPONSE_BODY,
       .on_response_body = prefix_response_body},
  };
  for (int i = 0; i < 4; i++) {
    defs[i].version = "1.0.0";
    int rc = pe_engine_register_policy(engine, &defs[i]);
    if (rc < 0)
      return rc;
  }
  return sample_redact_register(engine);
}
