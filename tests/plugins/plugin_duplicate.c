/* A plugin that registers one name@version twice and passes the refusal on:
 * the load fails with PE_ERR_EXISTS and the first registration is removed. */
#include <policyexec/plugin.h>

static int noop(pe_exchange *ex, void *instance, void *user_data) {
  (void)ex;
  (void)instance;
  (void)user_data;
  return PE_OK;
}

PE_PLUGIN_EXPORT int pe_plugin_init(pe_engine *engine, int abi);

PE_PLUGIN_EXPORT int pe_plugin_init(pe_engine *engine, int abi) {
  (void)abi;
  pe_policy_def def = {.abi = PE_POLICY_ABI,
                       .name = "plugin-duplicate",
                       .version = "1.0",
                       .on_request_headers = noop};
  int rc = pe_engine_register_policy(engine, &def);
  if (rc == PE_OK)
    rc = pe_engine_register_policy(engine, &def);
  return rc;
}
