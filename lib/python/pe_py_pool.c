/* The Python backend as a whole: starting the pool and registering the
 * policies the workers advertise, choosing a worker for a batch, the
 * registry of live instances (so that a replacement worker can re-create
 * them), health checks, and shutdown. */
#include "pe_py.h"

#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#ifndef PE_PYWORKER_DEFAULT_PATH
#define PE_PYWORKER_DEFAULT_PATH "/usr/local/libexec/policyexec-pyworker"
#endif
#ifndef PE_PYWORKER_FROM_LIBDIR
#define PE_PYWORKER_FROM_LIBDIR "../libexec/policyexec-pyworker"
#endif

#define MAX_WORKERS 256

/* ---- choosing a worker, in-flight budget ---- */

/* A worker pinned to the caller's CPU takes up to this many batches in
 * flight before calls spill over to the least-loaded worker. */
#define LOCAL_WORKER_MAX_INFLIGHT 4

static pe__py_worker *local_worker(pe__py_backend *be) {
  int cpu = sched_getcpu();
  if (cpu < 0 || cpu >= (int)(sizeof be->cpu_worker / sizeof be->cpu_worker[0]))
    return NULL;
  int idx = be->cpu_worker[cpu];
  if (idx < 0)
    return NULL;
  pe__py_worker *w = &be->workers[idx];
  if (atomic_load_explicit(&w->state, memory_order_acquire) != PE__PY_READY ||
      atomic_load_explicit(&w->inflight, memory_order_relaxed) >= LOCAL_WORKER_MAX_INFLIGHT ||
      atomic_load_explicit(&w->creating, memory_order_relaxed))
    return NULL;
  return w;
}

/* The least loaded READY worker, skipping those busy creating an instance
 * (unless `creating_too`), or NULL. */
static pe__py_worker *least_loaded(pe__py_backend *be, size_t start, bool creating_too) {
  size_t n = be->nworkers;
  pe__py_worker *best = NULL;
  long best_load = 0;
  for (size_t k = 0; k < n; k++) {
    pe__py_worker *w = &be->workers[(start + k) % n];
    if (atomic_load_explicit(&w->state, memory_order_acquire) != PE__PY_READY ||
        (!creating_too && atomic_load_explicit(&w->creating, memory_order_relaxed)))
      continue;
    long load = atomic_load_explicit(&w->inflight, memory_order_relaxed);
    if (!best || load < best_load) {
      best = w;
      best_load = load;
      if (load == 0)
        break;
    }
  }
  return best;
}

pe__py_worker *pe__py_pick_worker(pe__py_backend *be) {
  size_t n = be->nworkers;
  if (be->cfg.cpu_affinity) {
    pe__py_worker *w = local_worker(be);
    if (w)
      return w;
  }
  size_t start = atomic_fetch_add_explicit(&be->rr, 1, memory_order_relaxed) % n;
  /* A worker creating an instance runs nothing else until it is done: use
   * it only when no other worker is ready. */
  pe__py_worker *best = least_loaded(be, start, false);
  if (!best)
    best = least_loaded(be, start, true);
  if (best)
    return best;
  /* Nobody is ready: finish a replacement's start-up (blocking). */
  for (size_t k = 0; k < n; k++) {
    pe__py_worker *w = &be->workers[(start + k) % n];
    if (pe__py_worker_ensure_ready(w) == PE_OK)
      return w;
  }
  return NULL;
}

int pe__py_inflight_take(pe__py_backend *be, pe__py_worker *w) {
  long before = atomic_fetch_add_explicit(&be->inflight, 1, memory_order_relaxed);
  if ((size_t)before >= be->cfg.max_in_flight) {
    atomic_fetch_sub_explicit(&be->inflight, 1, memory_order_relaxed);
    return PE_ERR_BUSY;
  }
  /* The worker's own cap: w is the least loaded one, so when it is full
   * every worker is (pe__py_pick_worker). */
  long mine = atomic_fetch_add_explicit(&w->inflight, 1, memory_order_relaxed);
  if ((size_t)mine >= be->cfg.worker_max_in_flight) {
    atomic_fetch_sub_explicit(&w->inflight, 1, memory_order_relaxed);
    atomic_fetch_sub_explicit(&be->inflight, 1, memory_order_relaxed);
    return PE_ERR_BUSY;
  }
  return PE_OK;
}

