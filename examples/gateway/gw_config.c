/*
 * Reads the gateway's JSON configuration with jansson. Unknown members are
 * refused rather than ignored: a misspelt "upstream_timout_ms" silently
 * keeping the default is worse than a start-up error.
 */
#include "gw_config.h"

#include "gw_path.h"

#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef GW_PLUGIN_DIRS
#define GW_PLUGIN_DIRS ""
#endif

static int fail(char *err, size_t err_size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(char *err, size_t err_size, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, err_size, fmt, ap);
  va_end(ap);
  return -1;
}

int gw_parse_host_port(const char *text, char **host, uint16_t *port) {
  const char *colon, *host_start = text, *host_end;
  if (text[0] == '[') {
    const char *close = strchr(text, ']');
    if (!close || close[1] != ':')
      return -1;
    host_start = text + 1;
    host_end = close;
    colon = close + 1;
  } else {
    colon = strrchr(text, ':');
    if (!colon)
      return -1;
    host_end = colon;
  }
  char *end;
  errno = 0;
  unsigned long value = strtoul(colon + 1, &end, 10);
  if (errno || *end || colon[1] == '\0' || value == 0 || value > 65535 || host_end == host_start)
    return -1;
  char *copy = strndup(host_start, (size_t)(host_end - host_start));
  if (!copy)
    return -1;
  *host = copy;
  *port = (uint16_t)value;
  return 0;
}

/* Only plain http upstreams: the gateway forwards the client's path as is,
 * so an upstream URL carries no path of its own. */
static int parse_upstream_url(const char *url, char **host, uint16_t *port) {
  static const char scheme[] = "http://";
  if (strncmp(url, scheme, sizeof scheme - 1) != 0)
    return -1;
  const char *authority = url + sizeof scheme - 1;
  size_t len = strcspn(authority, "/");
  if (authority[len] == '/' && authority[len + 1] != '\0')
    return -1;
  char *copy = strndup(authority, len);
  if (!copy)
    return -1;
  int rc;
  if (strchr(copy, ':') && copy[len - 1] != ']') {
    rc = gw_parse_host_port(copy, host, port);
  } else { /* no port: the http default */
    *host = copy[0] == '[' ? strndup(copy + 1, len - 2) : strdup(copy);
    *port = 80;
    rc = *host ? 0 : -1;
  }
  free(copy);
  return rc;
}

static int check_members(json_t *obj, const char *what, const char *const *allowed, char *err,
                         size_t err_size) {
  const char *key;
  json_t *value;
  json_object_foreach(obj, key, value) {
    int known = 0;
    for (size_t i = 0; allowed[i]; i++)
      known |= strcmp(key, allowed[i]) == 0;
    if (!known)
      return fail(err, err_size, "%s: unknown member \"%s\"", what, key);
  }
  return 0;
}

static int from_json(gw_api_spec *spec, json_t *obj, char *err, size_t err_size) {
  static const char *const allowed[] = {"name", "context", "upstream", "policies", NULL};
  memset(spec, 0, sizeof *spec);
  if (!json_is_object(obj))
    return fail(err, err_size, "api: expected an object");
  if (check_members(obj, "api", allowed, err, err_size) < 0)
    return -1;
  const char *name = json_string_value(json_object_get(obj, "name"));
  const char *context = json_string_value(json_object_get(obj, "context"));
  const char *upstream = json_string_value(json_object_get(obj, "upstream"));
  json_t *policies = json_object_get(obj, "policies");
  if (!name || !*name || strchr(name, '/'))
    return fail(err, err_size, "api: \"name\" must be a non-empty string without '/'");
  if (!context || context[0] != '/')
    return fail(err, err_size, "api %s: \"context\" must be a path starting with '/'", name);
  /* Requests are routed on their normalised path, so a context in any other
   * form (or with characters a request target cannot carry) never matches. */
  if (!gw_path_context_ok(context))
    return fail(err, err_size,
                "api %s: \"context\" %s is not a normalised path: use RFC 3986 path characters "
                "(percent-encode others, not unreserved ones), no '?', no empty, '.' or '..' "
                "segments",
                name, context);
  if (!upstream)
    return fail(err, err_size, "api %s: \"upstream\" must be a string", name);
  if (policies && !json_is_array(policies))
    return fail(err, err_size, "api %s: \"policies\" must be an array", name);

  json_t *empty = policies ? NULL : json_array();
  spec->name = strdup(name);
  spec->context = strdup(context);
  spec->policies_json = json_dumps(policies ? policies : empty, JSON_COMPACT);
  spec->json = json_dumps(obj, JSON_COMPACT | JSON_PRESERVE_ORDER);
  json_decref(empty);
  if (!spec->name || !spec->context || !spec->policies_json || !spec->json) {
    gw_api_spec_clear(spec);
    return fail(err, err_size, "out of memory");
  }
  if (parse_upstream_url(upstream, &spec->upstream_host, &spec->upstream_port) < 0) {
    gw_api_spec_clear(spec);
    return fail(err, err_size, "api %s: \"upstream\" must look like http://host:port", name);
  }
  return 0;
}

