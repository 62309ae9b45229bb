/* One worker process: spawning it, its handshake, and killing, reaping and
 * replacing it. Whichever thread notices a problem (a dead socket, a
 * timeout) kills the worker and spawns its replacement; the pool's
 * supervisor thread (pe_py_supervisor.c) then finishes the replacement's
 * handshake, so no host thread waits for a fresh interpreter unless no
 * worker at all is ready. */
#include "pe_py.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* A worker that dies sooner than this after its start counts as "keeps
 * dying" for the back-off. */
#define QUICK_DEATH_NS 1000000000ull
#define CONNECT_RETRY_NS 2000000L

static void sleep_ns(long ns) {
  struct timespec ts = {0, ns};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

static void describe_status(int status, char *buf, size_t size) {
  if (WIFEXITED(status))
    snprintf(buf, size, "exited with status %d", WEXITSTATUS(status));
  else if (WIFSIGNALED(status))
    snprintf(buf, size, "killed by signal %d (%s)", WTERMSIG(status), strsignal(WTERMSIG(status)));
  else
    snprintf(buf, size, "ended with wait status %d", status);
}

/* Signals the worker's whole process group (it is the leader of its own:
 * POSIX_SPAWN_SETPGROUP), so that processes a policy forked die with it
 * rather than outlive their worker's replacement. The group id stays
 * reserved while any member lives, so this is safe even after the leader
 * was reaped. Falls back to the pid alone if there is no such group. */
static void kill_group(pid_t pid, int sig) {
  if (kill(-pid, sig) != 0)
    kill(pid, sig);
}

/* Waits for pid; ECHILD (a host that reaps every child itself) counts as
 * reaped. */
static void reap(pid_t pid, char *buf, size_t size) {
  int status = 0;
  pid_t r;
  while ((r = waitpid(pid, &status, 0)) < 0 && errno == EINTR) {
  }
  if (r == pid)
    describe_status(status, buf, size);
  else
    snprintf(buf, size, "was reaped elsewhere");
}

int pe__py_worker_spawn(pe__py_worker *w, char *err) {
  pe__py_backend *be = w->be;
  if (atomic_load(&be->stopping)) {
    pe__errmsg_set(err, "python worker %zu: not restarted, the pool is shutting down", w->index);
    return PE_ERR_WORKER;
  }
  const pe_python_options *o = &be->cfg;
  const char *path = o->worker_path;
  size_t argc = 11 + 2 * o->module_path_count + 1; /* with --cleanup-dir, --virtualenv */
  char **argv = pe__calloc(be->mem, argc, sizeof *argv);
  if (!argv) {
    pe__errmsg_set(err, "out of memory");
    return PE_ERR_NOMEM;
  }
  char max_message[32];
  snprintf(max_message, sizeof max_message, "%zu", be->max_message);
  size_t i = 0;
  /* Spawning takes char *const[]; it does not write to the strings. */
  argv[i++] = (char *)path;
  argv[i++] = "--socket";
  argv[i++] = w->sock_path;
  for (size_t m = 0; m < o->module_path_count; m++) {
    argv[i++] = "--module-path";
    argv[i++] = o->module_paths[m];
  }
  argv[i++] = "--max-message";
  argv[i++] = max_message;
  argv[i++] = "--parent-fd";
  argv[i++] = "3";
  /* The worker removes the socket directory when it is the last to leave:
   * if this process is SIGKILLed, nobody else would (the lifeline makes the
   * workers exit, and they clean up on the way out). */
  argv[i++] = "--cleanup-dir";
  argv[i++] = be->dir;
  if (o->virtualenv) {
    argv[i++] = "--virtualenv";
    argv[i++] = o->virtualenv;
  }
  argv[i] = NULL;

  unlink(w->sock_path); /* a stale file would make the worker's bind fail */
  pid_t pid;
  int rc = pe__py_spawn(path, argv, be->lifeline[0], &pid);
  pe__free(be->mem, argv);
  if (rc != 0) {
    pe__errmsg_set(err, "cannot start python worker %s: %s", path, strerror(rc));
    return PE_ERR_WORKER;
  }
  if (w->cpu >= 0) {
    /* Set from here rather than in the child: posix_spawn has no affinity
     * attribute. The worker may start on another CPU for a moment; only
     * the steady state matters. */
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(w->cpu, &set);
    if (sched_setaffinity(pid, sizeof set, &set) != 0)
      pe__log(be->engine, PE_LOG_WARN, "python worker %zu: cannot pin to CPU %d: %s", w->index,
              w->cpu, strerror(errno));
  }
  atomic_store(&w->pid, (int)pid);
  w->spawned_ns = pe__now_ns();
  atomic_store(&w->state, PE__PY_STARTING);
  pe__log(be->engine, PE_LOG_DEBUG, "python worker %zu started (pid %d)", w->index, (int)pid);
  return PE_OK;
}

/* If w's process has ended (or ends within a moment: its socket closing
 * comes just before its exit), reaps it and describes how into how (else
 * leaves how empty). */
static void ended_status(pe__py_worker *w, char *how, size_t size) {
  how[0] = '\0';
  pid_t pid = atomic_load(&w->pid);
  for (int i = 0; pid > 0 && i < 50; i++) {
    int status;
    pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid) {
      describe_status(status, how, size);
      atomic_store(&w->pid, 0);
      return;
    }
    if (r < 0)
      return;
    sleep_ns(CONNECT_RETRY_NS);
  }
}

