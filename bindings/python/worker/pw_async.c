#include "pw_async.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pw_log.h"

struct pw_async_slot {
  uint64_t conn;
  uint64_t id;
  size_t next_free;
  int used;
};

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static PyObject *get(PyObject *module, const char *name) {
  PyObject *f = PyObject_GetAttrString(module, name);
  if (f == NULL || !PyCallable_Check(f)) {
    PW_LOG("policyexec._worker.%s is missing", name);
    Py_XDECREF(f);
    PyErr_Clear();
    return NULL;
  }
  return f;
}

int pw_async_start(pw_async *a) {
  memset(a, 0, sizeof(*a));
  PyObject *worker_module = PyImport_ImportModule("policyexec._worker");
  if (worker_module == NULL) {
    PyErr_Print();
    return -1;
  }
  a->track = get(worker_module, "track");
  a->cancel = get(worker_module, "cancel");
  a->pump = get(worker_module, "pump");
  a->loop_state = get(worker_module, "loop_state");
  a->async_phases = get(worker_module, "async_phases");
  a->shutdown = get(worker_module, "shutdown");
  Py_DECREF(worker_module);
  if (!a->track || !a->cancel || !a->pump || !a->loop_state || !a->async_phases || !a->shutdown) {
    return -1;
  }
  return 0;
}

void pw_async_finalize(pw_async *a) {
  if (a->shutdown != NULL) {
    PyObject *r = PyObject_CallNoArgs(a->shutdown);
    if (r == NULL) {
      PW_LOG("shutting the policies down failed:");
      PyErr_Print();
    }
    Py_XDECREF(r);
  }
  Py_CLEAR(a->track);
  Py_CLEAR(a->cancel);
  Py_CLEAR(a->pump);
  Py_CLEAR(a->loop_state);
  Py_CLEAR(a->async_phases);
  Py_CLEAR(a->shutdown);
  free(a->slots);
  a->slots = NULL;
  a->cap = a->free_head = a->pending = 0;
}

static int grow(pw_async *a) {
  size_t cap = a->cap ? 2 * a->cap : 64;
  pw_async_slot *s = realloc(a->slots, cap * sizeof(*s));
  if (s == NULL) {
    return -1;
  }
  for (size_t i = a->cap; i < cap; i++) {
    s[i] = (pw_async_slot){.next_free = i + 1};
  }
  a->slots = s;
  a->free_head = a->cap;
  a->cap = cap;
  return 0;
}

int pw_async_track(pw_async *a, PyObject *task, uint64_t conn, uint64_t id) {
  if (a->free_head >= a->cap && grow(a) != 0) {
    PyErr_NoMemory();
    return -1;
  }
  size_t token = a->free_head;
  PyObject *t = PyLong_FromSize_t(token);
  PyObject *r = t ? PyObject_CallFunctionObjArgs(a->track, task, t, NULL) : NULL;
  Py_XDECREF(t);
  if (r == NULL) {
    return -1;
  }
  Py_DECREF(r);
  pw_async_slot *s = &a->slots[token];
  a->free_head = s->next_free;
  *s = (pw_async_slot){.conn = conn, .id = id, .used = 1};
  a->pending++;
  a->active = 1;
  return 0;
}

static void cancel_token(pw_async *a, size_t token) {
  PyObject *t = PyLong_FromSize_t(token);
  PyObject *r = t ? PyObject_CallOneArg(a->cancel, t) : NULL;
  if (r == NULL) {
    PW_LOG("cancelling a pending batch failed:");
    PyErr_Print();
  }
  Py_XDECREF(t);
  Py_XDECREF(r);
}

void pw_async_cancel(pw_async *a, uint64_t conn, uint64_t id) {
  for (size_t i = 0; i < a->cap && a->pending; i++) {
    if (a->slots[i].used && a->slots[i].conn == conn && a->slots[i].id == id) {
      cancel_token(a, i);
      return;
    }
  }
}

void pw_async_conn_closed(pw_async *a, uint64_t conn) {
  for (size_t i = 0; i < a->cap && a->pending; i++) {
    if (a->slots[i].used && a->slots[i].conn == conn) {
      a->slots[i].conn = 0; /* its reply has nowhere to go */
      cancel_token(a, i);
    }
  }
}

void pw_async_refresh(pw_async *a) {
  if (a->active) {
    return;
  }
  PyObject *st = PyObject_CallNoArgs(a->loop_state);
  if (st == NULL) {
    PyErr_Clear();
    return;
  }
  a->active = st != Py_None;
  Py_DECREF(st);
}

uint32_t pw_async_phases(pw_async *a, uint64_t id) {
  PyObject *r = PyObject_CallFunction(a->async_phases, "K", (unsigned long long)id);
  uint32_t mask = 0;
  if (r != NULL) {
    mask = (uint32_t)PyLong_AsUnsignedLong(r);
    Py_DECREF(r);
  }
  if (PyErr_Occurred()) {
    PyErr_Clear();
    mask = 0;
  }
  return mask;
}

int pw_async_poll_setup(pw_async *a, long long *timeout_us) {
  if (!a->active) {
    return -1;
  }
  PyObject *st = PyObject_CallNoArgs(a->loop_state);
  int fd = -1;
  long long us = -1;
  if (st == NULL || (st != Py_None && !PyArg_ParseTuple(st, "iL", &fd, &us))) {
    PyErr_Clear();
    fd = -1;
    us = 1000; /* cannot tell: look again soon */
  }
  Py_XDECREF(st);
  a->due_ns = us >= 0 ? now_ns() + (uint64_t)us * 1000u : 0;
  if (us >= 0 && (*timeout_us < 0 || us < *timeout_us)) {
    *timeout_us = us;
  }
  return fd;
}

int pw_async_pump(pw_async *a, int fd_ready, pw_async_reply_fn reply, void *ctx) {
  if (!a->active || (!fd_ready && (a->due_ns == 0 || now_ns() < a->due_ns))) {
    return 0;
  }
  PyObject *ended = PyObject_CallNoArgs(a->pump);
  if (ended == NULL) {
    PW_LOG("running the event loop failed:");
    PyErr_Print();
    return -1;
  }
  int rc = 0;
  Py_ssize_t n = PyList_Check(ended) ? PyList_GET_SIZE(ended) : 0;
  for (Py_ssize_t i = 0; i < n; i++) {
    PyObject *pair = PyList_GET_ITEM(ended, i);
    size_t token;
    PyObject *result;
    if (!PyTuple_Check(pair) || PyTuple_GET_SIZE(pair) != 2 ||
        (token = PyLong_AsSize_t(PyTuple_GET_ITEM(pair, 0))) >= a->cap || !a->slots[token].used) {
      PyErr_Clear();
      PW_LOG("the event loop returned an unknown batch");
      rc = -1;
      continue;
    }
    result = PyTuple_GET_ITEM(pair, 1);
    pw_async_slot s = a->slots[token];
    a->slots[token] = (pw_async_slot){.next_free = a->free_head};
    a->free_head = token;
    a->pending--;
    if (s.conn != 0 && reply(ctx, s.conn, s.id, result) != 0) {
      rc = -1;
    }
  }
  Py_DECREF(ended);
  return rc;
}