int gw_api_spec_parse(gw_api_spec *spec, const char *text, size_t len, char *err, size_t err_size) {
  json_error_t jerr;
  json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
  if (!root)
    return fail(err, err_size, "invalid JSON at line %d: %s", jerr.line, jerr.text);
  int rc = from_json(spec, root, err, err_size);
  json_decref(root);
  return rc;
}

int gw_api_spec_copy(gw_api_spec *dst, const gw_api_spec *src) {
  memset(dst, 0, sizeof *dst);
  dst->name = strdup(src->name);
  dst->context = strdup(src->context);
  dst->upstream_host = strdup(src->upstream_host);
  dst->upstream_port = src->upstream_port;
  dst->policies_json = strdup(src->policies_json);
  dst->json = strdup(src->json);
  if (!dst->name || !dst->context || !dst->upstream_host || !dst->policies_json || !dst->json) {
    gw_api_spec_clear(dst);
    return -1;
  }
  return 0;
}

void gw_api_spec_clear(gw_api_spec *spec) {
  free(spec->name);
  free(spec->context);
  free(spec->upstream_host);
  free(spec->policies_json);
  free(spec->json);
  memset(spec, 0, sizeof *spec);
}

/* A path from the file, made absolute against the file's directory. */
static char *resolve_path(const char *config_dir, const char *path) {
  if (path[0] == '/')
    return strdup(path);
  size_t len = strlen(config_dir) + 1 + strlen(path) + 1;
  char *out = malloc(len);
  if (out)
    snprintf(out, len, "%s/%s", config_dir, path);
  return out;
}

/* A bare plugin name ("sample_native_policies.so") is looked up in the
 * build's and the install's plugin directories, so the shipped sample
 * config works from either without editing. */
static char *resolve_plugin(const char *config_dir, const char *entry) {
  if (strchr(entry, '/'))
    return resolve_path(config_dir, entry);
  const char *dirs = GW_PLUGIN_DIRS;
  while (*dirs) {
    size_t dir_len = strcspn(dirs, ":");
    char candidate[PATH_MAX];
    if (dir_len > 0 &&
        (size_t)snprintf(candidate, sizeof candidate, "%.*s/%s", (int)dir_len, dirs, entry) <
            sizeof candidate &&
        access(candidate, R_OK) == 0)
      return strdup(candidate);
    dirs += dir_len + (dirs[dir_len] == ':');
  }
  return resolve_path(config_dir, entry);
}

static int get_size(json_t *obj, const char *key, size_t min, size_t max, size_t *out, char *err,
                    size_t err_size) {
  json_t *value = json_object_get(obj, key);
  if (!value)
    return 0;
  if (!json_is_integer(value) || json_integer_value(value) < (json_int_t)min ||
      (uint64_t)json_integer_value(value) > max)
    return fail(err, err_size, "\"%s\" must be an integer in %zu .. %zu", key, min, max);
  *out = (size_t)json_integer_value(value);
  return 0;
}

static int get_string_list(json_t *arr, const char *key, const char *config_dir, int plugin,
                           char ***out, size_t *count, char *err, size_t err_size) {
  if (!arr)
    return 0;
  if (!json_is_array(arr))
    return fail(err, err_size, "\"%s\" must be an array of strings", key);
  *out = calloc(json_array_size(arr) + 1, sizeof **out);
  if (!*out)
    return fail(err, err_size, "out of memory");
  size_t i;
  json_t *item;
  json_array_foreach(arr, i, item) {
    if (!json_is_string(item))
      return fail(err, err_size, "\"%s\" must be an array of strings", key);
    const char *text = json_string_value(item);
    (*out)[i] = plugin ? resolve_plugin(config_dir, text) : resolve_path(config_dir, text);
    if (!(*out)[i])
      return fail(err, err_size, "out of memory");
    *count = i + 1;
  }
  return 0;
}