void pe__py_inflight_give(pe__py_backend *be, pe__py_worker *w) {
  atomic_fetch_sub_explicit(&w->inflight, 1, memory_order_relaxed);
  atomic_fetch_sub_explicit(&be->inflight, 1, memory_order_relaxed);
}

/* The hard deadline's grace beyond the steps' own timeouts: the worker's
 * report of a step it interrupted must win the race with the kill. */
#define HARD_DEADLINE_GRACE_MS 100

uint64_t pe__py_batch_deadline(const pe__batch *b, uint64_t now_ns) {
  uint64_t total_ms = HARD_DEADLINE_GRACE_MS;
  for (size_t i = 0; i < b->n; i++)
    total_ms += b->step[i]->timeout_ms;
  return now_ns + total_ms * 1000000u;
}

/* ---- instances ---- */

static void instance_unlink(pe__py_backend *be, pe__py_instance *inst) {
  if (inst->prev)
    inst->prev->next = inst->next;
  else
    be->instances = inst->next;
  if (inst->next)
    inst->next->prev = inst->prev;
  inst->prev = inst->next = NULL;
}

/* With inst_lock held: sends DestroyInstance to every ready worker. */
static void destroy_everywhere(pe__py_backend *be, uint64_t id) {
  Policyexec__V1__DestroyInstance di = POLICYEXEC__V1__DESTROY_INSTANCE__INIT;
  di.instance_id = id;
  pe__py_request req = POLICYEXEC__V1__REQUEST__INIT;
  req.body_case = POLICYEXEC__V1__REQUEST__BODY_DESTROY;
  req.destroy = &di;
  for (size_t i = 0; i < be->nworkers; i++) {
    pe__py_worker *w = &be->workers[i];
    pthread_mutex_lock(&w->lock);
    unsigned gen = atomic_load(&w->gen);
    int rc = PE_OK;
    if (atomic_load(&w->state) == PE__PY_READY) {
      pe__py_response *resp;
      rc = pe__py_worker_control_call(w, &req, &resp);
      if (rc == PE_OK)
        pe__py_conn_consume(&w->control);
    }
    pthread_mutex_unlock(&w->lock);
    if (rc != PE_OK)
      pe__py_worker_fail(w, gen, "destroying an instance failed");
  }
}

/* Waits (bounded) until w has no batch in flight: a create sent behind a
 * batch would otherwise wait for it, and a batch sent just before the
 * create would wait for the constructor. */
static void wait_drained(pe__py_worker *w, uint64_t deadline_ns) {
  while (atomic_load(&w->inflight) > 0 && pe__now_ns() < deadline_ns) {
    struct timespec ts = {0, 1000000L};
    nanosleep(&ts, NULL);
  }
}

/* Creates inst on READY worker w (of generation gen) over a connection of
 * its own, holding no lock of w: runs on other threads are never stalled
 * behind the control connection's lock for as long as a constructor runs,
 * and a failure elsewhere may kill and replace w meanwhile (the create then
 * fails with the broken connection; the replacement re-creates inst from
 * the instance list). Returns as pe__py_worker_create, with *kill. */
