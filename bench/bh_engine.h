#ifndef BH_ENGINE_H
#define BH_ENGINE_H

#include <stdbool.h>
#include <stddef.h>

#include "bh.h"

typedef struct bh_engine_opts {
  const char *plugin;      /* NULL: the sample plugin next to the build or install */
  const char *python_path; /* NULL: the sample Python policies */
  const char *pyworker;    /* NULL: the library's default worker binary */
  int workers;             /* 0: one per CPU */
  bool python;             /* start the Python pool */
  bool pin;                /* pin workers to CPUs, prefer the caller's CPU's worker */
  long long shm_threshold; /* bodies in shared memory from this size; < 0: the default */
  size_t body_limit;       /* 0: the engine's default */
} bh_engine_opts;

/* An engine with the counting allocator, the sample plugin loaded and, if
 * asked, the Python pool started. */
int bh_engine_new(pe_engine **out, const bh_engine_opts *o, char *err, size_t errlen);
/* Number of Python workers running. */
int bh_engine_workers(pe_engine *engine);

#endif
