/*
 * The engine, twice: once at configuration time, in the master (or in
 * nginx -t), to check every chain and throw the engine away; then once per
 * worker process after the fork, with the Python pool and one dispatcher
 * whose fd sits on the worker's event loop. Nothing of the library crosses
 * the fork: the master keeps no engine, thread or worker process.
 */
#include "ngx_http_policyexec.h"

/* Reset exchanges kept per worker for reuse. */
#define PE_NGX_SPARE_EXCHANGES 256

/* Period of the worker's wait timer (below); any value works, it is only
 * re-armed. */
#define PE_NGX_WAIT_MS 60000

typedef struct {
  pe_engine *engine;
  pe_dispatcher *dispatcher;
  ngx_connection_t *conn; /* carries the dispatcher fd on the event loop */
  ngx_array_t *specs;
  ngx_queue_t live; /* ctxs that own an exchange */
  pe_exchange *spare[PE_NGX_SPARE_EXCHANGES];
  ngx_uint_t nspare;
  ngx_flag_t exiting;
  /* A graceful shutdown (nginx -s quit, reload) ends a worker once only
   * cancelable timers are left. This one timer stays armed and is
   * cancelable exactly when no request waits for a run (waiting == 0), so
   * no worker ends under a request that waits for a Python worker; one
   * timer per run cost two timer-tree operations per request. The
   * library's step timeouts end the runs themselves. */
  ngx_event_t wait;
  ngx_uint_t waiting;
} ngx_http_pe_worker_t;

static ngx_http_pe_worker_t pe_worker;

static void ngx_http_pe_log(pe_log_level level, const char *message, void *user_data) {
  static const ngx_uint_t levels[] = {NGX_LOG_ERR, NGX_LOG_WARN, NGX_LOG_INFO, NGX_LOG_DEBUG};
  ngx_log_t *log = user_data ? user_data : ngx_cycle->log;
  ngx_log_error(levels[(unsigned)level <= PE_LOG_DEBUG ? level : PE_LOG_DEBUG], log, 0,
                "policyexec: %s", message);
}

/* An engine with the main configuration's plugins, limits and Python pool. */
static ngx_int_t ngx_http_pe_engine_new(ngx_http_pe_main_conf_t *pmcf, ngx_log_t *log,
                                        ngx_uint_t python_workers, pe_engine **out) {
  pe_engine_options *opts = NULL;
  pe_python_options *py = NULL;
  pe_engine *engine = NULL;
  int rc = pe_engine_options_new(&opts);
  if (rc == PE_OK) {
    pe_engine_options_set_log(opts, ngx_http_pe_log, log);
    /* nginx -t prints what the check engine logs: warnings and errors only. */
    pe_engine_options_set_log_level(opts, log ? PE_LOG_WARN : PE_LOG_INFO);
    if (pmcf->shm_zone && log == NULL)
      pe_engine_options_set_metrics(opts, ngx_http_pe_on_step, pmcf->shm_zone);
    if (pmcf->max_body != NGX_CONF_UNSET_SIZE)
      rc = pe_engine_options_set_limit(opts, PE_LIMIT_BODY_BYTES, pmcf->max_body);
    if (rc == PE_OK && pmcf->max_headers != NGX_CONF_UNSET_UINT)
      rc = pe_engine_options_set_limit(opts, PE_LIMIT_HEADER_COUNT, pmcf->max_headers);
    if (rc == PE_OK && pmcf->max_header_bytes != NGX_CONF_UNSET_SIZE)
      rc = pe_engine_options_set_limit(opts, PE_LIMIT_HEADER_BYTES, pmcf->max_header_bytes);
    if (rc != PE_OK) {
      ngx_log_error(NGX_LOG_EMERG, log ? log : ngx_cycle->log, 0,
                    "policyexec: a limit must be at least 1");
      pe_engine_options_free(opts);
      return NGX_ERROR;
    }
  }
  if (rc == PE_OK)
    rc = pe_engine_new(&engine, opts);
  pe_engine_options_free(opts);
  if (rc != PE_OK) {
    ngx_log_error(NGX_LOG_EMERG, log ? log : ngx_cycle->log, 0, "policyexec: engine: %s",
                  pe_strerror(rc));
    return NGX_ERROR;
  }
  ngx_str_t *plugin = pmcf->plugins.elts;
  for (ngx_uint_t i = 0; i < pmcf->plugins.nelts; i++) {
    rc = pe_engine_load_plugin(engine, (const char *)plugin[i].data);
    if (rc != PE_OK) {
      ngx_log_error(NGX_LOG_EMERG, log ? log : ngx_cycle->log, 0, "policyexec_plugin \"%V\": %s",
                    &plugin[i], pe_engine_errmsg(engine));
      goto fail;
    }
  }
  if (pmcf->python_paths.nelts > 0) {
    rc = pe_python_options_new(&py);
    if (rc == PE_OK)
      rc = pe_python_options_set_workers(py, (unsigned)python_workers);
    if (rc == PE_OK)
      rc = pe_python_options_set_default_timeout(py, (uint32_t)pmcf->python_timeout);
    if (rc == PE_OK && pmcf->python_cpu_affinity)
      rc = pe_python_options_set_cpu_affinity(py, 1);
    if (rc == PE_OK && pmcf->python_worker.len > 0)
      rc = pe_python_options_set_worker_path(py, (const char *)pmcf->python_worker.data);
    ngx_str_t *dir = pmcf->python_paths.elts;
    for (ngx_uint_t i = 0; rc == PE_OK && i < pmcf->python_paths.nelts; i++)
      rc = pe_python_options_add_module_path(py, (const char *)dir[i].data);
    if (rc == PE_OK)
      rc = pe_engine_start_python(engine, py);
    pe_python_options_free(py);
    if (rc != PE_OK) {
      ngx_log_error(NGX_LOG_EMERG, log ? log : ngx_cycle->log, 0,
                    "policyexec: starting the Python workers: %s (%s)", pe_strerror(rc),
                    pe_engine_errmsg(engine));
      goto fail;
    }
  }
  *out = engine;
  return NGX_OK;
fail:
  pe_engine_free(engine);
  return NGX_ERROR;
}

