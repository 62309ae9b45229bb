#include "pw_chunk.h"

#include "pw_log.h"
#include "pw_shm.h"

enum { CHUNK_NARGS = 14 };

/* The chunk: the body of the phase's side, in place when shared. */
static PyObject *chunk_data(const pw_python *py, int side, const Policyexec__V1__HttpData *d) {
  const Policyexec__V1__ShmRef *shm = side == 0 ? d->request_body_shm : d->response_body_shm;
  if (shm != NULL) {
    return pw_shm_body(py, side, shm);
  }
  ProtobufCBinaryData b = side == 0 ? d->request_body : d->response_body;
  return PyBytes_FromStringAndSize((const char *)b.data, (Py_ssize_t)b.len);
}

/* The output pieces: (start, end) input runs, or bytes (kept alive by the
 * result the caller holds). */
static int pieces_from_py(PyObject *list, Policyexec__V1__StepResult *out, pw_arena *a) {
  if (list == Py_None) {
    return 0;
  }
  if (!PyList_Check(list)) {
    PyErr_SetString(PyExc_TypeError, "chunk output must be a list");
    return -1;
  }
  size_t n = (size_t)PyList_GET_SIZE(list);
  out->chunk_out = pw_arena_alloc(a, (n ? n : 1) * sizeof(*out->chunk_out));
  if (out->chunk_out == NULL) {
    PyErr_NoMemory();
    return -1;
  }
  for (size_t i = 0; i < n; i++) {
    PyObject *item = PyList_GET_ITEM(list, (Py_ssize_t)i);
    Policyexec__V1__ChunkPiece *p = pw_arena_alloc(a, sizeof(*p));
    if (p == NULL) {
      PyErr_NoMemory();
      return -1;
    }
    policyexec__v1__chunk_piece__init(p);
    if (PyTuple_Check(item)) {
      unsigned long long start, end;
      if (!PyArg_ParseTuple(item, "KK", &start, &end) || end < start) {
        PyErr_SetString(PyExc_ValueError, "a chunk output run must be (start, end)");
        return -1;
      }
      p->input = 1;
      p->offset = start;
      p->length = end - start;
    } else if (PyBytes_Check(item)) {
      p->data.data = (uint8_t *)PyBytes_AS_STRING(item);
      p->data.len = (size_t)PyBytes_GET_SIZE(item);
    } else {
      PyErr_SetString(PyExc_TypeError, "a chunk output piece must be a run or bytes");
      return -1;
    }
    out->chunk_out[i] = p;
    out->n_chunk_out = i + 1;
  }
  return 0;
}

static int build_args(const pw_python *py, const Policyexec__V1__RunPhase *req, int side,
                      PyObject **args) {
  const Policyexec__V1__HttpData *d = req->data;
  args[0] = PyLong_FromUnsignedLongLong(req->instance_ids[0]);
  args[1] = PyLong_FromLong(side);
  args[2] = PyBool_FromLong(req->n_fail_open ? req->fail_open[0] : 0);
  args[3] = PyLong_FromUnsignedLong(req->n_timeout_ms ? req->timeout_ms[0] : 0);
  args[4] = pw_py_text(d->method);
  args[5] = pw_py_text(d->path);
  args[6] = pw_py_text(d->authority);
  args[7] = PyLong_FromLong(d->status);
  args[8] = pw_py_headers(d->request_headers, d->n_request_headers);
  args[9] = pw_py_headers(d->response_headers, d->n_response_headers);
  args[10] = chunk_data(py, side, d);
  args[11] = pw_py_metadata(d->metadata, d->n_metadata);
  args[12] = PyLong_FromUnsignedLongLong(req->stream->body_id);
  args[13] = PyBool_FromLong(req->stream->last);
  for (int i = 0; i < CHUNK_NARGS; i++) {
    if (args[i] == NULL) {
      return -1;
    }
  }
  return 0;
}

PyObject *pw_run_chunk(const pw_python *py, const Policyexec__V1__RunPhase *req,
                       Policyexec__V1__RunReply *reply, pw_arena *a) {
  int side = req->phase == POLICYEXEC__V1__PHASE__PHASE_REQUEST_BODY    ? 0
             : req->phase == POLICYEXEC__V1__PHASE__PHASE_RESPONSE_BODY ? 1
                                                                        : -1;
  if (side < 0 || req->n_instance_ids != 1 || req->data == NULL) {
    PyErr_SetString(PyExc_ValueError, "a stream chunk needs a body phase, one step and data");
    return NULL;
  }
  PyObject *args[CHUNK_NARGS] = {0};
  PyObject *result = NULL;
  if (build_args(py, req, side, args) == 0) {
    result = PyObject_Vectorcall(py->run_chunk, args, CHUNK_NARGS, NULL);
  }
  for (int i = 0; i < CHUNK_NARGS; i++) {
    Py_XDECREF(args[i]);
  }
  if (result == NULL) {
    return NULL;
  }
  /* (step result, pieces or None, keep) */
  Policyexec__V1__StepResult *step = pw_arena_alloc(a, sizeof(*step));
  reply->steps = pw_arena_alloc(a, sizeof(*reply->steps));
  if (step == NULL || reply->steps == NULL) {
    Py_DECREF(result);
    return PyErr_NoMemory();
  }
  policyexec__v1__step_result__init(step);
  unsigned long long keep = 0;
  if (!PyTuple_Check(result) || PyTuple_GET_SIZE(result) != 3 ||
      pw_step_from_py(PyTuple_GET_ITEM(result, 0), step, a) != 0 ||
      pieces_from_py(PyTuple_GET_ITEM(result, 1), step, a) != 0 ||
      (keep = PyLong_AsUnsignedLongLong(PyTuple_GET_ITEM(result, 2)), PyErr_Occurred())) {
    if (!PyErr_Occurred()) {
      PyErr_SetString(PyExc_TypeError, "run_chunk must return (result, pieces, keep)");
    }
    Py_DECREF(result);
    return NULL;
  }
  step->chunk_keep = keep;
  reply->steps[0] = step;
  reply->n_steps = 1;
  return result;
}

void pw_abort_body(const pw_python *py, uint64_t body_id) {
  PyObject *r = PyObject_CallFunction(py->abort_body, "K", (unsigned long long)body_id);
  if (r == NULL) {
    /* Not PyErr_Print: it would end the worker on a SystemExit. */
    PyErr_Clear();
    PW_LOG("dropping the state of body %llu failed", (unsigned long long)body_id);
    return;
  }
  Py_DECREF(r);
}
