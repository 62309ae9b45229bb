/* The gRPC executor backend: starting it (Hello, registering the policies
 * an executor advertises), instances, the blocking run, admission, ping and
 * shutdown. The non-blocking run is in pe_grpc_dispatch.c. */
#include "pe_grpc.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

/* ---- scratch (encode / decode room), pooled for blocking runs ---- */

pe__grpc_scratch *pe__grpc_scratch_take(pe__grpc_backend *be) {
  pthread_mutex_lock(&be->lock);
  pe__grpc_scratch *s = be->idle;
  if (s)
    be->idle = s->next;
  pthread_mutex_unlock(&be->lock);
  if (!s && (s = pe__calloc(be->mem, 1, sizeof *s)))
    pe__py_conn_init(&s->conn, be->mem, be->max_message);
  return s;
}

void pe__grpc_scratch_put(pe__grpc_backend *be, pe__grpc_scratch *s) {
  pe__py_arena_reset(&s->conn.arena);
  pthread_mutex_lock(&be->lock);
  s->next = be->idle;
  be->idle = s;
  pthread_mutex_unlock(&be->lock);
}

static void scratch_free(pe__grpc_backend *be, pe__grpc_scratch *s) {
  s->conn.specs = NULL;
  pe__py_conn_free(&s->conn);
  pe__free(be->mem, s);
}

/* ---- encoding, outcomes ---- */

int pe__grpc_encode(pe__grpc_scratch *s, const pe_exchange *ex, const pe__batch *b,
                    const unsigned char **req, size_t *len) {
  pe__py_conn *c = &s->conn;
  for (size_t i = 0; i < b->n; i++)
    s->specs[i] = &((pe__grpc_instance *)b->step[i]->instance)->spec;
  c->specs = s->specs;
  c->out.len = c->out_off = 0;
  uint64_t id;
  int rc = pe__py_encode_run(c, ex, b, &id);
  c->specs = NULL;
  if (rc != PE_OK)
    return rc;
  /* The codec frames for the Unix socket; gRPC frames itself. */
  *req = (const unsigned char *)c->out.data + 4;
  *len = c->out.len - 4;
  return PE_OK;
}

int64_t pe__grpc_batch_timeout(const pe__batch *b) {
  int64_t ms = 0;
  for (size_t i = 0; i < b->n; i++)
    ms += b->step[i]->timeout_ms;
  return ms * 1000000;
}

void pe__grpc_finish(pe__grpc_backend *be, pe__grpc_scratch *s, pe_exchange *ex, const pe__batch *b,
                     const pe__grpc_result *r) {
  char why[PE__ERRMSG_SIZE];
  if (r->status == PE__GRPC_STATUS_DEADLINE_EXCEEDED) {
    pe__errmsg_set(why, "no answer from gRPC executor '%s' within %lld ms", be->cfg.name,
                   (long long)(pe__grpc_batch_timeout(b) / 1000000));
    pe__py_fail_steps(ex, b, 0, PE_ERR_TIMEOUT, PE_STEP_TIMEOUT, why);
    return;
  }
  if (r->status != PE__GRPC_STATUS_OK) {
    /* UNAVAILABLE (no executor reachable, or it went away mid-call) and
     * every other failure of the call itself. */
    pe__errmsg_set(why, "gRPC executor '%s' at %s failed the call: %s (gRPC status %d)",
                   be->cfg.name, be->target, r->detail[0] ? r->detail : "no detail", r->status);
    pe__py_fail_steps(ex, b, 0, PE_ERR_WORKER, PE_STEP_CRASHED, why);
    return;
  }
  pe__py_arena_reset(&s->conn.arena);
  pe__py_response *resp = policyexec__v1__response__unpack(&s->conn.arena.pc, r->len, r->data);
  int rc = resp ? pe__py_check_reply(resp, b, 0, why) : PE_ERR_WORKER;
  if (!resp)
    pe__errmsg_set(why, "the reply does not parse");
  if (rc != PE_OK) {
    char msg[PE__ERRMSG_SIZE];
    pe__errmsg_set(msg, "gRPC executor '%s' broke the protocol: %s", be->cfg.name, why);
    pe__py_fail_steps(ex, b, 0, PE_ERR_WORKER, PE_STEP_CRASHED, msg);
    return;
  }
  pe__py_apply_reply(ex, b, 0, resp);
  pe__py_arena_reset(&s->conn.arena);
}

