package policyexec

// The Go ends of the trampolines in pe_go_callbacks.c. This file holds the
// //export functions, so its preamble may only declare (a cgo rule).

/*
#include "pe_go.h"
*/
import "C"

import (
	"fmt"
	"runtime/cgo"
	"time"
)

//export goLog
func goLog(level C.int, message *C.char, handle C.uintptr_t) {
	fn := cgo.Handle(handle).Value().(func(LogLevel, string))
	fn(LogLevel(level), C.GoString(message))
}

//export goMetrics
func goMetrics(ev *C.pe_step_event, handle C.uintptr_t) {
	fn := cgo.Handle(handle).Value().(func(StepEvent))
	fn(StepEvent{
		PolicyName:    goStr(ev.policy_name),
		PolicyVersion: goStr(ev.policy_version),
		StepIndex:     int(ev.step_index),
		Phase:         Phase(ev.phase),
		Outcome:       StepOutcome(ev.outcome),
		FailureOpen:   ev.failure_open != 0,
		Duration:      time.Duration(ev.duration_ns),
	})
}

// A panic must not unwind through the library's C frames: each callback
// into a Go policy turns one into a failure of the step, with its message.
func recovered(r interface{}) string { return fmt.Sprintf("Go policy panicked: %v", r) }

//export goPolicyCreate
func goPolicyCreate(params *C.pe_params, handle C.uintptr_t, out *C.uintptr_t) (rc C.int) {
	def := cgo.Handle(handle).Value().(*policy)
	p := &Params{ptr: params}
	defer func() {
		p.ptr = nil // the params are valid during this call only
		if r := recover(); r != nil {
			setParamsErrmsg(params, recovered(r))
			rc = C.PE_ERR_PARAM
		}
	}()
	inst, err := def.Create(p)
	if err != nil {
		setParamsErrmsg(params, err.Error())
		return codeOf(err)
	}
	*out = C.uintptr_t(cgo.NewHandle(instanceBox{inst}))
	return C.PE_OK
}

//export goPolicyDestroy
func goPolicyDestroy(instance, handle C.uintptr_t) {
	def := cgo.Handle(handle).Value().(*policy)
	h := cgo.Handle(instance)
	box := h.Value().(instanceBox)
	h.Delete()
	if def.Destroy != nil {
		defer func() { _ = recover() }() // nothing to report a failure to
		def.Destroy(box.v)
	}
}

//export goPolicyPhase
func goPolicyPhase(ex, instance, handle C.uintptr_t, phase C.int) (rc C.int) {
	def := cgo.Handle(handle).Value().(*policy)
	var inst interface{}
	if instance != 0 {
		inst = cgo.Handle(instance).Value().(instanceBox).v
	}
	// A borrowed view of the library's exchange, valid during this call.
	x := &Exchange{ptr: ex, borrowed: true}
	defer func() {
		if r := recover(); r != nil {
			setExchangeErrmsg(ex, recovered(r))
			rc = C.PE_ERR_POLICY
		}
		x.ptr = 0
	}()
	if err := def.phases[phase](x, inst); err != nil {
		setExchangeErrmsg(ex, err.Error())
		return codeOf(err)
	}
	return C.PE_OK
}

//export goPolicyFree
func goPolicyFree(handle C.uintptr_t) {
	cgo.Handle(handle).Delete()
}
