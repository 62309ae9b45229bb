/* A plugin whose init registers a policy, then fails: the loader must remove
 * the policy again (running its free_user_data, which logs a line the test
 * looks for) and unload the plugin. */
#include <policyexec/plugin.h>

static int noop(pe_exchange *ex, void *instance, void *user_data) {
  (void)ex;
  (void)instance;
  (void)user_data;
  return PE_OK;
}

static void log_freed(void *user_data) {
  pe_engine_log(user_data, PE_LOG_ERROR, "plugin_init_fails: user data freed");
}

PE_PLUGIN_EXPORT int pe_plugin_init(pe_engine *engine, int abi);

PE_PLUGIN_EXPORT int pe_plugin_init(pe_engine *engine, int abi) {
  (void)abi;
  pe_policy_def def = {.abi = PE_POLICY_ABI,
                       .name = "plugin-init-fails",
                       .version = "1.0",
                       .on_request_headers = noop,
                       .user_data = engine,
                       .free_user_data = log_freed};
  int rc = pe_engine_register_policy(engine, &def);
  if (rc < 0)
    return rc;
  /* Registered, but not visible until the whole init succeeds. */
  if (pe_engine_has_policy(engine, pe_str("plugin-init-fails"), pe_str("1.0")))
    pe_engine_log(engine, PE_LOG_ERROR, "plugin_init_fails: policy visible during init");
  return PE_ERR_POLICY;
}