int pe__grpc_admit_take(pe__grpc_backend *be) {
  long before = atomic_fetch_add_explicit(&be->inflight, 1, memory_order_relaxed);
  if ((size_t)before >= be->cfg.max_in_flight) {
    atomic_fetch_sub_explicit(&be->inflight, 1, memory_order_relaxed);
    return PE_ERR_BUSY;
  }
  return PE_OK;
}

void pe__grpc_admit_give(pe__grpc_backend *be) {
  atomic_fetch_sub_explicit(&be->inflight, 1, memory_order_relaxed);
}

static pe__grpc_backend *grpc_be(pe__backend *be) {
  return (pe__grpc_backend *)(void *)be;
}

/* ---- the blocking run ---- */

static int grpc_run_batch(pe__backend *self, pe_exchange *ex, const pe__batch *b) {
  pe__grpc_backend *be = grpc_be(self);
  if (pe__grpc_admit_take(be) != PE_OK)
    return PE_ERR_BUSY;
  char err[PE__ERRMSG_SIZE] = "";
  pe__grpc_scratch *s = pe__grpc_scratch_take(be);
  pe__grpc_channel *ch = s ? pe__grpc_channel_get(be, err) : NULL;
  const unsigned char *req;
  size_t len;
  int rc = !s ? PE_ERR_NOMEM : !ch ? PE_ERR_WORKER : pe__grpc_encode(s, ex, b, &req, &len);
  if (rc == PE_OK) {
    pe__grpc_result r;
    be->t->call(ch, PE__GRPC_METHOD_CALL, req, len, pe__grpc_batch_timeout(b), &r);
    pe__grpc_finish(be, s, ex, b, &r);
    be->t->result_release(&r);
  } else if (rc == PE_ERR_WORKER) {
    pe__py_fail_steps(ex, b, 0, PE_ERR_WORKER, PE_STEP_CRASHED, err);
    rc = PE_OK;
  }
  if (s)
    pe__grpc_scratch_put(be, s);
  pe__grpc_admit_give(be);
  return rc;
}

/* ---- instances ---- */

/* FNV-1a over name, version and params: an instance's id is what it is,
 * so every engine and every executor agree on it without talking. */
static uint64_t instance_id(const char *name, const char *version, const char *params,
                            size_t params_len) {
  uint64_t h = 1469598103934665603ull;
  const char *parts[3] = {name, version, params};
  size_t lens[3] = {strlen(name) + 1, strlen(version) + 1, params_len};
  for (size_t p = 0; p < 3; p++)
    for (size_t i = 0; i < lens[p]; i++)
      h = (h ^ (unsigned char)parts[p][i]) * 1099511628211ull;
  return h ? h : 1;
}

