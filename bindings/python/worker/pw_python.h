/* The embedded interpreter: started once, isolated from the environment, and
 * the handles of the policyexec._worker functions the requests call. */
#ifndef PW_PYTHON_H
#define PW_PYTHON_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

typedef struct pw_python {
  PyObject *load_modules; /* policyexec._worker functions, see _worker.py */
  PyObject *create;
  PyObject *destroy;
  PyObject *count;
  PyObject *run;
  PyObject *shm_body;   /* (fd, offset, length) -> policyexec.Body */
  PyObject *run_chunk;  /* one chunk of a streamed body (pw_chunk.c) */
  PyObject *abort_body; /* body_id: drop its per-body states */
  char runtime[64];     /* "CPython 3.11.2" */
} pw_python;

/* Starts CPython with an isolated configuration rooted at the system
 * interpreter PE_PYTHON_HOME (PATH, PYTHONHOME, PYTHONPATH and user site
 * packages are ignored), puts @p package_dir first on sys.path and imports
 * policyexec._worker. Returns 0, or -1 after logging why. */
int pw_python_init(pw_python *py, const char *package_dir);

/* Adds the site-packages of the virtualenv @p dir (NULL: none) to sys.path,
 * after the system's. Returns 0, or -1 after logging why. */
int pw_python_add_virtualenv(const char *dir);

/* Drops the handles and finalizes the interpreter (flushes sys.stdout). */
void pw_python_finalize(pw_python *py);

/* Takes the pending Python exception and returns "Type: message" in a buffer
 * from @p alloc(@p alloc_data, size) (NULL if that fails). */
char *pw_python_error(void *(*alloc)(void *, size_t), void *alloc_data);

#endif
