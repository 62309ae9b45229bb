/*
 * The API table and its atomic replacement (see gw_apis.h).
 */
#include "gw_apis.h"

#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct gw_route_table {
  atomic_uint refs;
  size_t count;
  gw_route *routes[]; /* longest context first, so the first match wins */
};

struct gw_apis {
  pe_engine *engine;
  gw_metrics *metrics;
  pthread_mutex_t lock; /* serialises writers and view refreshes */
  gw_route_table *current;
  atomic_uint generation;
};

static gw_route *route_ref(gw_route *route) {
  atomic_fetch_add_explicit(&route->refs, 1, memory_order_relaxed);
  return route;
}

void gw_route_unref(gw_route *route) {
  if (!route || atomic_fetch_sub_explicit(&route->refs, 1, memory_order_acq_rel) != 1)
    return;
  pe_chain_free(route->chain);
  gw_api_spec_clear(&route->spec);
  free(route);
}

static gw_route_table *table_new(size_t count) {
  gw_route_table *t = calloc(1, sizeof *t + count * sizeof t->routes[0]);
  if (t)
    atomic_init(&t->refs, 1);
  return t;
}

static void table_unref(gw_route_table *t) {
  if (!t || atomic_fetch_sub_explicit(&t->refs, 1, memory_order_acq_rel) != 1)
    return;
  for (size_t i = 0; i < t->count; i++)
    gw_route_unref(t->routes[i]);
  free(t);
}

int gw_apis_new(gw_apis **out, pe_engine *engine, gw_metrics *metrics) {
  gw_apis *apis = calloc(1, sizeof *apis);
  if (!apis || !(apis->current = table_new(0))) {
    free(apis);
    return -1;
  }
  apis->engine = engine;
  apis->metrics = metrics;
  pthread_mutex_init(&apis->lock, NULL);
  *out = apis;
  return 0;
}

void gw_apis_free(gw_apis *apis) {
  if (!apis)
    return;
  table_unref(apis->current);
  pthread_mutex_destroy(&apis->lock);
  free(apis);
}

static int longer_context_first(const void *a, const void *b) {
  const gw_route *ra = *(gw_route *const *)a, *rb = *(gw_route *const *)b;
  return (ra->context_len < rb->context_len) - (ra->context_len > rb->context_len);
}

/* Publishes @p next (whose reference passes to the table) under the lock. */
static void publish(gw_apis *apis, gw_route_table *next) {
  qsort(next->routes, next->count, sizeof next->routes[0], longer_context_first);
  gw_route_table *old = apis->current;
  apis->current = next;
  atomic_fetch_add_explicit(&apis->generation, 1, memory_order_release);
  table_unref(old);
}

gw_route *gw_apis_build(pe_engine *engine, const gw_api_spec *spec, char *err, size_t err_size) {
  gw_route *route = calloc(1, sizeof *route);
  if (!route || gw_api_spec_copy(&route->spec, spec) < 0) {
    free(route);
    snprintf(err, err_size, "out of memory");
    return NULL;
  }
  atomic_init(&route->refs, 1);
  route->context_len = strlen(spec->context);
  char chain_err[512] = "";
  int rc = pe_chain_new_from_json(&route->chain, engine, pe_str(spec->policies_json), chain_err,
                                  sizeof chain_err);
  if (rc < 0) {
    snprintf(err, err_size, "api %s: %s: %s", spec->name, pe_strerror(rc), chain_err);
    gw_route_unref(route);
    return NULL;
  }
  route->phases = pe_chain_phases(route->chain);
  route->needs = pe_chain_needs(route->chain);
  route->plan[PE_REQUEST] = pe_chain_body_plan(route->chain, PE_REQUEST);
  route->plan[PE_RESPONSE] = pe_chain_body_plan(route->chain, PE_RESPONSE);
  return route;
}