/* Builds @p spec's chain on @p engine; logs what is wrong, naming the block. */
static ngx_int_t ngx_http_pe_build(pe_engine *engine, ngx_http_pe_spec_t *spec, ngx_log_t *log,
                                   pe_chain **out) {
  char err[512];
  int rc = pe_chain_new_from_json(out, engine, pe_bytes(spec->json.data, spec->json.len), err,
                                  sizeof err);
  if (rc != PE_OK) {
    ngx_log_error(NGX_LOG_EMERG, log, 0, "policyexec_chain in %V: %s: %s in %V:%ui", &spec->where,
                  pe_strerror(rc), err, &spec->file, spec->line);
    return NGX_ERROR;
  }
  return NGX_OK;
}

ngx_int_t ngx_http_pe_validate(ngx_conf_t *cf, ngx_http_pe_main_conf_t *pmcf) {
  pe_engine *engine = NULL;
  /* One Python worker is enough to learn the policies and check params. */
  if (ngx_http_pe_engine_new(pmcf, cf->log, 1, &engine) != NGX_OK)
    return NGX_ERROR;
  ngx_int_t rc = NGX_OK;
  ngx_http_pe_spec_t **spec = pmcf->specs.elts;
  for (ngx_uint_t i = 0; i < pmcf->specs.nelts; i++) {
    pe_chain *chain = NULL;
    if (ngx_http_pe_build(engine, spec[i], cf->log, &chain) != NGX_OK) {
      rc = NGX_ERROR;
      continue; /* report every bad chain at once */
    }
    pe_chain_free(chain);
  }
  pe_engine_free(engine); /* stops the Python workers before any fork */
  return rc;
}

static void ngx_http_pe_wait_handler(ngx_event_t *ev) {
  if (!ngx_exiting || pe_worker.waiting > 0)
    ngx_add_timer(ev, PE_NGX_WAIT_MS);
}

void ngx_http_pe_wait_start(ngx_http_pe_ctx_t *ctx) {
  ctx->pending = 1;
  if (pe_worker.waiting++ == 0)
    pe_worker.wait.cancelable = 0;
  if (!pe_worker.wait.timer_set) /* not re-armed once a shutdown began */
    ngx_add_timer(&pe_worker.wait, PE_NGX_WAIT_MS);
}

void ngx_http_pe_wait_stop(ngx_http_pe_ctx_t *ctx) {
  ctx->pending = 0;
  if (--pe_worker.waiting == 0)
    pe_worker.wait.cancelable = 1;
}

static void ngx_http_pe_dispatch_handler(ngx_event_t *ev) {
  (void)ev;
  if (pe_worker.dispatcher)
    pe_dispatcher_dispatch(pe_worker.dispatcher);
}

