#include "pw_convert.h"

PyObject *pw_py_text(ProtobufCBinaryData d) {
  return PyUnicode_DecodeUTF8((const char *)d.data, (Py_ssize_t)d.len, "surrogateescape");
}

/* Builds [a0, b0, a1, b1, ...] from pairs of byte fields found by @p get. */
static PyObject *flat_pairs(void **items, size_t n,
                            void (*get)(void *item, ProtobufCBinaryData *a,
                                        ProtobufCBinaryData *b)) {
  if (n == 0) {
    Py_RETURN_NONE;
  }
  PyObject *list = PyList_New((Py_ssize_t)(2 * n));
  if (list == NULL) {
    return NULL;
  }
  for (size_t i = 0; i < n; i++) {
    ProtobufCBinaryData a, b;
    get(items[i], &a, &b);
    PyObject *sa = pw_py_text(a);
    PyObject *sb = sa ? pw_py_text(b) : NULL;
    if (sb == NULL) {
      Py_XDECREF(sa);
      Py_DECREF(list);
      return NULL;
    }
    PyList_SET_ITEM(list, (Py_ssize_t)(2 * i), sa);
    PyList_SET_ITEM(list, (Py_ssize_t)(2 * i + 1), sb);
  }
  return list;
}

static void header_fields(void *item, ProtobufCBinaryData *a, ProtobufCBinaryData *b) {
  const Policyexec__V1__Header *h = item;
  *a = h->name;
  *b = h->value;
}

static void meta_fields(void *item, ProtobufCBinaryData *a, ProtobufCBinaryData *b) {
  const Policyexec__V1__MetaEntry *m = item;
  *a = m->key;
  *b = m->value;
}

PyObject *pw_py_headers(Policyexec__V1__Header **h, size_t n) {
  return flat_pairs((void **)h, n, header_fields);
}

PyObject *pw_py_metadata(Policyexec__V1__MetaEntry **m, size_t n) {
  return flat_pairs((void **)m, n, meta_fields);
}

/* ---- results ---- */

static int get_bytes(PyObject *o, ProtobufCBinaryData *out) {
  char *p;
  Py_ssize_t n;
  if (PyBytes_AsStringAndSize(o, &p, &n) != 0) {
    return -1;
  }
  out->data = (uint8_t *)p;
  out->len = (size_t)n;
  return 0;
}

static int get_int(PyObject *o, int *out) {
  long v = PyLong_AsLong(o);
  if (v == -1 && PyErr_Occurred()) {
    return -1;
  }
  if (v < INT32_MIN || v > INT32_MAX) {
    PyErr_SetString(PyExc_OverflowError, "value out of int32 range");
    return -1;
  }
  *out = (int)v;
  return 0;
}

/* A list of fixed-size tuples; NULL/None is an empty list. */
static Py_ssize_t tuple_list_len(PyObject *o) {
  if (o == Py_None) {
    return 0;
  }
  if (!PyList_Check(o)) {
    PyErr_SetString(PyExc_TypeError, "expected a list");
    return -1;
  }
  return PyList_GET_SIZE(o);
}

static PyObject *tuple_item(PyObject *list, Py_ssize_t i, Py_ssize_t size) {
  PyObject *t = PyList_GET_ITEM(list, i);
  if (!PyTuple_Check(t) || PyTuple_GET_SIZE(t) != size) {
    PyErr_Format(PyExc_TypeError, "expected a tuple of %zd items", size);
    return NULL;
  }
  return t;
}

static void *array(pw_arena *a, size_t n, size_t size) {
  void *p = pw_arena_alloc(a, n > 0 ? n * size : 1);
  if (p == NULL) {
    PyErr_NoMemory();
  }
  return p;
}

