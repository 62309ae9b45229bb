/*
 * ngx_http_policyexec_module: directives, configuration and the module's
 * hooks into nginx's life cycle (see ngx_http_policyexec.h for the map).
 */
#include "ngx_http_policyexec.h"

static void *ngx_http_pe_create_main_conf(ngx_conf_t *cf);
static char *ngx_http_pe_init_main_conf(ngx_conf_t *cf, void *conf);
static void *ngx_http_pe_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_pe_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child);
static ngx_int_t ngx_http_pe_postconfiguration(ngx_conf_t *cf);
static ngx_int_t ngx_http_pe_init_process(ngx_cycle_t *cycle);
static void ngx_http_pe_exit_process(ngx_cycle_t *cycle);
static char *ngx_http_pe_add_path(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
static char *ngx_http_pe_chain(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);

static ngx_command_t ngx_http_pe_commands[] = {
    {ngx_string("policyexec_plugin"), NGX_HTTP_MAIN_CONF | NGX_CONF_TAKE1, ngx_http_pe_add_path,
     NGX_HTTP_MAIN_CONF_OFFSET, offsetof(ngx_http_pe_main_conf_t, plugins), NULL},
    {ngx_string("policyexec_python_path"), NGX_HTTP_MAIN_CONF | NGX_CONF_TAKE1,
     ngx_http_pe_add_path, NGX_HTTP_MAIN_CONF_OFFSET,
     offsetof(ngx_http_pe_main_conf_t, python_paths), NULL},
    {ngx_string("policyexec_python_worker"), NGX_HTTP_MAIN_CONF | NGX_CONF_TAKE1,
     ngx_conf_set_str_slot, NGX_HTTP_MAIN_CONF_OFFSET,
     offsetof(ngx_http_pe_main_conf_t, python_worker), NULL},
    {ngx_string("policyexec_python_workers"), NGX_HTTP_MAIN_CONF | NGX_CONF_TAKE1,
     ngx_conf_set_num_slot, NGX_HTTP_MAIN_CONF_OFFSET,
     offsetof(ngx_http_pe_main_conf_t, python_workers), NULL},
    {ngx_string("policyexec_python_timeout"), NGX_HTTP_MAIN_CONF | NGX_CONF_TAKE1,
     ngx_conf_set_msec_slot, NGX_HTTP_MAIN_CONF_OFFSET,
     offsetof(ngx_http_pe_main_conf_t, python_timeout), NULL},
    {ngx_string("policyexec_python_cpu_affinity"), NGX_HTTP_MAIN_CONF | NGX_CONF_FLAG,
     ngx_conf_set_flag_slot, NGX_HTTP_MAIN_CONF_OFFSET,
     offsetof(ngx_http_pe_main_conf_t, python_cpu_affinity), NULL},
    {ngx_string("policyexec_sched_batch"), NGX_HTTP_MAIN_CONF | NGX_CONF_FLAG,
     ngx_conf_set_flag_slot, NGX_HTTP_MAIN_CONF_OFFSET,
     offsetof(ngx_http_pe_main_conf_t, sched_batch), NULL},
    {ngx_string("policyexec_max_body_size"), NGX_HTTP_MAIN_CONF | NGX_CONF_TAKE1,
     ngx_conf_set_size_slot, NGX_HTTP_MAIN_CONF_OFFSET, offsetof(ngx_http_pe_main_conf_t, max_body),
     NULL},
    {ngx_string("policyexec_max_headers"), NGX_HTTP_MAIN_CONF | NGX_CONF_TAKE1,
     ngx_conf_set_num_slot, NGX_HTTP_MAIN_CONF_OFFSET,
     offsetof(ngx_http_pe_main_conf_t, max_headers), NULL},
    {ngx_string("policyexec_max_header_bytes"), NGX_HTTP_MAIN_CONF | NGX_CONF_TAKE1,
     ngx_conf_set_size_slot, NGX_HTTP_MAIN_CONF_OFFSET,
     offsetof(ngx_http_pe_main_conf_t, max_header_bytes), NULL},
    {ngx_string("policyexec_chain"),
     NGX_HTTP_MAIN_CONF | NGX_HTTP_SRV_CONF | NGX_HTTP_LOC_CONF | NGX_CONF_TAKE1, ngx_http_pe_chain,
     NGX_HTTP_LOC_CONF_OFFSET, 0, NULL},
    {ngx_string("policyexec"),
     NGX_HTTP_MAIN_CONF | NGX_HTTP_SRV_CONF | NGX_HTTP_LOC_CONF | NGX_CONF_FLAG,
     ngx_conf_set_flag_slot, NGX_HTTP_LOC_CONF_OFFSET, offsetof(ngx_http_pe_loc_conf_t, enable),
     NULL},
    {ngx_string("policyexec_status"), NGX_HTTP_LOC_CONF | NGX_CONF_NOARGS, ngx_http_pe_status,
     NGX_HTTP_LOC_CONF_OFFSET, 0, NULL},
    ngx_null_command};

static ngx_http_module_t ngx_http_pe_module_ctx = {
    NULL,                          /* preconfiguration */
    ngx_http_pe_postconfiguration, /* postconfiguration */
    ngx_http_pe_create_main_conf,  /* create main configuration */
    ngx_http_pe_init_main_conf,    /* init main configuration */
    NULL,                          /* create server configuration */
    NULL,                          /* merge server configuration */
    ngx_http_pe_create_loc_conf,   /* create location configuration */
    ngx_http_pe_merge_loc_conf     /* merge location configuration */
};

ngx_module_t ngx_http_policyexec_module = {NGX_MODULE_V1,
                                           &ngx_http_pe_module_ctx,  /* module context */
                                           ngx_http_pe_commands,     /* module directives */
                                           NGX_HTTP_MODULE,          /* module type */
                                           NULL,                     /* init master */
                                           NULL,                     /* init module */
                                           ngx_http_pe_init_process, /* init process */
                                           NULL,                     /* init thread */
                                           NULL,                     /* exit thread */
                                           ngx_http_pe_exit_process, /* exit process */
                                           NULL,                     /* exit master */
                                           NGX_MODULE_V1_PADDING};

static void *ngx_http_pe_create_main_conf(ngx_conf_t *cf) {
  ngx_http_pe_main_conf_t *pmcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_pe_main_conf_t));
  if (pmcf == NULL)
    return NULL;
  if (ngx_array_init(&pmcf->plugins, cf->pool, 2, sizeof(ngx_str_t)) != NGX_OK ||
      ngx_array_init(&pmcf->python_paths, cf->pool, 2, sizeof(ngx_str_t)) != NGX_OK ||
      ngx_array_init(&pmcf->specs, cf->pool, 8, sizeof(ngx_http_pe_spec_t *)) != NGX_OK)
    return NULL;
  pmcf->python_workers = NGX_CONF_UNSET_UINT;
  pmcf->python_timeout = NGX_CONF_UNSET_MSEC;
  pmcf->python_cpu_affinity = NGX_CONF_UNSET;
  pmcf->sched_batch = NGX_CONF_UNSET;
  pmcf->max_body = NGX_CONF_UNSET_SIZE;
  pmcf->max_header_bytes = NGX_CONF_UNSET_SIZE;
  pmcf->max_headers = NGX_CONF_UNSET_UINT;
  return pmcf;
}

