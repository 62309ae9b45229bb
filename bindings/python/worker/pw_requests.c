#include "pw_requests.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "policyexec/v1/executor.pb-c.h"
#include "pw_chunk.h"
#include "pw_instances.h"
#include "pw_log.h"
#include "pw_progress.h"
#include "pw_run.h"
#include "pw_shm.h"

typedef Policyexec__V1__Request Request;
typedef Policyexec__V1__Response Response;

static void *arena_alloc(void *a, size_t size) {
  return pw_arena_alloc(a, size);
}

static void *malloc_alloc(void *unused, size_t size) {
  (void)unused;
  return malloc(size);
}

/* Replaces the reply with an Error carrying the pending Python exception. */
static void reply_python_error(pw_handler *h, Response *resp) {
  Policyexec__V1__Error *e = pw_arena_alloc(&h->arena, sizeof(*e));
  char *msg = pw_python_error(arena_alloc, &h->arena);
  if (e == NULL) {
    return; /* the caller sees body_case NOT_SET and gives up */
  }
  policyexec__v1__error__init(e);
  e->message = msg ? msg : "out of memory";
  resp->body_case = POLICYEXEC__V1__RESPONSE__BODY_ERROR;
  resp->error = e;
}

static void reply_error(pw_handler *h, Response *resp, const char *text) {
  PyErr_SetString(PyExc_RuntimeError, text);
  reply_python_error(h, resp);
}

/* policyexec._worker.load_modules(paths) -> PolicyInfo list in @p reply. */
static PyObject *load_modules(pw_handler *h, char **paths, size_t n,
                              Policyexec__V1__HelloReply *reply) {
  PyObject *list = PyList_New((Py_ssize_t)n);
  for (size_t i = 0; list != NULL && i < n; i++) {
    PyObject *s = PyUnicode_DecodeFSDefault(paths[i]);
    if (s == NULL) {
      Py_CLEAR(list);
      break;
    }
    PyList_SET_ITEM(list, (Py_ssize_t)i, s);
  }
  PyObject *infos = list ? PyObject_CallOneArg(h->py->load_modules, list) : NULL;
  Py_XDECREF(list);
  if (infos == NULL || reply == NULL) {
    return infos;
  }
  Py_ssize_t count = PyList_Check(infos) ? PyList_GET_SIZE(infos) : 0;
  reply->policies = pw_arena_alloc(&h->arena, (size_t)(count ? count : 1) * sizeof(void *));
  if (reply->policies == NULL) {
    Py_DECREF(infos);
    return PyErr_NoMemory();
  }
  for (Py_ssize_t i = 0; i < count; i++) {
    Policyexec__V1__PolicyInfo *p = pw_arena_alloc(&h->arena, sizeof(*p));
    const char *name, *version;
    unsigned int phases, chunk_phases = 0;
    int needs_rq, needs_rs;
    if (p == NULL || !PyArg_ParseTuple(PyList_GET_ITEM(infos, i), "ssIpp|I", &name, &version,
                                       &phases, &needs_rq, &needs_rs, &chunk_phases)) {
      Py_DECREF(infos);
      return p == NULL ? PyErr_NoMemory() : NULL;
    }
    policyexec__v1__policy_info__init(p);
    p->name = (char *)name;
    p->version = (char *)version;
    p->phases = phases;
    p->needs_request_body = needs_rq;
    p->needs_response_body = needs_rs;
    p->chunk_phases = chunk_phases;
    reply->policies[i] = p;
    reply->n_policies = (size_t)i + 1;
  }
  return infos;
}

int pw_preload_modules(pw_handler *h, char **paths, size_t n) {
  if (n == 0) {
    return 0;
  }
  PyObject *infos = load_modules(h, paths, n, NULL);
  if (infos == NULL) {
    /* Not PyErr_Print: a SystemExit raised at import would end the process
     * there, before the engine hears why. */
    h->startup_error = pw_python_error(malloc_alloc, NULL);
    PW_LOG("cannot load the policy modules: %s",
           h->startup_error ? h->startup_error : "(out of memory)");
    return -1;
  }
  Py_DECREF(infos);
  return 0;
}

