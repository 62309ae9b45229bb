"""Finds and loads libpolicyexec with ctypes, and declares the functions used.

The library is found, in this order:

1. the path given to :func:`load` (or ``Engine(library=...)``);
2. the ``POLICYEXEC_LIBRARY`` environment variable (a path to the ``.so``);
3. the install prefix this package was installed with (``_installed.py``,
   written by ``cmake --install``);
4. ``pkg-config --variable=libdir policyexec`` (honours ``PKG_CONFIG_PATH``);
5. the system loader (``LD_LIBRARY_PATH``, ``ld.so.cache``).

ctypes loads it ``RTLD_LOCAL``: plugins get the API through the table their
init receives (``<policyexec/plugin.h>``), not from the global namespace.
Only the pointer + length (``_n``) variants are used where the C API passes a
``pe_slice`` by value: ctypes cannot return structs by value cheaply.
"""

import ctypes
import os
import shutil
import subprocess
import threading

SONAME = "libpolicyexec.so.0"

_lock = threading.Lock()
_loaded = None  # (path, CDLL) of the library in use


class LibraryNotFoundError(ImportError):
    """libpolicyexec could not be found or loaded; the message lists where
    it was looked for and how to point at it."""


def _pkg_config_libdir():
    exe = shutil.which("pkg-config")
    if not exe:
        return None, "pkg-config: not installed"
    try:
        out = subprocess.run([exe, "--variable=libdir", "policyexec"], capture_output=True,
                             text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        return None, f"pkg-config: {exc}"
    if out.returncode != 0 or not out.stdout.strip():
        why = out.stderr.strip().splitlines()[0] if out.stderr.strip() else "no policyexec.pc"
        return None, f"pkg-config: {why}"
    return out.stdout.strip(), None


def _candidates(explicit):
    """Yields (description, path or soname) in search order."""
    if explicit:
        yield "explicit path", os.fspath(explicit)
        return
    env = os.environ.get("POLICYEXEC_LIBRARY")
    if env:
        yield "POLICYEXEC_LIBRARY", env
        return
    try:
        from . import _installed  # written at install time
        here = os.path.dirname(os.path.abspath(__file__))
        yield "install prefix", os.path.normpath(os.path.join(here, _installed.LIBDIR_REL, SONAME))
    except ImportError:
        pass
    libdir, why = _pkg_config_libdir()
    if libdir:
        yield "pkg-config", os.path.join(libdir, SONAME)
    else:
        yield why, None
    yield "system loader", SONAME


def _declare(lib):
    """Sets argtypes/restype once: ctypes then converts without guessing."""
    c_int, c_size_t, c_char_p, c_void_p = ctypes.c_int, ctypes.c_size_t, ctypes.c_char_p, ctypes.c_void_p
    c_uint, c_uint32, c_uint64 = ctypes.c_uint, ctypes.c_uint32, ctypes.c_uint64
    P, SZP = c_void_p, ctypes.POINTER(c_size_t)
    PP = ctypes.POINTER(c_void_p)
    SLP = ctypes.POINTER(Slice)
    sigs = {
        "pe_strerror": (c_char_p, [c_int]),
        "pe_errname": (c_char_p, [c_int]),
        "pe_version": (c_int, [ctypes.POINTER(c_char_p)]),
        "pe_engine_options_new": (c_int, [PP]),
        "pe_engine_options_free": (None, [P]),
        "pe_engine_options_set_limit": (c_int, [P, c_int, c_size_t]),
        "pe_engine_options_set_log": (c_int, [P, LOG_FN, P]),
        "pe_engine_options_set_log_level": (c_int, [P, c_int]),
        "pe_engine_new": (c_int, [PP, P]),
        "pe_engine_free": (None, [P]),
        "pe_engine_errmsg": (c_char_p, [P]),
        "pe_engine_limit": (c_size_t, [P, c_int]),
        "pe_engine_load_plugin": (c_int, [P, c_char_p]),
        "pe_engine_has_policy_n": (c_int, [P, c_char_p, c_size_t, c_char_p, c_size_t]),
        "pe_python_options_new": (c_int, [PP]),
        "pe_python_options_free": (None, [P]),
        "pe_python_options_set_workers": (c_int, [P, c_uint]),
        "pe_python_options_set_worker_path": (c_int, [P, c_char_p]),
        "pe_python_options_add_module_path": (c_int, [P, c_char_p]),
        "pe_python_options_set_default_timeout": (c_int, [P, c_uint32]),
        "pe_python_options_set_startup_timeout": (c_int, [P, c_uint32]),
        "pe_engine_start_python": (c_int, [P, P]),
        "pe_engine_python_ping": (c_int, [P, SZP]),
        "pe_engine_python_worker_pids": (c_size_t, [P, ctypes.POINTER(c_int), c_size_t]),
        "pe_engine_python_restarts": (c_uint64, [P]),
        "pe_chain_new_from_json_n": (c_int, [PP, P, c_char_p, c_size_t, c_char_p, c_size_t]),
        "pe_chain_free": (None, [P]),
        "pe_chain_step_count": (c_size_t, [P]),
        "pe_chain_phases": (c_uint, [P]),
        "pe_chain_needs": (c_uint, [P]),
        "pe_chain_run": (c_int, [P, P, c_int]),
        "pe_chain_run_phases": (c_int, [P, P, c_int, c_int]),
        "pe_exchange_new": (c_int, [PP, P]),
        "pe_exchange_free": (None, [P]),
        "pe_exchange_reset": (c_int, [P]),
        "pe_exchange_errmsg": (c_char_p, [P]),
        "pe_exchange_set_method_n": (c_int, [P, c_char_p, c_size_t]),
        "pe_exchange_set_path_n": (c_int, [P, c_char_p, c_size_t]),
        "pe_exchange_set_authority_n": (c_int, [P, c_char_p, c_size_t]),
        "pe_exchange_method_n": (c_void_p, [P, SZP]),
        "pe_exchange_path_n": (c_void_p, [P, SZP]),
        "pe_exchange_authority_n": (c_void_p, [P, SZP]),
        "pe_exchange_set_status": (c_int, [P, c_int]),
        "pe_exchange_status": (c_int, [P]),
        "pe_exchange_header_count": (c_size_t, [P, c_int]),
        "pe_exchange_header_at": (c_int, [P, c_int, c_size_t, SLP, SLP]),
        "pe_exchange_header_get_n": (c_int, [P, c_int, c_char_p, c_size_t, SLP]),
        "pe_exchange_header_get_nth_n": (c_int, [P, c_int, c_char_p, c_size_t, c_size_t, SLP]),
        "pe_exchange_header_set_n": (c_int, [P, c_int, c_char_p, c_size_t, c_char_p, c_size_t]),
        "pe_exchange_header_add_n": (c_int, [P, c_int, c_char_p, c_size_t, c_char_p, c_size_t]),
        "pe_exchange_header_remove_n": (c_int, [P, c_int, c_char_p, c_size_t]),
        "pe_exchange_body_n": (c_void_p, [P, c_int, SZP]),
        "pe_exchange_body_set_n": (c_int, [P, c_int, c_char_p, c_size_t]),
        "pe_exchange_body_prepend_n": (c_int, [P, c_int, c_char_p, c_size_t]),
        "pe_exchange_body_append_n": (c_int, [P, c_int, c_char_p, c_size_t]),
        "pe_exchange_meta_count": (c_size_t, [P]),
        "pe_exchange_meta_at": (c_int, [P, c_size_t, SLP, SLP]),
        "pe_exchange_meta_get_n": (c_int, [P, c_char_p, c_size_t, SLP]),
        "pe_exchange_meta_set_n": (c_int, [P, c_char_p, c_size_t, c_char_p, c_size_t]),
        "pe_exchange_meta_remove_n": (c_int, [P, c_char_p, c_size_t]),
        "pe_exchange_respond_n": (c_int, [P, c_int, c_char_p, c_size_t]),
        "pe_exchange_verdict": (c_int, [P]),
    }
    for name, (restype, argtypes) in sigs.items():
        fn = getattr(lib, name)
        fn.restype = restype
        fn.argtypes = argtypes


class Slice(ctypes.Structure):
    """pe_slice, for the getters that fill one through a pointer."""
    _fields_ = [("ptr", ctypes.c_void_p), ("len", ctypes.c_size_t)]


#: void (*pe_log_fn)(pe_log_level level, const char *message, void *user_data)
LOG_FN = ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p)