static int create_on(pe__py_backend *be, pe__py_worker *w, unsigned gen, pe__py_instance *inst,
                     char *err, bool *kill) {
  *kill = false;
  atomic_store(&w->creating, inst->policy);
  wait_drained(w, pe__now_ns() + (uint64_t)be->cfg.create_timeout_ms * 1000000u);
  pe__py_conn c;
  pe__py_conn_init(&c, be->mem, be->max_message);
  c.shm_threshold = be->cfg.shm_threshold;
  c.worker = w;
  c.gen = gen;
  uint64_t deadline = pe__now_ns() + (uint64_t)be->cfg.startup_timeout_ms * 1000000u;
  int rc;
  if (pe__py_conn_connect(&c, w->sock_path) != PE_OK ||
      pe__py_conn_hello(&c, deadline, NULL) != PE_OK) {
    pe__errmsg_set(err, "python worker %zu: cannot connect to create an instance of %s@%s",
                   w->index, inst->policy->name, inst->policy->version);
    rc = PE_ERR_WORKER;
  } else {
    rc = pe__py_worker_create(w, &c, inst, err, kill);
  }
  pe__py_conn_free(&c);
  atomic_store(&w->creating, NULL);
  return rc;
}

static int py_create_instance(pe__py_backend *be, pe__step *step, char *err) {
  pe__py_instance *inst = pe__calloc(be->mem, 1, sizeof *inst);
  if (!inst || !(inst->params_json = pe__strndup(be->mem, step->params_json, step->params_len))) {
    pe__free(be->mem, inst);
    pe__errmsg_set(err, "out of memory");
    return PE_ERR_NOMEM;
  }
  inst->id = atomic_fetch_add(&be->next_instance_id, 1);
  inst->policy = step->policy;
  if (step->timeout_ms == 0) /* not set on the step */
    step->timeout_ms = be->cfg.default_timeout_ms;
  /* Bring every worker up first: a start-up needs inst_lock itself. */
  for (size_t i = 0; i < be->nworkers; i++)
    pe__py_worker_ensure_ready(&be->workers[i]);

  /* Held throughout, so that no replacement's handshake runs meanwhile: a
   * READY worker has created every listed instance but this one. */
  pthread_mutex_lock(&be->inst_lock);
  /* Listed first, so that a worker (re)started from now on creates it. */
  inst->next = be->instances;
  if (be->instances)
    be->instances->prev = inst;
  be->instances = inst;
  size_t created = 0;
  int rc = PE_OK;
  /* One worker at a time: the others keep serving. */
  for (size_t i = 0; i < be->nworkers && rc == PE_OK; i++) {
    pe__py_worker *w = &be->workers[i];
    pthread_mutex_lock(&w->lock);
    unsigned gen = atomic_load(&w->gen);
    bool ready = atomic_load(&w->state) == PE__PY_READY;
    pthread_mutex_unlock(&w->lock);
    if (!ready)
      continue;
    bool kill;
    int r = create_on(be, w, gen, inst, err, &kill);
    if (r == PE_OK)
      created++;
    else if (r == PE_ERR_PARAM || r == PE_ERR_TIMEOUT)
      rc = r; /* refused or too slow: the message is in err */
    if (kill || r == PE_ERR_WORKER) {
      char why[PE__ERRMSG_SIZE];
      pe__errmsg_set(why, "%s", kill ? err : "creating an instance failed");
      pe__py_worker_fail(w, gen, why);
    }
  }
  if (rc == PE_OK && created == 0) {
    pe__errmsg_set(err, "no python worker is available to create the instance");
    rc = PE_ERR_WORKER;
  }
  if (rc != PE_OK) {
    instance_unlink(be, inst);
    if (created)
      destroy_everywhere(be, inst->id);
  }
  pthread_mutex_unlock(&be->inst_lock);
  if (rc != PE_OK) {
    pe__free(be->mem, inst->params_json);
    pe__free(be->mem, inst);
    return rc;
  }
  step->instance = inst;
  return PE_OK;
}

static void py_destroy_instance(pe__py_backend *be, pe__step *step) {
  pe__py_instance *inst = step->instance;
  if (!inst)
    return;
  pthread_mutex_lock(&be->inst_lock);
  instance_unlink(be, inst);
  destroy_everywhere(be, inst->id);
  pthread_mutex_unlock(&be->inst_lock);
  pe__free(be->mem, inst->params_json);
  pe__free(be->mem, inst);
  step->instance = NULL;
}

