#include "pw_instances.h"

#include <stdlib.h>

/* Ids made from descriptions, in an open-addressing set (0 marks a free
 * slot; ids are hashes, never 0). One interpreter per process, one set. */
static uint64_t *known;
static size_t known_cap, known_count;

static size_t slot_of(uint64_t id, size_t cap) {
  size_t i = (size_t)(id ^ (id >> 29)) & (cap - 1);
  while (known[i] && known[i] != id)
    i = (i + 1) & (cap - 1);
  return i;
}

static int remember(uint64_t id) {
  if (2 * (known_count + 1) > known_cap) {
    size_t cap = known_cap ? 2 * known_cap : 64;
    uint64_t *old = known;
    size_t old_cap = known_cap;
    if (!(known = calloc(cap, sizeof *known))) {
      known = old;
      return -1;
    }
    known_cap = cap;
    for (size_t i = 0; i < old_cap; i++)
      if (old[i])
        known[slot_of(old[i], cap)] = old[i];
    free(old);
  }
  size_t i = slot_of(id, known_cap);
  if (!known[i]) {
    known[i] = id;
    known_count++;
  }
  return 0;
}

static int seen(uint64_t id) {
  return known_cap && known[slot_of(id, known_cap)] == id;
}

int pw_ensure_instances(const pw_python *py, const Policyexec__V1__RunPhase *req) {
  for (size_t i = 0; i < req->n_instances; i++) {
    const Policyexec__V1__CreateInstance *spec = req->instances[i];
    if (!spec->instance_id || seen(spec->instance_id))
      continue;
    PyObject *error =
        PyObject_CallFunction(py->create, "Ksss", (unsigned long long)spec->instance_id, spec->name,
                              spec->version, spec->params_json);
    if (error == NULL)
      return -1;
    if (error != Py_None) {
      PyErr_Format(PyExc_ValueError, "%U", error);
      Py_DECREF(error);
      return -1;
    }
    Py_DECREF(error);
    if (remember(spec->instance_id) != 0) {
      PyErr_NoMemory();
      return -1;
    }
  }
  return 0;
}
