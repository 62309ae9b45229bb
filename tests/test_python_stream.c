/* Streamed Python body steps (lib/python/pe_py_stream.c, the worker's
 * pw_chunk.c, policyexec.chunk): plans, byte-exact bodies of many sizes and
 * chunkings through the real worker (inline and shared-memory chunks, held
 * tails, split writes, changed lengths), the redaction sample across chunk
 * boundaries, failure modes mid-body (raise, timeout, worker exit, worker
 * replaced between chunks, an answer), per-body state freed on reset, and
 * no fd leaked. Policies: tests/python_policies/test_stream_policies.py. */
#include "test_python_util.h"

#include <dirent.h>
#include <stdbool.h>

#define BIG ((size_t)64 << 20)

static pe_engine *stream_engine_with(const char *worker, uint32_t timeout_ms) {
  pe_engine_options *opts = NULL;
  pe_engine *e = NULL;
  ck_assert_int_eq(pe_engine_options_new(&opts), PE_OK);
  ck_assert_int_eq(pe_engine_options_set_log(opts, py_log, NULL), PE_OK);
  ck_assert_int_eq(pe_engine_options_set_metrics(opts, py_metrics, NULL), PE_OK);
  ck_assert_int_eq(pe_engine_new(&e, opts), PE_OK);
  pe_engine_options_free(opts);
  pe_python_options *po = NULL;
  ck_assert_int_eq(pe_python_options_new(&po), PE_OK);
  ck_assert_int_eq(pe_python_options_set_workers(po, 1), PE_OK);
  ck_assert_int_eq(pe_python_options_set_worker_path(po, worker), PE_OK);
  ck_assert_int_eq(pe_python_options_add_module_path(po, PE_PY_SAMPLES), PE_OK);
  ck_assert_int_eq(pe_python_options_add_module_path(po, PE_PY_TEST_POLICIES), PE_OK);
  /* Generous: a loaded machine under ASan must not turn a chunk into a
   * timeout, except in the test that wants one (its step sets its own). */
  ck_assert_int_eq(pe_python_options_set_default_timeout(po, timeout_ms), PE_OK);
  ck_assert_int_eq(pe_python_options_set_restart_backoff(po, 0, 2000), PE_OK);
  ck_assert_int_eq(pe_engine_start_python(e, po), PE_OK);
  pe_python_options_free(po);
  py_outcomes_clear();
  return e;
}

static pe_engine *stream_engine(uint32_t timeout_ms) {
  return stream_engine_with(PE_PYWORKER, timeout_ms);
}

static size_t open_fds(void) {
  DIR *d = opendir("/proc/self/fd");
  ck_assert_ptr_nonnull(d);
  size_t n = 0;
  while (readdir(d))
    n++;
  closedir(d);
  return n;
}

/* Printable bytes with digit runs of every length 1..24 scattered, so that
 * the redaction has card-like runs and near misses everywhere. */
static char *payload(size_t len) {
  char *p = malloc(len ? len : 1);
  ck_assert_ptr_nonnull(p);
  uint32_t x = 2463534242u;
  size_t i = 0;
  while (i < len) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    size_t run = x % 25;
    for (size_t k = 0; k < run && i < len; k++)
      p[i++] = (char)('0' + (x >> (k % 24)) % 10);
    for (size_t k = 0; k < 1 + (x >> 8) % 40 && i < len; k++)
      p[i++] = (char)('a' + (k + (x >> 16)) % 26);
  }
  return p;
}

/* The redaction done on a whole buffer in the simplest way: the reference
 * the streamed sample must match at any chunking. */
static void redact_ref(char *p, size_t len) {
  size_t i = 0;
  while (i < len) {
    if (p[i] < '0' || p[i] > '9') {
      i++;
      continue;
    }
    size_t j = i;
    while (j < len && p[j] >= '0' && p[j] <= '9')
      j++;
    if (j - i >= 13 && j - i <= 19)
      memset(p + i, '*', j - i - 4);
    i = j;
  }
}

typedef struct out_buf {
  char *data;
  size_t len, cap;
} out_buf;

static void out_add(out_buf *o, pe_slice s) {
  if (o->len + s.len > o->cap) {
    o->cap = (o->len + s.len) * 2 + 64;
    o->data = realloc(o->data, o->cap);
    ck_assert_ptr_nonnull(o->data);
  }
  if (s.len)
    memcpy(o->data + o->len, s.ptr, s.len);
  o->len += s.len;
}

/* Streams data through c's body dir in chunks of `step` bytes (the last
 * call flagged, with no data when len is a multiple); returns the first
 * error, the output in *o. */
static int stream_all(const pe_chain *c, pe_exchange *ex, pe_dir dir, const char *data, size_t len,
                      size_t step, out_buf *o) {
  size_t off = 0;
  for (;;) {
    size_t n = len - off < step ? len - off : step;
    int last = off + n == len;
    pe_slice out;
    int rc = pe_chain_stream_body(c, ex, dir, pe_bytes(data + off, n), last, &out);
    if (rc != PE_OK)
      return rc;
    out_add(o, out);
    off += n;
    if (last)
      return PE_OK;
  }
}