/* ---- start-up: the policies of worker 0 become registry entries ---- */

/* on_hello of worker 0: its policies become registry entries. */
static int collect_policies(pe__py_backend *be, const Policyexec__V1__HelloReply *hello,
                            char *err) {
  pe__log(be->engine, PE_LOG_INFO, "python worker %u: %s, %zu policies", hello->pid, hello->runtime,
          hello->n_policies);
  return pe__py_collect_policies(be->engine, hello, &be->advertised, err);
}

/* Registers the pool as an executor with the policies it advertises. */
static int register_pool(pe__py_backend *be, char *err) {
  return pe__engine_add_executor_with_policies(be->engine, be->cfg.name, &pe__py_backend_ops,
                                               (pe__backend *)(void *)be, &be->advertised,
                                               "python policy", err);
}

/* ---- lifetime ---- */

static size_t default_workers(void) {
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n < 1 ? 1 : n > MAX_WORKERS ? MAX_WORKERS : (size_t)n;
}

/* Room for four bodies plus every header and metadata byte, so that any
 * batch the limits allow fits, with 1 MiB for framing and field tags. */
static size_t derived_max_message(const pe_engine *e) {
  const size_t *l = e->opts.limits;
  uint64_t total = 4ull * l[PE_LIMIT_BODY_BYTES] + 4ull * l[PE_LIMIT_HEADER_BYTES] +
                   2ull * l[PE_LIMIT_META_BYTES] + (1u << 20);
  return total > UINT32_MAX ? UINT32_MAX : (size_t)total;
}

/* A private directory for the workers' sockets, short enough for sun_path. */
static int make_socket_dir(pe__py_backend *be, char *err) {
  const char *tmp = getenv("TMPDIR");
  /* "/w255.sock" must still fit after the directory. */
  if (!tmp || !tmp[0] || strlen(tmp) + 32 > sizeof be->dir)
    tmp = "/tmp";
  snprintf(be->dir, sizeof be->dir, "%s/policyexec-XXXXXX", tmp);
  if (!mkdtemp(be->dir)) {
    pe__errmsg_set(err, "cannot create a socket directory in %s: %s", tmp, strerror(errno));
    be->dir[0] = '\0';
    return PE_ERR_IO;
  }
  return PE_OK;
}

static void backend_free(pe__py_backend *be) {
  /* Workers first, then the supervisor: the supervisor may be in a
   * replacement's handshake, re-creating instances whose constructors take
   * long; ending the workers makes that fail at once, so shutdown takes the
   * grace period at most. Nothing is respawned once stopping is set; a
   * process spawned just before is ended by the second pass. */
  atomic_store(&be->stopping, true);
  pe__py_workers_stop(be->workers, be->nworkers, be->cfg.shutdown_grace_ms);
  pe__py_supervisor_stop(be);
  pe__py_workers_stop(be->workers, be->nworkers, 0);
  for (size_t i = 0; i < be->nworkers; i++) {
    pe__py_worker *w = &be->workers[i];
    pe__py_conn_free(&w->control);
    while (w->idle) {
      pe__py_conn *c = w->idle;
      w->idle = c->next;
      pe__py_conn_free(c);
      pe__free(be->mem, c);
    }
    unlink(w->sock_path);
    pthread_mutex_destroy(&w->lock);
    pthread_mutex_destroy(&w->pool_lock);
  }
  if (be->dir[0])
    rmdir(be->dir);
  if (be->lifeline[0] >= 0) {
    close(be->lifeline[0]);
    close(be->lifeline[1]);
  }
  while (be->instances) { /* chains outliving the engine cannot happen; be tidy */
    pe__py_instance *inst = be->instances;
    be->instances = inst->next;
    pe__free(be->mem, inst->params_json);
    pe__free(be->mem, inst);
  }
  pe__advertised_free(be->engine, &be->advertised);
  pe__py_options_release(&be->cfg, be->mem);
  pthread_mutex_destroy(&be->inst_lock);
  pe__free(be->mem, be->workers);
  pe__free(be->mem, be);
}

