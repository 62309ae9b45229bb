#ifndef BH_REPORT_H
#define BH_REPORT_H

#include <stdio.h>

#include "bh.h"

/* One measured cell, and the `empty` run of the same payload and threads. */
typedef struct bh_row {
  const bh_profile *profile;
  const bh_config *cfg;
  const bh_result *result;
  const bh_result *empty; /* NULL for the empty profile itself */
  int workers;
} bh_row;

/* (p50 of the profile - p50 of empty) / hooks, in ns; 0 without hooks. */
double bh_per_hook_ns(const bh_row *row);
void bh_report_json(FILE *out, const bh_row *row);
void bh_report_table_header(FILE *out);
void bh_report_table_row(FILE *out, const bh_row *row);

#endif
