/* The engine's named executors: the out-of-process backends that run steps
 * of kind EXECUTOR (the local Python pool, remote executors). Entries live
 * in a fixed array on the engine, are added under the engine's lock and
 * published with a release store of the count, and stay until the engine
 * goes, so readers on the hot path need no lock and chains may keep
 * pointers to them. */
#include "pe_backend.h"

#include <stdio.h>

int pe__engine_add_executor_locked(pe_engine *e, const char *name, const pe__backend_ops *ops,
                                   pe__backend *be, const pe__executor **out, char *err) {
  size_t len = name ? strlen(name) : 0;
  if (len == 0 || len > PE__EXECUTOR_NAME_MAX || !ops) {
    pe__errmsg_set(err, "executor name must have 1 to %d characters", PE__EXECUTOR_NAME_MAX);
    return PE_ERR_INVALID_ARGUMENT;
  }
  size_t n = atomic_load_explicit(&e->executor_count, memory_order_relaxed);
  if (pe__engine_find_executor(e, pe_bytes(name, len))) {
    pe__errmsg_set(err, "an executor named '%s' is already running", name);
    return PE_ERR_EXISTS;
  }
  if (n == PE__MAX_EXECUTORS) {
    pe__errmsg_set(err, "an engine holds at most %d executors", PE__MAX_EXECUTORS);
    return PE_ERR_UNSUPPORTED;
  }
  pe__executor *x = &e->executors[n];
  memcpy(x->name, name, len + 1);
  x->ops = ops;
  x->be = be;
  atomic_store_explicit(&e->executor_count, n + 1, memory_order_release);
  if (out)
    *out = x;
  return PE_OK;
}

int pe__engine_add_executor(pe_engine *e, const char *name, const pe__backend_ops *ops,
                            pe__backend *be, const pe__executor **out, char *err) {
  pthread_mutex_lock(&e->lock);
  int rc = pe__engine_add_executor_locked(e, name, ops, be, out, err);
  pthread_mutex_unlock(&e->lock);
  return rc;
}

void pe__advertised_free(pe_engine *e, pe__advertised *a) {
  for (size_t i = 0; i < a->count; i++)
    pe__policy_free(e, a->items[i]);
  pe__free(pe__engine_mem(e), a->items);
  a->items = NULL;
  a->count = 0;
}

int pe__engine_add_executor_with_policies(pe_engine *e, const char *name,
                                          const pe__backend_ops *ops, pe__backend *be,
                                          pe__advertised *a, const char *what, char *err) {
  int rc = PE_OK;
  pthread_mutex_lock(&e->lock);
  for (size_t i = 0; i < a->count && rc == PE_OK; i++) {
    const pe__policy *p = a->items[i];
    const pe__policy *old = pe__registry_find(e, pe_str(p->name), pe_str(p->version));
    bool dup = old && old->kind == PE__KIND_NATIVE;
    for (size_t j = 0; j < i && !dup; j++)
      dup = !strcmp(p->name, a->items[j]->name) && !strcmp(p->version, a->items[j]->version);
    if (dup) {
      pe__errmsg_set(err, "%s %s@%s: name@version already registered", what, p->name, p->version);
      rc = PE_ERR_EXISTS;
    }
  }
  const pe__executor *x = NULL;
  if (rc == PE_OK)
    rc = pe__engine_add_executor_locked(e, name, ops, be, &x, err);
  if (rc == PE_OK) {
    for (size_t i = 0; i < a->count; i++) {
      pe__policy *p = a->items[i];
      if (pe__registry_find(e, pe_str(p->name), pe_str(p->version))) {
        pe__policy_free(e, p); /* served by an executor started before */
        continue;
      }
      p->exec = x;
      pe__registry_add(e, p); /* cannot fail: checked above */
    }
    pe__free(pe__engine_mem(e), a->items);
    a->items = NULL;
    a->count = 0;
  }
  pthread_mutex_unlock(&e->lock);
  return rc;
}

const pe__executor *pe__engine_find_executor(const pe_engine *e, pe_slice name) {
  size_t n = atomic_load_explicit(&e->executor_count, memory_order_acquire);
  for (size_t i = 0; i < n; i++) {
    const pe__executor *x = &e->executors[i];
    if (strlen(x->name) == name.len && !memcmp(x->name, name.ptr, name.len))
      return x;
  }
  return NULL;
}

const pe__executor *pe__engine_executor_of(const pe_engine *e, const pe__backend_ops *ops) {
  size_t n = atomic_load_explicit(&e->executor_count, memory_order_acquire);
  for (size_t i = 0; i < n; i++)
    if (e->executors[i].ops == ops)
      return &e->executors[i];
  return NULL;
}

const pe__executor *pe__step_executor(const pe_engine *e, const pe__step *s) {
  if (s->exec)
    return s->exec;
  if (s->policy->exec)
    return s->policy->exec;
  return pe__engine_find_executor(e, PE_LIT(PE__DEFAULT_EXECUTOR));
}

void pe__executors_shutdown(pe_engine *e) {
  /* Last added first: a later executor may use an earlier one. */
  size_t n = atomic_load_explicit(&e->executor_count, memory_order_acquire);
  while (n-- > 0)
    e->executors[n].ops->shutdown(e->executors[n].be);
  atomic_store_explicit(&e->executor_count, 0, memory_order_release);
}
