/*
 * bench_hooks: measures what running policies costs, per request and per
 * hook, with no network between the host and the library (the Python
 * backend's own Unix sockets aside).
 *
 *   bench_hooks                      the standard set, as a table
 *   bench_hooks --profile native-4 --payload 1k --threads 2 --json
 *
 * Every result is checked; a run with a failure exits 1.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bh.h"
#include "bh_engine.h"
#include "bh_remote.h"
#include "bh_report.h"

#define MAX_ITEMS 32

typedef struct bh_args {
  const char *profiles[MAX_ITEMS];
  int nprofiles;
  size_t payloads[MAX_ITEMS];
  int npayloads;
  bh_config cfg;
  bh_engine_opts eng;
  bool json;
  bool floor;
  const char *executors[4]; /* unix, grpc, interop */
  int nexecutors;
} bh_args;

static void usage(FILE *out) {
  fprintf(out, "usage: bench_hooks [options]\n"
               "  --profile P      empty, native-N, python-N, mix-4, native-body, python-body,\n"
               "                   python-io (one step awaiting a 10 ms timer)\n"
               "                   (repeatable; N = 1..64)\n"
               "  --payload SIZE   body bytes: 50, 1k, 64k, 1m ... (repeatable)\n"
               "  --threads T      host threads, each with its own exchanges (default 1)\n"
               "  --inflight K     exchanges in flight per thread, Python profiles (default 1)\n"
               "  --workers W      Python workers (default: one per CPU)\n"
               "  --duration S     measured seconds per cell (default 2)\n"
               "  --iterations N   measured requests per thread instead of a duration\n"
               "  --warmup S       seconds run first and not counted (default 0.5)\n"
               "  --plugin PATH    the sample native plugin\n"
               "  --python-path D  directory of the sample Python policies\n"
               "  --pyworker PATH  the policyexec-pyworker binary\n"
               "  --no-pin         do not pin host thread i and Python worker i to CPU i\n"
               "  --no-floor       skip the round-trip (floor) measurements\n"
               "  --shm-threshold SIZE  Python bodies of SIZE bytes on travel in shared\n"
               "                   memory (0: never; default: the library's, 64k)\n"
               "  --executor E     where Python steps run: unix (the local pool), grpc\n"
               "                   (policyexec-executor on a loopback port), interop (an\n"
               "                   executor written with python3-grpcio, asyncio + thread\n"
               "                   pool); repeatable, rows named profile@executor\n"
               "  --json           one JSON object per line instead of the table\n"
               "With no --profile: empty, native-4, python-4, mix-4 at 50 B and 1 KiB.\n");
}

static int parse_size(const char *s, size_t *out) {
  char *end;
  double v = strtod(s, &end);
  if (end == s || v < 0)
    return -1;
  double mul = 1;
  if (*end == 'k' || *end == 'K')
    mul = 1024, end++;
  else if (*end == 'm' || *end == 'M')
    mul = 1024 * 1024, end++;
  if (*end == 'b' || *end == 'B')
    end++;
  if (*end)
    return -1;
  *out = (size_t)(v * mul);
  return 0;
}

