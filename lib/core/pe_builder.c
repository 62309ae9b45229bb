/* The chain builder: collecting steps (one by one or from the JSON chain
 * format), then building the immutable chain: resolving policies, checking
 * params, creating instances and computing run orders, phases and needs. */
#include "pe_backend.h"
#include "pe_private.h"

#include <jansson.h>
#include <stdio.h>

#define MAX_TIMEOUT_MS 3600000u

typedef struct builder_step {
  char *name;
  char *version;
  char *params_json; /* compact JSON object, NUL-terminated */
  size_t params_len;
  pe_failure_mode mode;
  uint32_t timeout_ms;
  bool enabled;
  char *executor; /* named by the step, or NULL: the policy's own */
} builder_step;

struct pe_chain_builder {
  pe_engine *engine; /* holds a reference */
  builder_step *steps;
  size_t count, cap;
  char errmsg[PE__ERRMSG_SIZE];
};

int pe_chain_builder_new(pe_chain_builder **out, pe_engine *engine) {
  if (!out || !engine)
    return PE_ERR_INVALID_ARGUMENT;
  pe_chain_builder *b = pe__calloc(pe__engine_mem(engine), 1, sizeof *b);
  if (!b)
    return PE_ERR_NOMEM;
  pe__engine_ref(engine);
  b->engine = engine;
  *out = b;
  return PE_OK;
}

static void step_free(const pe_mem *mem, builder_step *s) {
  pe__free(mem, s->name);
  pe__free(mem, s->version);
  pe__free(mem, s->params_json);
  pe__free(mem, s->executor);
}

/* Drops the steps from index `keep` on (undoing a failed add_json). */
static void truncate_steps(pe_chain_builder *b, size_t keep) {
  while (b->count > keep)
    step_free(pe__engine_mem(b->engine), &b->steps[--b->count]);
}

void pe_chain_builder_free(pe_chain_builder *b) {
  if (!b)
    return;
  pe_engine *e = b->engine;
  truncate_steps(b, 0);
  pe__free(pe__engine_mem(e), b->steps);
  pe__free(pe__engine_mem(e), b);
  pe__engine_unref(e);
}

const char *pe_chain_builder_errmsg(const pe_chain_builder *b) {
  return b ? b->errmsg : "";
}

static int builder_fail(pe_chain_builder *b, int rc, const char *fmt, ...) PE_PRINTF(3, 4);
static int builder_fail(pe_chain_builder *b, int rc, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  pe__errmsg_vset(b->errmsg, fmt, ap);
  va_end(ap);
  return rc;
}

/* Compact text of a JSON object, in the engine's memory. */
static char *dump_compact(const pe_mem *mem, const json_t *obj, size_t *len) {
  size_t n = json_dumpb(obj, NULL, 0, JSON_COMPACT);
  if (n == 0)
    return NULL; /* an object is at least "{}": jansson ran out of memory */
  char *text = pe__malloc(mem, n + 1);
  if (!text)
    return NULL;
  if (json_dumpb(obj, text, n, JSON_COMPACT) != n) {
    pe__free(mem, text); /* jansson ran out of memory the second time */
    return NULL;
  }
  text[n] = '\0';
  *len = n;
  return text;
}

/* Appends an enabled, fail-closed step; returns its index or PE_ERR_NOMEM. */
static int append_step(pe_chain_builder *b, pe_slice name, pe_slice version, const json_t *params) {
  const pe_mem *mem = pe__engine_mem(b->engine);
  if (b->count == b->cap) {
    size_t cap = b->cap ? 2 * b->cap : 4;
    builder_step *grown = pe__realloc(mem, b->steps, cap * sizeof *grown);
    if (!grown)
      return builder_fail(b, PE_ERR_NOMEM, "out of memory");
    b->steps = grown;
    b->cap = cap;
  }
  /* timeout_ms 0: not set, so the backend's default applies. */
  builder_step s = {.mode = PE_FAIL_CLOSED, .timeout_ms = 0, .enabled = true};
  s.name = pe__strndup(mem, name.ptr, name.len);
  s.version = pe__strndup(mem, version.ptr, version.len);
  s.params_json = dump_compact(mem, params, &s.params_len);
  if (!s.name || !s.version || !s.params_json) {
    step_free(mem, &s);
    return builder_fail(b, PE_ERR_NOMEM, "out of memory");
  }
  b->steps[b->count] = s;
  return (int)b->count++;
}

