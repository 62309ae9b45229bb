// Package capi runs the work of the Go binding's tests and benchmark
// straight through libpolicyexec's C API (capi.c), for comparison: cgo may
// not be used in _test.go files, so the C side lives here.
package capi

/*
#cgo !policyexec_nopkgconfig pkg-config: policyexec
#cgo policyexec_nopkgconfig LDFLAGS: -lpolicyexec
#include <stdlib.h>
#include "capi.h"
*/
import "C"

import (
	"errors"
	"unsafe"
)

// Engine is a C engine with the sample plugin and, optionally, one Python
// worker.
type Engine struct{ ptr *C.pe_engine }

// NewEngine creates it; pyworker "" means no Python pool.
func NewEngine(plugin, pyworker, pymodules string) (*Engine, error) {
	cp := C.CString(plugin)
	defer C.free(unsafe.Pointer(cp))
	var cw, cm *C.char
	if pyworker != "" {
		cw, cm = C.CString(pyworker), C.CString(pymodules)
		defer C.free(unsafe.Pointer(cw))
		defer C.free(unsafe.Pointer(cm))
	}
	var errbuf [512]C.char
	e := &Engine{}
	if rc := C.capi_engine_new(&e.ptr, cp, cw, cm, &errbuf[0], C.size_t(len(errbuf))); rc < 0 {
		return nil, errors.New(C.GoString(&errbuf[0]))
	}
	return e, nil
}

// Close frees the engine.
func (e *Engine) Close() { C.pe_engine_free(e.ptr) }

// Field is a header field.
type Field struct{ Name, Value string }

func block(fields []Field) []byte {
	var b []byte
	for _, f := range fields {
		b = append(b, f.Name...)
		b = append(b, 0)
		b = append(b, f.Value...)
		b = append(b, 0)
	}
	return append(b, 0) // never empty; the trailing NUL is not counted
}

func ptr(b []byte) *C.char {
	if len(b) == 0 {
		return nil
	}
	return (*C.char)(unsafe.Pointer(&b[0]))
}

// Exchange runs one exchange through the C API (see capi.h) and returns
// the dump of every field of the exchange afterwards.
func (e *Engine) Exchange(chainJSON, method, path, authority string, reqHeaders []Field, reqBody []byte,
	status int, respHeaders []Field, respBody []byte) ([]byte, error) {
	cs := []*C.char{C.CString(chainJSON), C.CString(method), C.CString(path), C.CString(authority)}
	defer func() {
		for _, s := range cs {
			C.free(unsafe.Pointer(s))
		}
	}()
	rh, sh := block(reqHeaders), block(respHeaders)
	var out *C.char
	var outLen C.size_t
	var errbuf [512]C.char
	rc := C.capi_exchange(e.ptr, cs[0], cs[1], cs[2], cs[3], ptr(rh), C.size_t(len(rh)-1),
		ptr(reqBody), C.size_t(len(reqBody)), C.int(status), ptr(sh), C.size_t(len(sh)-1),
		ptr(respBody), C.size_t(len(respBody)), &out, &outLen, &errbuf[0], C.size_t(len(errbuf)))
	if rc < 0 {
		return nil, errors.New(C.GoString(&errbuf[0]))
	}
	defer C.free(unsafe.Pointer(out))
	return C.GoBytes(unsafe.Pointer(out), C.int(outLen)), nil
}

// Native4 is the C side of the native-4 benchmark.
type Native4 struct{ ptr *C.capi_native4 }

// NewNative4 loads the plugin and builds the native-4 chain.
func NewNative4(plugin string) (*Native4, error) {
	cp := C.CString(plugin)
	defer C.free(unsafe.Pointer(cp))
	var errbuf [512]C.char
	n := &Native4{}
	if rc := C.capi_native4_new(&n.ptr, cp, &errbuf[0], C.size_t(len(errbuf))); rc < 0 {
		return nil, errors.New(C.GoString(&errbuf[0]))
	}
	return n, nil
}

// Run runs n exchanges in one call into C.
func (n *Native4) Run(count int) error {
	if rc := C.capi_native4_run(n.ptr, C.long(count)); rc < 0 {
		return errors.New(C.GoString(C.pe_strerror(rc)))
	}
	return nil
}

// Close frees it.
func (n *Native4) Close() { C.capi_native4_free(n.ptr) }
