/* Logging of the worker: one line per event on stderr, which the engine
 * forwards to its log callback. */
#ifndef PW_LOG_H
#define PW_LOG_H

#include <stdio.h>

#define PW_LOG(...)                                                                                \
  do {                                                                                             \
    fprintf(stderr, "policyexec-pyworker: " __VA_ARGS__);                                          \
    fputc('\n', stderr);                                                                           \
  } while (0)

#endif
