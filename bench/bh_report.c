/* bench_hooks output: one JSON object per line, or a table that sets our
 * per-hook cost beside the published gateway's. */
#include <stdio.h>

#include "bh_report.h"

/* The published gateway's per-hook costs (shared/reference report). */
#define PUBLISHED_NATIVE_NS 400000.0  /* Go policy engine: ~0.4 ms */
#define PUBLISHED_PYTHON_NS 4400000.0 /* Python executor: ~4.4 ms */

double bh_per_hook_ns(const bh_row *row) {
  if (row->profile->hooks == 0 || !row->empty)
    return 0.0;
  double diff = (double)bh_hist_percentile(&row->result->hist, 50) -
                (double)bh_hist_percentile(&row->empty->hist, 50);
  return diff / (double)row->profile->hooks;
}

static double per_request_cpu_ns(const bh_row *row) {
  return row->result->requests ? (double)row->result->cpu_ns / (double)row->result->requests : 0;
}

static double per_request_allocs(const bh_row *row) {
  return row->result->requests ? (double)row->result->allocs / (double)row->result->requests : 0;
}

void bh_report_json(FILE *out, const bh_row *row) {
  const bh_result *r = row->result;
  fprintf(out,
          "{\"profile\":\"%s\",\"payload_bytes\":%zu,\"threads\":%d,\"workers\":%d,"
          "\"inflight\":%d,\"pinned\":%s,\"hooks\":%zu,\"requests\":%llu,\"failures\":%llu,\"rps\":"
          "%.1f,"
          "\"per_request_ns\":{\"mean\":%.1f,\"p50\":%llu,\"p95\":%llu,\"p99\":%llu,\"max\":%llu},"
          "\"per_hook_ns\":{\"p50\":%.1f},\"allocs_per_request\":%.3f,"
          "\"cpu_per_request_ns\":%.1f",
          row->profile->name, row->cfg->payload_bytes, row->cfg->threads, row->workers,
          row->cfg->inflight, row->cfg->pin ? "true" : "false", row->profile->hooks,
          (unsigned long long)r->requests, (unsigned long long)r->failures,
          r->elapsed_s > 0 ? (double)r->requests / r->elapsed_s : 0, bh_hist_mean(&r->hist),
          (unsigned long long)bh_hist_percentile(&r->hist, 50),
          (unsigned long long)bh_hist_percentile(&r->hist, 95),
          (unsigned long long)bh_hist_percentile(&r->hist, 99), (unsigned long long)r->hist.max_ns,
          bh_per_hook_ns(row), per_request_allocs(row), per_request_cpu_ns(row));
  if (r->failures)
    fprintf(out, ",\"first_failure\":\"%s\"", r->first_failure);
  fprintf(out, "}\n");
  fflush(out);
}

static void fmt_ns(char *buf, size_t len, double ns) {
  if (ns < 10000)
    snprintf(buf, len, "%.0f ns", ns);
  else if (ns < 10000000)
    snprintf(buf, len, "%.1f us", ns / 1000);
  else
    snprintf(buf, len, "%.2f ms", ns / 1e6);
}

void bh_report_table_header(FILE *out) {
  fprintf(out, "%-10s %8s %5s %11s %10s %10s %10s %13s %10s %10s %s\n", "profile", "payload",
          "hooks", "req/s", "mean", "p50", "p99", "per-hook p50", "allocs/req", "cpu/req",
          "published per hook");
}

void bh_report_table_row(FILE *out, const bh_row *row) {
  const bh_result *r = row->result;
  char mean[32], p50[32], p99[32], hook[32] = "-", cpu[32], vs[96] = "";
  fmt_ns(mean, sizeof mean, bh_hist_mean(&r->hist));
  fmt_ns(p50, sizeof p50, (double)bh_hist_percentile(&r->hist, 50));
  fmt_ns(p99, sizeof p99, (double)bh_hist_percentile(&r->hist, 99));
  fmt_ns(cpu, sizeof cpu, per_request_cpu_ns(row));
  if (row->profile->hooks) {
    double h = bh_per_hook_ns(row);
    fmt_ns(hook, sizeof hook, h);
    double published = row->profile->uses_python ? PUBLISHED_PYTHON_NS : PUBLISHED_NATIVE_NS;
    if (h > 0)
      snprintf(vs, sizeof vs, "%s %.1f ms: %.0fx ours", row->profile->uses_python ? "Python" : "Go",
               published / 1e6, published / h);
  }
  fprintf(out, "%-10s %7zuB %5zu %11.0f %10s %10s %10s %13s %10.2f %10s %s%s\n", row->profile->name,
          row->cfg->payload_bytes, row->profile->hooks,
          r->elapsed_s > 0 ? (double)r->requests / r->elapsed_s : 0, mean, p50, p99, hook,
          per_request_allocs(row), cpu, vs, r->failures ? "  FAILURES" : "");
}
