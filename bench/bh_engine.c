/* The engine bench_hooks measures: the counting allocator (for allocations
 * per request), the sample plugin, and the Python pool when a profile needs it. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "bh_engine.h"

/* The directory of this executable, or "" if unknown. */
static const char *self_dir(void) {
  static char dir[4096];
  ssize_t n = readlink("/proc/self/exe", dir, sizeof dir - 1);
  dir[n > 0 ? n : 0] = '\0';
  char *slash = strrchr(dir, '/');
  if (slash)
    *slash = '\0';
  return dir;
}

/* Whether this is the binary in the build tree (not an installed copy):
 * only then are the build tree's plugin, worker and samples the defaults. */
static bool running_from_build_tree(void) {
  return strcmp(self_dir(), BH_BUILD_BIN_DIR) == 0;
}

/* A build-tree path, or an installed one relative to this executable's
 * directory (so a moved install tree still works). */
static const char *find_file(const char *build_path, const char *from_bindir) {
  static char paths[2][8192];
  static int next;
  if (running_from_build_tree())
    return build_path;
  char *out = paths[next++ % 2];
  snprintf(out, sizeof paths[0], "%s/%s", self_dir(), from_bindir);
  return out;
}

static int start_python(pe_engine *engine, const bh_engine_opts *o, char *err, size_t errlen) {
  pe_python_options *py = NULL;
  const char *samples =
      o->python_path ? o->python_path : find_file(BH_PY_SAMPLES_BUILD, BH_PY_SAMPLES_INSTALLED);
  int rc = pe_python_options_new(&py);
  rc = rc ? rc : pe_python_options_add_module_path(py, samples);
  if (rc == PE_OK && o->pin)
    rc = pe_python_options_set_cpu_affinity(py, 1);
  if (rc == PE_OK && o->workers > 0)
    rc = pe_python_options_set_workers(py, (unsigned)o->workers);
  if (rc == PE_OK && o->shm_threshold >= 0)
    rc = pe_python_options_set_shm_threshold(py, (size_t)o->shm_threshold);
  /* Installed: the library finds the worker installed beside it. */
  if (rc == PE_OK && (o->pyworker || running_from_build_tree()))
    rc = pe_python_options_set_worker_path(py, o->pyworker ? o->pyworker : BH_PYWORKER_BUILD);
  rc = rc ? rc : pe_engine_start_python(engine, py);
  pe_python_options_free(py);
  if (rc != PE_OK) {
    snprintf(err, errlen, "Python pool: %s: %s (see --pyworker, --python-path)", pe_strerror(rc),
             pe_engine_errmsg(engine));
    return -1;
  }
  return 0;
}

int bh_engine_new(pe_engine **out, const bh_engine_opts *o, char *err, size_t errlen) {
  pe_engine_options *opts = NULL;
  pe_engine *engine = NULL;
  pe_mem mem = bh_counting_mem();
  int rc = pe_engine_options_new(&opts);
  rc = rc ? rc : pe_engine_options_set_mem(opts, &mem);
  if (rc == PE_OK && o->body_limit)
    rc = pe_engine_options_set_limit(opts, PE_LIMIT_BODY_BYTES, o->body_limit);
  rc = rc ? rc : pe_engine_new(&engine, opts);
  pe_engine_options_free(opts);
  if (rc != PE_OK) {
    snprintf(err, errlen, "engine: %s", pe_strerror(rc));
    return -1;
  }
  const char *plugin = o->plugin ? o->plugin : find_file(BH_PLUGIN_BUILD, BH_PLUGIN_INSTALLED);
  rc = pe_engine_load_plugin(engine, plugin);
  if (rc != PE_OK) {
    snprintf(err, errlen, "%s (use --plugin)", pe_engine_errmsg(engine));
    pe_engine_free(engine);
    return -1;
  }
  if (o->python && start_python(engine, o, err, errlen) != 0) {
    pe_engine_free(engine);
    return -1;
  }
  *out = engine;
  return 0;
}

int bh_engine_workers(pe_engine *engine) {
  return (int)pe_engine_python_worker_pids(engine, NULL, 0);
}
