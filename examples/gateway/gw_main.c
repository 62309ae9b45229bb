/*
 * policyexec-gateway: the reference HTTP/1.1 gateway of libpolicyexec.
 *
 *   policyexec-gateway --config FILE [--threads N]
 *
 * Start-up: read the configuration, create the engine (plugins, Python
 * pool), build every API's chain, start one event loop per worker thread,
 * then serve the admin API and wait for SIGTERM/SIGINT on the main thread.
 * Shutdown: stop accepting, give requests in flight a grace period, stop
 * the workers, exit 0.
 */
#include "gw_admin.h"
#include "gw_apis.h"
#include "gw_config.h"
#include "gw_metrics.h"
#include "gw_thread.h"

#include <errno.h>
#include <event2/event.h>
#include <malloc.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef GW_PYWORKER_PATH
#define GW_PYWORKER_PATH ""
#endif

/* What an exit with a chain build in progress leaves to the process's end
 * (see the end of main()). */
static struct {
  gw_apis *apis;
  pe_engine *engine;
  gw_metrics *metrics;
} left_at_exit;

/* Allocations from this size up are mmapped (see main()). */
#define MMAP_THRESHOLD (256 * 1024)

/* How long requests in flight may take to finish after SIGTERM. */
#define SHUTDOWN_GRACE_MS 5000

static void usage(FILE *out) {
  fprintf(out, "usage: policyexec-gateway --config FILE [--threads N]\n"
               "  --config FILE  JSON configuration (see examples/gateway/README.md)\n"
               "  --threads N    worker threads (overrides the file; 0 = one per CPU)\n");
}

static void log_to_stderr(pe_log_level level, const char *message, void *user_data) {
  static const char *const names[] = {"error", "warn", "info", "debug"};
  (void)user_data;
  fprintf(stderr, "policyexec-gateway: %s: %s\n", names[level & 3], message);
}

static int create_engine(const gw_config *cfg, gw_metrics *metrics, pe_engine **out) {
  pe_engine_options *opts = NULL;
  int rc = pe_engine_options_new(&opts);
  if (rc == PE_OK) {
    pe_engine_options_set_log(opts, log_to_stderr, NULL);
    pe_engine_options_set_log_level(opts, PE_LOG_WARN);
    pe_engine_options_set_metrics(opts, gw_metrics_on_step, metrics);
    if (cfg->limit_header_count)
      pe_engine_options_set_limit(opts, PE_LIMIT_HEADER_COUNT, cfg->limit_header_count);
    if (cfg->limit_header_bytes)
      pe_engine_options_set_limit(opts, PE_LIMIT_HEADER_BYTES, cfg->limit_header_bytes);
    if (cfg->limit_body_bytes)
      pe_engine_options_set_limit(opts, PE_LIMIT_BODY_BYTES, cfg->limit_body_bytes);
    rc = pe_engine_new(out, opts);
  }
  pe_engine_options_free(opts);
  if (rc < 0) {
    fprintf(stderr, "policyexec-gateway: engine: %s\n", pe_strerror(rc));
    return -1;
  }
  for (size_t i = 0; i < cfg->plugin_count; i++) {
    rc = pe_engine_load_plugin(*out, cfg->plugins[i]);
    if (rc < 0) {
      fprintf(stderr, "policyexec-gateway: plugin %s: %s\n", cfg->plugins[i],
              pe_engine_errmsg(*out));
      return -1;
    }
  }
  return 0;
}

static int start_python(const gw_config *cfg, pe_engine *engine) {
  pe_python_options *opts = NULL;
  int rc = pe_python_options_new(&opts);
  if (rc == PE_OK)
    rc = pe_python_options_set_workers(opts, cfg->python_workers);
  if (rc == PE_OK)
    rc = pe_python_options_set_default_timeout(opts, cfg->python_timeout_ms);
  if (rc == PE_OK && cfg->cpu_affinity)
    rc = pe_python_options_set_cpu_affinity(opts, 1);
  if (rc == PE_OK && cfg->python_virtualenv)
    rc = pe_python_options_set_virtualenv(opts, cfg->python_virtualenv);
  for (size_t i = 0; rc == PE_OK && i < cfg->python_path_count; i++)
    rc = pe_python_options_add_module_path(opts, cfg->python_paths[i]);
  /* A gateway run from the build tree uses the worker built beside it. */
  const char *worker = cfg->python_worker_path;
  if (!worker && GW_PYWORKER_PATH[0] && access(GW_PYWORKER_PATH, X_OK) == 0)
    worker = GW_PYWORKER_PATH;
  if (rc == PE_OK && worker)
    rc = pe_python_options_set_worker_path(opts, worker);
  if (rc == PE_OK)
    rc = pe_engine_start_python(engine, opts);
  pe_python_options_free(opts);
  if (rc < 0) {
    fprintf(stderr, "policyexec-gateway: python workers: %s: %s\n", pe_strerror(rc),
            pe_engine_errmsg(engine));
    return -1;
  }
  return 0;
}