static char *ngx_http_pe_init_main_conf(ngx_conf_t *cf, void *conf) {
  ngx_http_pe_main_conf_t *pmcf = conf;
  /* One Python worker per nginx worker by default: nginx already runs one
   * worker per CPU, so one each gives one interpreter per CPU. */
  ngx_conf_init_uint_value(pmcf->python_workers, 1);
  ngx_conf_init_msec_value(pmcf->python_timeout, 1000);
  ngx_conf_init_value(pmcf->python_cpu_affinity, 0);
  ngx_conf_init_value(pmcf->sched_batch, 0);
  if (pmcf->python_workers < 1 || pmcf->python_workers > 256)
    return "policyexec_python_workers must be 1 .. 256";
  if (pmcf->python_timeout < 1 || pmcf->python_timeout > 3600000)
    return "policyexec_python_timeout must be 1ms .. 1h";
  if (pmcf->python_worker.len > 0 &&
      ngx_conf_full_name(cf->cycle, &pmcf->python_worker, 0) != NGX_OK)
    return NGX_CONF_ERROR;
  return NGX_CONF_OK;
}

static void *ngx_http_pe_create_loc_conf(ngx_conf_t *cf) {
  ngx_http_pe_loc_conf_t *plcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_pe_loc_conf_t));
  if (plcf == NULL)
    return NULL;
  plcf->enable = NGX_CONF_UNSET;
  plcf->spec = NGX_CONF_UNSET_PTR;
  return plcf;
}

