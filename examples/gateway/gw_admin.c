/*
 * The admin HTTP API (see gw_admin.h). Replacing an API builds its chain
 * here, on the admin thread, so the worker threads never wait for it.
 */
#include "gw_admin.h"

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct gw_admin {
  gw_context *ctx;
  struct evhttp *http;
};

/* Admin requests are small JSON documents; anything larger is a mistake. */
#define ADMIN_MAX_BODY (1 << 20)

static void reply(struct evhttp_request *req, int status, const char *content_type,
                  const char *text) {
  struct evbuffer *body = evbuffer_new();
  evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", content_type);
  if (body)
    evbuffer_add(body, text, strlen(text));
  evhttp_send_reply(req, status, NULL, body);
  if (body)
    evbuffer_free(body);
}

static void reply_json(struct evhttp_request *req, int status, const char *key, const char *value) {
  json_t *obj = json_pack("{ss}", key, value);
  char *text = obj ? json_dumps(obj, JSON_COMPACT) : NULL;
  reply(req, status, "application/json", text ? text : "{}");
  free(text);
  json_decref(obj);
}

static void post_api(gw_admin *admin, struct evhttp_request *req) {
  struct evbuffer *in = evhttp_request_get_input_buffer(req);
  size_t len = evbuffer_get_length(in);
  const char *text = (const char *)evbuffer_pullup(in, -1);
  gw_api_spec spec;
  char err[1024];
  if (gw_api_spec_parse(&spec, text ? text : "", len, err, sizeof err) < 0) {
    reply_json(req, 400, "error", err);
    return;
  }
  int rc = gw_apis_put(admin->ctx->apis, &spec, err, sizeof err);
  if (rc < 0)
    reply_json(req, 400, "error", err);
  else
    reply_json(req, 200, "updated", spec.name);
  gw_api_spec_clear(&spec);
}

static void list_apis(gw_admin *admin, struct evhttp_request *req) {
  char *text = gw_apis_list_json(admin->ctx->apis);
  if (text)
    reply(req, 200, "application/json", text);
  else
    reply_json(req, 500, "error", "out of memory");
  free(text);
}

static void delete_api(gw_admin *admin, struct evhttp_request *req, const char *encoded_name) {
  char *name = evhttp_uridecode(encoded_name, 0, NULL);
  if (!name || !*name)
    reply_json(req, 404, "error", "no API name in the path");
  else if (gw_apis_delete(admin->ctx->apis, name) < 0)
    reply_json(req, 404, "error", "no such API");
  else
    reply_json(req, 200, "deleted", name);
  free(name);
}

static void metrics(gw_admin *admin, struct evhttp_request *req) {
  struct evbuffer *body = evbuffer_new();
  if (!body) {
    reply_json(req, 500, "error", "out of memory");
    return;
  }
  gw_metrics_render(admin->ctx->metrics, admin->ctx->engine, admin->ctx->config->python_enabled,
                    body);
  evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
                    "text/plain; version=0.0.4");
  evhttp_send_reply(req, 200, NULL, body);
  evbuffer_free(body);
}

static void handle(struct evhttp_request *req, void *arg) {
  gw_admin *admin = arg;
  enum evhttp_cmd_type method = evhttp_request_get_command(req);
  const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req));
  if (!path)
    path = "";

  if (strcmp(path, "/health") == 0 && method == EVHTTP_REQ_GET) {
    reply(req, 200, "application/json", "{\"status\":\"ok\"}");
  } else if (strcmp(path, "/metrics") == 0 && method == EVHTTP_REQ_GET) {
    metrics(admin, req);
  } else if (strcmp(path, "/apis") == 0 && method == EVHTTP_REQ_GET) {
    list_apis(admin, req);
  } else if (strcmp(path, "/apis") == 0 && method == EVHTTP_REQ_POST) {
    post_api(admin, req);
  } else if (strncmp(path, "/apis/", 6) == 0 && method == EVHTTP_REQ_DELETE) {
    delete_api(admin, req, path + 6);
  } else if (strcmp(path, "/health") == 0 || strcmp(path, "/metrics") == 0 ||
             strncmp(path, "/apis", 5) == 0) {
    reply_json(req, 405, "error", "method not allowed");
  } else {
    reply_json(req, 404, "error", "not found");
  }
}

int gw_admin_start(gw_admin **out, struct event_base *base, gw_context *ctx) {
  gw_admin *admin = calloc(1, sizeof *admin);
  if (!admin || !(admin->http = evhttp_new(base))) {
    free(admin);
    fprintf(stderr, "policyexec-gateway: admin: out of memory\n");
    return -1;
  }
  admin->ctx = ctx;
  evhttp_set_max_body_size(admin->http, ADMIN_MAX_BODY);
  /* Every method reaches handle(), which answers 405 where it does not fit. */
  evhttp_set_allowed_methods(admin->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD |
                                              EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE |
                                              EVHTTP_REQ_OPTIONS | EVHTTP_REQ_PATCH);
  evhttp_set_gencb(admin->http, handle, admin);
  if (!evhttp_bind_socket_with_handle(admin->http, ctx->config->admin_host,
                                      ctx->config->admin_port)) {
    fprintf(stderr, "policyexec-gateway: admin: cannot listen on %s:%u\n", ctx->config->admin_host,
            (unsigned)ctx->config->admin_port);
    gw_admin_free(admin);
    return -1;
  }
  *out = admin;
  return 0;
}

void gw_admin_free(gw_admin *admin) {
  if (!admin)
    return;
  evhttp_free(admin->http);
  free(admin);
}
