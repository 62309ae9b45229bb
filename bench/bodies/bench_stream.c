/*
 * bench_stream: the library's cost of streaming a body through a chain's
 * streamed steps, in process (no network): --mib MiB of random bytes in
 * --chunk byte chunks through pe_chain_stream_body(), best of --runs.
 *
 *   bench_stream PLUGIN.so CHAIN_JSON [--mib 1024] [--chunk 65536] [--runs 3]
 *                [--python DIR [--worker PATH]]
 *
 * e.g. bench_stream build/examples/policies/sample_native_policies.so \
 *        '[{"name": "sample-native-redact", "version": "1.0.0"}]'
 *
 * With --python, a pool of one policyexec-pyworker loads the Python policies
 * of DIR (PLUGIN.so may then be "-": none), so that the chain may hold
 * streamed Python steps (sample-python-redact); the worker's peak resident
 * set (VmHWM) is printed after the runs.
 */
#include <policyexec/policyexec.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifndef BENCH_PYWORKER_BUILD
#define BENCH_PYWORKER_BUILD "policyexec-pyworker"
#endif

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static int fail(const char *what, const char *why) {
  fprintf(stderr, "bench_stream: %s: %s\n", what, why);
  return 1;
}

/* One worker with the policies of dir; bodies of any chunk size allowed. */
static int start_python(pe_engine *e, const char *dir, const char *worker) {
  pe_python_options *po = NULL;
  int rc = pe_python_options_new(&po);
  if (rc == PE_OK)
    rc = pe_python_options_set_workers(po, 1);
  if (rc == PE_OK)
    rc = pe_python_options_set_worker_path(po, worker);
  if (rc == PE_OK)
    rc = pe_python_options_add_module_path(po, dir);
  if (rc == PE_OK)
    rc = pe_python_options_set_default_timeout(po, 60000);
  if (rc == PE_OK)
    rc = pe_engine_start_python(e, po);
  pe_python_options_free(po);
  return rc;
}

/* VmHWM of process pid in KiB, or -1. */
static long peak_rss_kib(int pid) {
  char path[64], line[256];
  snprintf(path, sizeof path, "/proc/%d/status", pid);
  FILE *f = fopen(path, "r");
  long kib = -1;
  while (f && fgets(line, sizeof line, f))
    if (strncmp(line, "VmHWM:", 6) == 0)
      kib = strtol(line + 6, NULL, 10);
  if (f)
    fclose(f);
  return kib;
}

int main(int argc, char **argv) {
  if (argc < 3)
    return fail("usage", "bench_stream PLUGIN.so CHAIN_JSON [--mib N] [--chunk N] [--runs N] "
                         "[--python DIR [--worker PATH]]");
  size_t mib = 1024, chunk = 65536, runs = 3;
  const char *python = NULL, *worker = BENCH_PYWORKER_BUILD;
  for (int i = 3; i + 1 < argc; i += 2) {
    size_t v = strtoull(argv[i + 1], NULL, 10);
    if (strcmp(argv[i], "--python") == 0)
      python = argv[i + 1];
    else if (strcmp(argv[i], "--worker") == 0)
      worker = argv[i + 1];
    else if (strcmp(argv[i], "--mib") == 0)
      mib = v;
    else if (strcmp(argv[i], "--chunk") == 0)
      chunk = v;
    else if (strcmp(argv[i], "--runs") == 0)
      runs = v;
    else
      return fail(argv[i], "unknown option");
  }
  if (!chunk || !runs)
    return fail("options", "--chunk and --runs must be positive");
  pe_engine *e = NULL;
  pe_chain *c = NULL;
  pe_exchange *ex = NULL;
  char err[256];
  if (pe_engine_new(&e, NULL) != PE_OK)
    return fail("engine", "cannot create");
  if (strcmp(argv[1], "-") != 0 && pe_engine_load_plugin(e, argv[1]) != PE_OK)
    return fail(argv[1], pe_engine_errmsg(e));
  if (python && start_python(e, python, worker) != PE_OK)
    return fail("python", pe_engine_errmsg(e));
  if (pe_chain_new_from_json(&c, e, pe_str(argv[2]), err, sizeof err) != PE_OK)
    return fail("chain", err);
  if (pe_chain_body_plan(c, PE_RESPONSE) != PE_BODY_STREAM)
    return fail("chain", "its response body is not streamed");
  char *buf = malloc(chunk);
  if (!buf || pe_exchange_new(&ex, e) != PE_OK)
    return fail("memory", "out of memory");
  uint64_t x = 88172645463325252ull;
  for (size_t i = 0; i < chunk; i++) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    buf[i] = (char)x;
  }
  size_t total = mib << 20;
  double best = 0;
  for (size_t r = 0; r < runs; r++) {
    pe_exchange_reset(ex);
    size_t out = 0;
    double t0 = now_s();
    for (size_t sent = 0; sent < total;) {
      size_t n = total - sent < chunk ? total - sent : chunk;
      sent += n;
      pe_slice o;
      if (pe_chain_stream_body(c, ex, PE_RESPONSE, pe_bytes(buf, n), sent == total, &o) != PE_OK)
        return fail("stream", pe_exchange_errmsg(ex));
      out += o.len;
    }
    double t = now_s() - t0;
    if (r == 0 || t < best)
      best = t;
    printf("run %zu: %zu bytes in, %zu out, %.3f s, %.0f MiB/s\n", r + 1, total, out, t,
           (double)mib / t);
  }
  size_t calls = (total + chunk - 1) / chunk;
  printf("best: %.0f MiB/s (%.3f ns per byte, %.0f ns per call of %zu bytes, %.0f us per MiB)\n",
         (double)mib / best, best * 1e9 / (double)total, best * 1e9 / (double)(calls ? calls : 1),
         chunk, best * 1e6 / (double)(mib ? mib : 1));
  int pid = 0;
  if (python && pe_engine_python_worker_pids(e, &pid, 1) == 1)
    printf("python worker %d: peak RSS (VmHWM) %ld KiB\n", pid, peak_rss_kib(pid));
  free(buf);
  pe_exchange_free(ex);
  pe_chain_free(c);
  pe_engine_free(e);
  return 0;
}
