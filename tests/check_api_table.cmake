# Fails when an exported function is missing from the plugin API table
# (include/policyexec/plugin_api.h): a plugin built with <policyexec/plugin.h>
# could not call it. pe_api_table itself is how a host reaches the table.
file(STRINGS ${EXPORTS} exports)
file(READ ${TABLE} table)
set(missing "")
foreach(sym ${exports})
  string(REGEX REPLACE "^pe_" "" name "${sym}")
  if(NOT sym STREQUAL "pe_api_table" AND NOT table MATCHES "X\\(${name}\\)")
    list(APPEND missing ${sym})
  endif()
endforeach()
if(missing)
  message(FATAL_ERROR "exported but not in PE_API_ROUTINES: ${missing}")
endif()
message(STATUS "api_table: every export is in the plugin API table")