static pe__py_backend *py_be(pe__backend *be) {
  return (pe__py_backend *)(void *)be;
}

static void py_shutdown(pe__backend *be) {
  backend_free(py_be(be));
}

/* With cpu_affinity, worker i goes to the i-th CPU this process may use. */
static void assign_cpus(pe__py_backend *be) {
  for (size_t c = 0; c < CPU_SETSIZE; c++)
    be->cpu_worker[c] = -1;
  cpu_set_t allowed;
  int cpus[CPU_SETSIZE], ncpus = 0;
  if (be->cfg.cpu_affinity && sched_getaffinity(0, sizeof allowed, &allowed) == 0)
    for (int c = 0; c < CPU_SETSIZE; c++)
      if (CPU_ISSET(c, &allowed))
        cpus[ncpus++] = c;
  for (size_t i = 0; i < be->nworkers; i++) {
    int cpu = ncpus ? cpus[i % (size_t)ncpus] : -1;
    be->workers[i].cpu = cpu;
    if (cpu >= 0 && be->cpu_worker[cpu] < 0)
      be->cpu_worker[cpu] = (short)i;
  }
}

/* The worker installed beside this shared library (lib/../libexec), so an
 * install tree that was moved still finds its worker; else the configured
 * install location. (A static library has no location of its own: dladdr
 * then names the executable, and the relative path rarely exists.) */
static int default_worker_path(const pe_mem *mem, char **out) {
  Dl_info info;
  char path[PATH_MAX];
  if (dladdr((void *)default_worker_path, &info) && info.dli_fname) {
    const char *slash = strrchr(info.dli_fname, '/');
    int n = slash ? snprintf(path, sizeof path, "%.*s/%s", (int)(slash - info.dli_fname),
                             info.dli_fname, PE_PYWORKER_FROM_LIBDIR)
                  : -1;
    if (n > 0 && (size_t)n < sizeof path && access(path, X_OK) == 0) {
      *out = pe__strndup(mem, path, (size_t)n);
      return *out ? PE_OK : PE_ERR_NOMEM;
    }
  }
  *out = pe__strndup(mem, PE_PYWORKER_DEFAULT_PATH, strlen(PE_PYWORKER_DEFAULT_PATH));
  return *out ? PE_OK : PE_ERR_NOMEM;
}