static void meta_is(pe_exchange *ex, const char *key, const char *want) {
  pe_slice v;
  ck_assert_int_eq(pe_exchange_meta_get(ex, pe_str(key), &v), PE_OK);
  ck_assert_slice_eq(v, want);
}

START_TEST(plans) {
  pe_engine *e = stream_engine(10000);
  pe_chain *c = py_chain(e, "[{\"name\":\"test-stream-identity\",\"version\":\"1.0.0\"}]");
  ck_assert_int_eq(pe_chain_body_plan(c, PE_REQUEST), PE_BODY_STREAM);
  ck_assert_int_eq(pe_chain_body_plan(c, PE_RESPONSE), PE_BODY_STREAM);
  pe_chain_free(c);
  c = py_chain(e, "[{\"name\":\"test-stream-respond\",\"version\":\"1.0.0\"}]");
  ck_assert_int_eq(pe_chain_body_plan(c, PE_REQUEST), PE_BODY_STREAM);
  ck_assert_int_eq(pe_chain_body_plan(c, PE_RESPONSE), PE_BODY_PASS);
  pe_chain_free(c);
  /* A buffered Python step makes the body buffered; both shapes stream. */
  c = py_chain(e, "[{\"name\":\"test-stream-identity\",\"version\":\"1.0.0\"},"
                  "{\"name\":\"sample-python-request-body\",\"version\":\"1.0.0\"}]");
  ck_assert_int_eq(pe_chain_body_plan(c, PE_REQUEST), PE_BODY_BUFFER);
  ck_assert_int_eq(pe_chain_body_plan(c, PE_RESPONSE), PE_BODY_STREAM);
  pe_chain_free(c);
  c = py_chain(e, "[{\"name\":\"test-stream-both\",\"version\":\"1.0.0\"}]");
  ck_assert_int_eq(pe_chain_body_plan(c, PE_REQUEST), PE_BODY_STREAM);
  pe_chain_free(c);
  pe_engine_free(e);
}
END_TEST

static const size_t sizes[] = {0, 1, 4095, 4096, 4097, 65535, 65536, 65537, (size_t)1 << 20};
static const size_t steps[] = {1, 4096, 65536, 300000};

/* Every size in every chunking (1-byte chunks only for small bodies)
 * through identity, hold-back-with-split-writes and upper-casing steps,
 * one by one and all three in a row. */
START_TEST(bodies_are_exact) {
  pe_engine *e = stream_engine(60000);
  const char *chains[] = {
      "[{\"name\":\"test-stream-identity\",\"version\":\"1.0.0\"}]",
      "[{\"name\":\"test-stream-hold\",\"version\":\"1.0.0\",\"params\":{\"hold\":5}}]",
      "[{\"name\":\"test-stream-upper\",\"version\":\"1.0.0\"}]",
      "[{\"name\":\"test-stream-identity\",\"version\":\"1.0.0\"},{\"name\":\"test-stream-hold\","
      "\"version\":\"1.0.0\"},"
      "{\"name\":\"test-stream-upper\",\"version\":\"1.0.0\"}]",
  };
  pe_exchange *ex = py_exchange(e);
  size_t fds = 0;
  for (size_t k = 0; k < sizeof chains / sizeof chains[0]; k++) {
    pe_chain *c = py_chain(e, chains[k]);
    bool upper = k >= 2;
    for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
      char *data = payload(sizes[si]);
      for (size_t st = 0; st < sizeof steps / sizeof steps[0]; st++) {
        if (steps[st] == 1 && sizes[si] > 4097)
          continue;
        if (fds == 0)
          fds = open_fds() + 2; /* the worker connection the first run opens */
        out_buf o = {0};
        ck_assert_int_eq(pe_exchange_reset(ex), PE_OK);
        int rc = stream_all(c, ex, PE_REQUEST, data, sizes[si], steps[st], &o);
        ck_assert_msg(rc == PE_OK, "chain %zu size %zu step %zu: %s: %s", k, sizes[si], steps[st],
                      pe_errname(rc), pe_exchange_errmsg(ex));
        ck_assert_int_eq(pe_exchange_stream_state(ex, PE_REQUEST), PE_STREAM_ENDED);
        size_t want = sizes[si] + (upper ? 5 : 0);
        ck_assert_msg(o.len == want, "chain %zu size %zu step %zu: %zu bytes out", k, sizes[si],
                      steps[st], o.len);
        for (size_t i = 0; i < sizes[si]; i++) {
          char w = data[i];
          if (upper && w >= 'a' && w <= 'z')
            w = (char)(w - 'a' + 'A');
          if (o.data[i] != w)
            ck_abort_msg("chain %zu size %zu step %zu: byte %zu differs", k, sizes[si], steps[st],
                         i);
        }
        if (upper)
          ck_assert(memcmp(o.data + sizes[si], "[end]", 5) == 0);
        if (k == 0) {
          char n[32];
          snprintf(n, sizeof n, "%zu", sizes[si]);
          meta_is(ex, "stream-bytes", n);
        }
        free(o.data);
      }
      free(data);
    }
    pe_chain_free(c);
  }
  ck_assert_int_eq(py_outcomes[PE_STEP_FAILED], 0);
  /* Every memfd sent was closed (the connection's pool keeps its own). */
  ck_assert_uint_le(open_fds(), fds + 4);
  pe_exchange_free(ex);
  pe_engine_free(e);
}
END_TEST