static char *ngx_http_pe_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child) {
  ngx_http_pe_loc_conf_t *prev = parent, *conf = child;
  (void)cf;
  ngx_conf_merge_value(conf->enable, prev->enable, 1);
  ngx_conf_merge_ptr_value(conf->spec, prev->spec, NULL);
  return NGX_CONF_OK;
}

/* policyexec_plugin / policyexec_python_path: relative to nginx's prefix. */
static char *ngx_http_pe_add_path(ngx_conf_t *cf, ngx_command_t *cmd, void *conf) {
  ngx_array_t *paths = (ngx_array_t *)((char *)conf + cmd->offset);
  ngx_str_t *value = cf->args->elts;
  ngx_str_t *path = ngx_array_push(paths);
  if (path == NULL)
    return NGX_CONF_ERROR;
  *path = value[1];
  if (path->len == 0)
    return "takes a non-empty path";
  /* Keep a bare plugin file name as is, so dlopen() searches for it. */
  if (cmd->offset == offsetof(ngx_http_pe_main_conf_t, plugins) &&
      ngx_strlchr(path->data, path->data + path->len, '/') == NULL)
    goto terminate;
  if (ngx_conf_full_name(cf->cycle, path, 0) != NGX_OK)
    return NGX_CONF_ERROR;
terminate:
  /* The library takes NUL-terminated paths. */
  {
    u_char *p = ngx_pnalloc(cf->pool, path->len + 1);
    if (p == NULL)
      return NGX_CONF_ERROR;
    ngx_memcpy(p, path->data, path->len);
    p[path->len] = '\0';
    path->data = p;
  }
  return NGX_CONF_OK;
}

static ngx_int_t ngx_http_pe_read_file(ngx_conf_t *cf, ngx_str_t *name, ngx_str_t *out) {
  ngx_file_info_t fi;
  ngx_fd_t fd = ngx_open_file(name->data, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);
  if (fd == NGX_INVALID_FILE) {
    ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno, "policyexec_chain: cannot open \"%V\"", name);
    return NGX_ERROR;
  }
  ngx_int_t rc = NGX_ERROR;
  if (ngx_fd_info(fd, &fi) == NGX_FILE_ERROR || ngx_file_size(&fi) > 16 * 1024 * 1024) {
    ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                       "policyexec_chain: \"%V\" is unreadable or larger than 16 MiB", name);
    goto done;
  }
  out->len = (size_t)ngx_file_size(&fi);
  out->data = ngx_pnalloc(cf->pool, out->len + 1);
  if (out->data == NULL)
    goto done;
  ssize_t n = ngx_read_fd(fd, out->data, out->len);
  if (n < 0 || (size_t)n != out->len) {
    ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno, "policyexec_chain: cannot read \"%V\"", name);
    goto done;
  }
  rc = NGX_OK;
done:
  ngx_close_file(fd);
  return rc;
}

