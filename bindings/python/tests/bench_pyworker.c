/* Round-trip latency of policyexec-pyworker: one RunPhase with one
 * sample-python-request-header step, and one with a 1 MiB body through
 * sample-python-request-body, measured from the client side.
 *
 *   bench_pyworker [iterations] [body iterations] [cpu]
 *
 * With [cpu], the bench and the worker are pinned to that one CPU: on a
 * small or busy machine, a wake-up on another CPU (idle exit, IPI) costs
 * more than the work measured, and the numbers scatter.
 */
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pw_client.h"

static double now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static ProtobufCBinaryData bin(const char *s) {
  return (ProtobufCBinaryData){strlen(s), (uint8_t *)s};
}

/* Times @p n RunPhase round trips; prints p50/p99/mean. Returns 0 or -1. */
static int measure(const char *label, int fd, pw_buf *buf, Policyexec__V1__RunPhase *rp, int n) {
  double *t = malloc((size_t)n * sizeof(*t));
  if (t == NULL) {
    return -1;
  }
  pw_request req = POLICYEXEC__V1__REQUEST__INIT;
  req.body_case = POLICYEXEC__V1__REQUEST__BODY_RUN;
  req.run = rp;
  int warmup = n / 10 + 10;
  double sum = 0;
  for (int i = -warmup; i < n; i++) {
    pw_response *r;
    req.id = (uint64_t)(i + warmup + 1);
    double t0 = now_us();
    if (pw_call(fd, buf, &req, &r) != 0 || r->body_case != POLICYEXEC__V1__RESPONSE__BODY_RUN ||
        r->run->n_steps != 1 ||
        r->run->steps[0]->outcome != POLICYEXEC__V1__STEP_RESULT__OUTCOME__OUTCOME_OK) {
      fprintf(stderr, "%s: bad reply\n", label);
      pw_response_free(r);
      free(t);
      return -1;
    }
    double dt = now_us() - t0;
    pw_response_free(r);
    if (i >= 0) {
      t[i] = dt;
      sum += dt;
    }
  }
  qsort(t, (size_t)n, sizeof(*t), cmp_double);
  printf("%-34s n=%-6d p50=%8.1f us  p99=%8.1f us  mean=%8.1f us\n", label, n, t[n / 2],
         t[(size_t)n * 99 / 100], sum / n);
  free(t);
  return 0;
}

static int create(int fd, pw_buf *buf, uint64_t instance, const char *name) {
  pw_response *r;
  int ok = pw_create(fd, buf, instance, instance, name, "{}", &r) == 0 &&
           r->body_case == POLICYEXEC__V1__RESPONSE__BODY_CREATE && r->create->ok;
  pw_response_free(r);
  return ok ? 0 : -1;
}

int main(int argc, char **argv) {
  int n = argc > 1 ? atoi(argv[1]) : 20000;
  int nbody = argc > 2 ? atoi(argv[2]) : 2000;
  if (n <= 0 || nbody <= 0) {
    fprintf(stderr, "usage: bench_pyworker [iterations] [body iterations] [cpu]\n");
    return 2;
  }
  if (argc > 3) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(atoi(argv[3]), &set);
    /* Before the worker starts: it inherits the mask. */
    if (sched_setaffinity(0, sizeof(set), &set) != 0) {
      perror("sched_setaffinity");
      return 1;
    }
  }
  pw_worker w;
  pw_spawn_options opt = {0};
  pw_buf buf = {0};
  if (pw_worker_start(&w, &opt) != 0) {
    perror("start worker");
    return 1;
  }
  int rc = 1;
  pw_response *hello;
  if (pw_hello(w.fd, &buf, 1, &hello) != 0) {
    goto out;
  }
  pw_response_free(hello);
  if (create(w.fd, &buf, 1, "sample-python-request-header") != 0 ||
      create(w.fd, &buf, 2, "sample-python-request-body") != 0) {
    goto out;
  }

  /* A typical small request: 6 headers. */
  const char *names[] = {"host",         "user-agent",  "accept", "accept-encoding",
                         "x-request-id", "content-type"};
  const char *values[] = {
      "example.com",     "bench/1.0", "*/*", "gzip, br", "8f14e45f-ceea-467f-a8f2-2b0cbd0b5d6e",
      "application/json"};
  Policyexec__V1__Header hs[6], *hp[6];
  for (int i = 0; i < 6; i++) {
    policyexec__v1__header__init(&hs[i]);
    hs[i].name = bin(names[i]);
    hs[i].value = bin(values[i]);
    hp[i] = &hs[i];
  }
  Policyexec__V1__HttpData d = POLICYEXEC__V1__HTTP_DATA__INIT;
  d.method = bin("POST");
  d.path = bin("/v1/items");
  d.authority = bin("example.com");
  d.request_headers = hp;
  d.n_request_headers = 6;
  uint64_t id = 1;
  protobuf_c_boolean fo = 0;
  Policyexec__V1__RunPhase rp = POLICYEXEC__V1__RUN_PHASE__INIT;
  rp.phase = POLICYEXEC__V1__PHASE__PHASE_REQUEST_HEADERS;
  rp.instance_ids = &id;
  rp.n_instance_ids = 1;
  rp.fail_open = &fo;
  rp.n_fail_open = 1;
  rp.data = &d;
  if (measure("request-header, 1 step", w.fd, &buf, &rp, n) != 0) {
    goto out;
  }

  size_t body_len = 1024 * 1024;
  uint8_t *body = malloc(body_len);
  if (body == NULL) {
    goto out;
  }
  memset(body, 'a', body_len);
  d.has_request_body = 1;
  d.request_body = (ProtobufCBinaryData){body_len, body};
  id = 2;
  rp.phase = POLICYEXEC__V1__PHASE__PHASE_REQUEST_BODY;
  rc = measure("request-body 1 MiB, 1 step", w.fd, &buf, &rp, nbody) != 0;
  free(body);
out:
  pw_worker_kill(&w);
  pw_buf_free(&buf);
  return rc;
}