/* (side, name, [values]) -> HeaderEdit */
static int header_edits(PyObject *list, Policyexec__V1__StepResult *out, pw_arena *a) {
  Py_ssize_t n = tuple_list_len(list);
  if (n <= 0) {
    return (int)n;
  }
  out->headers = array(a, (size_t)n, sizeof(*out->headers));
  if (out->headers == NULL) {
    return -1;
  }
  for (Py_ssize_t i = 0; i < n; i++) {
    PyObject *t = tuple_item(list, i, 3);
    Policyexec__V1__HeaderEdit *e = array(a, 1, sizeof(*e));
    int side;
    if (t == NULL || e == NULL || get_int(PyTuple_GET_ITEM(t, 0), &side) != 0) {
      return -1;
    }
    policyexec__v1__header_edit__init(e);
    e->side = side ? POLICYEXEC__V1__SIDE__SIDE_RESPONSE : POLICYEXEC__V1__SIDE__SIDE_REQUEST;
    PyObject *values = PyTuple_GET_ITEM(t, 2);
    if (get_bytes(PyTuple_GET_ITEM(t, 1), &e->name) != 0 || !PyList_Check(values)) {
      if (!PyErr_Occurred()) {
        PyErr_SetString(PyExc_TypeError, "header values must be a list");
      }
      return -1;
    }
    e->n_values = (size_t)PyList_GET_SIZE(values);
    e->values = array(a, e->n_values, sizeof(*e->values));
    if (e->values == NULL) {
      return -1;
    }
    for (size_t j = 0; j < e->n_values; j++) {
      if (get_bytes(PyList_GET_ITEM(values, (Py_ssize_t)j), &e->values[j]) != 0) {
        return -1;
      }
    }
    out->headers[i] = e;
    out->n_headers = (size_t)i + 1;
  }
  return 0;
}

/* (side, kind, data) -> BodyEdit; kind 0 prefix, 1 suffix, 2 replace */
static int body_edits(PyObject *list, Policyexec__V1__StepResult *out, pw_arena *a) {
  Py_ssize_t n = tuple_list_len(list);
  if (n <= 0) {
    return (int)n;
  }
  out->bodies = array(a, (size_t)n, sizeof(*out->bodies));
  if (out->bodies == NULL) {
    return -1;
  }
  for (Py_ssize_t i = 0; i < n; i++) {
    PyObject *t = tuple_item(list, i, 3);
    Policyexec__V1__BodyEdit *e = array(a, 1, sizeof(*e));
    int side, kind;
    ProtobufCBinaryData data;
    if (t == NULL || e == NULL || get_int(PyTuple_GET_ITEM(t, 0), &side) != 0 ||
        get_int(PyTuple_GET_ITEM(t, 1), &kind) != 0 ||
        get_bytes(PyTuple_GET_ITEM(t, 2), &data) != 0) {
      return -1;
    }
    policyexec__v1__body_edit__init(e);
    e->side = side ? POLICYEXEC__V1__SIDE__SIDE_RESPONSE : POLICYEXEC__V1__SIDE__SIDE_REQUEST;
    if (kind == 0) {
      e->prefix = data;
    } else if (kind == 1) {
      e->suffix = data;
    } else {
      e->replace = 1;
      e->replacement = data;
    }
    out->bodies[i] = e;
    out->n_bodies = (size_t)i + 1;
  }
  return 0;
}

/* (key, value or None) -> MetaEdit */
static int meta_edits(PyObject *list, Policyexec__V1__StepResult *out, pw_arena *a) {
  Py_ssize_t n = tuple_list_len(list);
  if (n <= 0) {
    return (int)n;
  }
  out->metadata = array(a, (size_t)n, sizeof(*out->metadata));
  if (out->metadata == NULL) {
    return -1;
  }
  for (Py_ssize_t i = 0; i < n; i++) {
    PyObject *t = tuple_item(list, i, 2);
    Policyexec__V1__MetaEdit *e = array(a, 1, sizeof(*e));
    if (t == NULL || e == NULL) {
      return -1;
    }
    policyexec__v1__meta_edit__init(e);
    if (get_bytes(PyTuple_GET_ITEM(t, 0), &e->key) != 0) {
      return -1;
    }
    PyObject *value = PyTuple_GET_ITEM(t, 1);
    if (value == Py_None) {
      e->remove = 1;
    } else if (get_bytes(value, &e->value) != 0) {
      return -1;
    }
    out->metadata[i] = e;
    out->n_metadata = (size_t)i + 1;
  }
  return 0;
}

