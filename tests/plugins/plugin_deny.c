/* test-deny: answers 403 at once when the request carries x-deny, so that
 * hosts (the nginx test of the LuaJIT binding) can show an immediate
 * response. Built with <policyexec/plugin.h>: it loads in any host. */
#include <policyexec/plugin.h>

static int deny(pe_exchange *ex, void *instance, void *user_data) {
  (void)instance;
  (void)user_data;
  pe_slice v;
  if (pe_exchange_header_get(ex, PE_REQUEST, PE_LIT("x-deny"), &v) != PE_OK)
    return PE_OK;
  int rc = pe_exchange_respond(ex, 403, PE_LIT("denied by test-deny\n"));
  return rc ? rc
            : pe_exchange_header_add(ex, PE_RESPONSE, PE_LIT("x-denied-by"), PE_LIT("test-deny"));
}

PE_PLUGIN_EXPORT int pe_plugin_init(pe_engine *engine, int abi);

PE_PLUGIN_EXPORT int pe_plugin_init(pe_engine *engine, int abi) {
  (void)abi;
  pe_policy_def def = {
      .abi = PE_POLICY_ABI, .name = "test-deny", .version = "1.0.0", .on_request_headers = deny};
  return pe_engine_register_policy(engine, &def);
}
