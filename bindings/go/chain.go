package policyexec

/*
#include "pe_go.h"

static inline pe_slice pe_go_s(_GoString_ s) {
  pe_slice out = {_GoStringPtr(s), _GoStringLen(s)};
  return out;
}

static int pe_go_builder_add_step(pe_chain_builder *b, _GoString_ name, _GoString_ version,
                                  _GoString_ params) {
  return pe_chain_builder_add_step(b, pe_go_s(name), pe_go_s(version), pe_go_s(params));
}

static int pe_go_builder_add_json(pe_chain_builder *b, _GoString_ json) {
  return pe_chain_builder_add_json(b, pe_go_s(json));
}

// Runs phases first..last; the chain and the exchange travel as integers
// (see PE_GO_EX in exchange.go).
static int pe_go_run(uintptr_t chain, uintptr_t ex, int first, int last) {
  if (first == last)
    return pe_chain_run((const pe_chain *)chain, (pe_exchange *)ex, (pe_phase)first);
  return pe_chain_run_phases((const pe_chain *)chain, (pe_exchange *)ex, (pe_phase)first,
                             (pe_phase)last);
}

static int pe_go_chain_from_json(pe_chain **out, pe_engine *e, _GoString_ json, char *err,
                                 size_t errlen) {
  return pe_chain_new_from_json(out, e, pe_go_s(json), err, errlen);
}
*/
import "C"

import (
	"runtime"
	"time"
	"unsafe"
)

// Phase is one of the four hook points of an exchange (pe_phase).
type Phase int

// The phases, in the order a proxy meets them.
const (
	RequestHeaders  Phase = C.PE_PHASE_REQUEST_HEADERS
	RequestBody     Phase = C.PE_PHASE_REQUEST_BODY
	ResponseHeaders Phase = C.PE_PHASE_RESPONSE_HEADERS
	ResponseBody    Phase = C.PE_PHASE_RESPONSE_BODY
	PhaseCount            = C.PE_PHASE_COUNT
)

// String is the phase's name as in JSON and logs, e.g. "request_headers".
func (p Phase) String() string { return C.GoString(C.pe_phase_name(C.pe_phase(cInt(int(p))))) }

// FailureMode is what a failing step does to its exchange.
type FailureMode int

// The failure modes.
const (
	FailClosed FailureMode = C.PE_FAIL_CLOSED // answer 500 (504 on a timeout)
	FailOpen   FailureMode = C.PE_FAIL_OPEN   // skip the step, discard its changes
)

// Needs bits: the bodies a host must buffer for a chain (pe_chain_needs).
const (
	NeedsRequestBody  = C.PE_NEEDS_REQUEST_BODY
	NeedsResponseBody = C.PE_NEEDS_RESPONSE_BODY
)

// ChainBuilder collects steps, then builds a Chain. Use it from one
// goroutine at a time.
type ChainBuilder struct {
	ptr    *C.pe_chain_builder
	engine *Engine
}

// NewChainBuilder creates an empty builder (pe_chain_builder_new).
func (e *Engine) NewChainBuilder() (*ChainBuilder, error) {
	if !e.enter() {
		return nil, errClosed("Engine.NewChainBuilder", "engine")
	}
	b := &ChainBuilder{engine: e}
	if rc := C.pe_chain_builder_new(&b.ptr, e.ptr); rc < 0 {
		e.exit()
		return nil, newError(rc, "Engine.NewChainBuilder", "")
	}
	runtime.SetFinalizer(b, (*ChainBuilder).Close)
	return b, nil
}

// Close frees the builder (not the chains it built). Idempotent.
func (b *ChainBuilder) Close() {
	if b.ptr == nil {
		return
	}
	runtime.SetFinalizer(b, nil)
	C.pe_chain_builder_free(b.ptr)
	b.ptr = nil
	b.engine.exit()
}

func (b *ChainBuilder) err(rc C.int, op string) error {
	return newError(rc, op, C.GoString(C.pe_chain_builder_errmsg(b.ptr)))
}

// AddStep appends a step running policy name@version with paramsJSON (a
// JSON object; "" means {}) and returns its index
// (pe_chain_builder_add_step). Only the JSON syntax is checked here.
func (b *ChainBuilder) AddStep(name, version, paramsJSON string) (int, error) {
	if b.ptr == nil {
		return 0, errClosed("ChainBuilder.AddStep", "builder")
	}
	rc := C.pe_go_builder_add_step(b.ptr, name, version, paramsJSON)
	runtime.KeepAlive(b)
	if rc < 0 {
		return 0, b.err(rc, "ChainBuilder.AddStep")
	}
	return int(rc), nil
}

// SetFailureMode sets step's failure mode.
func (b *ChainBuilder) SetFailureMode(step int, mode FailureMode) error {
	if b.ptr == nil {
		return errClosed("ChainBuilder.SetFailureMode", "builder")
	}
	if rc := C.pe_chain_builder_set_failure_mode(b.ptr, cInt(step), C.pe_failure_mode(cInt(int(mode)))); rc < 0 {
		return b.err(rc, "ChainBuilder.SetFailureMode")
	}
	return nil
}

