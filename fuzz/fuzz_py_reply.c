/*
 * Fuzzes what the engine does with a Python worker's reply to a RunPhase
 * (lib/pe_py_codec.c): a worker is a separate process running user code,
 * so its bytes are not trusted. Input: 4 control bytes, then a serialized
 * policyexec.v1.Response, decoded into the connection's arena as
 * pe__py_conn_next does, checked with pe__py_check_reply against a batch
 * and, when accepted, applied with pe__py_apply_reply.
 *
 * Control bytes: [0] batch size 1..8, [1] per step fail-open (bit set) or
 * fail-closed, [2] first phase, [3] per step "move on to the next phase".
 *
 * Oracle besides sanitizers: whatever the worker says, the exchange must
 * keep valid header names (tokens) and values (no CR, LF or NUL).
 */
#include "pe_py.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* libFuzzer's entry points (declared here for -Wmissing-prototypes). */
int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_STEPS 8

static pe_engine *engine;
static pe_chain *chain;
static pe_exchange *ex;
static pe__py_arena arena;

/* The instance a backend would keep per step; codec reads only its id. */
static pe__py_instance instance = {.id = 7};

static int fake_create(pe__backend *be, pe__step *step, char *err) {
  (void)be, (void)err;
  step->instance = &instance;
  return PE_OK;
}

static void fake_destroy(pe__backend *be, pe__step *step) {
  (void)be, (void)step;
}

static int fake_run_batch(pe__backend *be, pe_exchange *x, const pe__batch *b) {
  (void)be, (void)x, (void)b;
  return PE_ERR_UNSUPPORTED; /* never called: the fuzzer drives the codec itself */
}

static void fake_shutdown(pe__backend *be) {
  (void)be;
}

static const pe__backend_ops fake_ops = {.kind = "fake",
                                         .create_instance = fake_create,
                                         .destroy_instance = fake_destroy,
                                         .run_batch = fake_run_batch,
                                         .shutdown = fake_shutdown};

static void quiet_log(pe_log_level level, const char *message, void *ud) {
  (void)level, (void)message, (void)ud;
}

/* Metrics on, so that pe__step_report builds its events too. */
static void count_event(const pe_step_event *ev, void *ud) {
  (void)ev;
  ++*(unsigned long *)ud;
}

static unsigned long events;

static void die(const char *what) {
  fprintf(stderr, "fuzz_py_reply setup: %s\n", what);
  abort();
}

static void teardown(void) {
  pe__py_arena_free(&arena);
  pe_exchange_free(ex);
  pe_chain_free(chain);
  pe_engine_free(engine);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc, (void)argv;
  pe_engine_options *o = NULL;
  if (pe_engine_options_new(&o) != PE_OK)
    die("options");
  pe_engine_options_set_log(o, quiet_log, NULL);
  pe_engine_options_set_metrics(o, count_event, &events);
  /* Small limits, so that a reply can reach each of them. */
  pe_engine_options_set_limit(o, PE_LIMIT_HEADER_COUNT, 12);
  pe_engine_options_set_limit(o, PE_LIMIT_HEADER_BYTES, 512);
  pe_engine_options_set_limit(o, PE_LIMIT_BODY_BYTES, 1024);
  pe_engine_options_set_limit(o, PE_LIMIT_META_COUNT, 6);
  pe_engine_options_set_limit(o, PE_LIMIT_META_BYTES, 256);
  if (pe_engine_new(&engine, o) != PE_OK)
    die("engine");
  pe_engine_options_free(o);

  /* A Python policy in every phase, registered as the backend would. */
  const pe_mem *mem = pe__engine_mem(engine);
  pe__policy *p = pe__calloc(mem, 1, sizeof *p);
  if (!p)
    die("policy");
  p->kind = PE__KIND_EXECUTOR;
  p->name = pe__strndup(mem, "fz", 2);
  p->version = pe__strndup(mem, "1", 1);
  p->phases = PE_PHASE_BIT(PE_PHASE_REQUEST_HEADERS) | PE_PHASE_BIT(PE_PHASE_REQUEST_BODY) |
              PE_PHASE_BIT(PE_PHASE_RESPONSE_HEADERS) | PE_PHASE_BIT(PE_PHASE_RESPONSE_BODY);
  pthread_mutex_lock(&engine->lock);
  int rc = pe__registry_add(engine, p);
  pthread_mutex_unlock(&engine->lock);
  if (rc != PE_OK)
    die("registry");
  /* The fake ops need no state. */
  char why[PE__ERRMSG_SIZE];
  if (pe__engine_add_executor(engine, "python", &fake_ops, NULL, NULL, why) != PE_OK)
    die("executor");

  /* Step 0 fails closed, step 1 fails open. */
  char msg[256];
  if (pe_chain_new_from_json(
          &chain, engine,
          pe_str("[{\"name\":\"fz\",\"version\":\"1\"},"
                 "{\"name\":\"fz\",\"version\":\"1\",\"failure_mode\":\"open\"}]"),
          msg, sizeof msg) != PE_OK)
    die(msg);
  if (pe_exchange_new(&ex, engine) != PE_OK)
    die("exchange");
  pe__py_arena_init(&arena, mem);
  atexit(teardown);
  return 0;
}

