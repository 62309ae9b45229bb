/*
 * The admin HTTP API, on its own port and event loop (the main thread's):
 * POST /apis, GET /apis, DELETE /apis/{name}, GET /health, GET /metrics.
 */
#ifndef GW_ADMIN_H
#define GW_ADMIN_H

#include "gw_thread.h"

#include <event2/event.h>

typedef struct gw_admin gw_admin;

/* Serves the admin API on @p base at the configured admin address.
 * Returns 0, or -1 after printing why. */
int gw_admin_start(gw_admin **out, struct event_base *base, gw_context *ctx);
/* Whether chain builds started by POST /apis are still running. */
int gw_admin_builds_running(gw_admin *admin);
/* Stops serving. Builds still running are not waited for: each drops its
 * result when it ends. */
void gw_admin_free(gw_admin *admin);

#endif /* GW_ADMIN_H */