// SetTimeout sets step's timeout (1 ms .. 1 h, whole milliseconds); it
// bounds out-of-process steps only.
func (b *ChainBuilder) SetTimeout(step int, timeout time.Duration) error {
	if b.ptr == nil {
		return errClosed("ChainBuilder.SetTimeout", "builder")
	}
	ms := timeout.Milliseconds()
	if ms < 1 || ms > 3600000 {
		return &Error{Code: ErrInvalidArgument, Op: "ChainBuilder.SetTimeout", Message: "timeout must be 1 ms .. 1 h"}
	}
	if rc := C.pe_chain_builder_set_timeout(b.ptr, cInt(step), C.uint32_t(ms)); rc < 0 {
		return b.err(rc, "ChainBuilder.SetTimeout")
	}
	return nil
}

// SetEnabled enables or disables step (a disabled step never runs).
func (b *ChainBuilder) SetEnabled(step int, enabled bool) error {
	if b.ptr == nil {
		return errClosed("ChainBuilder.SetEnabled", "builder")
	}
	on := C.int(0)
	if enabled {
		on = 1
	}
	if rc := C.pe_chain_builder_set_enabled(b.ptr, cInt(step), on); rc < 0 {
		return b.err(rc, "ChainBuilder.SetEnabled")
	}
	return nil
}

// AddJSON appends the steps of a JSON document: an array of step objects,
// or an object whose "policies" member is one (pe_chain_builder_add_json).
func (b *ChainBuilder) AddJSON(json string) error {
	if b.ptr == nil {
		return errClosed("ChainBuilder.AddJSON", "builder")
	}
	if rc := C.pe_go_builder_add_json(b.ptr, json); rc < 0 {
		return b.err(rc, "ChainBuilder.AddJSON")
	}
	return nil
}

// Build resolves, validates and instantiates every step
// (pe_chain_builder_build). The builder may then be reused or closed.
func (b *ChainBuilder) Build() (*Chain, error) {
	if b.ptr == nil {
		return nil, errClosed("ChainBuilder.Build", "builder")
	}
	if !b.engine.enter() { // the chain's own reference
		return nil, errClosed("ChainBuilder.Build", "engine")
	}
	c := &Chain{engine: b.engine, g: newGuard()}
	if rc := C.pe_chain_builder_build(b.ptr, &c.ptr); rc < 0 {
		b.engine.exit()
		return nil, b.err(rc, "ChainBuilder.Build")
	}
	c.h = C.uintptr_t(uintptr(unsafe.Pointer(c.ptr)))
	runtime.SetFinalizer(c, (*Chain).Close)
	return c, nil
}

// Chain is a built chain: immutable, and safe to run from any number of
// goroutines at once, each on its own Exchange. Close (or the finalizer)
// frees it once no Run is in flight.
type Chain struct {
	ptr    *C.pe_chain
	h      C.uintptr_t // ptr as an integer, for the hot path (see pe_go_run)
	engine *Engine
	g      guard
}

// NewChainFromJSON builds a chain from a JSON document in one call
// (pe_chain_new_from_json).
func (e *Engine) NewChainFromJSON(json string) (*Chain, error) {
	if !e.enter() {
		return nil, errClosed("Engine.NewChainFromJSON", "engine")
	}
	c := &Chain{engine: e, g: newGuard()}
	var buf [512]C.char
	if rc := C.pe_go_chain_from_json(&c.ptr, e.ptr, json, &buf[0], C.size_t(len(buf))); rc < 0 {
		e.exit()
		return nil, newError(rc, "Engine.NewChainFromJSON", C.GoString(&buf[0]))
	}
	c.h = C.uintptr_t(uintptr(unsafe.Pointer(c.ptr)))
	runtime.SetFinalizer(c, (*Chain).Close)
	return c, nil
}

// Close releases the chain (pe_chain_free) as soon as no Run is in flight.
// Idempotent; Run on a closed chain returns an error with code ErrState.
func (c *Chain) Close() {
	if c.g.close() {
		runtime.SetFinalizer(c, nil)
		c.exit()
	}
}

func (c *Chain) exit() {
	if c.g.exit() {
		C.pe_chain_free(c.ptr)
		c.engine.exit()
	}
}

// StepCount is the number of steps, enabled or not (0 once closed).
func (c *Chain) StepCount() int {
	if !c.g.enter() {
		return 0
	}
	defer c.exit()
	return int(C.pe_chain_step_count(c.ptr))
}

// Phases is the mask of 1<<Phase of the phases where an enabled step runs.
func (c *Chain) Phases() uint {
	if !c.g.enter() {
		return 0
	}
	defer c.exit()
	return uint(C.pe_chain_phases(c.ptr))
}

// Needs is the mask of Needs* bits: the bodies a host must buffer.
func (c *Chain) Needs() uint {
	if !c.g.enter() {
		return 0
	}
	defer c.exit()
	return uint(C.pe_chain_needs(c.ptr))
}

// Run runs one phase of the chain on ex and waits for it (pe_chain_run).
// Step failures are not errors of Run: see ex.Verdict and ex.LastError.
func (c *Chain) Run(ex *Exchange, phase Phase) error {
	return c.RunPhases(ex, phase, phase)
}

// RunPhases runs phases first..last as one run (pe_chain_run_phases):
// Python steps at the end of one phase and the start of the next share one
// round trip to the workers.
func (c *Chain) RunPhases(ex *Exchange, first, last Phase) error {
	if !c.g.enter() {
		return errClosed("Chain.Run", "chain")
	}
	if ex.ptr == 0 {
		c.exit()
		return errClosed("Chain.Run", "exchange")
	}
	rc := C.pe_go_run(c.h, ex.ptr, cInt(int(first)), cInt(int(last)))
	c.exit()
	runtime.KeepAlive(ex)
	if rc < 0 {
		return ex.err(rc, "Chain.Run")
	}
	return nil
}
