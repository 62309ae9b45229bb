/* pe_version: the version of the library actually loaded, which a host
 * compares with the PE_VERSION_NUM of the headers it was compiled with. */
#include "pe_internal.h"

int pe_version(const char **str) {
  if (str)
    *str = PE_VERSION_STRING;
  return PE_VERSION_NUM;
}