static int backend_new(pe_engine *e, const pe_python_options *opts, pe__py_backend **out,
                       char *err) {
  const pe_mem *mem = pe__engine_mem(e);
  pe__py_backend *be = pe__calloc(mem, 1, sizeof *be);
  if (!be)
    return PE_ERR_NOMEM;
  be->engine = e;
  be->mem = mem;
  be->lifeline[0] = be->lifeline[1] = -1;
  atomic_init(&be->next_instance_id, 1);
  pthread_mutex_init(&be->inst_lock, NULL);
  pe_python_options defaults;
  pe__py_options_defaults(&defaults);
  int rc = pe__py_options_copy(&be->cfg, opts ? opts : &defaults, mem);
  if (!be->cfg.name[0])
    memcpy(be->cfg.name, PE__DEFAULT_EXECUTOR, sizeof PE__DEFAULT_EXECUTOR);
  if (rc == PE_OK && !be->cfg.worker_path)
    rc = default_worker_path(mem, &be->cfg.worker_path);
  be->nworkers = be->cfg.workers ? be->cfg.workers : default_workers();
  be->max_message = be->cfg.max_message ? be->cfg.max_message : derived_max_message(e);
  if (rc == PE_OK && !(be->workers = pe__calloc(mem, be->nworkers, sizeof *be->workers)))
    rc = PE_ERR_NOMEM;
  if (rc == PE_OK && pipe2(be->lifeline, O_CLOEXEC) != 0) {
    pe__errmsg_set(err, "cannot create the workers' lifeline pipe: %s", strerror(errno));
    be->lifeline[0] = be->lifeline[1] = -1;
    rc = PE_ERR_IO;
  }
  if (rc != PE_OK) {
    if (rc == PE_ERR_NOMEM)
      pe__errmsg_set(err, "out of memory");
    be->nworkers = 0;
    backend_free(be);
    return rc;
  }
  assign_cpus(be);
  for (size_t i = 0; i < be->nworkers; i++) {
    pe__py_worker *w = &be->workers[i];
    w->be = be;
    w->index = i;
    pthread_mutex_init(&w->lock, NULL);
    pthread_mutex_init(&w->pool_lock, NULL);
    pe__py_conn_init(&w->control, mem, be->max_message);
    w->control.shm_threshold = be->cfg.shm_threshold;
    w->control.worker = w;
  }
  if ((rc = make_socket_dir(be, err)) != PE_OK) {
    backend_free(be);
    return rc;
  }
  for (size_t i = 0; i < be->nworkers; i++) {
    /* make_socket_dir left room for the name: this never truncates. */
    int len = snprintf(be->workers[i].sock_path, sizeof be->workers[i].sock_path, "%s/w%zu.sock",
                       be->dir, i);
    if (len < 0 || (size_t)len >= sizeof be->workers[i].sock_path) {
      pe__errmsg_set(err, "socket path too long in %s", be->dir);
      backend_free(be);
      return PE_ERR_IO;
    }
  }
  *out = be;
  return PE_OK;
}

int pe_engine_start_python(pe_engine *engine, const pe_python_options *opts) {
  if (!engine)
    return PE_ERR_INVALID_ARGUMENT;
  const char *name = opts && opts->name[0] ? opts->name : PE__DEFAULT_EXECUTOR;
  if (pe__engine_find_executor(engine, pe_str(name))) {
    pe__engine_fail(engine, "an executor named '%s' is already running", name);
    return PE_ERR_STATE;
  }
  char err[PE__ERRMSG_SIZE] = "";
  pe__py_backend *be;
  int rc = backend_new(engine, opts, &be, err);
  if (rc != PE_OK) {
    pe__engine_fail(engine, "python pool: %s", err);
    return rc;
  }
  /* Spawn every worker before waiting for any, so start-ups overlap. */
  for (size_t i = 0; i < be->nworkers && rc == PE_OK; i++)
    rc = pe__py_worker_spawn(&be->workers[i], err);
  for (size_t i = 0; i < be->nworkers && rc == PE_OK; i++) {
    pe__py_worker *w = &be->workers[i];
    pthread_mutex_lock(&be->inst_lock);
    pthread_mutex_lock(&w->lock);
    rc = pe__py_worker_handshake(w, i == 0 ? collect_policies : NULL, err);
    pthread_mutex_unlock(&w->lock);
    pthread_mutex_unlock(&be->inst_lock);
  }
  if (rc == PE_OK)
    rc = pe__py_supervisor_start(be, err);
  /* Last: once registered, the engine owns the pool. */
  if (rc == PE_OK)
    rc = register_pool(be, err);
  if (rc != PE_OK) {
    pe__engine_fail(engine, "%s", err);
    backend_free(be);
    return rc;
  }
  pe__log(engine, PE_LOG_INFO, "python pool '%s' started: %zu workers, sockets in %s", name,
          be->nworkers, be->dir);
  return PE_OK;
}

/* ---- health and introspection ---- */

