/* The policy registry: validating and deep-copying native definitions, and
 * the name@version list that chains resolve against (native and Python
 * entries alike). Every function but pe_engine_register_policy and
 * pe_engine_has_policy expects e->lock to be held. */
#include "pe_private.h"

static bool slice_is(const char *s, pe_slice want) {
  return strlen(s) == want.len && memcmp(s, want.ptr ? want.ptr : "", want.len) == 0;
}

/* Sees every entry, including those of a plugin still initialising. */
static pe__policy *find_any(pe_engine *e, pe_slice name, pe_slice version) {
  for (pe__policy *p = e->policies; p; p = p->next)
    if (slice_is(p->name, name) && slice_is(p->version, version))
      return p;
  return NULL;
}

pe__policy *pe__registry_find(pe_engine *e, pe_slice name, pe_slice version) {
  pe__policy *p = find_any(e, name, version);
  if (p && p->plugin && !pe__plugin_ready(p->plugin))
    return NULL;
  return p;
}

void pe__policy_free(pe_engine *e, pe__policy *p) {
  if (!p)
    return;
  const pe_mem *mem = pe__engine_mem(e);
  if (p->free_user_data)
    p->free_user_data(p->user_data);
  for (size_t i = 0; i < p->spec_count; i++)
    pe__free(mem, (void *)p->specs[i].name);
  pe__free(mem, p->specs);
  pe__free(mem, p->name);
  pe__free(mem, p->version);
  pe__free(mem, p);
}

int pe__registry_add(pe_engine *e, pe__policy *p) {
  if (find_any(e, pe_str(p->name), pe_str(p->version))) {
    pe__policy_free(e, p);
    return PE_ERR_EXISTS;
  }
  p->next = e->policies;
  e->policies = p;
  return PE_OK;
}

void pe__registry_remove_plugin(pe_engine *e, void *plugin) {
  pe__policy **link = &e->policies;
  while (*link) {
    pe__policy *p = *link;
    if (p->plugin == plugin) {
      *link = p->next;
      pe__policy_free(e, p);
    } else {
      link = &p->next;
    }
  }
}

void pe__registry_free_all(pe_engine *e) {
  while (e->policies) {
    pe__policy *p = e->policies;
    e->policies = p->next;
    pe__policy_free(e, p);
  }
}

int pe_engine_has_policy(pe_engine *engine, pe_slice name, pe_slice version) {
  if (!engine)
    return 0;
  pthread_mutex_lock(&engine->lock);
  int found = pe__registry_find(engine, name, version) != NULL;
  pthread_mutex_unlock(&engine->lock);
  return found;
}

/* ---- registering a native definition ---- */

/* Checks everything policy.h promises to refuse; returns a reason or NULL. */
static const char *def_problem(const pe_policy_def *def) {
  if (def->abi != 1 && def->abi != PE_POLICY_ABI)
    return "unsupported abi";
  if (!def->name || !def->name[0])
    return "empty name";
  if (!def->version || !def->version[0])
    return "empty version";
  bool streamed = def->abi >= 2 && (def->on_request_body_chunk || def->on_response_body_chunk);
  if (!def->on_request_headers && !def->on_request_body && !def->on_response_headers &&
      !def->on_response_body && !streamed)
    return "no phase callback";
  if (def->param_count && !def->params)
    return "param_count without params";
  for (size_t i = 0; i < def->param_count; i++) {
    const pe_param_spec *s = &def->params[i];
    if (!s->name || !s->name[0])
      return "a param spec has no name";
    if ((int)s->type < PE_PARAM_STRING || s->type > PE_PARAM_ANY)
      return "a param spec has an unknown type";
    for (size_t j = 0; j < i; j++)
      if (strcmp(def->params[j].name, s->name) == 0)
        return "two param specs share a name";
  }
  return NULL;
}

static int copy_specs(const pe_mem *mem, pe__policy *p, const pe_policy_def *def) {
  if (!def->param_count)
    return PE_OK;
  p->specs = pe__calloc(mem, def->param_count, sizeof *p->specs);
  if (!p->specs)
    return PE_ERR_NOMEM;
  for (size_t i = 0; i < def->param_count; i++) {
    p->specs[i] = def->params[i];
    p->specs[i].name = pe__strndup(mem, def->params[i].name, strlen(def->params[i].name));
    if (!p->specs[i].name)
      return PE_ERR_NOMEM;
    p->spec_count = i + 1; /* so pe__policy_free frees exactly the names copied */
  }
  return PE_OK;
}