/* 64 MiB in 64 KiB chunks through the redaction sample (shared-memory
 * chunks), compared with the reference on the whole body. */
START_TEST(big_body_redacted) {
  pe_engine *e = stream_engine(60000);
  pe_chain *c = py_chain(e, "[{\"name\":\"sample-python-redact\",\"version\":\"1.0.0\"}]");
  pe_exchange *ex = py_exchange(e);
  char *data = payload(BIG);
  out_buf o = {0};
  int rc = stream_all(c, ex, PE_RESPONSE, data, BIG, 65536, &o);
  ck_assert_msg(rc == PE_OK, "%s: %s", pe_errname(rc), pe_exchange_errmsg(ex));
  redact_ref(data, BIG);
  ck_assert_uint_eq(o.len, BIG);
  ck_assert(memcmp(o.data, data, BIG) == 0);
  free(o.data);
  free(data);
  pe_exchange_free(ex);
  pe_chain_free(c);
  pe_engine_free(e);
}
END_TEST

/* Card numbers split at every position between two chunks, and the whole
 * scattered payload in chunk sizes that cut runs everywhere. */
START_TEST(redaction_straddles_chunks) {
  pe_engine *e = stream_engine(60000);
  pe_chain *c = py_chain(e, "[{\"name\":\"sample-python-redact\",\"version\":\"1.0.0\"}]");
  pe_exchange *ex = py_exchange(e);
  const char *text = "pay 4111111111111111 now, 12345 and 123456789012345678901234 or "
                     "5500000000000004x378282246310005;9999999999999";
  size_t len = strlen(text);
  char *want = strdup(text);
  redact_ref(want, len);
  ck_assert(strstr(want, "************1111") != NULL);
  for (size_t split = 0; split <= len; split++) {
    out_buf o = {0};
    ck_assert_int_eq(pe_exchange_reset(ex), PE_OK);
    pe_slice out;
    ck_assert_int_eq(pe_chain_stream_body(c, ex, PE_REQUEST, pe_bytes(text, split), 0, &out),
                     PE_OK);
    out_add(&o, out);
    ck_assert_int_eq(
        pe_chain_stream_body(c, ex, PE_REQUEST, pe_bytes(text + split, len - split), 1, &out),
        PE_OK);
    out_add(&o, out);
    ck_assert_uint_eq(o.len, len);
    ck_assert_msg(memcmp(o.data, want, len) == 0, "split at %zu: %.*s", split, (int)len, o.data);
    free(o.data);
  }
  free(want);
  size_t big = (size_t)1 << 20;
  char *data = payload(big);
  char *ref = malloc(big);
  memcpy(ref, data, big);
  redact_ref(ref, big);
  const size_t chunks[] = {7, 13, 4096, 65536 + 3};
  for (size_t k = 0; k < sizeof chunks / sizeof chunks[0]; k++) {
    size_t n = chunks[k] < 100 ? 20000 : big; /* small chunks: a prefix */
    char *r = malloc(n);
    memcpy(r, data, n);
    redact_ref(r, n);
    out_buf o = {0};
    ck_assert_int_eq(pe_exchange_reset(ex), PE_OK);
    ck_assert_int_eq(stream_all(c, ex, PE_REQUEST, data, n, chunks[k], &o), PE_OK);
    ck_assert_uint_eq(o.len, n);
    ck_assert_msg(memcmp(o.data, r, n) == 0, "chunks of %zu", chunks[k]);
    free(o.data);
    free(r);
  }
  free(ref);
  free(data);
  pe_exchange_free(ex);
  pe_chain_free(c);
  pe_engine_free(e);
}
END_TEST

