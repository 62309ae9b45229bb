/* Logging of the worker: one line per event on stderr, which the engine
 * forwards to its log callback. */
#ifndef PW_LOG_H
#define PW_LOG_H

#include <stdio.h>

/* One fprintf per line: glibc writes an unbuffered stream's formatted line
 * in one write(2), so lines of workers sharing the engine's stderr do not
 * interleave (two calls, text then newline, did). */
#define PW_LOG(fmt, ...) fprintf(stderr, "policyexec-pyworker: " fmt "\n", ##__VA_ARGS__)

#endif
