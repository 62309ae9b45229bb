/*
 * The admin HTTP API (see gw_admin.h).
 *
 * Creating or replacing an API builds its chain on a short-lived thread of
 * its own: creating instances may take as long as a Python __init__ does,
 * and the admin loop must go on answering (/health above all) meanwhile.
 * The finished route comes back to the admin loop through an eventfd and is
 * installed there, and the POST is answered then. At shutdown nobody waits
 * for a build: its thread is left to finish (or to be ended with the
 * process) and throws its result away. It holds an exchange of the engine
 * meanwhile, so the engine outlives it whatever the main thread frees.
 */
#include "gw_admin.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

/* One POST /apis whose chain is being built. */
typedef struct build_job {
  struct build_job *next;
  gw_admin *admin;            /* NULL once the admin is gone: the result is dropped */
  struct evhttp_request *req; /* NULL once the admin client is gone */
  pe_engine *engine;
  pe_exchange *keep_engine; /* a reference that keeps the engine alive */
  gw_api_spec spec;
  gw_route *route; /* the result, or NULL with err */
  char err[1024];
} build_job;

struct gw_admin {
  gw_context *ctx;
  struct evhttp *http;
  int done_fd; /* eventfd: a build finished */
  struct event *done_event;
  build_job *running; /* builds in progress */
  build_job *done;    /* finished, to install and answer */
};

/* Guards every job's admin link and the admin's lists. Static, so that a
 * build thread finishing after the admin (even main()) is gone can still
 * take it. */
static pthread_mutex_t jobs_lock = PTHREAD_MUTEX_INITIALIZER;

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

static void job_free(build_job *job) {
  gw_route_unref(job->route);
  gw_api_spec_clear(&job->spec);
  pe_exchange_free(job->keep_engine); /* may be the engine's last reference */
  free(job);
}

static void unlink_job(build_job **list, build_job *job) {
  for (build_job **p = list; *p; p = &(*p)->next) {
    if (*p == job) {
      *p = job->next;
      return;
    }
  }
}

static void *build_main(void *arg) {
  build_job *job = arg;
  job->route = gw_apis_build(job->engine, &job->spec, job->err, sizeof job->err);
  pthread_mutex_lock(&jobs_lock);
  gw_admin *admin = job->admin;
  if (admin) {
    unlink_job(&admin->running, job);
    job->next = admin->done;
    admin->done = job;
    uint64_t one = 1;
    if (write(admin->done_fd, &one, sizeof one) < 0)
      perror("policyexec-gateway: admin: build done");
  }
  pthread_mutex_unlock(&jobs_lock);
  if (!admin)
    job_free(job); /* shutting down: nobody wants the result */
  return NULL;
}

/* The job no longer answers its client: evhttp must not call back into a
 * job that its build thread may free. */
static void forget_client(build_job *job) {
  if (job->req)
    evhttp_connection_set_closecb(evhttp_request_get_connection(job->req), NULL, NULL);
  job->req = NULL;
}

/* The admin client went away before its build finished. */
static void on_admin_client_closed(struct evhttp_connection *conn, void *arg) {
  build_job *job = arg;
  (void)conn;
  job->req = NULL;
}

/* On the admin loop: installs finished builds and answers their POSTs. */
static void on_build_done(evutil_socket_t fd, short what, void *arg) {
  gw_admin *admin = arg;
  uint64_t count;
  (void)what;
  if (read(fd, &count, sizeof count) < 0)
    return;
  pthread_mutex_lock(&jobs_lock);
  build_job *done = admin->done;
  admin->done = NULL;
  pthread_mutex_unlock(&jobs_lock);
  while (done) {
    build_job *job = done;
    done = job->next;
    int rc = -1;
    if (job->route) {
      rc = gw_apis_install(admin->ctx->apis, job->route, job->err, sizeof job->err);
      job->route = NULL; /* the table has it, or it was dropped */
    }
    struct evhttp_request *req = job->req;
    forget_client(job);
    if (req && rc < 0)
      reply_json(req, 400, "error", job->err);
    else if (req)
      reply_json(req, 200, "updated", job->spec.name);
    job_free(job);
  }
}

static void post_api(gw_admin *admin, struct evhttp_request *req) {
  struct evbuffer *in = evhttp_request_get_input_buffer(req);
  size_t len = evbuffer_get_length(in);
  const char *text = (const char *)evbuffer_pullup(in, -1);
  char err[1024];
  build_job *job = calloc(1, sizeof *job);
  if (!job) {
    reply_json(req, 500, "error", "out of memory");
    return;
  }
  if (gw_api_spec_parse(&job->spec, text ? text : "", len, err, sizeof err) < 0) {
    reply_json(req, 400, "error", err);
    free(job);
    return;
  }
  job->admin = admin;
  job->req = req;
  job->engine = admin->ctx->engine;
  pthread_t tid;
  pthread_attr_t attr;
  int ok =
      pe_exchange_new(&job->keep_engine, job->engine) == PE_OK && pthread_attr_init(&attr) == 0;
  if (ok) {
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_mutex_lock(&jobs_lock);
    ok = pthread_create(&tid, &attr, build_main, job) == 0;
    if (ok) {
      job->next = admin->running;
      admin->running = job;
    }
    pthread_mutex_unlock(&jobs_lock);
    pthread_attr_destroy(&attr);
  }
  if (!ok) {
    reply_json(req, 500, "error", "cannot start a chain build");
    job_free(job);
    return;
  }
  evhttp_connection_set_closecb(evhttp_request_get_connection(req), on_admin_client_closed, job);
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
  admin->done_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  admin->done_event = admin->done_fd < 0 ? NULL
                                         : event_new(base, admin->done_fd, EV_READ | EV_PERSIST,
                                                     on_build_done, admin);
  if (!admin->done_event || event_add(admin->done_event, NULL) < 0) {
    fprintf(stderr, "policyexec-gateway: admin: out of resources\n");
    gw_admin_free(admin);
    return -1;
  }
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

int gw_admin_builds_running(gw_admin *admin) {
  pthread_mutex_lock(&jobs_lock);
  int running = admin && admin->running != NULL;
  pthread_mutex_unlock(&jobs_lock);
  return running;
}

void gw_admin_free(gw_admin *admin) {
  if (!admin)
    return;
  /* Builds still running drop their result when they end (not waited for). */
  pthread_mutex_lock(&jobs_lock);
  for (build_job *job = admin->running; job; job = job->next) {
    job->admin = NULL;
    forget_client(job);
  }
  for (build_job *job = admin->done; job; job = job->next)
    forget_client(job);
  build_job *done = admin->done;
  admin->running = admin->done = NULL;
  pthread_mutex_unlock(&jobs_lock);
  while (done) {
    build_job *next = done->next;
    job_free(done);
    done = next;
  }
  evhttp_free(admin->http); /* the pending POSTs' connections close unanswered */
  if (admin->done_event)
    event_free(admin->done_event);
  if (admin->done_fd >= 0)
    close(admin->done_fd);
  free(admin);
}