/* A step failing mid-body: what the host is told, and what goes out. */
static void fail_case(const char *how, const char *mode, size_t after, bool before_output,
                      int want_rc, int want_status) {
  pe_engine *e = stream_engine(60000);
  char json[256];
  snprintf(json, sizeof json,
           "[{\"name\":\"test-stream-fail\",\"version\":\"1.0.0\",\"failure_mode\":\"%s\",%s"
           "\"params\":{\"after\":%zu,\"how\":\"%s\",\"hold\":4}}]",
           mode, !strcmp(how, "sleep") ? "\"timeout_ms\":300," : "", after, how);
  pe_chain *c = py_chain(e, json);
  pe_exchange *ex = py_exchange(e);
  int pid = py_worker_pid(e, 0);
  size_t len = 40000;
  char *data = payload(len);
  out_buf o = {0};
  int rc = stream_all(c, ex, PE_REQUEST, data, len, 1000, &o);
  if (!strcmp(mode, "open")) {
    /* As if the step were not there: the held bytes go on too. */
    ck_assert_msg(rc == PE_OK, "%s: %s", pe_errname(rc), pe_exchange_errmsg(ex));
    ck_assert_uint_eq(o.len, len);
    ck_assert(memcmp(o.data, data, len) == 0);
    ck_assert_int_eq(pe_exchange_verdict(ex), PE_VERDICT_CONTINUE);
  } else {
    ck_assert_msg(rc == want_rc, "%s: %s", pe_errname(rc), pe_exchange_errmsg(ex));
    ck_assert_int_eq(pe_exchange_verdict(ex), PE_VERDICT_RESPOND);
    ck_assert_int_eq(pe_exchange_status(ex), want_status);
    ck_assert_int_eq(pe_exchange_stream_state(ex, PE_REQUEST),
                     before_output ? PE_STREAM_STOPPED_CLEAN : PE_STREAM_STOPPED_CUT);
    ck_assert_uint_eq(o.len == 0, before_output);
    ck_assert(memcmp(o.data ? o.data : "", data, o.len) == 0); /* a prefix, unchanged */
  }
  if (!strcmp(how, "exit")) {
    ck_assert(py_wait_dead(pid, 10000));
  } else {
    ck_assert_int_eq(py_worker_pid(e, 0), pid); /* interrupted, not killed */
  }
  /* The pool serves the next body. */
  pe_chain *ok = py_chain(e, "[{\"name\":\"test-stream-identity\",\"version\":\"1.0.0\"}]");
  pe_exchange *ex2 = py_exchange(e);
  out_buf o2 = {0};
  for (int tries = 0; tries < 200; tries++) {
    o2.len = 0;
    ck_assert_int_eq(pe_exchange_reset(ex2), PE_OK);
    if (stream_all(ok, ex2, PE_REQUEST, data, 5000, 999, &o2) == PE_OK)
      break;
    py_sleep_ms(50); /* the replacement is starting */
  }
  ck_assert_uint_eq(o2.len, 5000);
  free(o2.data);
  free(o.data);
  free(data);
  pe_exchange_free(ex2);
  pe_chain_free(ok);
  pe_exchange_free(ex);
  pe_chain_free(c);
  pe_engine_free(e);
}

START_TEST(raise_closed_before_output) {
  fail_case("raise", "closed", 0, true, PE_ERR_POLICY, 500);
}
END_TEST

START_TEST(raise_closed_after_output) {
  fail_case("raise", "closed", 5000, false, PE_ERR_POLICY, 500);
}
END_TEST

START_TEST(raise_open) {
  fail_case("raise", "open", 5000, false, PE_OK, 0);
}
END_TEST

START_TEST(timeout_closed) {
  fail_case("sleep", "closed", 5000, false, PE_ERR_TIMEOUT, 504);
}
END_TEST

START_TEST(timeout_open) {
  fail_case("sleep", "open", 5000, false, PE_OK, 0);
}
END_TEST

START_TEST(worker_exit_closed) {
  fail_case("exit", "closed", 5000, false, PE_ERR_POLICY, 500);
}
END_TEST

START_TEST(worker_exit_open) {
  fail_case("exit", "open", 5000, false, PE_OK, 0);
}
END_TEST

/* The worker holding a body's state is killed between two chunks: the
 * step fails by its mode at the next chunk (its state is gone). */
START_TEST(worker_replaced_between_chunks) {
  for (int open = 0; open < 2; open++) {
    pe_engine *e = stream_engine(60000);
    pe_chain *c = py_chain(e, open ? "[{\"name\":\"test-stream-identity\",\"version\":\"1.0.0\","
                                     "\"failure_mode\":\"open\"}]"
                                   : "[{\"name\":\"test-stream-identity\",\"version\":\"1.0.0\"}]");
    pe_exchange *ex = py_exchange(e);
    pe_slice out;
    ck_assert_int_eq(pe_chain_stream_body(c, ex, PE_REQUEST, PE_LIT("first"), 0, &out), PE_OK);
    ck_assert_slice_eq(out, "first");
    int pid = py_worker_pid(e, 0);
    kill(pid, SIGKILL);
    ck_assert(py_wait_dead(pid, 10000));
    int rc = pe_chain_stream_body(c, ex, PE_REQUEST, PE_LIT("second"), 1, &out);
    if (open) {
      ck_assert_int_eq(rc, PE_OK);
      ck_assert_slice_eq(out, "second");
      ck_assert_int_eq(pe_exchange_stream_state(ex, PE_REQUEST), PE_STREAM_ENDED);
    } else {
      ck_assert_int_eq(rc, PE_ERR_POLICY);
      ck_assert_int_eq(pe_exchange_stream_state(ex, PE_REQUEST), PE_STREAM_STOPPED_CUT);
      ck_assert_int_eq(pe_exchange_status(ex), 500);
    }
    pe_exchange_free(ex);
    pe_chain_free(c);
    pe_engine_free(e);
  }
}
END_TEST

