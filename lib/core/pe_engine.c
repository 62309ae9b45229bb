/* The engine object: options, creation, reference counting, limits, the
 * last-error message and logging. The registry and plugins live in their own
 * modules; this file only creates and tears them down. */
#include "pe_private.h"

#include <stdio.h>
#include <stdlib.h>

/* ---- options ---- */

static const size_t default_limits[5] = {
    [PE_LIMIT_HEADER_COUNT] = 100,
    [PE_LIMIT_HEADER_BYTES] = 64 * 1024,
    [PE_LIMIT_BODY_BYTES] = 16 * 1024 * 1024,
    [PE_LIMIT_META_COUNT] = 100,
    [PE_LIMIT_META_BYTES] = 64 * 1024,
};

static void options_init(pe_engine_options *o) {
  memset(o, 0, sizeof *o);
  o->mem = pe__default_mem;
  o->log_level = PE_LOG_INFO;
  memcpy(o->limits, default_limits, sizeof o->limits);
}

int pe_engine_options_new(pe_engine_options **out) {
  if (!out)
    return PE_ERR_INVALID_ARGUMENT;
  /* No engine exists yet, so there is no allocator hook to use. */
  pe_engine_options *o = malloc(sizeof *o);
  if (!o)
    return PE_ERR_NOMEM;
  options_init(o);
  *out = o;
  return PE_OK;
}

void pe_engine_options_free(pe_engine_options *opts) {
  free(opts);
}

int pe_engine_options_set_mem(pe_engine_options *opts, const pe_mem *mem) {
  if (!opts)
    return PE_ERR_INVALID_ARGUMENT;
  if (!mem) {
    opts->mem = pe__default_mem;
    return PE_OK;
  }
  if (!mem->malloc || !mem->free || !mem->calloc || !mem->realloc)
    return PE_ERR_INVALID_ARGUMENT;
  opts->mem = *mem;
  return PE_OK;
}

int pe_engine_options_set_log(pe_engine_options *opts, pe_log_fn fn, void *user_data) {
  if (!opts)
    return PE_ERR_INVALID_ARGUMENT;
  opts->log = fn;
  opts->log_ud = user_data;
  return PE_OK;
}

int pe_engine_options_set_log_level(pe_engine_options *opts, pe_log_level level) {
  if (!opts || (int)level < PE_LOG_ERROR || level > PE_LOG_DEBUG)
    return PE_ERR_INVALID_ARGUMENT;
  opts->log_level = level;
  return PE_OK;
}

int pe_engine_options_set_metrics(pe_engine_options *opts, pe_metrics_fn fn, void *user_data) {
  if (!opts)
    return PE_ERR_INVALID_ARGUMENT;
  opts->metrics = fn;
  opts->metrics_ud = user_data;
  return PE_OK;
}

static bool limit_known(pe_limit which) {
  return (int)which >= PE_LIMIT_HEADER_COUNT && which <= PE_LIMIT_META_BYTES;
}

int pe_engine_options_set_limit(pe_engine_options *opts, pe_limit which, size_t value) {
  if (!opts || !limit_known(which) || value == 0)
    return PE_ERR_INVALID_ARGUMENT;
  opts->limits[which] = value;
  return PE_OK;
}

/* ---- lifetime ---- */

int pe_engine_new(pe_engine **out, const pe_engine_options *opts) {
  if (!out)
    return PE_ERR_INVALID_ARGUMENT;
  pe_engine_options defaults;
  if (!opts) {
    options_init(&defaults);
    opts = &defaults;
  }
  pe_engine *e = pe__calloc(&opts->mem, 1, sizeof *e);
  if (!e)
    return PE_ERR_NOMEM;
  if (pthread_mutex_init(&e->lock, NULL) != 0) {
    pe__free(&opts->mem, e);
    return PE_ERR_NOMEM;
  }
  e->opts = *opts;
  atomic_init(&e->refs, 1);
  *out = e;
  return PE_OK;
}

void pe__engine_ref(pe_engine *e) {
  atomic_fetch_add_explicit(&e->refs, 1, memory_order_relaxed);
}

static void engine_destroy(pe_engine *e) {
  pe__executors_shutdown(e);
  /* Policies first: their free_user_data may live in a plugin's code. */
  pe__registry_free_all(e);
  pe__plugins_close_all(e);
  pthread_mutex_destroy(&e->lock);
  pe_mem mem = e->opts.mem; /* e is about to go, and its copy of the hooks with it */
  pe__free(&mem, e);
}

void pe__engine_unref(pe_engine *e) {
  /* acq_rel: every write made through other references happens before the
   * teardown that the last one runs. */
  if (atomic_fetch_sub_explicit(&e->refs, 1, memory_order_acq_rel) == 1)
    engine_destroy(e);
}

void pe_engine_free(pe_engine *engine) {
  if (engine)
    pe__engine_unref(engine);
}

size_t pe_engine_limit(const pe_engine *engine, pe_limit which) {
  if (!engine || !limit_known(which))
    return 0;
  return engine->opts.limits[which];
}

/* ---- errors and log ---- */

const char *pe_engine_errmsg(const pe_engine *engine) {
  return engine ? engine->errmsg : "";
}

static void log_v(pe_engine *e, pe_log_level level, const char *fmt, va_list ap) PE_PRINTF(3, 0);

static void log_v(pe_engine *e, pe_log_level level, const char *fmt, va_list ap) {
  if (!e->opts.log || level > e->opts.log_level)
    return; /* nothing is formatted for a message nobody reads */
  char message[1024];
  if (vsnprintf(message, sizeof message, fmt, ap) < 0)
    return;
  e->opts.log(level, message, e->opts.log_ud);
}

void pe__log(pe_engine *e, pe_log_level level, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  log_v(e, level, fmt, ap);
  va_end(ap);
}

void pe_engine_log(pe_engine *engine, pe_log_level level, const char *fmt, ...) {
  if (!engine || !fmt)
    return;
  va_list ap;
  va_start(ap, fmt);
  log_v(engine, level, fmt, ap);
  va_end(ap);
}

/* Takes e->lock: never call it with the lock held. */
void pe__engine_fail(pe_engine *e, const char *fmt, ...) {
  char message[PE__ERRMSG_SIZE];
  va_list ap;
  va_start(ap, fmt);
  pe__errmsg_vset(message, fmt, ap);
  va_end(ap);
  pthread_mutex_lock(&e->lock);
  memcpy(e->errmsg, message, sizeof message);
  pthread_mutex_unlock(&e->lock);
  pe__log(e, PE_LOG_ERROR, "%s", message);
}