int pe_chain_builder_add_step(pe_chain_builder *b, pe_slice name, pe_slice version,
                              pe_slice params_json) {
  if (!b)
    return PE_ERR_INVALID_ARGUMENT;
  b->errmsg[0] = '\0';
  if (!name.len || !version.len || (!name.ptr || !version.ptr))
    return builder_fail(b, PE_ERR_INVALID_ARGUMENT, "step %zu: empty policy name or version",
                        b->count);
  if (b->count >= INT32_MAX)
    return builder_fail(b, PE_ERR_INVALID_ARGUMENT, "too many steps");
  pe_slice text = params_json.len ? params_json : PE_LIT("{}");
  json_error_t jerr;
  json_t *params = json_loadb(text.ptr, text.len, JSON_REJECT_DUPLICATES, &jerr);
  if (!params)
    return builder_fail(b, PE_ERR_JSON, "step %zu: params: invalid JSON at line %d column %d: %s",
                        b->count, jerr.line, jerr.column, jerr.text);
  int rc = json_is_object(params)
               ? append_step(b, name, version, params)
               : builder_fail(b, PE_ERR_JSON, "step %zu: params must be a JSON object", b->count);
  json_decref(params);
  return rc;
}

static builder_step *step_at(pe_chain_builder *b, int step) {
  if (!b || step < 0 || (size_t)step >= b->count)
    return NULL;
  return &b->steps[step];
}

int pe_chain_builder_set_failure_mode(pe_chain_builder *b, int step, pe_failure_mode mode) {
  builder_step *s = step_at(b, step);
  if (!s || (mode != PE_FAIL_CLOSED && mode != PE_FAIL_OPEN))
    return PE_ERR_INVALID_ARGUMENT;
  s->mode = mode;
  return PE_OK;
}

int pe_chain_builder_set_timeout(pe_chain_builder *b, int step, uint32_t timeout_ms) {
  builder_step *s = step_at(b, step);
  if (!s || timeout_ms < 1 || timeout_ms > MAX_TIMEOUT_MS)
    return PE_ERR_INVALID_ARGUMENT;
  s->timeout_ms = timeout_ms;
  return PE_OK;
}

int pe_chain_builder_set_executor(pe_chain_builder *b, int step, pe_slice name) {
  builder_step *s = step_at(b, step);
  if (!s || !name.ptr || name.len == 0 || name.len > PE__EXECUTOR_NAME_MAX ||
      memchr(name.ptr, '\0', name.len))
    return PE_ERR_INVALID_ARGUMENT;
  char *copy = pe__strndup(pe__engine_mem(b->engine), name.ptr, name.len);
  if (!copy)
    return builder_fail(b, PE_ERR_NOMEM, "out of memory");
  pe__free(pe__engine_mem(b->engine), s->executor);
  s->executor = copy;
  return PE_OK;
}

int pe_chain_builder_set_enabled(pe_chain_builder *b, int step, int enabled) {
  builder_step *s = step_at(b, step);
  if (!s)
    return PE_ERR_INVALID_ARGUMENT;
  s->enabled = enabled != 0;
  return PE_OK;
}

/* ---- the JSON chain format ---- */

static int json_step_fail(pe_chain_builder *b, size_t index, const char *member,
                          const char *expected) {
  return builder_fail(b, PE_ERR_JSON, "step %zu: member '%s' must be %s", index, member, expected);
}

