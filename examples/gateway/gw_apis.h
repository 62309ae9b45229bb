/*
 * The API table: which chain and upstream serve a path.
 *
 * The table is an immutable, reference-counted snapshot. The admin API
 * builds a new one and publishes it; worker threads notice through a
 * generation counter (one atomic load per request) and switch their cached
 * snapshot. A request holds a reference to its route, so requests in flight
 * finish on the chain they started with however often the API is replaced.
 */
#ifndef GW_APIS_H
#define GW_APIS_H

#include "gw_config.h"
#include "gw_metrics.h"

#include <policyexec/policyexec.h>
#include <stdatomic.h>

typedef struct gw_route {
  atomic_uint refs;
  gw_api_spec spec;
  size_t context_len;
  pe_chain *chain;
  unsigned phases;      /* pe_chain_phases() */
  unsigned needs;       /* pe_chain_needs() */
  pe_body_plan plan[2]; /* pe_chain_body_plan() by pe_dir */
  gw_api_metrics *metrics;
} gw_route;

typedef struct gw_route_table gw_route_table;
typedef struct gw_apis gw_apis;

/* A worker thread's cached snapshot. Zero-initialise it. */
typedef struct gw_apis_view {
  gw_route_table *table;
  unsigned generation;
} gw_apis_view;

int gw_apis_new(gw_apis **out, pe_engine *engine, gw_metrics *metrics);
void gw_apis_free(gw_apis *apis);

/* Builds the chain of @p spec and adds the API, or replaces the API of the
 * same name. Returns 0, or -1 with a message in @p err (the table is then
 * unchanged). Thread-safe; may block while Python workers create instances. */
int gw_apis_put(gw_apis *apis, const gw_api_spec *spec, char *err, size_t err_size);

/* The two halves of gw_apis_put(), for a caller that builds on another
 * thread. gw_apis_build() creates the route of @p spec (its chain's
 * instances; may block while Python workers create them); it touches only
 * @p engine, so it may run on any thread. Returns the route (one
 * reference), or NULL with a message in @p err. */
gw_route *gw_apis_build(pe_engine *engine, const gw_api_spec *spec, char *err, size_t err_size);
/* Publishes @p route (its reference passes to the table, or is dropped on
 * failure). Returns 0, or -1 with a message (a context served by another
 * API). Thread-safe. */
int gw_apis_install(gw_apis *apis, gw_route *route, char *err, size_t err_size);

/* Removes API @p name. Returns 0, or -1 if there is none. Thread-safe. */
int gw_apis_delete(gw_apis *apis, const char *name);

/* A JSON array of every API object, malloc'ed. Thread-safe. */
char *gw_apis_list_json(gw_apis *apis);

/* The route with the longest context that prefixes @p path (@p len bytes), with a new
 * reference (release with gw_route_unref()), or NULL. Refreshes @p view
 * first if the table changed. Called by the view's own thread only. */
gw_route *gw_apis_route(gw_apis *apis, gw_apis_view *view, const char *path, size_t len);

void gw_route_unref(gw_route *route);
void gw_apis_view_release(gw_apis_view *view);

#endif /* GW_APIS_H */
