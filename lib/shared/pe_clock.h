/*
 * Monotonic time in nanoseconds, for deadlines and latency figures.
 * Header-only, because the library, the worker and the gateway each need
 * it; clock is CLOCK_MONOTONIC, or CLOCK_MONOTONIC_COARSE where a tick of a
 * few milliseconds is enough and the read must be cheap (idle timeouts).
 */
#ifndef PE_CLOCK_H
#define PE_CLOCK_H

#include <stdint.h>
#include <time.h>

static inline uint64_t pe__clock_ns(clockid_t clock) {
  struct timespec ts;
  clock_gettime(clock, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

#endif /* PE_CLOCK_H */
