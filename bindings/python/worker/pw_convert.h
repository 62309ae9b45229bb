/* Conversions between protobuf-c messages and the Python objects that
 * policyexec._worker exchanges with the C side. */
#ifndef PW_CONVERT_H
#define PW_CONVERT_H

#include "pw_python.h"

#include "policyexec/v1/executor.pb-c.h"
#include "pw_arena.h"

/* Wire bytes -> str, UTF-8 with surrogateescape (lossless for any bytes). */
PyObject *pw_py_text(ProtobufCBinaryData d);

/* Headers -> [name, value, name, value, ...] as str; None when there are none. */
PyObject *pw_py_headers(Policyexec__V1__Header **h, size_t n);

/* Metadata -> [key, value, ...] as str; None when empty. */
PyObject *pw_py_metadata(Policyexec__V1__MetaEntry **m, size_t n);

/* Fills @p out (initialised by the caller) from one result tuple of
 * policyexec._worker.run. Byte fields point into Python objects owned by
 * @p result: keep it alive until the reply is packed. Returns 0, or -1 with
 * a Python exception set. */
int pw_step_from_py(PyObject *result, Policyexec__V1__StepResult *out, pw_arena *a);

#endif
