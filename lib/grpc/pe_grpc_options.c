/* pe_grpc_options: the settings of a gRPC executor. Allocated with malloc
 * (no engine yet); the backend deep-copies it into engine memory. */
#include "pe_grpc.h"

#include <stdlib.h>

#define MAX_TIMEOUT_MS 3600000u
#define MAX_MESSAGE 0x7fffffffu /* gRPC's limits are ints */

void pe__grpc_options_defaults(pe_grpc_options *o) {
  memset(o, 0, sizeof *o);
  memcpy(o->name, "grpc", 5);
  o->default_timeout_ms = PE__DEFAULT_TIMEOUT_MS;
  o->max_in_flight = 1024;
  o->keepalive_ms = 30000;
  o->keepalive_timeout_ms = 10000;
  o->backoff_initial_ms = 100;
  o->backoff_max_ms = 2000;
  o->startup_timeout_ms = 10000;
  o->retries = true;
}

/* The owned strings of o. */
static char **owned(pe_grpc_options *o, size_t i) {
  char **all[] = {&o->target, &o->ca_file, &o->cert_file, &o->key_file, &o->module_path};
  return i < sizeof all / sizeof all[0] ? all[i] : NULL;
}

void pe__grpc_options_release(pe_grpc_options *o, const pe_mem *mem) {
  char **s;
  for (size_t i = 0; (s = owned(o, i)); i++) {
    pe__free(mem, *s);
    *s = NULL;
  }
}

int pe__grpc_options_copy(pe_grpc_options *dst, const pe_grpc_options *src, const pe_mem *mem) {
  *dst = *src;
  char **s;
  int rc = PE_OK;
  for (size_t i = 0; (s = owned(dst, i)); i++)
    if (*s && rc == PE_OK)
      rc = (*s = pe__strndup(mem, *s, strlen(*s))) ? PE_OK : PE_ERR_NOMEM;
    else if (rc != PE_OK)
      *s = NULL; /* still src's: not ours to free */
  if (rc != PE_OK) {
    /* The failed one is NULL already; free the copies made before it. */
    pe__grpc_options_release(dst, mem);
  }
  return rc;
}

int pe_grpc_options_new(pe_grpc_options **out) {
  if (!out)
    return PE_ERR_INVALID_ARGUMENT;
  pe_grpc_options *o = malloc(sizeof *o);
  if (!o)
    return PE_ERR_NOMEM;
  pe__grpc_options_defaults(o);
  *out = o;
  return PE_OK;
}

void pe_grpc_options_free(pe_grpc_options *opts) {
  if (opts)
    pe__grpc_options_release(opts, &pe__default_mem);
  free(opts);
}

/* Replaces *field with a copy of value (NULL clears it when allowed). */
static int set_string(char **field, const char *value, bool nullable) {
  if (!value) {
    if (!nullable)
      return PE_ERR_INVALID_ARGUMENT;
    free(*field);
    *field = NULL;
    return PE_OK;
  }
  if (!value[0])
    return PE_ERR_INVALID_ARGUMENT;
  char *copy = pe__strndup(&pe__default_mem, value, strlen(value));
  if (!copy)
    return PE_ERR_NOMEM;
  free(*field);
  *field = copy;
  return PE_OK;
}

int pe_grpc_options_set_name(pe_grpc_options *opts, const char *name) {
  size_t len = name ? strlen(name) : 0;
  if (!opts || len == 0 || len > PE__EXECUTOR_NAME_MAX)
    return PE_ERR_INVALID_ARGUMENT;
  memcpy(opts->name, name, len + 1);
  return PE_OK;
}

int pe_grpc_options_set_target(pe_grpc_options *opts, const char *target) {
  return opts ? set_string(&opts->target, target, false) : PE_ERR_INVALID_ARGUMENT;
}

int pe_grpc_options_set_module_path(pe_grpc_options *opts, const char *path) {
  return opts ? set_string(&opts->module_path, path, true) : PE_ERR_INVALID_ARGUMENT;
}

int pe_grpc_options_set_default_timeout(pe_grpc_options *opts, uint32_t timeout_ms) {
  if (!opts || timeout_ms == 0 || timeout_ms > MAX_TIMEOUT_MS)
    return PE_ERR_INVALID_ARGUMENT;
  opts->default_timeout_ms = timeout_ms;
  return PE_OK;
}

int pe_grpc_options_set_max_in_flight(pe_grpc_options *opts, size_t max_calls) {
  if (!opts || max_calls == 0)
    return PE_ERR_INVALID_ARGUMENT;
  opts->max_in_flight = max_calls;
  return PE_OK;
}

int pe_grpc_options_set_keepalive(pe_grpc_options *opts, uint32_t interval_ms,
                                  uint32_t timeout_ms) {
  if (!opts || (interval_ms && !timeout_ms))
    return PE_ERR_INVALID_ARGUMENT;
  opts->keepalive_ms = interval_ms;
  opts->keepalive_timeout_ms = timeout_ms;
  return PE_OK;
}

int pe_grpc_options_set_reconnect_backoff(pe_grpc_options *opts, uint32_t initial_ms,
                                          uint32_t max_ms) {
  if (!opts || initial_ms == 0 || initial_ms > max_ms)
    return PE_ERR_INVALID_ARGUMENT;
  opts->backoff_initial_ms = initial_ms;
  opts->backoff_max_ms = max_ms;
  return PE_OK;
}

int pe_grpc_options_set_max_message(pe_grpc_options *opts, size_t bytes) {
  if (!opts || (bytes != 0 && (bytes < 4096 || bytes > MAX_MESSAGE)))
    return PE_ERR_INVALID_ARGUMENT;
  opts->max_message = bytes;
  return PE_OK;
}

int pe_grpc_options_set_tls(pe_grpc_options *opts, const char *ca_file, const char *cert_file,
                            const char *key_file) {
  if (!opts || !cert_file != !key_file)
    return PE_ERR_INVALID_ARGUMENT;
  pe_grpc_options tmp = {0};
  int rc = set_string(&tmp.ca_file, ca_file, true);
  if (rc == PE_OK)
    rc = set_string(&tmp.cert_file, cert_file, true);
  if (rc == PE_OK)
    rc = set_string(&tmp.key_file, key_file, true);
  if (rc != PE_OK) {
    free(tmp.ca_file);
    free(tmp.cert_file);
    free(tmp.key_file);
    return rc;
  }
  free(opts->ca_file);
  free(opts->cert_file);
  free(opts->key_file);
  opts->ca_file = tmp.ca_file;
  opts->cert_file = tmp.cert_file;
  opts->key_file = tmp.key_file;
  return PE_OK;
}

int pe_grpc_options_set_startup_timeout(pe_grpc_options *opts, uint32_t timeout_ms) {
  if (!opts || timeout_ms == 0)
    return PE_ERR_INVALID_ARGUMENT;
  opts->startup_timeout_ms = timeout_ms;
  return PE_OK;
}

int pe_grpc_options_set_retries(pe_grpc_options *opts, int enabled) {
  if (!opts)
    return PE_ERR_INVALID_ARGUMENT;
  opts->retries = enabled != 0;
  return PE_OK;
}
