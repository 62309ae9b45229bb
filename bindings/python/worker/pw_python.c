#include "pw_python.h"

#include <stdio.h>
#include <string.h>

#include "pw_log.h"

static int check_status(PyStatus status, PyConfig *config) {
  if (PyStatus_Exception(status)) {
    PW_LOG("cannot start Python: %s%s%s", status.func ? status.func : "", status.func ? ": " : "",
           status.err_msg ? status.err_msg : "unknown error");
    PyConfig_Clear(config);
    return -1;
  }
  return 0;
}

static PyObject *get_function(PyObject *module, const char *name) {
  PyObject *f = PyObject_GetAttrString(module, name);
  if (f == NULL || !PyCallable_Check(f)) {
    PW_LOG("policyexec._worker.%s is missing", name);
    Py_XDECREF(f);
    return NULL;
  }
  return f;
}

int pw_python_init(pw_python *py, const char *package_dir) {
  memset(py, 0, sizeof(*py));
  PyConfig config;
  /* Isolated: no environment variables, no user site, no cwd on sys.path.
   * The policies must run the same whatever shell started the engine. */
  PyConfig_InitIsolatedConfig(&config);
  /* The worker keeps SIGTERM/SIGINT/SIGPIPE handling to itself. */
  config.install_signal_handlers = 0;
  /* Never write __pycache__ into source trees or installed prefixes. */
  config.write_bytecode = 0;
  /* An absolute program name and home: otherwise CPython searches PATH for
   * "python3" and may pick a pyenv or venv interpreter whose stdlib does
   * not match the libpython we are linked against. */
  if (check_status(PyConfig_SetBytesString(&config, &config.program_name, PE_PYTHON_EXECUTABLE),
                   &config) ||
      check_status(PyConfig_SetBytesString(&config, &config.home, PE_PYTHON_HOME), &config) ||
      check_status(Py_InitializeFromConfig(&config), &config)) {
    return -1;
  }
  PyConfig_Clear(&config);

  PyObject *sys_path = PySys_GetObject("path"); /* borrowed */
  PyObject *dir = PyUnicode_DecodeFSDefault(package_dir);
  if (sys_path == NULL || dir == NULL || PyList_Insert(sys_path, 0, dir) != 0) {
    Py_XDECREF(dir);
    PyErr_Print();
    return -1;
  }
  Py_DECREF(dir);

  PyObject *module = PyImport_ImportModule("policyexec._worker");
  if (module == NULL) {
    PW_LOG("cannot import policyexec from %s:", package_dir);
    PyErr_Print();
    return -1;
  }
  py->load_modules = get_function(module, "load_modules");
  py->create = get_function(module, "create");
  py->destroy = get_function(module, "destroy");
  py->count = get_function(module, "count");
  py->run = get_function(module, "run");
  py->shm_body = get_function(module, "shm_body");
  py->run_chunk = get_function(module, "run_chunk");
  py->abort_body = get_function(module, "abort_body");
  Py_DECREF(module);
  if (!py->load_modules || !py->create || !py->destroy || !py->count || !py->run || !py->shm_body ||
      !py->run_chunk || !py->abort_body) {
    return -1;
  }
  /* Py_GetVersion() is "3.11.2 (main, ...) [GCC ...]": keep the number. */
  const char *version = Py_GetVersion();
  snprintf(py->runtime, sizeof(py->runtime), "CPython %.*s", (int)strcspn(version, " "), version);
  return 0;
}

int pw_python_add_virtualenv(const char *dir) {
  if (dir == NULL) {
    return 0;
  }
  PyObject *module = PyImport_ImportModule("policyexec._worker");
  PyObject *r = module ? PyObject_CallMethod(module, "add_virtualenv", "s", dir) : NULL;
  Py_XDECREF(module);
  if (r == NULL) {
    PW_LOG("cannot use the virtualenv %s:", dir);
    PyErr_Print();
    return -1;
  }
  Py_DECREF(r);
  return 0;
}

void pw_python_finalize(pw_python *py) {
  Py_CLEAR(py->load_modules);
  Py_CLEAR(py->create);
  Py_CLEAR(py->destroy);
  Py_CLEAR(py->count);
  Py_CLEAR(py->run);
  Py_CLEAR(py->shm_body);
  Py_CLEAR(py->run_chunk);
  Py_CLEAR(py->abort_body);
  if (Py_IsInitialized()) {
    Py_FinalizeEx();
  }
}

char *pw_python_error(void *(*alloc)(void *, size_t), void *alloc_data) {
  PyObject *type, *value, *tb;
  PyErr_Fetch(&type, &value, &tb);
  PyErr_NormalizeException(&type, &value, &tb);
  const char *type_name = type ? ((PyTypeObject *)type)->tp_name : "Error";
  PyObject *text = value ? PyObject_Str(value) : NULL;
  PyObject *utf8 = text ? PyUnicode_AsEncodedString(text, "utf-8", "backslashreplace") : NULL;
  const char *msg = utf8 ? PyBytes_AS_STRING(utf8) : "(no message)";
  size_t size = strlen(type_name) + 2 + strlen(msg) + 1;
  char *out = alloc(alloc_data, size);
  if (out != NULL) {
    snprintf(out, size, "%s: %s", type_name, msg);
  }
  Py_XDECREF(utf8);
  Py_XDECREF(text);
  Py_XDECREF(type);
  Py_XDECREF(value);
  Py_XDECREF(tb);
  PyErr_Clear();
  return out;
}
