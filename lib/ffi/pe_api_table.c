/* The table of the API handed to plugins (include/policyexec/plugin_api.h):
 * built from the same X-macro list as the struct, so the two cannot drift. */
#include <policyexec/plugin_api.h>

static const pe_api_routines pe__api_table = {.api_size = sizeof(pe_api_routines),
                                              .api_version = PE_API_ROUTINES_VERSION,
#define PE__API_ENTRY(name) .name = pe_##name,
                                              PE_API_ROUTINES(PE__API_ENTRY)
#undef PE__API_ENTRY
};

const pe_api_routines *pe_api_table(void) {
  return &pe__api_table;
}