/* Checks one step object and appends it; on failure appends nothing. */
static int add_json_step(pe_chain_builder *b, size_t index, json_t *obj) {
  if (!json_is_object(obj))
    return builder_fail(b, PE_ERR_JSON, "step %zu: expected an object", index);
  const char *key;
  json_t *v;
  json_object_foreach(obj, key, v) {
    if (strcmp(key, "name") && strcmp(key, "version") && strcmp(key, "params") &&
        strcmp(key, "failure_mode") && strcmp(key, "timeout_ms") && strcmp(key, "enabled") &&
        strcmp(key, "executor"))
      return builder_fail(b, PE_ERR_JSON, "step %zu: unknown member '%s'", index, key);
  }
  json_t *name = json_object_get(obj, "name");
  json_t *version = json_object_get(obj, "version");
  json_t *params = json_object_get(obj, "params");
  json_t *mode = json_object_get(obj, "failure_mode");
  json_t *timeout = json_object_get(obj, "timeout_ms");
  json_t *enabled = json_object_get(obj, "enabled");
  json_t *executor = json_object_get(obj, "executor");
  if (!json_is_string(name) || json_string_length(name) == 0)
    return json_step_fail(b, index, "name", "a non-empty string");
  if (!json_is_string(version) || json_string_length(version) == 0)
    return json_step_fail(b, index, "version", "a non-empty string");
  if (params && !json_is_object(params))
    return json_step_fail(b, index, "params", "an object");
  pe_failure_mode fm = PE_FAIL_CLOSED;
  if (mode) {
    const char *m = json_string_value(mode); /* NULL unless a string */
    if (!m || (strcmp(m, "open") && strcmp(m, "closed")))
      return json_step_fail(b, index, "failure_mode", "\"open\" or \"closed\"");
    fm = strcmp(m, "open") == 0 ? PE_FAIL_OPEN : PE_FAIL_CLOSED;
  }
  if (timeout && (!json_is_integer(timeout) || json_integer_value(timeout) < 1 ||
                  json_integer_value(timeout) > MAX_TIMEOUT_MS))
    return json_step_fail(b, index, "timeout_ms", "an integer from 1 to 3600000");
  if (enabled && !json_is_boolean(enabled))
    return json_step_fail(b, index, "enabled", "true or false");
  if (executor && (!json_is_string(executor) || json_string_length(executor) == 0 ||
                   json_string_length(executor) > PE__EXECUTOR_NAME_MAX ||
                   strlen(json_string_value(executor)) != json_string_length(executor)))
    return json_step_fail(b, index, "executor", "an executor name of 1 to 63 characters");

  json_t *empty = NULL;
  if (!params && !(params = empty = json_object()))
    return builder_fail(b, PE_ERR_NOMEM, "out of memory");
  int rc = append_step(b, pe_bytes(json_string_value(name), json_string_length(name)),
                       pe_bytes(json_string_value(version), json_string_length(version)), params);
  json_decref(empty);
  if (rc < 0)
    return rc;
  builder_step *s = &b->steps[rc];
  s->mode = fm;
  if (timeout)
    s->timeout_ms = (uint32_t)json_integer_value(timeout);
  if (enabled)
    s->enabled = json_is_true(enabled);
  if (executor) {
    int r = pe_chain_builder_set_executor(
        b, rc, pe_bytes(json_string_value(executor), json_string_length(executor)));
    if (r != PE_OK) {
      truncate_steps(b, (size_t)rc);
      return r;
    }
  }
  return PE_OK;
}

