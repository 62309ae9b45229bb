#include "pw_run.h"

#include "pw_shm.h"

enum { RUN_NARGS = 15 };

static PyObject *id_tuple(const uint64_t *ids, size_t n) {
  PyObject *t = PyTuple_New((Py_ssize_t)n);
  for (size_t i = 0; t != NULL && i < n; i++) {
    PyObject *id = PyLong_FromUnsignedLongLong(ids[i]);
    if (id == NULL) {
      Py_CLEAR(t);
      break;
    }
    PyTuple_SET_ITEM(t, (Py_ssize_t)i, id);
  }
  return t;
}

static PyObject *flag_tuple(const protobuf_c_boolean *flags, size_t n) {
  PyObject *t = PyTuple_New((Py_ssize_t)n);
  for (size_t i = 0; t != NULL && i < n; i++) {
    PyTuple_SET_ITEM(t, (Py_ssize_t)i, PyBool_FromLong(flags[i]));
  }
  return t;
}

/* Per-step phases, or None when every step runs in RunPhase.phase: the
 * common single-phase batch then costs no tuple at all. */
static PyObject *phase_tuple_or_none(const Policyexec__V1__Phase *phases, size_t n) {
  if (n == 0) {
    Py_RETURN_NONE;
  }
  PyObject *t = PyTuple_New((Py_ssize_t)n);
  for (size_t i = 0; t != NULL && i < n; i++) {
    PyObject *phase = PyLong_FromLong((long)phases[i]); /* a cached small int */
    if (phase == NULL) {
      Py_CLEAR(t);
      break;
    }
    PyTuple_SET_ITEM(t, (Py_ssize_t)i, phase);
  }
  return t;
}

/* Per-step timeouts in ms, or None when the engine sent none (an older
 * engine): then no step is interrupted by the worker. */
static PyObject *timeout_tuple_or_none(const uint32_t *ms, size_t n) {
  if (n == 0) {
    Py_RETURN_NONE;
  }
  PyObject *t = PyTuple_New((Py_ssize_t)n);
  for (size_t i = 0; t != NULL && i < n; i++) {
    PyObject *v = PyLong_FromUnsignedLong(ms[i]);
    if (v == NULL) {
      Py_CLEAR(t);
      break;
    }
    PyTuple_SET_ITEM(t, (Py_ssize_t)i, v);
  }
  return t;
}

static PyObject *body_or_none(const pw_python *py, int side, protobuf_c_boolean has,
                              ProtobufCBinaryData d, const Policyexec__V1__ShmRef *shm) {
  if (!has) {
    Py_RETURN_NONE;
  }
  if (shm != NULL) { /* read in place: no copy (pw_shm.c) */
    return pw_shm_body(py, side, shm);
  }
  /* The one copy of a body: from the decoded message into a bytes object. */
  return PyBytes_FromStringAndSize((const char *)d.data, (Py_ssize_t)d.len);
}

/* The arguments of policyexec._worker.run, in order. */
static int build_args(const pw_python *py, const Policyexec__V1__RunPhase *req, PyObject *progress,
                      PyObject **args) {
  static const Policyexec__V1__HttpData empty = POLICYEXEC__V1__HTTP_DATA__INIT;
  const Policyexec__V1__HttpData *d = req->data ? req->data : &empty;
  args[0] = PyLong_FromLong((long)req->phase);
  args[1] = id_tuple(req->instance_ids, req->n_instance_ids);
  args[2] = flag_tuple(req->fail_open, req->n_fail_open);
  args[3] = pw_py_text(d->method);
  args[4] = pw_py_text(d->path);
  args[5] = pw_py_text(d->authority);
  args[6] = PyLong_FromLong(d->status);
  args[7] = pw_py_headers(d->request_headers, d->n_request_headers);
  args[8] = pw_py_headers(d->response_headers, d->n_response_headers);
  args[9] = body_or_none(py, 0, d->has_request_body, d->request_body, d->request_body_shm);
  args[10] = body_or_none(py, 1, d->has_response_body, d->response_body, d->response_body_shm);
  args[11] = pw_py_metadata(d->metadata, d->n_metadata);
  args[12] = phase_tuple_or_none(req->step_phases, req->n_step_phases);
  args[13] = timeout_tuple_or_none(req->timeout_ms, req->n_timeout_ms);
  args[14] = progress ? progress : Py_None;
  Py_INCREF(args[14]);
  for (int i = 0; i < RUN_NARGS; i++) {
    if (args[i] == NULL) {
      return -1;
    }
  }
  return 0;
}

