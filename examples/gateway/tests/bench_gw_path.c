/*
 * What routing on a normalised path costs per request: CPU time of
 * gw_path_normalize() on typical targets (not a test; run by hand:
 * build/examples/gateway/bench_gw_path).
 */
#include "gw_path.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

static double cpu_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(void) {
  static const char *const targets[] = {"/native-4/echo?i=12345", "/static/assets/app/v2/main.js",
                                        "/static/../static/%73ecret//file.txt?x=1"};
  char out[256];
  size_t sink = 0;
  for (size_t t = 0; t < sizeof targets / sizeof targets[0]; t++) {
    size_t len = strlen(targets[t]);
    const long rounds = 5000000;
    double start = cpu_s();
    for (long i = 0; i < rounds; i++)
      sink += gw_path_normalize(targets[t], len, out);
    double ns = (cpu_s() - start) * 1e9 / (double)rounds;
    printf("%-45s %6.1f ns per call\n", targets[t], ns);
  }
  return sink == 0;
}