static int grpc_create_instance(pe__backend *self, pe__step *step, char *err) {
  pe__grpc_backend *be = grpc_be(self);
  pe__grpc_instance *inst = pe__calloc(be->mem, 1, sizeof *inst);
  if (!inst ||
      !(inst->base.params_json = pe__strndup(be->mem, step->params_json, step->params_len))) {
    pe__free(be->mem, inst);
    pe__errmsg_set(err, "out of memory");
    return PE_ERR_NOMEM;
  }
  const pe__policy *p = step->policy;
  inst->base.policy = p;
  inst->base.id = instance_id(p->name, p->version, step->params_json, step->params_len);
  policyexec__v1__create_instance__init(&inst->spec);
  inst->spec.instance_id = inst->base.id;
  inst->spec.name = p->name;
  inst->spec.version = p->version;
  inst->spec.params_json = inst->base.params_json;
  if (step->timeout_ms == 0)
    step->timeout_ms = be->cfg.default_timeout_ms;

  /* Checks the params on one executor now, as a local pool does. */
  pe__grpc_scratch *s = pe__grpc_scratch_take(be);
  int rc = s ? PE_OK : PE_ERR_NOMEM;
  if (rc == PE_OK) {
    pe__py_request req = POLICYEXEC__V1__REQUEST__INIT;
    req.body_case = POLICYEXEC__V1__REQUEST__BODY_CREATE;
    req.create = &inst->spec;
    pe__py_response *resp;
    rc = pe__grpc_control(be, s, &req, &resp, err);
    if (rc == PE_OK && resp->body_case != POLICYEXEC__V1__RESPONSE__BODY_CREATE) {
      pe__errmsg_set(err, "executor answered Create with message kind %d", (int)resp->body_case);
      rc = PE_ERR_WORKER;
    } else if (rc == PE_OK && !resp->create->ok) {
      pe__errmsg_set(err, "%s", resp->create->error);
      rc = PE_ERR_PARAM;
    }
    pe__grpc_scratch_put(be, s);
  }
  if (rc != PE_OK) {
    pe__free(be->mem, inst->base.params_json);
    pe__free(be->mem, inst);
    return rc;
  }
  step->instance = inst;
  return PE_OK;
}

/* Executors keep instances: they are shared by every engine that uses the
 * same policy, version and params, and cost nothing while unused. */
static void grpc_destroy_instance(pe__backend *self, pe__step *step) {
  pe__grpc_backend *be = grpc_be(self);
  pe__grpc_instance *inst = step->instance;
  if (!inst)
    return;
  pe__free(be->mem, inst->base.params_json);
  pe__free(be->mem, inst);
  step->instance = NULL;
}

/* ---- start ---- */

static void backend_free(pe__grpc_backend *be) {
  pe__advertised_free(be->engine, &be->advertised);
  /* A channel made by a parent before fork is not this process's to free. */
  if (be->channel && be->channel_pid == getpid())
    be->t->channel_free(be->channel);
  while (be->idle) {
    pe__grpc_scratch *s = be->idle;
    be->idle = s->next;
    scratch_free(be, s);
  }
  pe__grpc_options_release(&be->cfg, be->mem);
  pe__free(be->mem, be->target);
  pthread_mutex_destroy(&be->lock);
  pe__free(be->mem, be);
}

static void grpc_shutdown(pe__backend *self) {
  backend_free(grpc_be(self));
}

/* Its policies become registry entries (the executor's Hello). */
static int collect_policies(pe__grpc_backend *be, const Policyexec__V1__HelloReply *hello,
                            char *err) {
  pe__log(be->engine, PE_LOG_INFO, "gRPC executor '%s' at %s: %s (pid %u), %zu policies",
          be->cfg.name, be->target, hello->runtime, hello->pid, hello->n_policies);
  return pe__py_collect_policies(be->engine, hello, &be->advertised, err);
}

/* Registers the executor with the policies it advertises. */
static int register_executor(pe__grpc_backend *be, char *err) {
  return pe__engine_add_executor_with_policies(be->engine, be->cfg.name, &pe__grpc_backend_ops,
                                               (pe__backend *)(void *)be, &be->advertised,
                                               "remote policy", err);
}

static size_t derived_max_message(const pe_engine *e) {
  const size_t *l = e->opts.limits;
  uint64_t total = 4ull * l[PE_LIMIT_BODY_BYTES] + 4ull * l[PE_LIMIT_HEADER_BYTES] +
                   2ull * l[PE_LIMIT_META_BYTES] + (1u << 20);
  return total > 0x7fffffffu ? 0x7fffffffu : (size_t)total;
}