/* A typical exchange, rebuilt for every input. */
static void fill_exchange(void) {
  if (pe_exchange_reset(ex) != PE_OK || pe_exchange_set_method(ex, pe_str("POST")) != PE_OK ||
      pe_exchange_set_path(ex, pe_str("/api/v1/items?x=1")) != PE_OK ||
      pe_exchange_set_authority(ex, pe_str("example.test")) != PE_OK ||
      pe_exchange_header_add(ex, PE_REQUEST, pe_str("Host"), pe_str("example.test")) != PE_OK ||
      pe_exchange_header_add(ex, PE_REQUEST, pe_str("Content-Type"), pe_str("text/plain")) !=
          PE_OK ||
      pe_exchange_header_add(ex, PE_REQUEST, pe_str("X-A"), pe_str("1")) != PE_OK ||
      pe_exchange_header_add(ex, PE_REQUEST, pe_str("x-a"), pe_str("2")) != PE_OK ||
      pe_exchange_body_set(ex, PE_REQUEST, pe_str("request body")) != PE_OK ||
      pe_exchange_set_status(ex, 200) != PE_OK ||
      pe_exchange_header_add(ex, PE_RESPONSE, pe_str("Server"), pe_str("up")) != PE_OK ||
      pe_exchange_body_set(ex, PE_RESPONSE, pe_str("response body")) != PE_OK ||
      pe_exchange_meta_set(ex, pe_str("route"), pe_str("items")) != PE_OK)
    die("exchange contents");
}

static int is_token_char(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         (c && strchr("!#$%&'*+-.^_`|~", c));
}

/* Whatever the worker sent, no header may smuggle a line break. */
static void check_headers(pe_dir dir) {
  size_t n = pe_exchange_header_count(ex, dir);
  for (size_t i = 0; i < n; i++) {
    pe_slice name, value;
    if (pe_exchange_header_at(ex, dir, i, &name, &value) != PE_OK || name.len == 0)
      __builtin_trap();
    for (size_t k = 0; k < name.len; k++)
      if (!is_token_char((unsigned char)name.ptr[k]))
        __builtin_trap();
    for (size_t k = 0; k < value.len; k++)
      if (value.ptr[k] == '\r' || value.ptr[k] == '\n' || value.ptr[k] == '\0')
        __builtin_trap();
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 4)
    return 0;
  pe__batch b;
  b.n = 1 + data[0] % MAX_STEPS;
  pe_phase phase = (pe_phase)(data[2] % PE_PHASE_COUNT);
  for (size_t i = 0; i < b.n; i++) {
    b.step[i] = &chain->steps[(data[1] >> i) & 1];
    if ((data[3] >> i) & 1 && phase < PE_PHASE_RESPONSE_BODY)
      phase++; /* phases of a batch never go back */
    b.phase[i] = phase;
  }

  pe__py_response *resp = policyexec__v1__response__unpack(&arena.pc, size - 4, data + 4);
  if (resp) {
    fill_exchange();
    char why[PE__ERRMSG_SIZE];
    if (pe__py_check_reply(resp, &b, 0, why) == PE_OK)
      pe__py_apply_reply(ex, &b, 0, resp);
    else /* as pe_py_batch.c does with a reply that breaks the protocol */
      pe__py_fail_steps(ex, &b, 0, PE_ERR_WORKER, PE_STEP_CRASHED, why);
    check_headers(PE_REQUEST);
    check_headers(PE_RESPONSE);
    (void)pe_exchange_errmsg(ex);
  }
  pe__py_arena_reset(&arena);
  return 0;
}