static PyObject *hello(pw_handler *h, const Policyexec__V1__Hello *req, Response *resp) {
  if (req->protocol_version != POLICYEXEC__V1__PROTOCOL_VERSION__PROTOCOL_VERSION_CURRENT) {
    char text[96];
    snprintf(text, sizeof(text), "unsupported protocol version %u (this worker speaks %d)",
             req->protocol_version, POLICYEXEC__V1__PROTOCOL_VERSION__PROTOCOL_VERSION_CURRENT);
    reply_error(h, resp, text);
    return NULL;
  }
  Policyexec__V1__HelloReply *r = pw_arena_alloc(&h->arena, sizeof(*r));
  if (r == NULL) {
    return PyErr_NoMemory();
  }
  policyexec__v1__hello_reply__init(r);
  PyObject *hold = load_modules(h, req->module_paths, req->n_module_paths, r);
  if (hold == NULL) {
    return NULL;
  }
  r->protocol_version = POLICYEXEC__V1__PROTOCOL_VERSION__PROTOCOL_VERSION_CURRENT;
  r->pid = (uint32_t)getpid();
  r->runtime = h->py->runtime;
  resp->body_case = POLICYEXEC__V1__RESPONSE__BODY_HELLO;
  resp->hello = r;
  return hold;
}

static PyObject *create(pw_handler *h, const Policyexec__V1__CreateInstance *req, Response *resp) {
  Policyexec__V1__CreateReply *r = pw_arena_alloc(&h->arena, sizeof(*r));
  if (r == NULL) {
    return PyErr_NoMemory();
  }
  policyexec__v1__create_reply__init(r);
  PyObject *error =
      PyObject_CallFunction(h->py->create, "KsssI", (unsigned long long)req->instance_id, req->name,
                            req->version, req->params_json, req->timeout_ms);
  if (error == NULL) {
    return NULL;
  }
  /* None (created), the reason (refused), or (TIMED_OUT, reason). */
  PyObject *why = error;
  if (PyTuple_Check(error) && PyTuple_GET_SIZE(error) == 2) {
    r->timed_out = 1;
    why = PyTuple_GET_ITEM(error, 1);
  }
  if (error == Py_None) {
    r->ok = 1;
    /* pw_async.c: setup() may have started the loop; async phases let
     * the engine cancel instead of kill at a deadline. */
    pw_async_refresh(&h->async);
    r->async_phases = pw_async_phases(&h->async, req->instance_id);
  } else if ((r->error = (char *)PyUnicode_AsUTF8(why)) == NULL) {
    Py_DECREF(error);
    return NULL;
  }
  resp->body_case = POLICYEXEC__V1__RESPONSE__BODY_CREATE;
  resp->create = r;
  return error;
}

static PyObject *destroy(pw_handler *h, const Policyexec__V1__DestroyInstance *req,
                         Response *resp) {
  Policyexec__V1__DestroyReply *r = pw_arena_alloc(&h->arena, sizeof(*r));
  if (r == NULL) {
    return PyErr_NoMemory();
  }
  policyexec__v1__destroy_reply__init(r);
  /* Destroying an unknown instance is not an error: a re-created worker
   * may never have had it. */
  PyObject *existed =
      PyObject_CallFunction(h->py->destroy, "K", (unsigned long long)req->instance_id);
  if (existed == NULL) {
    return NULL;
  }
  resp->body_case = POLICYEXEC__V1__RESPONSE__BODY_DESTROY;
  resp->destroy = r;
  return existed;
}