/* Connects the control connection, retrying while the worker starts up. */
static int connect_control(pe__py_worker *w, uint64_t deadline, char *err) {
  pe__py_backend *be = w->be;
  for (;;) {
    if (pe__py_conn_connect(&w->control, w->sock_path) == PE_OK)
      return PE_OK;
    int saved = errno;
    if (saved != ENOENT && saved != ECONNREFUSED && saved != EAGAIN) {
      pe__errmsg_set(err, "python worker %zu: cannot connect to %s: %s", w->index, w->sock_path,
                     strerror(saved));
      return PE_ERR_WORKER;
    }
    int status;
    pid_t pid = atomic_load(&w->pid);
    if (pid > 0 && waitpid(pid, &status, WNOHANG) == pid) {
      char how[96];
      describe_status(status, how, sizeof how);
      atomic_store(&w->pid, 0);
      pe__errmsg_set(err, "python worker %zu (%s) %s during start-up", w->index,
                     be->cfg.worker_path, how);
      return PE_ERR_WORKER;
    }
    if (pe__now_ns() >= deadline) {
      pe__errmsg_set(err, "python worker %zu did not open its socket within %u ms", w->index,
                     be->cfg.startup_timeout_ms);
      return PE_ERR_WORKER;
    }
    sleep_ns(CONNECT_RETRY_NS);
  }
}

/* Grace beyond the create timeout for the worker's own report of a
 * constructor it interrupted; past it the worker is taken as stuck. */
#define CREATE_GRACE_MS 500

int pe__py_worker_create(pe__py_worker *w, pe__py_conn *c, pe__py_instance *inst, char *err,
                         bool *kill) {
  uint32_t limit = w->be->cfg.create_timeout_ms;
  *kill = false;
  Policyexec__V1__CreateInstance ci = POLICYEXEC__V1__CREATE_INSTANCE__INIT;
  ci.instance_id = inst->id;
  ci.name = inst->policy->name;
  ci.version = inst->policy->version;
  ci.params_json = inst->params_json;
  ci.timeout_ms = limit;
  pe__py_request req = POLICYEXEC__V1__REQUEST__INIT;
  req.body_case = POLICYEXEC__V1__REQUEST__BODY_CREATE;
  req.create = &ci;
  pe__py_response *resp;
  bool unsent;
  uint64_t deadline = pe__now_ns() + ((uint64_t)limit + CREATE_GRACE_MS) * 1000000u;
  int rc = pe__py_conn_call(c, &req, deadline, &resp, &unsent);
  if (rc == PE_ERR_TIMEOUT) {
    *kill = true;
    pe__errmsg_set(err,
                   "python policy %s@%s: creating the instance on worker %zu took longer than "
                   "the create timeout of %u ms, and the worker could not interrupt it",
                   inst->policy->name, inst->policy->version, w->index, limit);
    return PE_ERR_TIMEOUT;
  }
  if (rc != PE_OK) {
    pe__errmsg_set(err, "python worker %zu: creating an instance of %s@%s: %s", w->index,
                   inst->policy->name, inst->policy->version, c->why);
    return rc;
  }
  rc = PE_OK;
  if (resp->body_case == POLICYEXEC__V1__RESPONSE__BODY_CREATE && resp->create->timed_out) {
    pe__errmsg_set(err,
                   "python policy %s@%s: creating the instance on worker %zu took longer "
                   "than the create timeout of %u ms",
                   inst->policy->name, inst->policy->version, w->index, limit);
    rc = PE_ERR_TIMEOUT;
  } else if (resp->body_case != POLICYEXEC__V1__RESPONSE__BODY_CREATE || !resp->create->ok) {
    pe__errmsg_set(err, "%s",
                   resp->body_case == POLICYEXEC__V1__RESPONSE__BODY_CREATE ? resp->create->error
                   : resp->body_case == POLICYEXEC__V1__RESPONSE__BODY_ERROR
                       ? resp->error->message
                       : "unexpected reply to CreateInstance");
    rc = PE_ERR_PARAM;
  } else {
    atomic_fetch_or(&inst->async_phases, resp->create->async_phases);
  }
  pe__py_conn_consume(c);
  return rc;
}