static int py_ping(pe__backend *self, size_t *alive) {
  pe__py_backend *be = py_be(self);
  Policyexec__V1__Ping ping = POLICYEXEC__V1__PING__INIT;
  pe__py_request req = POLICYEXEC__V1__REQUEST__INIT;
  req.body_case = POLICYEXEC__V1__REQUEST__BODY_PING;
  req.ping = &ping;
  size_t answered = 0;
  for (size_t i = 0; i < be->nworkers; i++) {
    pe__py_worker *w = &be->workers[i];
    if (pe__py_worker_ensure_ready(w) != PE_OK)
      continue;
    pthread_mutex_lock(&w->lock);
    unsigned gen = atomic_load(&w->gen);
    pe__py_response *resp;
    bool ok = atomic_load(&w->state) == PE__PY_READY &&
              pe__py_worker_control_call(w, &req, &resp) == PE_OK;
    if (ok) {
      ok = resp->body_case == POLICYEXEC__V1__RESPONSE__BODY_PONG;
      pe__py_conn_consume(&w->control);
    }
    pthread_mutex_unlock(&w->lock);
    if (ok)
      answered++;
    else
      pe__py_worker_fail(w, gen, "no answer to ping");
  }
  if (alive)
    *alive = answered;
  return answered == be->nworkers ? PE_OK : PE_ERR_WORKER;
}

static int py_admit(pe__backend *self, char *why) {
  pe__py_backend *be = py_be(self);
  size_t inflight = (size_t)atomic_load_explicit(&be->inflight, memory_order_relaxed);
  if (inflight >= be->cfg.max_in_flight) {
    pe__errmsg_set(why, "%zu python calls in flight", be->cfg.max_in_flight);
    return PE_ERR_BUSY;
  }
  for (size_t i = 0; i < be->nworkers; i++)
    if ((size_t)atomic_load_explicit(&be->workers[i].inflight, memory_order_relaxed) <
        be->cfg.worker_max_in_flight)
      return PE_OK;
  pe__errmsg_set(why, "every python worker has %zu calls in flight", be->cfg.worker_max_in_flight);
  return PE_ERR_BUSY;
}

/* The first Python pool started, for the pe_engine_python_* calls. */
static pe__py_backend *first_pool(const pe_engine *engine) {
  const pe__executor *x = engine ? pe__engine_executor_of(engine, &pe__py_backend_ops) : NULL;
  return x ? py_be(x->be) : NULL;
}

int pe_engine_python_ping(pe_engine *engine, size_t *alive) {
  if (!engine)
    return PE_ERR_INVALID_ARGUMENT;
  pe__py_backend *be = first_pool(engine);
  return be ? py_ping((pe__backend *)(void *)be, alive) : PE_ERR_STATE;
}

size_t pe_engine_python_worker_pids(pe_engine *engine, int *pids, size_t cap) {
  pe__py_backend *be = first_pool(engine);
  if (!be)
    return 0;
  for (size_t i = 0; i < be->nworkers && i < cap && pids; i++)
    pids[i] = atomic_load(&be->workers[i].pid);
  return be->nworkers;
}

uint64_t pe_engine_python_restarts(pe_engine *engine) {
  pe__py_backend *be = first_pool(engine);
  return be ? atomic_load(&be->restarts) : 0;
}

static int py_create_op(pe__backend *be, pe__step *step, char *err) {
  return py_create_instance(py_be(be), step, err);
}

static void py_destroy_op(pe__backend *be, pe__step *step) {
  py_destroy_instance(py_be(be), step);
}

const pe__backend_ops pe__py_backend_ops = {
    .kind = "python",
    .create_instance = py_create_op,
    .destroy_instance = py_destroy_op,
    .run_batch = pe__py_run_batch,
    .submit = pe__py_submit,
    .dispatcher_attach = pe__py_dispatcher_attach,
    .dispatcher_detach = pe__py_dispatcher_detach,
    .dispatcher_timer = pe__py_dispatcher_timer,
    .forget = pe__py_forget,
    .admit = py_admit,
    .ping = py_ping,
    .shutdown = py_shutdown,
    .stream_chunk = pe__py_stream_chunk,
    .stream_free = pe__py_stream_free,
    .stream_submit = pe__py_stream_submit,
};