static uint64_t rss_bytes(void) {
  char buf[128];
  int fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return 0;
  }
  ssize_t n = read(fd, buf, sizeof(buf) - 1);
  close(fd);
  unsigned long long size, resident;
  if (n <= 0) {
    return 0;
  }
  buf[n] = '\0';
  if (sscanf(buf, "%llu %llu", &size, &resident) != 2) {
    return 0;
  }
  return (uint64_t)resident * (uint64_t)sysconf(_SC_PAGESIZE);
}

static PyObject *ping(pw_handler *h, Response *resp) {
  Policyexec__V1__Pong *r = pw_arena_alloc(&h->arena, sizeof(*r));
  if (r == NULL) {
    return PyErr_NoMemory();
  }
  policyexec__v1__pong__init(r);
  PyObject *count = PyObject_CallNoArgs(h->py->count);
  if (count == NULL) {
    return NULL;
  }
  r->instances = PyLong_AsUnsignedLongLong(count);
  if (PyErr_Occurred()) {
    Py_DECREF(count);
    return NULL;
  }
  r->rss_bytes = rss_bytes();
  resp->body_case = POLICYEXEC__V1__RESPONSE__BODY_PONG;
  resp->pong = r;
  return count;
}

static PyObject *run(pw_handler *h, pw_conn *c, uint64_t id, const Policyexec__V1__RunPhase *req,
                     Response *resp) {
  Policyexec__V1__RunReply *r = pw_arena_alloc(&h->arena, sizeof(*r));
  if (r == NULL) {
    return PyErr_NoMemory();
  }
  policyexec__v1__run_reply__init(r);
  /* Progress reports only when asked (a batch with a fail-open step after
   * others): they cost a write each. */
  pw_progress progress = {.conn = c, .id = id, .a = &h->arena};
  PyObject *report = NULL;
  if (req->report_progress && (report = pw_progress_callable(&progress)) == NULL) {
    return NULL;
  }
  if (req->n_instances && pw_ensure_instances(h->py, req) != 0) {
    Py_XDECREF(report);
    return NULL;
  }
  PyObject *hold = req->stream ? pw_run_chunk(h->py, req, r, &h->arena)
                               : pw_run_phase(h->py, req, r, &h->arena, report);
  Py_XDECREF(report);
  /* else pending: see pw_handle_request (a chunk is never pending) */
  if (hold != NULL && (req->stream || PyList_Check(hold))) {
    resp->body_case = POLICYEXEC__V1__RESPONSE__BODY_RUN;
    resp->run = r;
  }
  return hold;
}

/* Serves @p req into @p resp; returns the Python object the reply points
 * into, or NULL (then resp holds an Error, or nothing if even that failed). */
static PyObject *serve(pw_handler *h, pw_conn *c, const Request *req, Response *resp) {
  PyObject *hold = NULL;
  switch (req->body_case) {
  case POLICYEXEC__V1__REQUEST__BODY_HELLO:
    /* Bodies in memfds only where fds can pass (not the gRPC executor's
     * scratch connection). */
    c->shm_threshold = c->fd >= 0 ? req->hello->shm_threshold : 0;
    hold = hello(h, req->hello, resp);
    break;
  case POLICYEXEC__V1__REQUEST__BODY_CREATE:
    hold = create(h, req->create, resp);
    break;
  case POLICYEXEC__V1__REQUEST__BODY_DESTROY:
    hold = destroy(h, req->destroy, resp);
    break;
  case POLICYEXEC__V1__REQUEST__BODY_RUN:
    hold = run(h, c, req->id, req->run, resp);
    break;
  case POLICYEXEC__V1__REQUEST__BODY_PING:
    hold = ping(h, resp);
    break;
  default:
    reply_error(h, resp, "request without a body");
    return NULL;
  }
  if (hold == NULL && resp->body_case == POLICYEXEC__V1__RESPONSE__BODY__NOT_SET) {
    reply_python_error(h, resp);
  }
  return hold;
}