int pe_chain_builder_add_json(pe_chain_builder *b, pe_slice json) {
  if (!b || (!json.ptr && json.len))
    return PE_ERR_INVALID_ARGUMENT;
  b->errmsg[0] = '\0';
  json_error_t jerr;
  json_t *root = json_loadb(json.ptr ? json.ptr : "", json.len, JSON_REJECT_DUPLICATES, &jerr);
  if (!root)
    return builder_fail(b, PE_ERR_JSON, "invalid JSON at line %d column %d: %s", jerr.line,
                        jerr.column, jerr.text);
  /* Other members of a top-level object are left alone, so that a host can
   * keep its chain inside a larger configuration document. */
  json_t *list = json_is_object(root) ? json_object_get(root, "policies") : root;
  int rc = PE_OK;
  if (!json_is_array(list)) {
    rc = builder_fail(b, PE_ERR_JSON,
                      "expected an array of steps or an object with a \"policies\" array");
  } else {
    size_t first = b->count;
    for (size_t i = 0; i < json_array_size(list) && rc == PE_OK; i++)
      rc = add_json_step(b, first + i, json_array_get(list, i));
    if (rc != PE_OK)
      truncate_steps(b, first);
  }
  json_decref(root);
  return rc;
}

/* ---- building ---- */

/* Resolves every step's policy (under the lock) and named executor, so
 * that a missing one fails the build before any instance exists. */
static int resolve_policies(pe_chain_builder *b, pe__step *steps) {
  pe_engine *e = b->engine;
  size_t missing = b->count;
  pthread_mutex_lock(&e->lock);
  for (size_t i = 0; i < b->count && missing == b->count; i++) {
    steps[i].policy = pe__registry_find(e, pe_str(b->steps[i].name), pe_str(b->steps[i].version));
    if (!steps[i].policy)
      missing = i;
  }
  pthread_mutex_unlock(&e->lock);
  if (missing != b->count)
    return builder_fail(b, PE_ERR_UNKNOWN_POLICY, "step %zu: unknown policy '%s@%s'", missing,
                        b->steps[missing].name, b->steps[missing].version);
  for (size_t i = 0; i < b->count; i++) {
    const char *name = b->steps[i].executor;
    if (!name)
      continue;
    if (steps[i].policy->kind == PE__KIND_NATIVE)
      return builder_fail(b, PE_ERR_INVALID_ARGUMENT,
                          "step %zu (%s@%s): a native policy runs in process: it takes no "
                          "executor",
                          i, b->steps[i].name, b->steps[i].version);
    if (!(steps[i].exec = pe__engine_find_executor(e, pe_str(name))))
      return builder_fail(b, PE_ERR_NOT_FOUND, "step %zu (%s@%s): no executor named '%s'", i,
                          b->steps[i].name, b->steps[i].version, name);
  }
  return PE_OK;
}

/* Creates step i's instance. A disabled native step has its params checked
 * but no instance: it never runs. */
static int create_instance(pe_engine *e, pe__step *step, char *err) {
  pe_slice params = pe_bytes(step->params_json, step->params_len);
  if (step->policy->kind == PE__KIND_NATIVE) {
    if (!step->enabled)
      return pe__params_validate(step->policy, params, err);
    return pe__params_create_instance(step->policy, params, &step->instance, err);
  }
  if (!step->enabled)
    return PE_OK; /* out-of-process params are checked by the worker at create */
  const pe__executor *x = pe__step_executor(e, step);
  if (!x) {
    pe__errmsg_set(err, "no backend for out-of-process policies is running");
    return PE_ERR_UNSUPPORTED;
  }
  return x->ops->create_instance(x->be, step, err);
}

static int build_step(pe_chain_builder *b, pe_chain *c, size_t i) {
  const builder_step *bs = &b->steps[i];
  pe__step *step = &c->steps[i];
  step->params_json = pe__strndup(pe__engine_mem(b->engine), bs->params_json, bs->params_len);
  if (!step->params_json)
    return builder_fail(b, PE_ERR_NOMEM, "out of memory");
  step->params_len = bs->params_len;
  step->mode = bs->mode;
  step->timeout_ms = bs->timeout_ms;
  step->enabled = bs->enabled;
  step->index = i;
  char err[PE__ERRMSG_SIZE] = "";
  int rc = create_instance(b->engine, step, err);
  if (rc < 0) {
    pe__free(pe__engine_mem(b->engine), step->params_json);
    step->params_json = NULL;
    return builder_fail(b, rc, "step %zu (%s@%s): %s", i, bs->name, bs->version, err);
  }
  c->step_count = i + 1; /* from now on pe__chain_destroy owns it */
  return PE_OK;
}

