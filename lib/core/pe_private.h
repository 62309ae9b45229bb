/*
 * Internal prototypes shared by the engine-side modules only (registry,
 * plugin loader, chain builder, chain). They are kept out of pe_internal.h
 * because nothing on the exchange side or in a backend needs them.
 */
#ifndef PE_PRIVATE_H
#define PE_PRIVATE_H

#include "pe_internal.h"

/* ---- pe_plugin.c, for pe_registry.c ---- */

/* The plugin whose pe_plugin_init is running on this thread for engine e,
 * or NULL: policies registered meanwhile belong to it. */
void *pe__plugin_loading(const pe_engine *e);
/* Whether the plugin's init has succeeded. Policies of a plugin still
 * initialising are invisible to lookups, so no chain can come to depend on
 * a policy that a failing init will take away again. */
bool pe__plugin_ready(const void *plugin);
/* Records that a registration made by the plugin's init failed with rc,
 * so that the load fails too (with the registration's message). */
void pe__plugin_note_failure(void *plugin, int rc, const char *msg);

/* ---- pe_chain.c, for pe_builder.c ---- */

/* Destroys a chain whose first c->step_count steps are complete (params
 * copied, instance created if enabled), then drops its engine reference.
 * Used by pe_chain_free and by a build that fails half-way. */
void pe__chain_destroy(pe_chain *c);

#endif /* PE_PRIVATE_H */