/* Builds the registry entry; on failure returns NULL and frees what it took
 * (but not def's user_data: the caller does that once). */
static pe__policy *policy_from_def(pe_engine *e, const pe_policy_def *def) {
  const pe_mem *mem = pe__engine_mem(e);
  pe__policy *p = pe__calloc(mem, 1, sizeof *p);
  if (!p)
    return NULL;
  p->kind = PE__KIND_NATIVE;
  p->name = pe__strndup(mem, def->name, strlen(def->name));
  p->version = pe__strndup(mem, def->version, strlen(def->version));
  if (!p->name || !p->version || copy_specs(mem, p, def) != PE_OK) {
    pe__policy_free(e, p); /* free_user_data is not set yet */
    return NULL;
  }
  p->create = def->create;
  p->destroy = def->destroy;
  p->on[PE_PHASE_REQUEST_HEADERS] = def->on_request_headers;
  p->on[PE_PHASE_REQUEST_BODY] = def->on_request_body;
  p->on[PE_PHASE_RESPONSE_HEADERS] = def->on_response_headers;
  p->on[PE_PHASE_RESPONSE_BODY] = def->on_response_body;
  for (int ph = 0; ph < PE_PHASE_COUNT; ph++)
    if (p->on[ph])
      p->phases |= PE_PHASE_BIT(ph);
  /* A body callback needs its body buffered whatever the flags say. */
  p->needs = def->flags & (PE_NEEDS_REQUEST_BODY | PE_NEEDS_RESPONSE_BODY);
  if (def->on_request_body)
    p->needs |= PE_NEEDS_REQUEST_BODY;
  if (def->on_response_body)
    p->needs |= PE_NEEDS_RESPONSE_BODY;
  p->buffers = p->needs;
  if (def->abi >= 2) { /* revision 1 structs end before these fields */
    p->on_chunk[PE_REQUEST] = def->on_request_body_chunk;
    p->on_chunk[PE_RESPONSE] = def->on_response_body_chunk;
    p->free_body_state = def->free_body_state;
    pe__policy_add_streamed(p, def->flags);
  }
  p->user_data = def->user_data;
  p->free_user_data = def->free_user_data;
  return p;
}

/* Reports a failed registration (message already formatted in msg) and
 * makes a plugin whose init made it fail to load. */
static int register_failed(pe_engine *e, void *plugin, int rc, const char *msg) {
  pe__engine_fail(e, "%s", msg);
  if (plugin)
    pe__plugin_note_failure(plugin, rc, msg);
  return rc;
}

static void free_def_user_data(const pe_policy_def *def) {
  if (def->free_user_data)
    def->free_user_data(def->user_data);
}

int pe_engine_register_policy(pe_engine *engine, const pe_policy_def *def) {
  if (!engine) {
    if (def)
      free_def_user_data(def);
    return PE_ERR_INVALID_ARGUMENT;
  }
  void *plugin = pe__plugin_loading(engine);
  char msg[PE__ERRMSG_SIZE];
  if (!def) {
    pe__errmsg_set(msg, "register policy: no definition");
    return register_failed(engine, plugin, PE_ERR_INVALID_ARGUMENT, msg);
  }
  const char *problem = def_problem(def);
  if (problem) {
    free_def_user_data(def);
    pe__errmsg_set(msg, "register policy '%s': %s", def->name ? def->name : "", problem);
    return register_failed(engine, plugin, PE_ERR_INVALID_ARGUMENT, msg);
  }
  pe__policy *p = policy_from_def(engine, def);
  if (!p) {
    free_def_user_data(def);
    pe__errmsg_set(msg, "register policy '%s@%s': out of memory", def->name, def->version);
    return register_failed(engine, plugin, PE_ERR_NOMEM, msg);
  }
  p->plugin = plugin;
  /* Formatted before pe__registry_add, which frees p (and runs
   * free_user_data) when the name is taken. */
  pe__errmsg_set(msg, "policy '%s@%s' is already registered", def->name, def->version);
  pthread_mutex_lock(&engine->lock);
  int rc = pe__registry_add(engine, p);
  pthread_mutex_unlock(&engine->lock);
  if (rc < 0)
    return register_failed(engine, plugin, rc, msg);
  pe__log(engine, PE_LOG_DEBUG, "registered native policy %s@%s", def->name, def->version);
  return PE_OK;
}
