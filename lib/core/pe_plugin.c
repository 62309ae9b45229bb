/* Plugin loading: dlopen a .so, call its pe_plugin_init_v2 (with the API
 * table) or its older pe_plugin_init, and undo everything
 * it registered if it fails. Libraries stay loaded until the engine goes
 * away, after the policies whose code they hold. */
#include "pe_private.h"

#include <policyexec/plugin_api.h>

#include <dlfcn.h>
#include <stdio.h>

typedef struct pe__plugin {
  void *handle;
  bool ready;      /* init succeeded: its policies are visible */
  int register_rc; /* first failed registration during init, or 0 */
  char register_msg[PE__ERRMSG_SIZE];
  struct pe__plugin *next;
} pe__plugin;

/* The plugin whose init runs on this thread. Thread-local, so that policies
 * registered meanwhile by other threads are not taken for the plugin's, and
 * several threads may load plugins at once. */
static _Thread_local struct {
  const pe_engine *engine;
  pe__plugin *plugin;
} loading;

void *pe__plugin_loading(const pe_engine *e) {
  return loading.engine == e ? loading.plugin : NULL;
}

bool pe__plugin_ready(const void *plugin) {
  return ((const pe__plugin *)plugin)->ready;
}

void pe__plugin_note_failure(void *plugin, int rc, const char *msg) {
  pe__plugin *pl = plugin;
  if (pl->register_rc)
    return; /* the first failure is the one worth reporting */
  pl->register_rc = rc;
  snprintf(pl->register_msg, sizeof pl->register_msg, "%s", msg);
}

static void unlink_plugin(pe_engine *e, pe__plugin *pl) {
  for (pe__plugin **link = (pe__plugin **)&e->plugins; *link; link = &(*link)->next)
    if (*link == pl) {
      *link = pl->next;
      return;
    }
}

/* Runs init with pl marked as loading; returns its outcome, a failed
 * registration counting as a failed init. */
static int run_init(pe_engine *e, pe__plugin *pl, pe_plugin_init_fn init,
                    pe_plugin_init_v2_fn init_v2, const char *path) {
  /* Saved and restored, in case an init loads another plugin. */
  const pe_engine *outer_engine = loading.engine;
  pe__plugin *outer_plugin = loading.plugin;
  loading.engine = e;
  loading.plugin = pl;
  /* A v2 init gets the API table, so the plugin needs no symbol of ours. */
  int rc = init_v2 ? init_v2(e, PE_POLICY_ABI, pe_api_table()) : init(e, PE_POLICY_ABI);
  loading.engine = outer_engine;
  loading.plugin = outer_plugin;
  if (pl->register_rc) {
    /* A plugin that ignores a refused registration would run with only part
     * of its policies: refuse it as a whole. */
    pe__engine_fail(e, "plugin %s: %s", path, pl->register_msg);
    return pl->register_rc == PE_ERR_EXISTS ? PE_ERR_EXISTS : PE_ERR_PLUGIN;
  }
  if (rc < 0) {
    pe__engine_fail(e, "plugin %s: pe_plugin_init failed: %s (%s)", path, pe_strerror(rc),
                    pe_errname(rc));
    return rc == PE_ERR_EXISTS ? PE_ERR_EXISTS : PE_ERR_PLUGIN;
  }
  return PE_OK;
}

int pe_engine_load_plugin(pe_engine *engine, const char *path) {
  if (!engine || !path || !path[0])
    return PE_ERR_INVALID_ARGUMENT;
  const pe_mem *mem = pe__engine_mem(engine);
  pe__plugin *pl = pe__calloc(mem, 1, sizeof *pl);
  if (!pl) {
    pe__engine_fail(engine, "plugin %s: out of memory", path);
    return PE_ERR_NOMEM;
  }
  pl->handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (!pl->handle) {
    const char *why = dlerror();
    pe__engine_fail(engine, "plugin %s: %s", path, why ? why : "cannot be opened");
    pe__free(mem, pl);
    return PE_ERR_PLUGIN;
  }
  /* POSIX guarantees a dlsym result converts to a function pointer. */
  pe_plugin_init_v2_fn init_v2 = (pe_plugin_init_v2_fn)dlsym(pl->handle, PE_PLUGIN_INIT_V2_SYMBOL);
  pe_plugin_init_fn init =
      init_v2 ? NULL : (pe_plugin_init_fn)dlsym(pl->handle, PE_PLUGIN_INIT_SYMBOL);
  if (!init && !init_v2) {
    pe__engine_fail(engine, "plugin %s: no symbol %s", path, PE_PLUGIN_INIT_SYMBOL);
    dlclose(pl->handle);
    pe__free(mem, pl);
    return PE_ERR_PLUGIN;
  }

  pthread_mutex_lock(&engine->lock);
  pl->next = engine->plugins;
  engine->plugins = pl;
  pthread_mutex_unlock(&engine->lock);

  /* Not under the lock: init calls pe_engine_register_policy, which takes it. */
  int rc = run_init(engine, pl, init, init_v2, path);

  pthread_mutex_lock(&engine->lock);
  if (rc == PE_OK) {
    pl->ready = true;
  } else {
    pe__registry_remove_plugin(engine, pl);
    unlink_plugin(engine, pl);
  }
  pthread_mutex_unlock(&engine->lock);
  if (rc != PE_OK) {
    dlclose(pl->handle);
    pe__free(mem, pl);
    return rc;
  }
  pe__log(engine, PE_LOG_INFO, "loaded plugin %s", path);
  return PE_OK;
}

void pe__plugins_close_all(pe_engine *e) {
  pe__plugin *pl = e->plugins;
  e->plugins = NULL;
  while (pl) {
    pe__plugin *next = pl->next;
    dlclose(pl->handle);
    pe__free(pe__engine_mem(e), pl);
    pl = next;
  }
}
