#include "pw_progress.h"

#include <errno.h>
#include <poll.h>

#include "policyexec/v1/executor.pb-c.h"
#include "pw_log.h"

/* Writes everything buffered on c, waiting for the socket as needed: the
 * report must have left the process before the next step may kill it. */
static int flush_all(pw_conn *c) {
  for (;;) {
    int rc = pw_conn_flush(c);
    if (rc <= 0) {
      return rc;
    }
    struct pollfd p = {.fd = c->fd, .events = POLLOUT};
    if (poll(&p, 1, -1) < 0 && errno != EINTR) {
      return -1;
    }
  }
}

static PyObject *report(PyObject *self, PyObject *results) {
  pw_progress *p = PyCapsule_GetPointer(self, "policyexec.progress");
  if (p == NULL) {
    return NULL;
  }
  if (!PyList_Check(results)) {
    PyErr_SetString(PyExc_TypeError, "progress() takes a list of step results");
    return NULL;
  }
  size_t n = (size_t)PyList_GET_SIZE(results);
  if (p->failed || n == 0) {
    return Py_NewRef(Py_None);
  }
  Policyexec__V1__RunReply reply = POLICYEXEC__V1__RUN_REPLY__INIT;
  reply.partial = 1;
  reply.steps = pw_arena_alloc(p->a, n * sizeof(*reply.steps));
  if (reply.steps == NULL) {
    return PyErr_NoMemory();
  }
  for (size_t i = 0; i < n; i++) {
    Policyexec__V1__StepResult *step = pw_arena_alloc(p->a, sizeof(*step));
    if (step == NULL) {
      return PyErr_NoMemory();
    }
    policyexec__v1__step_result__init(step);
    if (pw_step_from_py(PyList_GET_ITEM(results, (Py_ssize_t)i), step, p->a) != 0) {
      return NULL;
    }
    reply.steps[i] = step;
    reply.n_steps = i + 1;
  }
  Policyexec__V1__Response resp = POLICYEXEC__V1__RESPONSE__INIT;
  resp.id = p->id;
  resp.body_case = POLICYEXEC__V1__RESPONSE__BODY_RUN;
  resp.run = &reply;
  size_t size = policyexec__v1__response__get_packed_size(&resp);
  uint8_t *out = pw_conn_reply_space(p->conn, size);
  if (out == NULL) {
    return PyErr_NoMemory();
  }
  policyexec__v1__response__pack(&resp, out);
  if (flush_all(p->conn) != 0) {
    /* The engine is gone or broke the connection: the final reply fails the
     * same way; the steps themselves may still run. */
    PW_LOG("cannot send a progress report; sending no more");
    p->failed = 1;
  }
  return Py_NewRef(Py_None);
}

static PyMethodDef report_def = {"progress", report, METH_O,
                                 "Sends the results of finished steps as a partial reply."};

PyObject *pw_progress_callable(pw_progress *p) {
  PyObject *capsule = PyCapsule_New(p, "policyexec.progress", NULL);
  if (capsule == NULL) {
    return NULL;
  }
  PyObject *fn = PyCFunction_New(&report_def, capsule);
  Py_DECREF(capsule);
  return fn;
}