static int known_phase(Policyexec__V1__Phase phase) {
  return (unsigned)phase <= POLICYEXEC__V1__PHASE__PHASE_RESPONSE_BODY;
}

/* Checks the phases before anything runs: _worker.run trusts them to index
 * each policy's phase methods and to keep the phases of an exchange in order
 * (a body step must never run before a header step of its side). Returns 0,
 * or -1 with a Python exception set. */
static int check_phases(const Policyexec__V1__RunPhase *req) {
  if (!known_phase(req->phase)) {
    PyErr_Format(PyExc_ValueError, "unknown phase %d", (int)req->phase);
    return -1;
  }
  size_t n = req->n_step_phases;
  if (n != 0 && n != req->n_instance_ids) {
    PyErr_Format(PyExc_ValueError, "%zu step_phases for %zu steps", n, req->n_instance_ids);
    return -1;
  }
  for (size_t i = 0; i < n; i++) {
    if (!known_phase(req->step_phases[i])) {
      PyErr_Format(PyExc_ValueError, "unknown phase %d in step_phases[%zu]",
                   (int)req->step_phases[i], i);
      return -1;
    }
    if (i > 0 && req->step_phases[i] < req->step_phases[i - 1]) {
      PyErr_Format(PyExc_ValueError, "step_phases decrease at step %zu (%d after %d)", i,
                   (int)req->step_phases[i], (int)req->step_phases[i - 1]);
      return -1;
    }
  }
  return 0;
}

PyObject *pw_run_phase(const pw_python *py, const Policyexec__V1__RunPhase *req,
                       Policyexec__V1__RunReply *reply, pw_arena *a, PyObject *progress) {
  if (check_phases(req) != 0) {
    return NULL;
  }
  PyObject *args[RUN_NARGS] = {0};
  PyObject *results = NULL;
  if (build_args(py, req, progress, args) == 0) {
    results = PyObject_Vectorcall(py->run, args, RUN_NARGS, NULL);
  }
  for (int i = 0; i < RUN_NARGS; i++) {
    Py_XDECREF(args[i]);
  }
  if (results == NULL || !PyList_Check(results)) {
    /* Not a list: a coroutine step made the batch pending (pw_async.c). */
    return results;
  }
  if (pw_run_reply(results, reply, a) != 0) {
    Py_DECREF(results);
    return NULL;
  }
  return results;
}

int pw_run_reply(PyObject *results, Policyexec__V1__RunReply *reply, pw_arena *a) {
  if (!PyList_Check(results)) {
    PyErr_SetString(PyExc_TypeError, "run() must return a list");
    return -1;
  }
  size_t n = (size_t)PyList_GET_SIZE(results);
  reply->steps = pw_arena_alloc(a, (n ? n : 1) * sizeof(*reply->steps));
  if (reply->steps == NULL) {
    PyErr_NoMemory();
    return -1;
  }
  for (size_t i = 0; i < n; i++) {
    Policyexec__V1__StepResult *step = pw_arena_alloc(a, sizeof(*step));
    if (step == NULL) {
      PyErr_NoMemory();
      return -1;
    }
    policyexec__v1__step_result__init(step);
    if (pw_step_from_py(PyList_GET_ITEM(results, (Py_ssize_t)i), step, a) != 0) {
      return -1;
    }
    reply->steps[i] = step;
    reply->n_steps = i + 1;
  }
  return 0;
}