static void compute_plan(pe_chain *c) {
  for (int ph = 0; ph < PE_PHASE_COUNT; ph++) {
    size_t n = 0;
    for (size_t i = 0; i < c->step_count; i++)
      if (c->steps[i].enabled && (c->steps[i].policy->phases & PE_PHASE_BIT(ph)))
        c->order[ph][n++] = i;
    bool onion = ph == PE_PHASE_RESPONSE_HEADERS || ph == PE_PHASE_RESPONSE_BODY;
    for (size_t k = 0; onion && k < n / 2; k++) {
      size_t t = c->order[ph][k];
      c->order[ph][k] = c->order[ph][n - 1 - k];
      c->order[ph][n - 1 - k] = t;
    }
    c->order_len[ph] = n;
    if (n)
      c->phases |= PE_PHASE_BIT(ph);
  }
  for (size_t i = 0; i < c->step_count; i++)
    if (c->steps[i].enabled)
      c->needs |= c->steps[i].policy->needs;
  pe__stream_plan(c);
}

/* An empty chain with room for b's steps; it holds an engine reference. */
static pe_chain *chain_alloc(pe_chain_builder *b) {
  const pe_mem *mem = pe__engine_mem(b->engine);
  pe_chain *c = pe__calloc(mem, 1, sizeof *c);
  if (!c)
    return NULL;
  atomic_init(&c->refs, 1);
  c->engine = b->engine;
  pe__engine_ref(c->engine);
  c->steps = pe__calloc(mem, b->count, sizeof *c->steps);
  /* One block for the four run orders: order[0] owns it. */
  size_t *block = pe__calloc(mem, PE_PHASE_COUNT * b->count, sizeof *block);
  if (!c->steps || !block) {
    pe__free(mem, block);
    pe__chain_destroy(c);
    return NULL;
  }
  for (int ph = 0; ph < PE_PHASE_COUNT; ph++)
    c->order[ph] = block + (size_t)ph * b->count;
  return c;
}

int pe_chain_builder_build(pe_chain_builder *b, pe_chain **out) {
  if (!b || !out)
    return PE_ERR_INVALID_ARGUMENT;
  b->errmsg[0] = '\0';
  pe_chain *c = chain_alloc(b);
  if (!c)
    return builder_fail(b, PE_ERR_NOMEM, "out of memory");
  int rc = resolve_policies(b, c->steps);
  for (size_t i = 0; i < b->count && rc == PE_OK; i++)
    rc = build_step(b, c, i);
  if (rc != PE_OK) {
    pe__chain_destroy(c); /* destroys the instances made so far */
    return rc;
  }
  compute_plan(c);
  pe__log(b->engine, PE_LOG_DEBUG, "built chain of %zu steps (phases 0x%x, needs 0x%x)",
          c->step_count, c->phases, c->needs);
  *out = c;
  return PE_OK;
}

int pe_chain_new_from_json(pe_chain **out, pe_engine *engine, pe_slice json, char *errmsg,
                           size_t errmsg_size) {
  pe_chain_builder *b = NULL;
  int rc = out && engine ? pe_chain_builder_new(&b, engine) : PE_ERR_INVALID_ARGUMENT;
  if (rc == PE_OK)
    rc = pe_chain_builder_add_json(b, json);
  if (rc == PE_OK)
    rc = pe_chain_builder_build(b, out);
  if (errmsg && errmsg_size) {
    const char *msg = b && b->errmsg[0] ? b->errmsg : pe_strerror(rc);
    snprintf(errmsg, errmsg_size, "%s", rc == PE_OK ? "" : msg);
  }
  pe_chain_builder_free(b);
  return rc;
}
