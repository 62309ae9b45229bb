/* pe_python_options: the settings of the Python worker pool. The object is
 * allocated with malloc (no engine exists yet); the backend deep-copies it
 * into engine memory when the pool starts. */
#include "pe_py.h"

#include <stdlib.h>

#define MAX_WORKERS 256u
#define MAX_TIMEOUT_MS 3600000u

void pe__py_options_defaults(pe_python_options *o) {
  memset(o, 0, sizeof *o);
  o->default_timeout_ms = PE__DEFAULT_TIMEOUT_MS;
  o->max_in_flight = 1024;
  o->worker_max_in_flight = 512;
  o->shm_threshold = 64u * 1024u;
  o->backoff_initial_ms = 50;
  o->backoff_max_ms = 5000;
  o->startup_timeout_ms = 15000;
  o->create_timeout_ms = 5000;
  o->shutdown_grace_ms = 1000;
}

int pe_python_options_new(pe_python_options **out) {
  if (!out)
    return PE_ERR_INVALID_ARGUMENT;
  pe_python_options *o = malloc(sizeof *o);
  if (!o)
    return PE_ERR_NOMEM;
  pe__py_options_defaults(o);
  *out = o;
  return PE_OK;
}

void pe_python_options_free(pe_python_options *opts) {
  if (opts)
    pe__py_options_release(opts, &pe__default_mem);
  free(opts);
}

int pe_python_options_set_cpu_affinity(pe_python_options *opts, int enabled) {
  if (!opts)
    return PE_ERR_INVALID_ARGUMENT;
  opts->cpu_affinity = enabled != 0;
  return PE_OK;
}

int pe_python_options_set_name(pe_python_options *opts, const char *name) {
  size_t len = name ? strlen(name) : 0;
  if (!opts || len == 0 || len > PE__EXECUTOR_NAME_MAX)
    return PE_ERR_INVALID_ARGUMENT;
  memcpy(opts->name, name, len + 1);
  return PE_OK;
}

int pe_python_options_set_workers(pe_python_options *opts, unsigned workers) {
  if (!opts || workers > MAX_WORKERS)
    return PE_ERR_INVALID_ARGUMENT;
  opts->workers = workers;
  return PE_OK;
}

int pe_python_options_set_worker_path(pe_python_options *opts, const char *path) {
  if (!opts || (path && !path[0]))
    return PE_ERR_INVALID_ARGUMENT;
  char *copy = NULL;
  if (path && !(copy = pe__strndup(&pe__default_mem, path, strlen(path))))
    return PE_ERR_NOMEM;
  free(opts->worker_path);
  opts->worker_path = copy;
  return PE_OK;
}

int pe_python_options_add_module_path(pe_python_options *opts, const char *dir) {
  if (!opts || !dir || !dir[0])
    return PE_ERR_INVALID_ARGUMENT;
  char *copy = pe__strndup(&pe__default_mem, dir, strlen(dir));
  if (!copy)
    return PE_ERR_NOMEM;
  char **grown = realloc(opts->module_paths, (opts->module_path_count + 1) * sizeof *grown);
  if (!grown) {
    free(copy);
    return PE_ERR_NOMEM;
  }
  grown[opts->module_path_count++] = copy;
  opts->module_paths = grown;
  return PE_OK;
}

int pe_python_options_set_default_timeout(pe_python_options *opts, uint32_t timeout_ms) {
  if (!opts || timeout_ms == 0 || timeout_ms > MAX_TIMEOUT_MS)
    return PE_ERR_INVALID_ARGUMENT;
  opts->default_timeout_ms = timeout_ms;
  return PE_OK;
}

int pe_python_options_set_max_in_flight(pe_python_options *opts, size_t max_calls) {
  if (!opts || max_calls == 0)
    return PE_ERR_INVALID_ARGUMENT;
  opts->max_in_flight = max_calls;
  return PE_OK;
}

