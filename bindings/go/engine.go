package policyexec

/*
#include "pe_go.h"

static int pe_go_load_plugin(pe_engine *e, _GoString_ path) {
  size_t n = _GoStringLen(path);
  char *p = malloc(n + 1);
  if (!p)
    return PE_ERR_NOMEM;
  memcpy(p, _GoStringPtr(path), n);
  p[n] = '\0';
  int rc = strlen(p) == n ? pe_engine_load_plugin(e, p) : PE_ERR_INVALID_ARGUMENT;
  free(p);
  return rc;
}

static int pe_go_has_policy(pe_engine *e, _GoString_ name, _GoString_ version) {
  return pe_engine_has_policy(e, (pe_slice){_GoStringPtr(name), _GoStringLen(name)},
                              (pe_slice){_GoStringPtr(version), _GoStringLen(version)});
}

static void pe_go_engine_log(pe_engine *e, int level, _GoString_ msg) {
  pe_engine_log(e, (pe_log_level)level, "%.*s", (int)_GoStringLen(msg), _GoStringPtr(msg));
}

static int pe_go_options_callbacks(pe_engine_options *o, uintptr_t log, int level, uintptr_t metrics) {
  int rc = PE_OK;
  if (log) {
    rc = pe_engine_options_set_log(o, pe_go_log_tramp, (void *)log);
    if (rc == PE_OK)
      rc = pe_engine_options_set_log_level(o, (pe_log_level)level);
  }
  if (rc == PE_OK && metrics)
    rc = pe_engine_options_set_metrics(o, pe_go_metrics_tramp, (void *)metrics);
  return rc;
}
*/
import "C"

import (
	"runtime"
	"runtime/cgo"
	"time"
)

// Limit names one of the engine's configurable limits (pe_limit).
type Limit int

// The limits, as in engine.h.
const (
	LimitHeaderCount Limit = C.PE_LIMIT_HEADER_COUNT // headers per side (default 100)
	LimitHeaderBytes Limit = C.PE_LIMIT_HEADER_BYTES // name+value bytes per side (default 64 KiB)
	LimitBodyBytes   Limit = C.PE_LIMIT_BODY_BYTES   // bytes per body (default 16 MiB)
	LimitMetaCount   Limit = C.PE_LIMIT_META_COUNT   // metadata entries (default 100)
	LimitMetaBytes   Limit = C.PE_LIMIT_META_BYTES   // metadata key+value bytes (default 64 KiB)
)

// LogLevel is the severity of a log message (pe_log_level).
type LogLevel int

// The log levels, most severe first.
const (
	LogError LogLevel = C.PE_LOG_ERROR
	LogWarn  LogLevel = C.PE_LOG_WARN
	LogInfo  LogLevel = C.PE_LOG_INFO
	LogDebug LogLevel = C.PE_LOG_DEBUG
)

// StepOutcome is how a step ended (pe_step_outcome).
type StepOutcome int

// The outcomes reported to EngineOptions.Metrics.
const (
	StepOK        StepOutcome = C.PE_STEP_OK
	StepResponded StepOutcome = C.PE_STEP_RESPONDED
	StepFailed    StepOutcome = C.PE_STEP_FAILED
	StepTimeout   StepOutcome = C.PE_STEP_TIMEOUT
	StepCrashed   StepOutcome = C.PE_STEP_CRASHED
)

// StepEvent is one step execution, as reported to EngineOptions.Metrics.
type StepEvent struct {
	PolicyName    string
	PolicyVersion string
	StepIndex     int
	Phase         Phase
	Outcome       StepOutcome
	FailureOpen   bool
	Duration      time.Duration
}

// EngineOptions are the settings of NewEngine; the zero value (or nil) is
// every default of the library.
type EngineOptions struct {
	// Limits overrides some limits (values must be at least 1).
	Limits map[Limit]int
	// Log, if set, receives the engine's log messages up to LogLevel. It is
	// called from any goroutine or C thread that uses the engine (the Python
	// pool's supervisor thread too), so it must be safe for concurrent use.
	Log      func(level LogLevel, message string)
	LogLevel LogLevel
	// Metrics, if set, is called after every step that ran, on the thread
	// that ran it; it must be safe for concurrent use. Without it the
	// library does not read the clock.
	Metrics func(StepEvent)
}

