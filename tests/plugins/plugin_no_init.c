/* A plugin without pe_plugin_init: loading it must fail cleanly. */
#include <policyexec/policyexec.h>

PE_PLUGIN_EXPORT int pe_plugin_start(pe_engine *engine, int abi);

PE_PLUGIN_EXPORT int pe_plugin_start(pe_engine *engine, int abi) {
  (void)engine;
  return abi;
}
