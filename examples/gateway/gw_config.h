/*
 * The gateway's JSON configuration: the file given with --config, and the
 * API objects that the admin API accepts (same shape as in the file).
 */
#ifndef GW_CONFIG_H
#define GW_CONFIG_H

#include <stddef.h>
#include <stdint.h>

/* One API: requests whose path starts with `context` go to `upstream`
 * through the chain described by `policies_json`. */
typedef struct gw_api_spec {
  char *name;
  char *context;
  char *upstream_host;
  uint16_t upstream_port;
  char *policies_json; /* the "policies" array, as pe_chain_builder_add_json() takes it */
  char *json;          /* the whole object, compact, as GET /apis shows it */
} gw_api_spec;

typedef struct gw_config {
  char *listen_host;
  uint16_t listen_port;
  char *admin_host;
  uint16_t admin_port;
  unsigned threads; /* 0: one per online CPU */
  int cpu_affinity; /* pin loop thread i and Python worker i to CPU i */
  int sched_batch;  /* run the gateway and its workers under SCHED_BATCH */
  uint32_t upstream_timeout_ms;
  unsigned listen_backlog; /* listen(2) backlog of each thread's socket */

  /* Client connections (the "client" object; see README.md). */
  uint32_t header_timeout_ms; /* a whole request head, from its first byte */
  uint32_t body_timeout_ms;   /* a request body: this, plus ... */
  size_t body_min_rate;       /* ... one second per this many bytes received */
  uint32_t send_timeout_ms;   /* a response the client reads nothing of */
  uint32_t idle_timeout_ms;   /* a keep-alive connection without a request */
  size_t stream_buffer_bytes; /* unsent output that pauses a streamed upstream */

  /* Reset exchanges kept per thread for reuse, in bytes of body they held. */
  size_t spare_exchange_bytes;

  int python_enabled; /* a "python" object was given */
  unsigned python_workers;
  uint32_t python_timeout_ms;
  char *python_worker_path; /* NULL: the build's or the installed worker */
  char *python_virtualenv;  /* NULL: none (pe_python_options_set_virtualenv) */
  char **python_paths;
  size_t python_path_count;

  char **plugins; /* resolved paths */
  size_t plugin_count;

  /* Engine limits; 0 keeps the engine's default. */
  size_t limit_header_count;
  size_t limit_header_bytes;
  size_t limit_body_bytes;

  gw_api_spec *apis;
  size_t api_count;
} gw_config;

/* Reads @p path into @p cfg. Relative paths in the file are resolved
 * against the file's directory. Returns 0, or -1 with a message in @p err. */
int gw_config_load(gw_config *cfg, const char *path, char *err, size_t err_size);
void gw_config_clear(gw_config *cfg);

/* Parses one API object (JSON text). Returns 0, or -1 with a message. */
int gw_api_spec_parse(gw_api_spec *spec, const char *text, size_t len, char *err, size_t err_size);
/* Deep copy; returns 0 or -1 (out of memory). */
int gw_api_spec_copy(gw_api_spec *dst, const gw_api_spec *src);
void gw_api_spec_clear(gw_api_spec *spec);

/* Splits "host:port" (IPv6 as "[::1]:port"). Returns 0 or -1. */
int gw_parse_host_port(const char *text, char **host, uint16_t *port);

#endif /* GW_CONFIG_H */