ngx_int_t ngx_http_pe_worker_start(ngx_cycle_t *cycle, ngx_http_pe_main_conf_t *pmcf) {
  ngx_memzero(&pe_worker, sizeof pe_worker);
  if (pmcf->python_paths.nelts > 0) {
    /* nginx's SIGCHLD handler reaps every child of a worker with
     * waitpid(-1) and logs "unknown process exited" alerts for the Python
     * workers, which the library supervises and reaps itself. A worker
     * process spawns no children of nginx's, so the default disposition
     * is safe and lets the library reap its own. */
    struct sigaction sa;
    ngx_memzero(&sa, sizeof sa);
    sa.sa_handler = SIG_DFL;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGCHLD, &sa, NULL) == -1)
      ngx_log_error(NGX_LOG_ALERT, cycle->log, ngx_errno, "policyexec: sigaction(SIGCHLD) failed");
  }
  if (pmcf->sched_batch) {
    /* Before the pool starts, so the Python workers inherit it: a woken
     * worker then waits for this process to block instead of preempting
     * it, and takes the calls queued meanwhile in one go (decision 10,
     * as the gateway's "sched_batch"). */
    struct sched_param sp;
    ngx_memzero(&sp, sizeof sp);
    if (sched_setscheduler(0, SCHED_BATCH, &sp) == -1)
      ngx_log_error(NGX_LOG_WARN, cycle->log, ngx_errno,
                    "policyexec_sched_batch: sched_setscheduler failed");
  }
  ngx_queue_init(&pe_worker.live);
  pe_worker.specs = &pmcf->specs;
  if (ngx_http_pe_engine_new(pmcf, NULL, pmcf->python_workers, &pe_worker.engine) != NGX_OK)
    return NGX_ERROR;
  ngx_http_pe_spec_t **spec = pmcf->specs.elts;
  for (ngx_uint_t i = 0; i < pmcf->specs.nelts; i++) {
    if (ngx_http_pe_build(pe_worker.engine, spec[i], cycle->log, &spec[i]->chain) != NGX_OK)
      return NGX_ERROR;
    spec[i]->phases = pe_chain_phases(spec[i]->chain);
    spec[i]->needs = pe_chain_needs(spec[i]->chain);
    spec[i]->plan[PE_REQUEST] = (unsigned char)pe_chain_body_plan(spec[i]->chain, PE_REQUEST);
    spec[i]->plan[PE_RESPONSE] = (unsigned char)pe_chain_body_plan(spec[i]->chain, PE_RESPONSE);
  }
  int rc = pe_dispatcher_new(&pe_worker.dispatcher, pe_worker.engine);
  if (rc != PE_OK) {
    ngx_log_error(NGX_LOG_EMERG, cycle->log, 0, "policyexec: dispatcher: %s", pe_strerror(rc));
    return NGX_ERROR;
  }
  /* A connection of its own, so the fd can sit on nginx's event loop. It is
   * added level-triggered (flags 0, not NGX_CLEAR_EVENT): one dispatch
   * handles a bounded number of events, and what is left must wake us again. */
  ngx_connection_t *c = ngx_get_connection(pe_dispatcher_fd(pe_worker.dispatcher), cycle->log);
  if (c == NULL)
    return NGX_ERROR;
  pe_worker.conn = c;
  c->read->handler = ngx_http_pe_dispatch_handler;
  c->read->log = cycle->log;
  c->write->log = cycle->log;
  if (ngx_add_event(c->read, NGX_READ_EVENT, 0) != NGX_OK)
    return NGX_ERROR;
  pe_worker.wait.handler = ngx_http_pe_wait_handler;
  pe_worker.wait.log = cycle->log;
  pe_worker.wait.cancelable = 1;
  ngx_add_timer(&pe_worker.wait, PE_NGX_WAIT_MS);
  return NGX_OK;
}

void ngx_http_pe_worker_stop(ngx_cycle_t *cycle) {
  (void)cycle;
  pe_worker.exiting = 1; /* completions now only mark their requests */
  if (pe_worker.wait.timer_set)
    ngx_del_timer(&pe_worker.wait);
  if (pe_worker.conn) {
    /* The dispatcher owns and closes the fd; nginx must not see it as an
     * open socket left behind ("open socket #N left in connection"). */
    if (pe_worker.conn->read->active)
      ngx_del_event(pe_worker.conn->read, NGX_READ_EVENT, 0);
    pe_worker.conn->fd = (ngx_socket_t)-1;
    ngx_free_connection(pe_worker.conn);
    pe_worker.conn = NULL;
  }
  pe_dispatcher_free(pe_worker.dispatcher);
  pe_worker.dispatcher = NULL;
  /* Requests cut off by a fast shutdown still own exchanges, which hold the
   * engine: free them, or the engine (and its Python workers) would stay. */
  ngx_http_pe_free_live();
  for (ngx_uint_t i = 0; i < pe_worker.nspare; i++)
    pe_exchange_free(pe_worker.spare[i]);
  pe_worker.nspare = 0;
  if (pe_worker.specs) {
    ngx_http_pe_spec_t **spec = pe_worker.specs->elts;
    for (ngx_uint_t i = 0; i < pe_worker.specs->nelts; i++) {
      pe_chain_free(spec[i]->chain);
      spec[i]->chain = NULL;
    }
  }
  pe_engine_free(pe_worker.engine); /* stops and reaps the Python workers */
  pe_worker.engine = NULL;
}

pe_dispatcher *ngx_http_pe_dispatcher(void) {
  return pe_worker.dispatcher;
}

ngx_int_t ngx_http_pe_worker_exiting(void) {
  return pe_worker.exiting;
}

ngx_queue_t *ngx_http_pe_live_queue(void) {
  return &pe_worker.live;
}

pe_exchange *ngx_http_pe_take_exchange(void) {
  if (pe_worker.nspare > 0)
    return pe_worker.spare[--pe_worker.nspare];
  pe_exchange *ex = NULL;
  return pe_exchange_new(&ex, pe_worker.engine) == PE_OK ? ex : NULL;
}

void ngx_http_pe_give_exchange(pe_exchange *ex) {
  if (!pe_worker.exiting && pe_worker.nspare < PE_NGX_SPARE_EXCHANGES &&
      pe_exchange_reset(ex) == PE_OK)
    pe_worker.spare[pe_worker.nspare++] = ex;
  else
    pe_exchange_free(ex);
}