/* Packs @p resp after the queued output of @p c. */
static int queue_reply(pw_conn *c, Response *resp, pw_arena *a) {
  if (resp->body_case == POLICYEXEC__V1__RESPONSE__BODY__NOT_SET) {
    return -1;
  }
  pw_shm_reply(c, resp, a);
  size_t size = policyexec__v1__response__get_packed_size(resp);
  uint8_t *out = pw_conn_reply_space(c, size);
  if (out == NULL) {
    return -1;
  }
  policyexec__v1__response__pack(resp, out);
  return 0;
}

int pw_handle_request(pw_handler *h, pw_conn *c, const uint8_t *msg, size_t len) {
  pw_arena_reset(&h->arena);
  Request *req = policyexec__v1__request__unpack(&h->arena.pb, len, msg);
  if (req == NULL) {
    PW_LOG("a message of %zu bytes does not parse; closing the connection", len);
    return -1;
  }
  /* pw_async.c: a Cancel has no reply of its own. */
  if (req->body_case == POLICYEXEC__V1__REQUEST__BODY_CANCEL) {
    pw_async_cancel(&h->async, c->serial, req->cancel->request_id);
    return 0;
  }
  /* pw_chunk.c: nor has a StreamAbort. */
  if (req->body_case == POLICYEXEC__V1__REQUEST__BODY_STREAM_ABORT) {
    pw_abort_body(h->py, req->stream_abort->body_id);
    return 0;
  }
  /* The fds of its shared bodies came with the frame's first byte. */
  if (pw_shm_take(c, req) != 0) {
    return -1;
  }
  Response resp = POLICYEXEC__V1__RESPONSE__INIT;
  resp.id = req->id;
  PyObject *hold = NULL;
  Policyexec__V1__Error failed = POLICYEXEC__V1__ERROR__INIT;
  if (h->startup_error != NULL) {
    failed.message = h->startup_error;
    resp.body_case = POLICYEXEC__V1__RESPONSE__BODY_ERROR;
    resp.error = &failed;
  } else {
    hold = serve(h, c, req, &resp);
  }
  pw_shm_release();
  /* pw_async.c: a RunPhase left pending by a coroutine step is answered
   * when its task ends. */
  if (hold != NULL && resp.body_case == POLICYEXEC__V1__RESPONSE__BODY__NOT_SET &&
      req->body_case == POLICYEXEC__V1__REQUEST__BODY_RUN) {
    int tracked = pw_async_track(&h->async, hold, c->serial, req->id);
    Py_CLEAR(hold);
    if (tracked == 0) {
      return 0;
    }
    reply_python_error(h, &resp);
  }
  int rc = queue_reply(c, &resp, &h->arena);
  if (rc != 0) {
    PW_LOG("cannot build the reply to request %llu; closing the connection",
           (unsigned long long)req->id);
  }
  Py_XDECREF(hold);
  return rc;
}

int pw_reply_ended(pw_handler *h, pw_conn *c, uint64_t id, PyObject *result) {
  pw_arena_reset(&h->arena);
  Response resp = POLICYEXEC__V1__RESPONSE__INIT;
  resp.id = id;
  Policyexec__V1__RunReply *r = pw_arena_alloc(&h->arena, sizeof(*r));
  if (r == NULL) {
    return -1;
  }
  policyexec__v1__run_reply__init(r);
  if (PyExceptionInstance_Check(result)) {
    PyErr_SetObject((PyObject *)Py_TYPE(result), result);
    reply_python_error(h, &resp);
  } else if (pw_run_reply(result, r, &h->arena) == 0) {
    resp.body_case = POLICYEXEC__V1__RESPONSE__BODY_RUN;
    resp.run = r;
  } else {
    reply_python_error(h, &resp);
  }
  int rc = queue_reply(c, &resp, &h->arena);
  if (rc != 0) {
    PW_LOG("cannot build the reply to request %llu; closing the connection",
           (unsigned long long)id);
  }
  return rc;
}