int gw_apis_put(gw_apis *apis, const gw_api_spec *spec, char *err, size_t err_size) {
  /* Build outside the lock: it may wait for Python workers. */
  gw_route *route = gw_apis_build(apis->engine, spec, err, err_size);
  return route ? gw_apis_install(apis, route, err, err_size) : -1;
}

int gw_apis_install(gw_apis *apis, gw_route *route, char *err, size_t err_size) {
  const gw_api_spec *spec = &route->spec;
  route->metrics = gw_metrics_api(apis->metrics, spec->name);
  pthread_mutex_lock(&apis->lock);
  gw_route_table *cur = apis->current;
  gw_route_table *next = table_new(cur->count + 1);
  if (!next) {
    pthread_mutex_unlock(&apis->lock);
    gw_route_unref(route);
    snprintf(err, err_size, "out of memory");
    return -1;
  }
  for (size_t i = 0; i < cur->count; i++) {
    int same_name = strcmp(cur->routes[i]->spec.name, spec->name) == 0;
    int same_context = strcmp(cur->routes[i]->spec.context, spec->context) == 0;
    if (!same_name && same_context) { /* two APIs cannot share one context */
      pthread_mutex_unlock(&apis->lock);
      snprintf(err, err_size, "api %s: context %s is already served by api %s", spec->name,
               spec->context, cur->routes[i]->spec.name);
      table_unref(next);
      gw_route_unref(route);
      return -1;
    }
    if (!same_name)
      next->routes[next->count++] = route_ref(cur->routes[i]);
  }
  next->routes[next->count++] = route;
  publish(apis, next);
  pthread_mutex_unlock(&apis->lock);
  return 0;
}

int gw_apis_delete(gw_apis *apis, const char *name) {
  pthread_mutex_lock(&apis->lock);
  gw_route_table *cur = apis->current;
  gw_route_table *next = table_new(cur->count);
  int found = 0;
  for (size_t i = 0; next && i < cur->count; i++) {
    if (strcmp(cur->routes[i]->spec.name, name) == 0)
      found = 1;
    else
      next->routes[next->count++] = route_ref(cur->routes[i]);
  }
  if (found)
    publish(apis, next);
  else
    table_unref(next);
  pthread_mutex_unlock(&apis->lock);
  return found ? 0 : -1;
}

char *gw_apis_list_json(gw_apis *apis) {
  json_t *list = json_array();
  pthread_mutex_lock(&apis->lock);
  for (size_t i = 0; list && i < apis->current->count; i++)
    json_array_append_new(list, json_loads(apis->current->routes[i]->spec.json, 0, NULL));
  pthread_mutex_unlock(&apis->lock);
  char *text = list ? json_dumps(list, JSON_INDENT(2) | JSON_PRESERVE_ORDER) : NULL;
  json_decref(list);
  return text;
}

gw_route *gw_apis_route(gw_apis *apis, gw_apis_view *view, const char *path, size_t len) {
  unsigned generation = atomic_load_explicit(&apis->generation, memory_order_acquire);
  if (!view->table || view->generation != generation) {
    pthread_mutex_lock(&apis->lock);
    gw_route_table *fresh = apis->current;
    atomic_fetch_add_explicit(&fresh->refs, 1, memory_order_relaxed);
    view->generation = atomic_load_explicit(&apis->generation, memory_order_relaxed);
    pthread_mutex_unlock(&apis->lock);
    table_unref(view->table);
    view->table = fresh;
  }
  gw_route_table *t = view->table;
  for (size_t i = 0; i < t->count; i++) {
    gw_route *route = t->routes[i];
    /* A context matches whole path segments: /api serves /api, /api/x and
     * /api?q, not /apix. */
    size_t n = route->context_len;
    if (len >= n && memcmp(path, route->spec.context, n) == 0 &&
        (route->spec.context[n - 1] == '/' || len == n || path[n] == '/' || path[n] == '?'))
      return route_ref(route);
  }
  return NULL;
}

void gw_apis_view_release(gw_apis_view *view) {
  table_unref(view->table);
  view->table = NULL;
}
