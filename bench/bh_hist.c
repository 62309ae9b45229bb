/*
 * A log-linear histogram: values below 2^9 ns are exact; above, each power
 * of two is split into 512 buckets, so a percentile is off by < 0.2 %. It
 * records a request in a few nanoseconds and a fixed 220 KiB, which lets
 * bench_hooks keep every sample of a native run (millions per second)
 * without storing them.
 */
#include <time.h>

#include "bh.h"

static size_t bucket_of(uint64_t v) {
  if (v < (1u << BH_HIST_SUB_BITS))
    return (size_t)v;
  unsigned msb = 63u - (unsigned)__builtin_clzll(v);
  unsigned shift = msb - BH_HIST_SUB_BITS;
  size_t sub = (size_t)((v >> shift) & ((1u << BH_HIST_SUB_BITS) - 1));
  return ((size_t)(shift + 1) << BH_HIST_SUB_BITS) + sub;
}

/* Lowest value of bucket i, and its width. */
static void bucket_range(size_t i, uint64_t *low, uint64_t *width) {
  size_t group = i >> BH_HIST_SUB_BITS;
  uint64_t sub = i & ((1u << BH_HIST_SUB_BITS) - 1);
  if (group == 0) {
    *low = sub;
    *width = 1;
    return;
  }
  unsigned shift = (unsigned)group - 1;
  *low = ((uint64_t)(1u << BH_HIST_SUB_BITS) + sub) << shift;
  *width = (uint64_t)1 << shift;
}

void bh_hist_record(bh_hist *h, uint64_t ns) {
  h->count++;
  h->sum_ns += ns;
  if (ns > h->max_ns)
    h->max_ns = ns;
  h->buckets[bucket_of(ns)]++;
}

void bh_hist_merge(bh_hist *into, const bh_hist *from) {
  into->count += from->count;
  into->sum_ns += from->sum_ns;
  if (from->max_ns > into->max_ns)
    into->max_ns = from->max_ns;
  for (size_t i = 0; i < BH_HIST_BUCKETS; i++)
    into->buckets[i] += from->buckets[i];
}

uint64_t bh_hist_percentile(const bh_hist *h, double p) {
  if (h->count == 0)
    return 0;
  uint64_t rank = (uint64_t)((p / 100.0) * (double)h->count + 0.5);
  if (rank < 1)
    rank = 1;
  uint64_t seen = 0;
  for (size_t i = 0; i < BH_HIST_BUCKETS; i++) {
    seen += h->buckets[i];
    if (seen >= rank) {
      uint64_t low, width;
      bucket_range(i, &low, &width);
      uint64_t mid = low + width / 2;
      return mid > h->max_ns ? h->max_ns : mid;
    }
  }
  return h->max_ns;
}

double bh_hist_mean(const bh_hist *h) {
  return h->count ? (double)h->sum_ns / (double)h->count : 0.0;
}