static void on_signal(evutil_socket_t sig, short what, void *arg) {
  (void)what;
  fprintf(stderr, "policyexec-gateway: %s: shutting down\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
  event_base_loopbreak(arg);
}

/* SCHED_BATCH: a thread woken by a socket (a client, the upstream, a
 * worker's reply) waits for the running one to block or use up its slice
 * rather than preempting it at once. Under load a loop thread then handles
 * more events per wake-up and its Python worker answers a whole pass of
 * requests in one go: fewer context switches and cross-CPU wake-ups (see
 * doc/DECISIONS.md). Set before any thread or worker starts, so that all
 * of them inherit it. Needs no privilege. */
static int use_sched_batch(void) {
  struct sched_param sp = {0};
  if (sched_setscheduler(0, SCHED_BATCH, &sp) == 0)
    return 0;
  fprintf(stderr, "policyexec-gateway: sched_batch: %s\n", strerror(errno));
  return -1;
}

static unsigned thread_count(const gw_config *cfg, long override) {
  if (override > 0)
    return (unsigned) override;
  if (cfg->threads > 0)
    return cfg->threads;
  long cpus = sysconf(_SC_NPROCESSORS_ONLN);
  return cpus > 0 ? (unsigned)cpus : 1;
}

int main(int argc, char **argv) {
  const char *config_path = NULL;
  long threads_override = -1;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--config") == 0 && i + 1 < argc) {
      config_path = argv[++i];
    } else if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc) {
      threads_override = strtol(argv[++i], NULL, 10);
    } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
      usage(stdout);
      return 0;
    } else {
      usage(stderr);
      return 2;
    }
  }
  if (!config_path) {
    usage(stderr);
    return 2;
  }

  gw_config cfg;
  char err[1024];
  if (gw_config_load(&cfg, config_path, err, sizeof err) < 0) {
    fprintf(stderr, "policyexec-gateway: %s\n", err);
    return 1;
  }
  signal(SIGPIPE, SIG_IGN);
  /* Large buffers (bodies) straight from mmap, so that freeing one gives it
   * back to the system: glibc's dynamic threshold would otherwise rise to
   * the largest body freed, and later ones would come from the threads'
   * arenas, whose freed middles stay resident after a burst for good. */
  mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD);

  int status = 1;
  gw_context ctx = {.config = &cfg};
  gw_thread *threads = NULL;
  unsigned nthreads = thread_count(&cfg, threads_override), started = 0;
  struct event_base *main_base = NULL;
  struct event *sigterm = NULL, *sigint = NULL;
  gw_admin *admin = NULL;

  if ((cfg.sched_batch && use_sched_batch() < 0) || gw_metrics_new(&ctx.metrics) < 0 ||
      create_engine(&cfg, ctx.metrics, &ctx.engine) < 0 ||
      (cfg.python_enabled && start_python(&cfg, ctx.engine) < 0) ||
      gw_apis_new(&ctx.apis, ctx.engine, ctx.metrics) < 0)
    goto out;
  for (size_t i = 0; i < cfg.api_count; i++) {
    if (gw_apis_put(ctx.apis, &cfg.apis[i], err, sizeof err) < 0) {
      fprintf(stderr, "policyexec-gateway: %s\n", err);
      goto out;
    }
  }

  threads = calloc(nthreads, sizeof *threads);
  if (!threads)
    goto out;
  for (; started < nthreads; started++) {
    if (gw_thread_init(&threads[started], started, &ctx) < 0 ||
        gw_thread_start(&threads[started], cfg.cpu_affinity) < 0) {
      started++; /* the failed one still needs freeing */
      goto out;
    }
  }

  main_base = event_base_new();
  if (!main_base || gw_admin_start(&admin, main_base, &ctx) < 0)
    goto out;
  sigterm = evsignal_new(main_base, SIGTERM, on_signal, main_base);
  sigint = evsignal_new(main_base, SIGINT, on_signal, main_base);
  if (!sigterm || !sigint || event_add(sigterm, NULL) < 0 || event_add(sigint, NULL) < 0)
    goto out;
  fprintf(stderr,
          "policyexec-gateway: %zu APIs on http://%s:%u (%u threads), admin on http://%s:%u\n",
          cfg.api_count, cfg.listen_host, (unsigned)cfg.listen_port, nthreads, cfg.admin_host,
          (unsigned)cfg.admin_port);
  event_base_dispatch(main_base);
  status = 0;

out:;
  /* A chain build in progress (POST /apis) is not waited for. Freeing the
   * API table would: destroying a Python instance waits for the worker's
   * control channel, which the build holds while the instance's __init__
   * runs. So the table and the engine are left to the process's exit (the
   * workers exit with it, through their lifeline pipe). */
  int builds_running = gw_admin_builds_running(admin);
  if (builds_running)
    fprintf(stderr, "policyexec-gateway: not waiting for the chain builds in progress\n");
  for (unsigned i = 0; i < started; i++)
    gw_thread_stop(&threads[i], SHUTDOWN_GRACE_MS);
  for (unsigned i = 0; i < started; i++)
    gw_thread_join_and_free(&threads[i]);
  free(threads);
  gw_admin_free(admin);
  if (sigterm)
    event_free(sigterm);
  if (sigint)
    event_free(sigint);
  if (main_base)
    event_base_free(main_base);
  if (builds_running) {
    left_at_exit.apis = ctx.apis; /* still referenced: not a leak */
    left_at_exit.engine = ctx.engine;
    left_at_exit.metrics = ctx.metrics;
  } else {
    gw_apis_free(ctx.apis);
    pe_engine_free(ctx.engine);
    gw_metrics_free(ctx.metrics);
  }
  gw_config_clear(&cfg);
  return status;
}
