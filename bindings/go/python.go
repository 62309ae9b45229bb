package policyexec

/*
#include "pe_go.h"
*/
import "C"

import (
	"time"
	"unsafe"
)

// PythonOptions are the settings of the Python worker pool; zero fields
// keep the library's defaults (python.h says which).
type PythonOptions struct {
	Workers        int           // worker processes (default: one per CPU)
	WorkerPath     string        // policyexec-pyworker binary (default: the installed one)
	ModulePaths    []string      // directories whose *.py modules define policies
	DefaultTimeout time.Duration // of steps without their own (default 1 s)
	MaxInFlight    int           // batches in flight over the engine (default 1024)
	// Restart back-off of workers that die young (default 50 ms .. 5 s);
	// both or neither.
	RestartBackoffInitial, RestartBackoffMax time.Duration
	StartupTimeout                           time.Duration // spawn to handshake (default 15 s)
	MaxMessage                               int           // bytes (default: derived from limits)
	CPUAffinity                              bool          // pin workers, prefer the caller's CPU's
}

func ms(d time.Duration) C.uint32_t { return C.uint32_t(d.Milliseconds()) }

func (o *PythonOptions) apply(p *C.pe_python_options) (C.int, string) {
	// Negative values would wrap around in C's unsigned types.
	for field, neg := range map[string]bool{
		"Workers": o.Workers < 0, "DefaultTimeout": o.DefaultTimeout < 0, "MaxInFlight": o.MaxInFlight < 0,
		"RestartBackoff": o.RestartBackoffInitial < 0 || o.RestartBackoffMax < 0,
		"StartupTimeout": o.StartupTimeout < 0, "MaxMessage": o.MaxMessage < 0,
	} {
		if neg {
			return C.PE_ERR_INVALID_ARGUMENT, field
		}
	}
	if o.Workers != 0 {
		if rc := C.pe_python_options_set_workers(p, C.uint(o.Workers)); rc < 0 {
			return rc, "Workers"
		}
	}
	if o.WorkerPath != "" {
		if hasNUL(o.WorkerPath) {
			return C.PE_ERR_INVALID_ARGUMENT, "WorkerPath"
		}
		c := C.CString(o.WorkerPath)
		rc := C.pe_python_options_set_worker_path(p, c)
		C.free(unsafe.Pointer(c))
		if rc < 0 {
			return rc, "WorkerPath"
		}
	}
	for _, dir := range o.ModulePaths {
		if hasNUL(dir) {
			return C.PE_ERR_INVALID_ARGUMENT, "ModulePaths"
		}
		c := C.CString(dir)
		rc := C.pe_python_options_add_module_path(p, c)
		C.free(unsafe.Pointer(c))
		if rc < 0 {
			return rc, "ModulePaths"
		}
	}
	if o.DefaultTimeout != 0 {
		if rc := C.pe_python_options_set_default_timeout(p, ms(o.DefaultTimeout)); rc < 0 {
			return rc, "DefaultTimeout"
		}
	}
	if o.MaxInFlight != 0 {
		if rc := C.pe_python_options_set_max_in_flight(p, C.size_t(o.MaxInFlight)); rc < 0 {
			return rc, "MaxInFlight"
		}
	}
	if o.RestartBackoffInitial != 0 || o.RestartBackoffMax != 0 {
		if rc := C.pe_python_options_set_restart_backoff(p, ms(o.RestartBackoffInitial), ms(o.RestartBackoffMax)); rc < 0 {
			return rc, "RestartBackoff"
		}
	}
	if o.StartupTimeout != 0 {
		if rc := C.pe_python_options_set_startup_timeout(p, ms(o.StartupTimeout)); rc < 0 {
			return rc, "StartupTimeout"
		}
	}
	if o.MaxMessage != 0 {
		if rc := C.pe_python_options_set_max_message(p, C.size_t(o.MaxMessage)); rc < 0 {
			return rc, "MaxMessage"
		}
	}
	if o.CPUAffinity {
		if rc := C.pe_python_options_set_cpu_affinity(p, 1); rc < 0 {
			return rc, "CPUAffinity"
		}
	}
	return C.PE_OK, ""
}

// StartPython starts the engine's pool of Python workers and registers the
// policies they find (pe_engine_start_python). Call it once, before
// building chains that name Python policies.
func (e *Engine) StartPython(opts *PythonOptions) error {
	if !e.enter() {
		return errClosed("Engine.StartPython", "engine")
	}
	defer e.exit()
	var p *C.pe_python_options
	if rc := C.pe_python_options_new(&p); rc < 0 {
		return newError(rc, "Engine.StartPython", "")
	}
	defer C.pe_python_options_free(p)
	if opts != nil {
		if rc, field := opts.apply(p); rc < 0 {
			return newError(rc, "Engine.StartPython", "invalid PythonOptions."+field)
		}
	}
	if rc := C.pe_engine_start_python(e.ptr, p); rc < 0 {
		return e.err(rc, "Engine.StartPython")
	}
	return nil
}

// PythonPing pings every worker (pe_engine_python_ping) and returns how
// many answered; the error is ErrWorker when some did not, ErrState when
// the pool is not started.
func (e *Engine) PythonPing() (int, error) {
	if !e.enter() {
		return 0, errClosed("Engine.PythonPing", "engine")
	}
	defer e.exit()
	var alive C.size_t
	if rc := C.pe_engine_python_ping(e.ptr, &alive); rc < 0 {
		return int(alive), e.err(rc, "Engine.PythonPing")
	}
	return int(alive), nil
}

// PythonWorkerPIDs lists the workers' process ids, 0 for a worker that is
// down (pe_engine_python_worker_pids); nil when the pool is not started.
func (e *Engine) PythonWorkerPIDs() []int {
	if !e.enter() {
		return nil
	}
	defer e.exit()
	n := C.pe_engine_python_worker_pids(e.ptr, nil, 0)
	if n == 0 {
		return nil
	}
	pids := make([]C.int, n)
	n = C.pe_engine_python_worker_pids(e.ptr, &pids[0], n)
	out := make([]int, 0, n)
	for i := 0; i < int(n) && i < len(pids); i++ {
		out = append(out, int(pids[i]))
	}
	return out
}

// PythonRestarts is how many times a worker has been replaced since the
// pool started (pe_engine_python_restarts).
func (e *Engine) PythonRestarts() uint64 {
	if !e.enter() {
		return 0
	}
	defer e.exit()
	return uint64(C.pe_engine_python_restarts(e.ptr))
}
