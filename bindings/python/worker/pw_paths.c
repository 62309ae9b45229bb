#include "pw_paths.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int pw_self_exe(char *out, size_t cap) {
  ssize_t n = readlink("/proc/self/exe", out, cap);
  if (n < 0) {
    return -1;
  }
  if ((size_t)n >= cap) {
    errno = ENAMETOOLONG;
    return -1;
  }
  out[n] = '\0';
  return 0;
}

static int has_package(const char *dir) {
  char init[PATH_MAX];
  int n = snprintf(init, sizeof(init), "%s/policyexec/__init__.py", dir);
  return n > 0 && (size_t)n < sizeof(init) && access(init, R_OK) == 0;
}

static int copy_out(char *out, size_t cap, const char *s) {
  size_t n = strlen(s);
  if (n >= cap) {
    return -1;
  }
  memcpy(out, s, n + 1);
  return 0;
}

int pw_find_package_dir(const char *exe, char *out, size_t cap) {
  char dir[PATH_MAX];
  if (copy_out(dir, sizeof(dir), exe) != 0) {
    return -1;
  }
  char *slash = strrchr(dir, '/');
  if (slash == NULL) {
    return -1;
  }
  *slash = '\0';

  char installed[PATH_MAX];
  int n = snprintf(installed, sizeof(installed), "%s/%s", dir, PE_INSTALLED_PYTHON_REL);
  if (n > 0 && (size_t)n < sizeof(installed) && has_package(installed)) {
    char *real = realpath(installed, NULL);
    int rc = copy_out(out, cap, real ? real : installed);
    free(real);
    return rc;
  }

  /* Only the binary built in this tree may use the sources: a copy installed
   * elsewhere without its package must fail loudly, not pick up a checkout. */
  char *build_bin = realpath(PE_BUILD_BIN_DIR, NULL);
  int in_build_tree = build_bin != NULL && strcmp(build_bin, dir) == 0;
  free(build_bin);
  if (in_build_tree && has_package(PE_PYTHON_SOURCE_DIR)) {
    return copy_out(out, cap, PE_PYTHON_SOURCE_DIR);
  }
  return -1;
}
