/* A plugin that registers one name@version twice and ignores the refusal:
 * the loader still refuses the plugin as a whole (PE_ERR_EXISTS), since it
 * would otherwise run with part of what it meant to register. */
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
                       .name = "plugin-ignores-refusal",
                       .version = "1.0",
                       .on_request_headers = noop};
  (void)pe_engine_register_policy(engine, &def);
  (void)pe_engine_register_policy(engine, &def);
  return PE_OK;
}