/* policyexec_chain '<JSON>' | file=PATH */
static char *ngx_http_pe_chain(ngx_conf_t *cf, ngx_command_t *cmd, void *conf) {
  ngx_http_pe_loc_conf_t *plcf = conf;
  ngx_http_pe_main_conf_t *pmcf =
      ngx_http_conf_get_module_main_conf(cf, ngx_http_policyexec_module);
  ngx_str_t *value = cf->args->elts;
  (void)cmd;
  if (plcf->spec != NGX_CONF_UNSET_PTR)
    return "is duplicate";
  ngx_http_pe_spec_t *spec = ngx_pcalloc(cf->pool, sizeof(ngx_http_pe_spec_t));
  ngx_http_pe_spec_t **slot = ngx_array_push(&pmcf->specs);
  if (spec == NULL || slot == NULL)
    return NGX_CONF_ERROR;
  if (value[1].len > 5 && ngx_strncmp(value[1].data, "file=", 5) == 0) {
    ngx_str_t name = {value[1].len - 5, value[1].data + 5};
    if (ngx_conf_full_name(cf->cycle, &name, 1) != NGX_OK ||
        ngx_http_pe_read_file(cf, &name, &spec->json) != NGX_OK)
      return NGX_CONF_ERROR;
  } else {
    spec->json = value[1];
  }
  /* Name the block for nginx -t: the location's name, or its context. */
  if (cf->cmd_type & NGX_HTTP_LOC_CONF) {
    ngx_http_core_loc_conf_t *clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    spec->where.len = sizeof("location \"\"") - 1 + clcf->name.len;
    spec->where.data = ngx_pnalloc(cf->pool, spec->where.len);
    if (spec->where.data == NULL)
      return NGX_CONF_ERROR;
    ngx_sprintf(spec->where.data, "location \"%V\"", &clcf->name);
  } else if (cf->cmd_type & NGX_HTTP_SRV_CONF) {
    ngx_str_set(&spec->where, "server");
  } else {
    ngx_str_set(&spec->where, "http");
  }
  spec->file = cf->conf_file->file.name;
  spec->line = cf->conf_file->line;
  *slot = spec;
  plcf->spec = spec;
  return NGX_CONF_OK;
}

static ngx_int_t ngx_http_pe_postconfiguration(ngx_conf_t *cf) {
  ngx_http_pe_main_conf_t *pmcf =
      ngx_http_conf_get_module_main_conf(cf, ngx_http_policyexec_module);
  ngx_http_core_main_conf_t *cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);
  if (pmcf->specs.nelts == 0)
    return NGX_OK; /* loaded but unused: cost nothing */
  /* Precontent, not access: an access handler's NGX_OK would grant access
   * under "satisfy any". Precontent runs after access and after rewrite's
   * "return", so a request refused or answered there never reaches a chain. */
  ngx_http_handler_pt *h = ngx_array_push(&cmcf->phases[NGX_HTTP_PRECONTENT_PHASE].handlers);
  if (h == NULL)
    return NGX_ERROR;
  *h = ngx_http_pe_precontent_handler;
  if (ngx_http_pe_filter_init(cf) != NGX_OK)
    return NGX_ERROR;
  return ngx_http_pe_validate(cf, pmcf);
}

static ngx_int_t ngx_http_pe_init_process(ngx_cycle_t *cycle) {
  ngx_http_pe_main_conf_t *pmcf;
  if (ngx_process != NGX_PROCESS_WORKER && ngx_process != NGX_PROCESS_SINGLE)
    return NGX_OK; /* cache manager and loader run no requests */
  pmcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_http_policyexec_module);
  if (pmcf == NULL || pmcf->specs.nelts == 0)
    return NGX_OK;
  return ngx_http_pe_worker_start(cycle, pmcf);
}

static void ngx_http_pe_exit_process(ngx_cycle_t *cycle) {
  ngx_http_pe_worker_stop(cycle);
}