/* Re-creates one live instance on a (re)started worker. Params it accepted
 * before and refuses now (or a constructor now too slow) mean the worker
 * is not fit to serve. */
static int recreate(pe__py_worker *w, pe__py_instance *inst, char *err) {
  bool kill;
  int rc = pe__py_worker_create(w, &w->control, inst, err, &kill);
  if (rc != PE_ERR_PARAM && rc != PE_ERR_TIMEOUT)
    return rc;
  char why[PE__ERRMSG_SIZE];
  memcpy(why, err, sizeof why);
  pe__errmsg_set(err, "python worker %zu could not re-create %s@%s: %s", w->index,
                 inst->policy->name, inst->policy->version, why);
  return PE_ERR_WORKER;
}

int pe__py_worker_handshake(pe__py_worker *w,
                            int (*on_hello)(pe__py_backend *be,
                                            const Policyexec__V1__HelloReply *hello, char *err),
                            char *err) {
  pe__py_backend *be = w->be;
  uint64_t deadline = w->spawned_ns + (uint64_t)be->cfg.startup_timeout_ms * 1000000u;
  int rc = connect_control(w, deadline, err);
  if (rc != PE_OK)
    return rc;
  pe__py_response *resp;
  rc = pe__py_conn_hello(&w->control, deadline, &resp);
  if (rc != PE_OK) {
    /* A worker that ended during start-up (os._exit at import, a crash)
     * says nothing on the socket: its exit status is the best reason. A
     * Python error at import comes as the handshake's Error reply. */
    char how[96];
    ended_status(w, how, sizeof how);
    pe__errmsg_set(err, "python worker %zu: handshake failed: %s%s%s", w->index, w->control.why,
                   how[0] ? "; the worker " : "", how);
    return PE_ERR_WORKER;
  }
  if (on_hello)
    rc = on_hello(be, resp->hello, err);
  pe__py_conn_consume(&w->control);
  if (rc != PE_OK)
    return rc;
  for (pe__py_instance *inst = be->instances; inst; inst = inst->next)
    if ((rc = recreate(w, inst, err)) != PE_OK)
      return rc;
  w->control.gen = atomic_load(&w->gen);
  atomic_store(&w->state, PE__PY_READY);
  return PE_OK;
}

/* With w->lock held: kills and reaps the process, makes every connection
 * to it stale, and decides when the replacement may start. */
static void kill_locked(pe__py_worker *w, const char *why) {
  pe__py_backend *be = w->be;
  pid_t pid = atomic_load(&w->pid);
  char how[96] = "was not running";
  if (pid > 0) {
    kill_group(pid, SIGKILL);
    reap(pid, how, sizeof how);
  }
  /* A stale socket file would keep the directory from being removed by
   * the last worker to leave (--cleanup-dir) if this host is killed. */
  unlink(w->sock_path);
  atomic_store(&w->pid, 0);
  atomic_store(&w->state, PE__PY_DEAD);
  atomic_fetch_add(&w->gen, 1);
  atomic_fetch_add(&be->restarts, 1);
  pe__py_conn_close(&w->control);
  pthread_mutex_lock(&w->pool_lock);
  while (w->idle) {
    pe__py_conn *c = w->idle;
    w->idle = c->next;
    pe__py_conn_free(c);
    pe__free(be->mem, c);
  }
  pthread_mutex_unlock(&w->pool_lock);

  uint64_t now = pe__now_ns();
  w->quick_deaths = now - w->spawned_ns < QUICK_DEATH_NS ? w->quick_deaths + 1 : 0;
  uint64_t delay_ms = 0;
  if (w->quick_deaths > 1) {
    unsigned shift = w->quick_deaths - 2 < 20 ? w->quick_deaths - 2 : 20;
    delay_ms = (uint64_t)be->cfg.backoff_initial_ms << shift;
    if (delay_ms > be->cfg.backoff_max_ms)
      delay_ms = be->cfg.backoff_max_ms;
  }
  w->next_spawn_ns = now + delay_ms * 1000000u;
  pe__log(be->engine, PE_LOG_WARN, "python worker %zu (pid %d) %s: %s; restarting %s", w->index,
          (int)pid, how, why, delay_ms ? "after a back-off" : "now");
}

