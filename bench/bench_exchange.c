/*
 * The cost of one native-4 exchange through the C API, the yardstick for the
 * bindings' benchmarks (bench/bindings.sh runs them side by side): fill the
 * request, run the four phases, read the result. The same loop is in
 * bindings/lua/tests/bench_loop.lua and bindings/python/tests/host/bench.py.
 *
 *   bench_exchange PLUGIN.so [ITERATIONS [REPEATS]]
 *
 * Prints the minimum and the median over REPEATS runs of ITERATIONS
 * exchanges, in ns per exchange, after a warm-up run.
 */
#include <policyexec/policyexec.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char native4[] =
    "[{\"name\": \"sample-native-response-header\", \"version\": \"1.0.0\"},"
    " {\"name\": \"sample-native-request-body\", \"version\": \"1.0.0\"},"
    " {\"name\": \"sample-native-response-header\", \"version\": \"1.0.0\"},"
    " {\"name\": \"sample-native-response-body\", \"version\": \"1.0.0\"}]";

static double now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

/* One exchange; returns 1 if the result is what native-4 gives. */
static int one(const pe_chain *chain, pe_exchange *ex, pe_slice payload) {
  int rc = pe_exchange_reset(ex);
  rc = rc ? rc : pe_exchange_set_method(ex, PE_LIT("POST"));
  rc = rc ? rc : pe_exchange_set_path(ex, PE_LIT("/echo"));
  rc = rc ? rc : pe_exchange_set_authority(ex, PE_LIT("backend.local:9000"));
  rc = rc ? rc : pe_exchange_header_add(ex, PE_REQUEST, PE_LIT("user-agent"), PE_LIT("bench"));
  rc = rc ? rc
          : pe_exchange_header_add(ex, PE_REQUEST, PE_LIT("content-type"), PE_LIT("text/plain"));
  rc = rc ? rc : pe_exchange_header_add(ex, PE_REQUEST, PE_LIT("accept"), PE_LIT("*/*"));
  rc = rc ? rc : pe_exchange_body_set(ex, PE_REQUEST, payload);
  rc = rc ? rc : pe_chain_run(chain, ex, PE_PHASE_REQUEST_HEADERS);
  rc = rc ? rc : pe_chain_run(chain, ex, PE_PHASE_REQUEST_BODY);
  if (rc || pe_exchange_verdict(ex) != PE_VERDICT_CONTINUE)
    return 0;
  rc = pe_exchange_set_status(ex, 200);
  rc = rc ? rc
          : pe_exchange_header_add(ex, PE_RESPONSE, PE_LIT("content-type"), PE_LIT("text/plain"));
  rc = rc ? rc : pe_exchange_body_set(ex, PE_RESPONSE, pe_exchange_body(ex, PE_REQUEST));
  rc = rc ? rc : pe_chain_run_phases(chain, ex, PE_PHASE_RESPONSE_HEADERS, PE_PHASE_RESPONSE_BODY);
  /* Read the result as a proxy would. */
  pe_slice phase;
  int status = pe_exchange_status(ex);
  int has = pe_exchange_header_get(ex, PE_RESPONSE, PE_LIT("x-sample-policy-phase"), &phase);
  pe_slice body = pe_exchange_body(ex, PE_RESPONSE);
  return rc == PE_OK && status == 200 && has == PE_OK && body.len > payload.len;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s PLUGIN.so [ITERATIONS [REPEATS]]\n", argv[0]);
    return 2;
  }
  long iterations = argc > 2 ? atol(argv[2]) : 200000;
  int repeats = argc > 3 ? atoi(argv[3]) : 5;
  if (iterations < 1 || repeats < 1 || repeats > 100) {
    fprintf(stderr, "bad ITERATIONS or REPEATS\n");
    return 2;
  }
  pe_engine *engine = NULL;
  pe_chain *chain = NULL;
  pe_exchange *ex = NULL;
  char err[256] = "";
  int rc = pe_engine_new(&engine, NULL);
  rc = rc ? rc : pe_engine_load_plugin(engine, argv[1]);
  rc = rc ? rc : pe_chain_new_from_json(&chain, engine, PE_LIT(native4), err, sizeof err);
  rc = rc ? rc : pe_exchange_new(&ex, engine);
  if (rc) {
    fprintf(stderr, "setup: %s: %s %s\n", pe_errname(rc), engine ? pe_engine_errmsg(engine) : "",
            err);
    pe_engine_free(engine);
    return 1;
  }
  char payload[50];
  memset(payload, 'x', sizeof payload);
  pe_slice p = pe_bytes(payload, sizeof payload);
  double runs[100];
  int bad = 0;
  for (long i = 0; i < iterations / 10 + 1; i++) /* warm-up */
    bad += !one(chain, ex, p);
  for (int r = 0; r < repeats; r++) {
    double t0 = now_ns();
    for (long i = 0; i < iterations; i++)
      bad += !one(chain, ex, p);
    runs[r] = (now_ns() - t0) / (double)iterations;
  }
  qsort(runs, (size_t)repeats, sizeof runs[0], cmp_double);
  /* The minimum is the run least disturbed by other processes. */
  printf("c        native-4 exchange: min %8.0f ns, median %8.0f ns (%d runs of %ld)\n", runs[0],
         runs[repeats / 2], repeats, iterations);
  pe_exchange_free(ex);
  pe_chain_free(chain);
  pe_engine_free(engine);
  if (bad) {
    fprintf(stderr, "%d exchanges gave a wrong result\n", bad);
    return 1;
  }
  return 0;
}