/* An answer from a chunk stops the stream. */
START_TEST(respond_stops_stream) {
  pe_engine *e = stream_engine(60000);
  pe_chain *c = py_chain(e, "[{\"name\":\"test-stream-respond\",\"version\":\"1.0.0\"}]");
  pe_exchange *ex = py_exchange(e);
  pe_slice out;
  ck_assert_int_eq(pe_chain_stream_body(c, ex, PE_REQUEST, PE_LIT("fine "), 0, &out), PE_OK);
  ck_assert_int_eq(pe_chain_stream_body(c, ex, PE_REQUEST, PE_LIT("forbidden"), 0, &out),
                   PE_ERR_POLICY);
  ck_assert_int_eq(pe_exchange_stream_state(ex, PE_REQUEST), PE_STREAM_STOPPED_CUT);
  ck_assert_int_eq(pe_exchange_status(ex), 403);
  ck_assert_int_eq(pe_exchange_reset(ex), PE_OK);
  ck_assert_int_eq(pe_chain_stream_body(c, ex, PE_REQUEST, PE_LIT("forbidden"), 1, &out),
                   PE_ERR_POLICY);
  ck_assert_int_eq(pe_exchange_stream_state(ex, PE_REQUEST), PE_STREAM_STOPPED_CLEAN);
  pe_exchange_free(ex);
  pe_chain_free(c);
  pe_engine_free(e);
}
END_TEST

/* A body abandoned mid-way (reset, free) has its state dropped in the
 * worker: the next body's last chunk sees no other body's state. */
START_TEST(state_freed_on_reset) {
  pe_engine *e = stream_engine(60000);
  pe_chain *c = py_chain(e, "[{\"name\":\"test-stream-identity\",\"version\":\"1.0.0\"}]");
  pe_exchange *ex = py_exchange(e);
  pe_exchange *other = py_exchange(e);
  pe_slice out;
  ck_assert_int_eq(pe_chain_stream_body(c, ex, PE_REQUEST, PE_LIT("a"), 0, &out), PE_OK);
  ck_assert_int_eq(pe_chain_stream_body(c, other, PE_RESPONSE, PE_LIT("b"), 0, &out), PE_OK);
  ck_assert_int_eq(pe_exchange_reset(ex), PE_OK);
  pe_exchange_free(other);
  ck_assert_int_eq(pe_chain_stream_body(c, ex, PE_REQUEST, PE_LIT("c"), 0, &out), PE_OK);
  ck_assert_int_eq(pe_chain_stream_body(c, ex, PE_REQUEST, PE_LIT("d"), 1, &out), PE_OK);
  meta_is(ex, "stream-states", "0");
  meta_is(ex, "stream-calls", "2");
  pe_exchange_free(ex);
  pe_chain_free(c);
  pe_engine_free(e);
}
END_TEST

/* A buffered body (another step wants it whole): a chunk-only step runs
 * once on the whole body; a step with both shapes runs its buffered
 * method. A body that was streamed is not run again by the body phase. */
START_TEST(buffered_fallback) {
  pe_engine *e = stream_engine(60000);
  pe_chain *c = py_chain(e, "[{\"name\":\"test-stream-upper\",\"version\":\"1.0.0\"},"
                            "{\"name\":\"test-stream-both\",\"version\":\"1.0.0\"},"
                            "{\"name\":\"sample-python-request-body\",\"version\":\"1.0.0\"}]");
  ck_assert_int_eq(pe_chain_body_plan(c, PE_REQUEST), PE_BODY_BUFFER);
  pe_exchange *ex = py_exchange(e);
  ck_assert_int_eq(pe_exchange_body_set(ex, PE_REQUEST, PE_LIT("abc")), PE_OK);
  ck_assert_int_eq(pe_chain_run(c, ex, PE_PHASE_REQUEST_BODY), PE_OK);
  ck_assert_slice_eq(pe_exchange_body(ex, PE_REQUEST), "[sample-request-body][whole]ABC[end]");
  pe_chain_free(c);

  c = py_chain(e, "[{\"name\":\"test-stream-upper\",\"version\":\"1.0.0\"}]");
  ck_assert_int_eq(pe_exchange_reset(ex), PE_OK);
  pe_slice out;
  ck_assert_int_eq(pe_chain_stream_body(c, ex, PE_REQUEST, PE_LIT("xy"), 1, &out), PE_OK);
  ck_assert_slice_eq(out, "XY[end]");
  ck_assert_int_eq(pe_chain_run(c, ex, PE_PHASE_REQUEST_BODY), PE_OK);
  ck_assert_slice_eq(pe_exchange_body(ex, PE_REQUEST), "");
  pe_exchange_free(ex);
  pe_chain_free(c);
  pe_engine_free(e);
}
END_TEST

/* ---- pe_chain_stream_body_async ---- */

static atomic_int async_flag;
static int async_rc;

static void on_chunk_done(pe_exchange *ex, int rc, void *ud) {
  (void)ex;
  (void)ud;
  async_rc = rc;
  atomic_store(&async_flag, 1);
}