def load(path=None):
    """Loads the library (once per process) and returns the ctypes handle.

    A later call with a different explicit path than the one loaded raises
    :class:`LibraryNotFoundError`: one process uses one library.
    """
    global _loaded
    with _lock:
        if _loaded is not None:
            if path and os.path.realpath(os.fspath(path)) != os.path.realpath(_loaded[0]):
                raise LibraryNotFoundError(
                    f"libpolicyexec is already loaded from {_loaded[0]}; cannot also load {path}")
            return _loaded[1]
        tried = []
        for how, candidate in _candidates(path):
            if candidate is None:
                tried.append(how)
                continue
            try:
                lib = ctypes.CDLL(candidate, mode=os.RTLD_NOW | os.RTLD_LOCAL)
            except OSError as exc:
                tried.append(f"{how}: {exc}")
                continue
            try:
                _declare(lib)
            except AttributeError as exc:
                tried.append(f"{how}: {candidate} is too old for this binding ({exc})")
                continue
            _loaded = (candidate, lib)
            return lib
        raise LibraryNotFoundError(
            "libpolicyexec not found. Tried:\n  " + "\n  ".join(tried) +
            "\nInstall it (cmake --install), or set POLICYEXEC_LIBRARY=/path/to/"
            f"{SONAME}, or PKG_CONFIG_PATH to the directory of policyexec.pc, or pass "
            "Engine(library=...).")


def loaded_path():
    """The path or soname the library was loaded from, or None."""
    return _loaded[0] if _loaded else None