/* grpc://host:port is dns:///host:port; anything else is gRPC's own. */
static char *grpc_target(const pe_mem *mem, const char *t) {
  static const char scheme[] = "grpc://";
  if (strncmp(t, scheme, sizeof scheme - 1) != 0)
    return pe__strndup(mem, t, strlen(t));
  const char *rest = t + sizeof scheme - 1;
  size_t n = strlen(rest);
  char *out = pe__malloc(mem, n + 8);
  if (out)
    snprintf(out, n + 8, "dns:///%s", rest);
  return out;
}

static int backend_new(pe_engine *e, const pe_grpc_options *opts, pe__grpc_backend **out,
                       char *err) {
  const pe_mem *mem = pe__engine_mem(e);
  pe__grpc_backend *be = pe__calloc(mem, 1, sizeof *be);
  if (!be) {
    pe__errmsg_set(err, "out of memory");
    return PE_ERR_NOMEM;
  }
  be->engine = e;
  be->mem = mem;
  pthread_mutex_init(&be->lock, NULL);
  atomic_init(&be->inflight, 0);
  int rc = pe__grpc_options_copy(&be->cfg, opts, mem);
  if (rc == PE_OK && !(be->target = grpc_target(mem, be->cfg.target)))
    rc = PE_ERR_NOMEM;
  if (rc != PE_OK) {
    pe__errmsg_set(err, "out of memory");
    backend_free(be);
    return rc;
  }
  be->max_message = be->cfg.max_message ? be->cfg.max_message : derived_max_message(e);
  if ((rc = pe__grpc_load(be->cfg.module_path, &be->t, err)) != PE_OK) {
    backend_free(be);
    return rc;
  }
  pe__grpc_settings *s = &be->settings;
  s->target = be->target;
  s->ca_file = be->cfg.ca_file;
  s->cert_file = be->cfg.cert_file;
  s->key_file = be->cfg.key_file;
  s->keepalive_ms = be->cfg.keepalive_ms;
  s->keepalive_timeout_ms = be->cfg.keepalive_timeout_ms;
  s->backoff_initial_ms = be->cfg.backoff_initial_ms;
  s->backoff_max_ms = be->cfg.backoff_max_ms;
  s->max_message = be->max_message;
  s->lb_policy = "round_robin";
  s->no_retries = !be->cfg.retries;
  *out = be;
  return PE_OK;
}

/* Hello: the protocol version and the executor's policies. */
static int hello(pe__grpc_backend *be, char *err) {
  pe__grpc_scratch *s = pe__grpc_scratch_take(be);
  if (!s) {
    pe__errmsg_set(err, "out of memory");
    return PE_ERR_NOMEM;
  }
  Policyexec__V1__Hello h = POLICYEXEC__V1__HELLO__INIT;
  h.protocol_version = POLICYEXEC__V1__PROTOCOL_VERSION__PROTOCOL_VERSION_CURRENT;
  pe__py_request req = POLICYEXEC__V1__REQUEST__INIT;
  req.body_case = POLICYEXEC__V1__REQUEST__BODY_HELLO;
  req.hello = &h;
  pe__py_response *resp;
  int rc = pe__grpc_control(be, s, &req, &resp, err);
  if (rc == PE_OK && resp->body_case != POLICYEXEC__V1__RESPONSE__BODY_HELLO) {
    pe__errmsg_set(err, "executor answered Hello with message kind %d", (int)resp->body_case);
    rc = PE_ERR_WORKER;
  } else if (rc == PE_OK && resp->hello->protocol_version !=
                                POLICYEXEC__V1__PROTOCOL_VERSION__PROTOCOL_VERSION_CURRENT) {
    pe__errmsg_set(err, "executor speaks protocol version %u", resp->hello->protocol_version);
    rc = PE_ERR_WORKER;
  }
  if (rc == PE_OK)
    rc = collect_policies(be, resp->hello, err);
  pe__grpc_scratch_put(be, s);
  return rc;
}