/* Output that views a chunk about to be freed: copied to a static buffer. */
static void out_keep(pe_slice *out) {
  static char kept[1 << 21];
  ck_assert_uint_le(out->len, sizeof kept);
  if (out->len)
    memmove(kept, out->ptr, out->len);
  out->ptr = kept;
}

/* One chunk through the non-blocking call, waiting for it if pending;
 * returns its result code. *pending_seen counts the pending ones. */
static int push_async(const pe_chain *c, pe_exchange *ex, pe_dispatcher *d, pe_dir dir,
                      pe_slice chunk, int last, pe_slice *out, int *pending_seen) {
  atomic_store(&async_flag, 0);
  /* The chunk need only live during the call: a copy, spoilt and freed
   * while the chunk is pending. */
  char *copy = malloc(chunk.len + 1);
  ck_assert_ptr_nonnull(copy);
  if (chunk.len)
    memcpy(copy, chunk.ptr, chunk.len);
  int rc = pe_chain_stream_body_async(c, ex, dir, pe_bytes(copy, chunk.len), last, out, d,
                                      on_chunk_done, NULL);
  if (rc != PE_PENDING) {
    if (rc == PE_OK) /* done now: out may be a view of the chunk */
      out_keep(out);
    free(copy);
    return rc;
  }
  memset(copy, 'Z', chunk.len);
  free(copy);
  ++*pending_seen;
  py_drive(d, &async_flag, 60000);
  return async_rc;
}

static int stream_all_async(const pe_chain *c, pe_exchange *ex, pe_dispatcher *d, pe_dir dir,
                            const char *data, size_t len, size_t step, out_buf *o, int *pending) {
  size_t off = 0;
  for (;;) {
    size_t n = len - off < step ? len - off : step;
    int last = off + n == len;
    pe_slice out;
    int rc = push_async(c, ex, d, dir, pe_bytes(data + off, n), last, &out, pending);
    if (rc != PE_OK)
      return rc;
    out_add(o, out);
    off += n;
    if (last)
      return PE_OK;
  }
}

/* Byte-exact through Python steps, and native then Python steps, without
 * blocking: every chunk with a Python step is pending. */
START_TEST(async_bodies_are_exact) {
  pe_engine *e = stream_engine(60000);
  ck_assert_int_eq(pe_engine_load_plugin(e, PE_SAMPLE_PLUGIN), PE_OK);
  pe_dispatcher *d = NULL;
  ck_assert_int_eq(pe_dispatcher_new(&d, e), PE_OK);
  pe_chain *c = py_chain(e, "[{\"name\":\"test-stream-identity\",\"version\":\"1.0.0\"},"
                            "{\"name\":\"test-stream-hold\",\"version\":\"1.0.0\"},"
                            "{\"name\":\"test-stream-upper\",\"version\":\"1.0.0\"}]");
  pe_exchange *ex = py_exchange(e);
  const size_t lens[] = {0, 1, 4097, 65537, (size_t)1 << 20};
  for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
    char *data = payload(lens[i]);
    out_buf o = {0};
    int pending = 0;
    ck_assert_int_eq(pe_exchange_reset(ex), PE_OK);
    int rc = stream_all_async(c, ex, d, PE_RESPONSE, data, lens[i], 65536, &o, &pending);
    ck_assert_msg(rc == PE_OK, "%zu bytes: %s: %s", lens[i], pe_errname(rc),
                  pe_exchange_errmsg(ex));
    /* every call had a Python step to wait for */
    ck_assert_int_eq(pending, lens[i] ? (int)((lens[i] + 65535) / 65536) : 1);
    ck_assert_uint_eq(o.len, lens[i] + 5);
    for (size_t k = 0; k < lens[i]; k++) {
      char w = data[k] >= 'a' && data[k] <= 'z' ? (char)(data[k] - 'a' + 'A') : data[k];
      if (o.data[k] != w)
        ck_abort_msg("%zu bytes: byte %zu differs", lens[i], k);
    }
    free(o.data);
    free(data);
  }
  ck_assert_uint_eq(pe_dispatcher_pending(d), 0);
  pe_chain_free(c);

  /* Native redaction, then the Python one, in chunks that cut runs. */
  c = py_chain(e, "[{\"name\":\"sample-native-redact\",\"version\":\"1.0.0\"},"
                  "{\"name\":\"sample-python-redact\",\"version\":\"1.0.0\"}]");
  size_t len = 300000;
  char *data = payload(len);
  char *ref = malloc(len);
  memcpy(ref, data, len);
  redact_ref(ref, len);
  out_buf o = {0};
  int pending = 0;
  ck_assert_int_eq(pe_exchange_reset(ex), PE_OK);
  ck_assert_int_eq(stream_all_async(c, ex, d, PE_REQUEST, data, len, 7777, &o, &pending), PE_OK);
  ck_assert_uint_eq(o.len, len);
  ck_assert(memcmp(o.data, ref, len) == 0);
  free(o.data);
  free(ref);
  free(data);
  pe_exchange_free(ex);
  pe_chain_free(c);
  pe_dispatcher_free(d);
  pe_engine_free(e);
}
END_TEST