static int parse_args(int argc, char **argv, bh_args *a) {
  static const struct option opts[] = {{"profile", required_argument, 0, 'p'},
                                       {"payload", required_argument, 0, 'b'},
                                       {"threads", required_argument, 0, 't'},
                                       {"inflight", required_argument, 0, 'k'},
                                       {"workers", required_argument, 0, 'w'},
                                       {"duration", required_argument, 0, 'd'},
                                       {"iterations", required_argument, 0, 'n'},
                                       {"warmup", required_argument, 0, 'u'},
                                       {"plugin", required_argument, 0, 'P'},
                                       {"python-path", required_argument, 0, 'y'},
                                       {"pyworker", required_argument, 0, 'W'},
                                       {"json", no_argument, 0, 'j'},
                                       {"no-floor", no_argument, 0, 'F'},
                                       {"no-pin", no_argument, 0, 'N'},
                                       {"executor", required_argument, 0, 'E'},
                                       {"shm-threshold", required_argument, 0, 'S'},
                                       {"help", no_argument, 0, 'h'},
                                       {0, 0, 0, 0}};
  int c;
  while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
    switch (c) {
    case 'p':
      if (a->nprofiles == MAX_ITEMS)
        return -1;
      a->profiles[a->nprofiles++] = optarg;
      break;
    case 'b':
      if (a->npayloads == MAX_ITEMS || parse_size(optarg, &a->payloads[a->npayloads]) != 0)
        return -1;
      a->npayloads++;
      break;
    case 't':
      a->cfg.threads = atoi(optarg);
      break;
    case 'k':
      a->cfg.inflight = atoi(optarg);
      break;
    case 'w':
      a->eng.workers = atoi(optarg);
      break;
    case 'd':
      a->cfg.duration_s = atof(optarg);
      break;
    case 'n':
      a->cfg.iterations = strtoull(optarg, NULL, 10);
      break;
    case 'u':
      a->cfg.warmup_s = atof(optarg);
      break;
    case 'P':
      a->eng.plugin = optarg;
      break;
    case 'y':
      a->eng.python_path = optarg;
      break;
    case 'W':
      a->eng.pyworker = optarg;
      break;
    case 'j':
      a->json = true;
      break;
    case 'N':
      a->cfg.pin = false;
      break;
    case 'F':
      a->floor = false;
      break;
    case 'S': {
      size_t t;
      if (parse_size(optarg, &t) != 0)
        return -1;
      a->eng.shm_threshold = (long long)t;
      break;
    }
    case 'E':
      if (a->nexecutors == 4 ||
          (strcmp(optarg, "unix") && strcmp(optarg, "grpc") && strcmp(optarg, "interop")))
        return -1;
      a->executors[a->nexecutors++] = optarg;
      break;
    case 'h':
      usage(stdout);
      exit(0);
    default:
      return -1;
    }
  }
  if (optind != argc || a->cfg.threads < 1 || a->cfg.threads > 256 || a->cfg.inflight < 1 ||
      a->cfg.inflight > 1024 || a->cfg.duration_s <= 0 || a->cfg.warmup_s < 0 || a->eng.workers < 0)
    return -1;
  if (a->nprofiles == 0) {
    static const char *std_profiles[] = {"empty", "native-4", "python-4", "mix-4"};
    for (int i = 0; i < 4; i++)
      a->profiles[a->nprofiles++] = std_profiles[i];
  }
  if (a->nexecutors == 0)
    a->executors[a->nexecutors++] = "unix";
  if (a->npayloads == 0) {
    a->payloads[a->npayloads++] = 50;
    a->payloads[a->npayloads++] = 1024;
  }
  return 0;
}

/* Runs one profile at one payload; returns its result (heap) or NULL. */
static bh_result *run_cell(pe_engine *engine, const bh_profile *p, bh_config *cfg, char *err,
                           size_t errlen) {
  char *json = bh_profile_chain_json(p);
  pe_chain *chain = NULL;
  bh_result *r = calloc(1, sizeof *r);
  int rc =
      json && r ? pe_chain_new_from_json(&chain, engine, pe_str(json), err, errlen) : PE_ERR_NOMEM;
  free(json);
  if (rc != PE_OK) {
    free(r);
    return NULL;
  }
  cfg->profile = p;
  if (bh_run(engine, chain, cfg, r) != 0) {
    snprintf(err, errlen, "could not start the host threads");
    free(r);
    r = NULL;
  }
  pe_chain_free(chain);
  return r;
}