static int load_python(gw_config *cfg, json_t *py, const char *dir, char *err, size_t err_size) {
  static const char *const allowed[] = {"workers", "timeout_ms", "paths",
                                        "worker",  "virtualenv", NULL};
  if (!json_is_object(py))
    return fail(err, err_size, "\"python\" must be an object");
  if (check_members(py, "python", allowed, err, err_size) < 0)
    return -1;
  size_t workers = 0, timeout_ms = 1000;
  if (get_size(py, "workers", 0, 256, &workers, err, err_size) < 0 ||
      get_size(py, "timeout_ms", 1, 3600000, &timeout_ms, err, err_size) < 0)
    return -1;
  cfg->python_enabled = 1;
  cfg->python_workers = (unsigned)workers;
  cfg->python_timeout_ms = (uint32_t)timeout_ms;
  const char *worker = json_string_value(json_object_get(py, "worker"));
  if (worker && !(cfg->python_worker_path = resolve_path(dir, worker)))
    return fail(err, err_size, "out of memory");
  /* A virtualenv whose packages the policies import (relative to the file). */
  const char *venv = json_string_value(json_object_get(py, "virtualenv"));
  if (json_object_get(py, "virtualenv") && (!venv || !venv[0]))
    return fail(err, err_size, "\"python.virtualenv\" must be a non-empty string");
  if (venv && !(cfg->python_virtualenv = resolve_path(dir, venv)))
    return fail(err, err_size, "out of memory");
  return get_string_list(json_object_get(py, "paths"), "python.paths", dir, 0, &cfg->python_paths,
                         &cfg->python_path_count, err, err_size);
}

/* The "client" object: timeouts and buffers of client connections. */
static int load_client(gw_config *cfg, json_t *client, char *err, size_t err_size) {
  static const char *const allowed[] = {"header_timeout_ms",
                                        "body_timeout_ms",
                                        "body_min_rate",
                                        "send_timeout_ms",
                                        "idle_timeout_ms",
                                        "stream_buffer_bytes",
                                        NULL};
  size_t header = 30000, body = 60000, rate = 1024, send = 60000, idle = 60000;
  size_t stream = 256 * 1024;
  if (client) {
    if (!json_is_object(client))
      return fail(err, err_size, "\"client\" must be an object");
    if (check_members(client, "client", allowed, err, err_size) < 0 ||
        get_size(client, "header_timeout_ms", 1, 3600000, &header, err, err_size) < 0 ||
        get_size(client, "body_timeout_ms", 1, 3600000, &body, err, err_size) < 0 ||
        get_size(client, "body_min_rate", 1, SIZE_MAX >> 1, &rate, err, err_size) < 0 ||
        get_size(client, "send_timeout_ms", 1, 3600000, &send, err, err_size) < 0 ||
        get_size(client, "idle_timeout_ms", 1, 3600000, &idle, err, err_size) < 0 ||
        get_size(client, "stream_buffer_bytes", 4096, (size_t)1 << 30, &stream, err, err_size) < 0)
      return -1;
  }
  cfg->header_timeout_ms = (uint32_t)header;
  cfg->body_timeout_ms = (uint32_t)body;
  cfg->body_min_rate = rate;
  cfg->send_timeout_ms = (uint32_t)send;
  cfg->idle_timeout_ms = (uint32_t)idle;
  cfg->stream_buffer_bytes = stream;
  return 0;
}