/* A pending chunk whose step fails: closed after output is a cut; a
 * timeout is a 504; an exiting worker is the step's failure; open passes
 * the input on. Also the pointer + length twin. */
START_TEST(async_failures) {
  pe_engine *e = stream_engine(60000);
  pe_dispatcher *d = NULL;
  ck_assert_int_eq(pe_dispatcher_new(&d, e), PE_OK);
  const char *hows[] = {"raise", "sleep", "exit"};
  const int want[] = {PE_ERR_POLICY, PE_ERR_TIMEOUT, PE_ERR_POLICY};
  const int status[] = {500, 504, 500};
  for (int i = 0; i < 3; i++)
    for (int open = 0; open < 2; open++) {
      char json[256];
      snprintf(json, sizeof json,
               "[{\"name\":\"test-stream-fail\",\"version\":\"1.0.0\",\"failure_mode\":\"%s\","
               "\"timeout_ms\":%d,\"params\":{\"after\":10,\"how\":\"%s\"}}]",
               open ? "open" : "closed", i == 1 ? 300 : 60000, hows[i]);
      pe_chain *c = py_chain(e, json);
      pe_exchange *ex = py_exchange(e);
      int pending = 0;
      pe_slice out;
      int rc = PE_PENDING;
      for (int tries = 0; tries < 200 && rc != PE_OK; tries++) {
        ck_assert_int_eq(pe_exchange_reset(ex), PE_OK);
        rc = push_async(c, ex, d, PE_REQUEST, PE_LIT("12345"), 0, &out, &pending);
        if (rc != PE_OK)
          py_sleep_ms(50); /* a worker replaced by the case before is starting */
      }
      ck_assert_int_eq(rc, PE_OK);
      ck_assert_slice_eq(out, "12345");
      rc = push_async(c, ex, d, PE_REQUEST, PE_LIT("67890"), 1, &out, &pending);
      if (open) {
        ck_assert_msg(rc == PE_OK, "%s open: %s", hows[i], pe_errname(rc));
        ck_assert_slice_eq(out, "67890");
      } else {
        ck_assert_msg(rc == want[i], "%s: %s: %s", hows[i], pe_errname(rc), pe_exchange_errmsg(ex));
        ck_assert_int_eq(pe_exchange_stream_state(ex, PE_REQUEST), PE_STREAM_STOPPED_CUT);
        ck_assert_int_eq(pe_exchange_status(ex), status[i]);
      }
      pe_exchange_free(ex);
      pe_chain_free(c);
    }
  /* The twin: output pointer + length set at completion. */
  pe_chain *c = py_chain(e, "[{\"name\":\"test-stream-upper\",\"version\":\"1.0.0\"}]");
  pe_exchange *ex = py_exchange(e);
  const char *o = NULL;
  size_t olen = 0;
  atomic_store(&async_flag, 0);
  int rc = PE_PENDING;
  for (int tries = 0; tries < 200; tries++) {
    rc = pe_chain_stream_body_async_n(c, ex, PE_REQUEST, "ab", 2, 1, &o, &olen, d, on_chunk_done,
                                      NULL);
    if (rc == PE_PENDING) {
      py_drive(d, &async_flag, 60000);
      rc = async_rc;
    }
    if (rc == PE_OK)
      break;
    ck_assert_int_eq(pe_exchange_reset(ex), PE_OK);
    py_sleep_ms(50);
  }
  ck_assert_int_eq(rc, PE_OK);
  ck_assert_uint_eq(olen, 7);
  ck_assert(memcmp(o, "AB[end]", 7) == 0);
  ck_assert_int_eq(pe_chain_stream_body_async_n(c, ex, PE_REQUEST, NULL, 1, 1, &o, &olen, d,
                                                on_chunk_done, NULL),
                   PE_ERR_INVALID_ARGUMENT);
  pe_exchange_free(ex);
  pe_chain_free(c);
  pe_dispatcher_free(d);
  pe_engine_free(e);
}
END_TEST

/* An exchange freed while its chunk is pending: the reply is dropped, the
 * worker's state of the body is aborted, and nothing leaks. */
START_TEST(async_free_while_pending) {
  pe_engine *e = stream_engine(60000);
  pe_dispatcher *d = NULL;
  ck_assert_int_eq(pe_dispatcher_new(&d, e), PE_OK);
  pe_chain *c = py_chain(e, "[{\"name\":\"test-stream-identity\",\"version\":\"1.0.0\"}]");
  pe_exchange *ex = py_exchange(e);
  pe_slice out;
  atomic_store(&async_flag, 0);
  ck_assert_int_eq(
      pe_chain_stream_body_async(c, ex, PE_REQUEST, PE_LIT("x"), 0, &out, d, on_chunk_done, NULL),
      PE_PENDING);
  ck_assert_int_eq(
      pe_chain_stream_body_async(c, ex, PE_REQUEST, PE_LIT("y"), 0, &out, d, on_chunk_done, NULL),
      PE_ERR_STATE);
  pe_exchange_free(ex);
  /* Let the reply (and the abort after it) go through. */
  for (int i = 0; i < 50; i++) {
    struct pollfd p = {.fd = pe_dispatcher_fd(d), .events = POLLIN};
    if (poll(&p, 1, 20) > 0)
      pe_dispatcher_dispatch(d);
  }
  ck_assert_int_eq(atomic_load(&async_flag), 0);
  ex = py_exchange(e);
  int pending = 0;
  ck_assert_int_eq(push_async(c, ex, d, PE_REQUEST, PE_LIT("z"), 1, &out, &pending), PE_OK);
  meta_is(ex, "stream-states", "0");
  pe_exchange_free(ex);
  pe_chain_free(c);
  pe_dispatcher_free(d);
  pe_engine_free(e);
}
END_TEST