/* The floor of an out-of-process call, both ways a worker may be placed. */
static void report_floor(bool json) {
  static const struct {
    const char *name, *label;
    int child;
  } cases[] = {{"uds-roundtrip-same-cpu", "same CPU", 0},
               {"uds-roundtrip-cross-cpu", "across CPUs", 1}};
  if (!json)
    printf("\nUnix-socket round trip (64 B, another process), the floor of an out-of-process "
           "call:\n");
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    int self = bh_nth_allowed_cpu(0), child = bh_nth_allowed_cpu(cases[i].child);
    uint64_t p50, p99;
    if ((cases[i].child && child == self) || bh_uds_roundtrip(100000, self, child, &p50, &p99) != 0)
      continue; /* one CPU only, or no socket/fork */
    if (json)
      printf("{\"profile\":\"%s\",\"payload_bytes\":64,\"per_request_ns\":"
             "{\"p50\":%llu,\"p99\":%llu}}\n",
             cases[i].name, (unsigned long long)p50, (unsigned long long)p99);
    else
      printf("  %-12s p50 %.1f us, p99 %.1f us\n", cases[i].label, (double)p50 / 1000,
             (double)p99 / 1000);
  }
}

/* The floor of each remote executor's transport, in the same run. */
static void report_remote_floors(const bh_remote *remotes, int n, bool pin, bool json) {
  for (int i = 0; i < n; i++) {
    for (int blocking = 0; blocking < 2; blocking++) {
      uint64_t p50, p99, cpu;
      if (bh_grpc_floor(remotes[i].target, 10000, blocking, pin ? bh_nth_allowed_cpu(0) : -1, &p50,
                        &p99, &cpu) != 0) {
        fprintf(stderr, "bench_hooks: %s: the floor could not be measured\n", remotes[i].name);
        continue;
      }
      const char *how = blocking ? "blocking" : "async";
      if (json)
        printf("{\"profile\":\"grpc-roundtrip-%s@%s\",\"payload_bytes\":0,\"per_request_ns\":"
               "{\"p50\":%llu,\"p99\":%llu},\"cpu_per_request_ns\":%llu}\n",
               how, remotes[i].name, (unsigned long long)p50, (unsigned long long)p99,
               (unsigned long long)cpu);
      else
        printf(
            "  gRPC empty call to %-8s %-8s p50 %.1f us, p99 %.1f us, cpu %.1f us (Health/Check, "
            "no Python)\n",
            remotes[i].name, how, (double)p50 / 1000, (double)p99 / 1000, (double)cpu / 1000);
    }
  }
}

/* Starts each remote executor asked for and registers it with engine. */
static int start_remotes(pe_engine *engine, const bh_args *a, bh_remote *remotes, int *n, char *err,
                         size_t errlen) {
  *n = 0;
  for (int i = 0; i < a->nexecutors; i++) {
    if (!strcmp(a->executors[i], "unix"))
      continue;
    bh_remote *r = &remotes[*n];
    const char *samples = a->eng.python_path ? a->eng.python_path : BH_PY_SAMPLES_BUILD;
    /* Where the local pool's first worker goes (beside host thread 0). */
    int cpu = a->cfg.pin ? bh_nth_allowed_cpu(0) : -1;
    if (bh_remote_spawn(a->executors[i], samples, cpu, r, err, errlen) != 0)
      return -1;
    (*n)++;
    pe_grpc_options *o = NULL;
    int rc = pe_grpc_options_new(&o);
    rc = rc ? rc : pe_grpc_options_set_name(o, r->name);
    rc = rc ? rc : pe_grpc_options_set_target(o, r->target);
    rc = rc ? rc : pe_engine_start_grpc(engine, o);
    pe_grpc_options_free(o);
    if (rc != PE_OK) {
      snprintf(err, errlen, "%s executor: %s", r->name, pe_engine_errmsg(engine));
      return -1;
    }
  }
  return 0;
}