/* (status, [(name, value)], body) -> ImmediateResponse */
static int immediate_response(PyObject *t, Policyexec__V1__StepResult *out, pw_arena *a) {
  if (t == Py_None) {
    return 0;
  }
  if (!PyTuple_Check(t) || PyTuple_GET_SIZE(t) != 3) {
    PyErr_SetString(PyExc_TypeError, "respond must be (status, headers, body)");
    return -1;
  }
  Policyexec__V1__ImmediateResponse *r = array(a, 1, sizeof(*r));
  if (r == NULL) {
    return -1;
  }
  policyexec__v1__immediate_response__init(r);
  PyObject *headers = PyTuple_GET_ITEM(t, 1);
  Py_ssize_t n = tuple_list_len(headers);
  if (get_int(PyTuple_GET_ITEM(t, 0), &r->status) != 0 ||
      get_bytes(PyTuple_GET_ITEM(t, 2), &r->body) != 0 || n < 0) {
    return -1;
  }
  r->headers = array(a, (size_t)n, sizeof(*r->headers));
  if (r->headers == NULL) {
    return -1;
  }
  for (Py_ssize_t i = 0; i < n; i++) {
    PyObject *pair = tuple_item(headers, i, 2);
    Policyexec__V1__Header *h = array(a, 1, sizeof(*h));
    if (pair == NULL || h == NULL) {
      return -1;
    }
    policyexec__v1__header__init(h);
    if (get_bytes(PyTuple_GET_ITEM(pair, 0), &h->name) != 0 ||
        get_bytes(PyTuple_GET_ITEM(pair, 1), &h->value) != 0) {
      return -1;
    }
    r->headers[i] = h;
    r->n_headers = (size_t)i + 1;
  }
  out->respond = r;
  return 0;
}

int pw_step_from_py(PyObject *result, Policyexec__V1__StepResult *out, pw_arena *a) {
  /* (ok, error, headers, bodies, metadata, status, method, path, respond) */
  if (!PyTuple_Check(result) || PyTuple_GET_SIZE(result) != 9) {
    PyErr_SetString(PyExc_TypeError, "a step result must be a tuple of 9 items");
    return -1;
  }
  PyObject *const *f = &PyTuple_GET_ITEM(result, 0);
  /* ok is True, False, or the int 2 (_worker.TIMED_OUT; a bool is never an
   * exact int). */
  int timed_out = PyLong_CheckExact(f[0]) && PyLong_AsLong(f[0]) == 2;
  if (timed_out || !PyObject_IsTrue(f[0])) {
    out->outcome = timed_out ? POLICYEXEC__V1__STEP_RESULT__OUTCOME__OUTCOME_TIMEOUT
                             : POLICYEXEC__V1__STEP_RESULT__OUTCOME__OUTCOME_FAILED;
    const char *error = f[1] == Py_None ? "failed" : PyUnicode_AsUTF8(f[1]);
    if (error == NULL) {
      return -1;
    }
    out->error = (char *)error;
    return 0;
  }
  if (header_edits(f[2], out, a) != 0 || body_edits(f[3], out, a) != 0 ||
      meta_edits(f[4], out, a) != 0 || get_int(f[5], &out->status) != 0) {
    return -1;
  }
  if ((f[6] != Py_None && get_bytes(f[6], &out->method) != 0) ||
      (f[7] != Py_None && get_bytes(f[7], &out->path) != 0)) {
    return -1;
  }
  return immediate_response(f[8], out, a);
}