/* A worker that lies about a chunk's output (a run outside the input,
 * wrapping offsets, holding back more than it got, a body edit, two
 * results) is refused: the step fails (closed: 500 before any output),
 * nothing it said is applied, and the worker is replaced. Blocking and
 * non-blocking. */
static const char *const chunk_lies[] = {"beyond", "overflow", "keep", "body", "two"};

START_TEST(lying_chunk_worker_is_refused) {
  pe_engine *e = stream_engine_with(PE_FAKE_WORKER, 10000);
  pe_dispatcher *d = NULL;
  ck_assert_int_eq(pe_dispatcher_new(&d, e), PE_OK);
  pe_chain *honest = py_chain(e, "[{\"name\":\"fake-chunk-ok\",\"version\":\"1.0.0\"}]");
  ck_assert_int_eq(pe_chain_body_plan(honest, PE_REQUEST), PE_BODY_STREAM);
  char json[128];
  snprintf(json, sizeof json, "[{\"name\":\"fake-chunk-%s\",\"version\":\"1.0.0\"}]",
           chunk_lies[_i]);
  pe_chain *liar = py_chain(e, json);
  for (int async = 0; async < 2; async++) {
    pe_exchange *ex = py_exchange(e);
    pe_slice out;
    int pending = 0;
    int rc = PE_ERR_STATE;
    for (int tries = 0; tries < 200 && rc != PE_OK; tries++) { /* a replacement may be starting */
      ck_assert_int_eq(pe_exchange_reset(ex), PE_OK);
      rc = async ? push_async(honest, ex, d, PE_REQUEST, PE_LIT("fine"), 1, &out, &pending)
                 : pe_chain_stream_body(honest, ex, PE_REQUEST, PE_LIT("fine"), 1, &out);
      if (rc != PE_OK)
        py_sleep_ms(50);
    }
    ck_assert_int_eq(rc, PE_OK);
    ck_assert_slice_eq(out, "fine");
    int pid = py_worker_pid(e, 0);
    ck_assert_int_eq(pe_exchange_reset(ex), PE_OK);
    rc = async ? push_async(liar, ex, d, PE_REQUEST, PE_LIT("lie"), 0, &out, &pending)
               : pe_chain_stream_body(liar, ex, PE_REQUEST, PE_LIT("lie"), 0, &out);
    ck_assert_msg(rc == PE_ERR_POLICY, "%s: %s: %s", chunk_lies[_i], pe_errname(rc),
                  pe_exchange_errmsg(ex));
    ck_assert_uint_eq(out.len, 0);
    ck_assert_int_eq(pe_exchange_stream_state(ex, PE_REQUEST), PE_STREAM_STOPPED_CLEAN);
    ck_assert_int_eq(pe_exchange_status(ex), 500);
    ck_assert(py_wait_dead(pid, 10000)); /* replaced */
    pe_exchange_free(ex);
  }
  pe_chain_free(liar);
  pe_chain_free(honest);
  pe_dispatcher_free(d);
  pe_engine_free(e);
}
END_TEST

static Suite *suite(void) {
  Suite *s = suite_create("python_stream");
  TCase *tc = tcase_create("stream");
  tcase_set_timeout(tc, 600);
  tcase_add_test(tc, plans);
  tcase_add_test(tc, bodies_are_exact);
  tcase_add_test(tc, big_body_redacted);
  tcase_add_test(tc, redaction_straddles_chunks);
  tcase_add_test(tc, raise_closed_before_output);
  tcase_add_test(tc, raise_closed_after_output);
  tcase_add_test(tc, raise_open);
  tcase_add_test(tc, timeout_closed);
  tcase_add_test(tc, timeout_open);
  tcase_add_test(tc, worker_exit_closed);
  tcase_add_test(tc, worker_exit_open);
  tcase_add_test(tc, worker_replaced_between_chunks);
  tcase_add_test(tc, respond_stops_stream);
  tcase_add_test(tc, state_freed_on_reset);
  tcase_add_test(tc, buffered_fallback);
  tcase_add_test(tc, async_bodies_are_exact);
  tcase_add_test(tc, async_failures);
  tcase_add_test(tc, async_free_while_pending);
  tcase_add_loop_test(tc, lying_chunk_worker_is_refused, 0,
                      sizeof chunk_lies / sizeof chunk_lies[0]);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) {
  return pe_test_run_suite(suite());
}