int main(int argc, char **argv) {
  bh_args a = {.cfg = {.threads = 1, .inflight = 1, .duration_s = 2, .warmup_s = 0.5, .pin = true},
               .eng = {.shm_threshold = -1},
               .floor = true};
  if (parse_args(argc, argv, &a) != 0) {
    usage(stderr);
    return 2;
  }
  /* Bodies above the engine's default limit (16 MiB) need a bigger one:
   * the largest payload and room for the sample policies' prefixes. */
  for (int i = 0; i < a.npayloads; i++)
    if (a.payloads[i] + 4096 > a.eng.body_limit && a.payloads[i] > ((size_t)16 << 20) - 4096)
      a.eng.body_limit = a.payloads[i] + 4096;
  /* Each Python profile once per executor: python-4, python-4@grpc, ... */
  bh_profile profiles[MAX_ITEMS * 4];
  bool python = false;
  char err[512];
  int nprofiles = 0;
  for (int i = 0; i < a.nprofiles; i++) {
    bh_profile p;
    if (bh_profile_parse(a.profiles[i], &p, err, sizeof err) != 0) {
      fprintf(stderr, "bench_hooks: %s\n", err);
      return 2;
    }
    python |= p.uses_python;
    for (int x = 0; x < (p.uses_python ? a.nexecutors : 1); x++) {
      profiles[nprofiles] = p;
      if (p.uses_python && strcmp(a.executors[x], "unix")) {
        bh_profile *q = &profiles[nprofiles];
        snprintf(q->executor, sizeof q->executor, "%s", a.executors[x]);
        size_t len = strlen(q->name);
        snprintf(q->name + len, sizeof q->name - len, "@%s", a.executors[x]);
      }
      nprofiles++;
    }
  }
  a.nprofiles = nprofiles;
  pe_engine *engine = NULL;
  a.eng.python = python;
  a.eng.pin = a.cfg.pin;
  if (bh_engine_new(&engine, &a.eng, err, sizeof err) != 0) {
    fprintf(stderr, "bench_hooks: %s\n", err);
    return 2;
  }
  bh_remote remotes[4];
  int nremotes = 0;
  if (python && start_remotes(engine, &a, remotes, &nremotes, err, sizeof err) != 0) {
    fprintf(stderr, "bench_hooks: %s\n", err);
    for (int i = 0; i < nremotes; i++)
      bh_remote_stop(&remotes[i]);
    pe_engine_free(engine);
    return 2;
  }
  int workers = python ? bh_engine_workers(engine) : 0;
  if (!a.json)
    bh_report_table_header(stdout);

  uint64_t failures = 0;
  int status = 0;
  for (int b = 0; b < a.npayloads && status == 0; b++) {
    bh_config cfg = a.cfg;
    cfg.payload_bytes = a.payloads[b];
    /* Every payload gets its own `empty` run: the host's cost to subtract. */
    bh_profile empty;
    bh_profile_parse("empty", &empty, err, sizeof err);
    bh_result *empty_r = run_cell(engine, &empty, &cfg, err, sizeof err);
    if (!empty_r) {
      fprintf(stderr, "bench_hooks: empty: %s\n", err);
      status = 2;
      break;
    }
    for (int i = 0; i < a.nprofiles; i++) {
      bool is_empty = profiles[i].hooks == 0;
      bh_result *r = is_empty ? empty_r : run_cell(engine, &profiles[i], &cfg, err, sizeof err);
      if (!r) {
        fprintf(stderr, "bench_hooks: %s: %s\n", profiles[i].name, err);
        status = 2;
        break;
      }
      bh_row row = {&profiles[i], &cfg, r, is_empty ? NULL : empty_r, workers};
      if (a.json)
        bh_report_json(stdout, &row);
      else
        bh_report_table_row(stdout, &row);
      if (r->failures)
        fprintf(stderr, "bench_hooks: %s: %llu failures, first: %s\n", profiles[i].name,
                (unsigned long long)r->failures, r->first_failure);
      failures += r->failures;
      if (!is_empty)
        free(r);
    }
    free(empty_r);
  }

  if (a.floor && status == 0) {
    report_floor(a.json);
    report_remote_floors(remotes, nremotes, a.cfg.pin, a.json);
  }
  if (!a.json)
    printf("per-hook p50 = (p50 of the profile - p50 of empty, same run) / hooks; published "
           "gateway: Go ~0.4 ms, Python ~4.4 ms per hook.\n");
  pe_engine_free(engine);
  for (int i = 0; i < nremotes; i++)
    bh_remote_stop(&remotes[i]);
  if (status)
    return status;
  return failures ? 1 : 0;
}