void pe__py_worker_fail(pe__py_worker *w, unsigned gen, const char *why) {
  pthread_mutex_lock(&w->lock);
  if (atomic_load(&w->gen) == gen && atomic_load(&w->state) != PE__PY_DEAD) {
    kill_locked(w, why);
    /* Start the replacement now so that its interpreter boots while the
     * other workers serve; the supervisor completes its handshake (or
     * respawns it after the back-off) off the caller's thread. */
    char err[PE__ERRMSG_SIZE];
    if (w->next_spawn_ns <= pe__now_ns() && pe__py_worker_spawn(w, err) != PE_OK)
      pe__log(w->be->engine, PE_LOG_ERROR, "%s", err);
    pe__py_supervisor_poke(w->be);
  }
  pthread_mutex_unlock(&w->lock);
}

int pe__py_worker_ensure_ready(pe__py_worker *w) {
  if (atomic_load(&w->state) == PE__PY_READY)
    return PE_OK;
  pe__py_backend *be = w->be;
  char err[PE__ERRMSG_SIZE] = "";
  int rc = PE_OK;
  pthread_mutex_lock(&be->inst_lock);
  pthread_mutex_lock(&w->lock);
  int state = atomic_load(&w->state);
  if (state == PE__PY_DEAD) {
    if (pe__now_ns() < w->next_spawn_ns) {
      rc = PE_ERR_WORKER; /* waiting out its back-off */
    } else if ((rc = pe__py_worker_spawn(w, err)) != PE_OK) {
      w->spawned_ns = pe__now_ns();
      kill_locked(w, err);
    }
    state = atomic_load(&w->state);
  }
  if (rc == PE_OK && state == PE__PY_STARTING) {
    rc = pe__py_worker_handshake(w, NULL, err);
    if (rc != PE_OK)
      kill_locked(w, err);
  }
  pthread_mutex_unlock(&w->lock);
  pthread_mutex_unlock(&be->inst_lock);
  return rc == PE_OK ? PE_OK : PE_ERR_WORKER;
}

int pe__py_worker_control_call(pe__py_worker *w, pe__py_request *req, pe__py_response **out) {
  uint64_t deadline = pe__now_ns() + (uint64_t)w->be->cfg.startup_timeout_ms * 1000000u;
  bool unsent;
  return pe__py_conn_call(&w->control, req, deadline, out, &unsent);
}

void pe__py_workers_stop(pe__py_worker *workers, size_t n, uint32_t grace_ms) {
  for (size_t i = 0; i < n; i++) {
    pid_t pid = atomic_load(&workers[i].pid);
    if (pid > 0)
      kill(pid, SIGTERM);
  }
  uint64_t deadline = pe__now_ns() + (uint64_t)grace_ms * 1000000u;
  for (;;) {
    size_t left = 0;
    for (size_t i = 0; i < n; i++) {
      pid_t pid = atomic_load(&workers[i].pid);
      if (pid <= 0)
        continue;
      int status;
      pid_t r = waitpid(pid, &status, WNOHANG);
      if (r == pid || (r < 0 && errno == ECHILD)) {
        /* What a policy forked is left in the worker's group: end it too
         * (the group id cannot be reused while a member lives). */
        kill(-pid, SIGKILL);
        atomic_store(&workers[i].pid, 0);
      } else
        left++;
    }
    if (!left)
      return;
    if (pe__now_ns() >= deadline)
      break;
    sleep_ns(CONNECT_RETRY_NS);
  }
  for (size_t i = 0; i < n; i++) {
    pid_t pid = atomic_load(&workers[i].pid);
    if (pid > 0) {
      char how[96];
      kill_group(pid, SIGKILL);
      reap(pid, how, sizeof how);
      atomic_store(&workers[i].pid, 0);
    }
  }
}