static int load_root(gw_config *cfg, json_t *root, const char *dir, char *err, size_t err_size) {
  static const char *const allowed[] = {"listen",
                                        "admin",
                                        "threads",
                                        "cpu_affinity",
                                        "sched_batch",
                                        "python",
                                        "plugins",
                                        "apis",
                                        "limits",
                                        "upstream_timeout_ms",
                                        "listen_backlog",
                                        "client",
                                        "spare_exchange_bytes",
                                        NULL};
  static const char *const limit_keys[] = {"header_count", "header_bytes", "body_bytes", NULL};
  if (!json_is_object(root))
    return fail(err, err_size, "the configuration must be a JSON object");
  if (check_members(root, "config", allowed, err, err_size) < 0)
    return -1;

  const char *listen = json_string_value(json_object_get(root, "listen"));
  const char *admin = json_string_value(json_object_get(root, "admin"));
  if (gw_parse_host_port(listen ? listen : "127.0.0.1:8080", &cfg->listen_host, &cfg->listen_port) <
      0)
    return fail(err, err_size, "\"listen\" must look like \"127.0.0.1:8080\"");
  if (gw_parse_host_port(admin ? admin : "127.0.0.1:9901", &cfg->admin_host, &cfg->admin_port) < 0)
    return fail(err, err_size, "\"admin\" must look like \"127.0.0.1:9901\"");

  size_t threads = 0, timeout_ms = 30000, backlog = 1024, spare = 8 << 20;
  if (get_size(root, "threads", 0, 1024, &threads, err, err_size) < 0 ||
      get_size(root, "upstream_timeout_ms", 1, 3600000, &timeout_ms, err, err_size) < 0 ||
      get_size(root, "listen_backlog", 1, 65535, &backlog, err, err_size) < 0 ||
      get_size(root, "spare_exchange_bytes", 0, SIZE_MAX >> 1, &spare, err, err_size) < 0 ||
      load_client(cfg, json_object_get(root, "client"), err, err_size) < 0)
    return -1;
  cfg->threads = (unsigned)threads;
  cfg->upstream_timeout_ms = (uint32_t)timeout_ms;
  cfg->listen_backlog = (unsigned)backlog;
  cfg->spare_exchange_bytes = spare;
  json_t *affinity = json_object_get(root, "cpu_affinity");
  if (affinity && !json_is_boolean(affinity))
    return fail(err, err_size, "\"cpu_affinity\" must be true or false");
  cfg->cpu_affinity = json_is_true(affinity);
  json_t *batch = json_object_get(root, "sched_batch");
  if (batch && !json_is_boolean(batch))
    return fail(err, err_size, "\"sched_batch\" must be true or false");
  cfg->sched_batch = json_is_true(batch);

  json_t *limits = json_object_get(root, "limits");
  if (limits) {
    if (!json_is_object(limits) || check_members(limits, "limits", limit_keys, err, err_size) < 0 ||
        get_size(limits, "header_count", 1, 100000, &cfg->limit_header_count, err, err_size) < 0 ||
        get_size(limits, "header_bytes", 1, SIZE_MAX >> 1, &cfg->limit_header_bytes, err,
                 err_size) < 0 ||
        get_size(limits, "body_bytes", 1, SIZE_MAX >> 1, &cfg->limit_body_bytes, err, err_size) < 0)
      return err[0] ? -1 : fail(err, err_size, "\"limits\" must be an object");
  }

  json_t *py = json_object_get(root, "python");
  if (py && load_python(cfg, py, dir, err, err_size) < 0)
    return -1;
  if (get_string_list(json_object_get(root, "plugins"), "plugins", dir, 1, &cfg->plugins,
                      &cfg->plugin_count, err, err_size) < 0)
    return -1;

  json_t *apis = json_object_get(root, "apis");
  if (apis && !json_is_array(apis))
    return fail(err, err_size, "\"apis\" must be an array");
  if (apis && json_array_size(apis) > 0) {
    cfg->apis = calloc(json_array_size(apis), sizeof *cfg->apis);
    if (!cfg->apis)
      return fail(err, err_size, "out of memory");
    size_t i;
    json_t *api;
    json_array_foreach(apis, i, api) {
      if (from_json(&cfg->apis[i], api, err, err_size) < 0)
        return -1;
      cfg->api_count = i + 1;
    }
  }
  return 0;
}

int gw_config_load(gw_config *cfg, const char *path, char *err, size_t err_size) {
  memset(cfg, 0, sizeof *cfg);
  err[0] = '\0';
  json_error_t jerr;
  json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
  if (!root)
    return fail(err, err_size, "%s:%d: %s", path, jerr.line, jerr.text);

  char dir[PATH_MAX];
  const char *slash = strrchr(path, '/');
  if (!slash)
    snprintf(dir, sizeof dir, ".");
  else if (slash == path)
    snprintf(dir, sizeof dir, "/");
  else
    snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
  char absolute[PATH_MAX];
  if (realpath(dir, absolute))
    snprintf(dir, sizeof dir, "%s", absolute);

  int rc = load_root(cfg, root, dir, err, err_size);
  json_decref(root);
  if (rc < 0)
    gw_config_clear(cfg);
  return rc;
}

static void free_list(char **list, size_t count) {
  for (size_t i = 0; list && i < count; i++)
    free(list[i]);
  free(list);
}

void gw_config_clear(gw_config *cfg) {
  free(cfg->listen_host);
  free(cfg->admin_host);
  free(cfg->python_worker_path);
  free(cfg->python_virtualenv);
  free_list(cfg->python_paths, cfg->python_path_count);
  free_list(cfg->plugins, cfg->plugin_count);
  for (size_t i = 0; i < cfg->api_count; i++)
    gw_api_spec_clear(&cfg->apis[i]);
  free(cfg->apis);
  memset(cfg, 0, sizeof *cfg);
}