int pe_engine_start_grpc(pe_engine *engine, const pe_grpc_options *opts) {
  if (!engine || !opts || !opts->target)
    return PE_ERR_INVALID_ARGUMENT;
  if (pe__engine_find_executor(engine, pe_str(opts->name))) {
    pe__engine_fail(engine, "an executor named '%s' is already running", opts->name);
    return PE_ERR_STATE;
  }
  char err[PE__ERRMSG_SIZE] = "";
  pe__grpc_backend *be = NULL;
  int rc = backend_new(engine, opts, &be, err);
  if (rc == PE_OK && (rc = hello(be, err)) == PE_OK)
    rc = register_executor(be, err);
  if (rc != PE_OK) {
    pe__engine_fail(engine, "gRPC executor '%s': %s", opts->name, err);
    if (be)
      backend_free(be);
    return rc;
  }
  pe__log(engine, PE_LOG_INFO, "gRPC executor '%s' started: %s (module gRPC %s)", opts->name,
          be->target, be->t->version());
  return PE_OK;
}

/* ---- health, admission ---- */

static int grpc_ping(pe__backend *self, size_t *alive) {
  pe__grpc_backend *be = grpc_be(self);
  pe__grpc_scratch *s = pe__grpc_scratch_take(be);
  if (!s)
    return PE_ERR_NOMEM;
  Policyexec__V1__Ping ping = POLICYEXEC__V1__PING__INIT;
  pe__py_request req = POLICYEXEC__V1__REQUEST__INIT;
  req.body_case = POLICYEXEC__V1__REQUEST__BODY_PING;
  req.ping = &ping;
  pe__py_response *resp;
  char err[PE__ERRMSG_SIZE];
  int rc = pe__grpc_control(be, s, &req, &resp, err);
  if (rc == PE_OK && resp->body_case != POLICYEXEC__V1__RESPONSE__BODY_PONG)
    rc = PE_ERR_WORKER;
  pe__grpc_scratch_put(be, s);
  if (rc != PE_OK)
    pe__log(be->engine, PE_LOG_WARN, "gRPC executor '%s': ping failed: %s", be->cfg.name, err);
  if (alive)
    *alive = rc == PE_OK;
  return rc == PE_OK ? PE_OK : PE_ERR_WORKER;
}

static int grpc_admit(pe__backend *self, char *why) {
  pe__grpc_backend *be = grpc_be(self);
  if ((size_t)atomic_load_explicit(&be->inflight, memory_order_relaxed) < be->cfg.max_in_flight)
    return PE_OK;
  pe__errmsg_set(why, "%zu gRPC calls in flight", be->cfg.max_in_flight);
  return PE_ERR_BUSY;
}

int pe_engine_grpc_ping(pe_engine *engine, const char *name, size_t *alive) {
  if (!engine || !name)
    return PE_ERR_INVALID_ARGUMENT;
  const pe__executor *x = pe__engine_find_executor(engine, pe_str(name));
  if (!x || x->ops != &pe__grpc_backend_ops)
    return PE_ERR_STATE;
  return grpc_ping(x->be, alive);
}

const pe__backend_ops pe__grpc_backend_ops = {
    .kind = "grpc",
    .create_instance = grpc_create_instance,
    .destroy_instance = grpc_destroy_instance,
    .run_batch = grpc_run_batch,
    .submit = pe__grpc_submit,
    .dispatcher_attach = pe__grpc_dispatcher_attach,
    .dispatcher_detach = pe__grpc_dispatcher_detach,
    .dispatcher_timer = pe__grpc_dispatcher_timer,
    .forget = pe__grpc_forget,
    .admit = grpc_admit,
    .ping = grpc_ping,
    .shutdown = grpc_shutdown,
};