// Engine is the policy registry (native plugins, Go policies, the Python
// pool) and the limits shared by its chains and exchanges. Its methods are
// safe for concurrent use. Close it when done (a finalizer does it for an
// unreachable Engine); chains and exchanges keep it alive.
type Engine struct {
	ptr *C.pe_engine
	// g counts the Engine itself, each call in flight and each open Chain,
	// ChainBuilder or Exchange: the library can call the log and metrics
	// callbacks until the last of them is gone, so their handles are
	// deleted then, with pe_engine_free.
	g       guard
	handles []cgo.Handle
}

// NewEngine creates an engine (pe_engine_new).
func NewEngine(opts *EngineOptions) (*Engine, error) {
	e := &Engine{g: newGuard()}
	var copts *C.pe_engine_options
	if rc := C.pe_engine_options_new(&copts); rc < 0 {
		return nil, newError(rc, "NewEngine", "")
	}
	defer C.pe_engine_options_free(copts)
	if opts != nil {
		for which, v := range opts.Limits {
			if v < 1 {
				return nil, &Error{Code: ErrInvalidArgument, Op: "NewEngine", Message: "limit values must be at least 1"}
			}
			if rc := C.pe_engine_options_set_limit(copts, C.pe_limit(cInt(int(which))), C.size_t(v)); rc < 0 {
				return nil, newError(rc, "NewEngine", "unknown limit")
			}
		}
		var logH, metricsH cgo.Handle
		if opts.Log != nil {
			logH = cgo.NewHandle(opts.Log)
			e.handles = append(e.handles, logH)
		}
		if opts.Metrics != nil {
			metricsH = cgo.NewHandle(opts.Metrics)
			e.handles = append(e.handles, metricsH)
		}
		if rc := C.pe_go_options_callbacks(copts, C.uintptr_t(logH), cInt(int(opts.LogLevel)), C.uintptr_t(metricsH)); rc < 0 {
			e.deleteHandles()
			return nil, newError(rc, "NewEngine", "invalid log level")
		}
	}
	if rc := C.pe_engine_new(&e.ptr, copts); rc < 0 {
		e.deleteHandles()
		return nil, newError(rc, "NewEngine", "")
	}
	runtime.SetFinalizer(e, (*Engine).Close)
	return e, nil
}

func (e *Engine) deleteHandles() {
	for _, h := range e.handles {
		h.Delete()
	}
	e.handles = nil
}

// enter starts a call (or a child's life); false once the Engine is closed.
func (e *Engine) enter() bool { return e.g.enter() }

// exit ends a call or a child's life; the last one frees the engine.
func (e *Engine) exit() {
	if e.g.exit() {
		C.pe_engine_free(e.ptr)
		e.deleteHandles()
	}
}

// Close releases the engine (pe_engine_free). Its Python workers stop and
// its Go policies are released once every chain, builder and exchange made
// from it is closed too. Calling Close again does nothing; any other method
// of a closed Engine returns an error with code ErrState.
func (e *Engine) Close() {
	if e.g.close() {
		runtime.SetFinalizer(e, nil)
		e.exit()
	}
}

// Limit returns the current value of a limit (pe_engine_limit), 0 for an
// unknown one or a closed engine.
func (e *Engine) Limit(which Limit) int {
	if !e.enter() {
		return 0
	}
	defer e.exit()
	return int(C.pe_engine_limit(e.ptr, C.pe_limit(cInt(int(which)))))
}

// errmsg is the engine's last error message, read right after the failing
// call (the library keeps one per engine).
func (e *Engine) err(rc C.int, op string) error {
	return newError(rc, op, C.GoString(C.pe_engine_errmsg(e.ptr)))
}

// LoadPlugin loads a native plugin .so and registers its policies
// (pe_engine_load_plugin).
func (e *Engine) LoadPlugin(path string) error {
	if !e.enter() {
		return errClosed("Engine.LoadPlugin", "engine")
	}
	defer e.exit()
	if rc := C.pe_go_load_plugin(e.ptr, path); rc < 0 {
		if rc == C.PE_ERR_INVALID_ARGUMENT {
			return newError(rc, "Engine.LoadPlugin", "path contains NUL")
		}
		return e.err(rc, "Engine.LoadPlugin")
	}
	return nil
}

// HasPolicy says whether name@version is registered, native or Python
// (pe_engine_has_policy).
func (e *Engine) HasPolicy(name, version string) bool {
	if !e.enter() {
		return false
	}
	defer e.exit()
	return C.pe_go_has_policy(e.ptr, name, version) == 1
}

// Log passes a message to the engine's log callback (pe_engine_log).
func (e *Engine) Log(level LogLevel, message string) {
	if !e.enter() {
		return
	}
	defer e.exit()
	C.pe_go_engine_log(e.ptr, cInt(int(level)), message)
}