int pe_python_options_set_restart_backoff(pe_python_options *opts, uint32_t initial_ms,
                                          uint32_t max_ms) {
  if (!opts || initial_ms > max_ms)
    return PE_ERR_INVALID_ARGUMENT;
  opts->backoff_initial_ms = initial_ms;
  opts->backoff_max_ms = max_ms;
  return PE_OK;
}

int pe_python_options_set_startup_timeout(pe_python_options *opts, uint32_t timeout_ms) {
  if (!opts || timeout_ms == 0 || timeout_ms > MAX_TIMEOUT_MS)
    return PE_ERR_INVALID_ARGUMENT;
  opts->startup_timeout_ms = timeout_ms;
  return PE_OK;
}

int pe_python_options_set_create_timeout(pe_python_options *opts, uint32_t timeout_ms) {
  if (!opts || timeout_ms == 0 || timeout_ms > MAX_TIMEOUT_MS)
    return PE_ERR_INVALID_ARGUMENT;
  opts->create_timeout_ms = timeout_ms;
  return PE_OK;
}

int pe_python_options_set_max_message(pe_python_options *opts, size_t bytes) {
  if (!opts || (bytes != 0 && bytes < 4096) || bytes > UINT32_MAX)
    return PE_ERR_INVALID_ARGUMENT;
  opts->max_message = bytes;
  return PE_OK;
}

int pe_python_options_set_worker_max_in_flight(pe_python_options *opts, size_t max_calls) {
  if (!opts || max_calls == 0)
    return PE_ERR_INVALID_ARGUMENT;
  opts->worker_max_in_flight = max_calls;
  return PE_OK;
}

int pe_python_options_set_shm_threshold(pe_python_options *opts, size_t bytes) {
  if (!opts)
    return PE_ERR_INVALID_ARGUMENT;
  opts->shm_threshold = bytes;
  return PE_OK;
}

int pe_python_options_set_virtualenv(pe_python_options *opts, const char *dir) {
  if (!opts || (dir && !dir[0]))
    return PE_ERR_INVALID_ARGUMENT;
  char *copy = NULL;
  if (dir && !(copy = pe__strndup(&pe__default_mem, dir, strlen(dir))))
    return PE_ERR_NOMEM;
  free(opts->virtualenv);
  opts->virtualenv = copy;
  return PE_OK;
}

int pe__py_options_copy(pe_python_options *dst, const pe_python_options *src, const pe_mem *mem) {
  *dst = *src;
  dst->virtualenv = NULL;
  if (src->virtualenv &&
      !(dst->virtualenv = pe__strndup(mem, src->virtualenv, strlen(src->virtualenv))))
    return PE_ERR_NOMEM;
  dst->worker_path = NULL;
  dst->module_paths = NULL;
  dst->module_path_count = 0;
  if (src->worker_path &&
      !(dst->worker_path = pe__strndup(mem, src->worker_path, strlen(src->worker_path))))
    return PE_ERR_NOMEM;
  if (src->module_path_count) {
    dst->module_paths = pe__calloc(mem, src->module_path_count, sizeof *dst->module_paths);
    if (!dst->module_paths)
      return PE_ERR_NOMEM;
    for (size_t i = 0; i < src->module_path_count; i++) {
      const char *p = src->module_paths[i];
      if (!(dst->module_paths[i] = pe__strndup(mem, p, strlen(p))))
        return PE_ERR_NOMEM;
      dst->module_path_count = i + 1;
    }
  }
  return PE_OK;
}

void pe__py_options_release(pe_python_options *o, const pe_mem *mem) {
  pe__free(mem, o->virtualenv);
  o->virtualenv = NULL;
  pe__free(mem, o->worker_path);
  for (size_t i = 0; i < o->module_path_count; i++)
    pe__free(mem, o->module_paths[i]);
  pe__free(mem, o->module_paths);
  o->worker_path = NULL;
  o->module_paths = NULL;
  o->module_path_count = 0;
}
