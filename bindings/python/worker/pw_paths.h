/* Where the worker finds the `policyexec` Python package: next to its own
 * executable, so that one binary works from the build tree and from any
 * installed prefix without environment variables. */
#ifndef PW_PATHS_H
#define PW_PATHS_H

#include <stddef.h>

/* The worker's own executable (resolved /proc/self/exe) into @p out.
 * Returns 0, or -1 (errno set). */
int pw_self_exe(char *out, size_t cap);

/* The directory that holds the `policyexec` package into @p out: installed,
 * <exe dir>/PE_INSTALLED_PYTHON_REL (prefix/libexec/../lib/policyexec/python);
 * in the build tree (the exe is in PE_BUILD_BIN_DIR), PE_PYTHON_SOURCE_DIR.
 * Returns 0, or -1 when neither holds the package. */
int pw_find_package_dir(const char *exe, char *out, size_t cap);

#endif
