package policyexec

/*
#include "pe_go.h"
*/
import "C"

import (
	"errors"
	"strings"
)

// Code is one of the library's return codes (pe_error): 0 is success,
// negative values are errors. A Code is itself an error, so that
// errors.Is(err, policyexec.ErrHeaderValue) tests what an *Error carries.
type Code int

// The library's codes, with the same numbers as PE_ERR_* in common.h.
const (
	OK                 Code = C.PE_OK
	ErrInvalidArgument Code = C.PE_ERR_INVALID_ARGUMENT
	ErrNoMem           Code = C.PE_ERR_NOMEM
	ErrNotFound        Code = C.PE_ERR_NOT_FOUND
	ErrExists          Code = C.PE_ERR_EXISTS
	ErrJSON            Code = C.PE_ERR_JSON
	ErrParam           Code = C.PE_ERR_PARAM
	ErrUnknownPolicy   Code = C.PE_ERR_UNKNOWN_POLICY
	ErrPlugin          Code = C.PE_ERR_PLUGIN
	ErrHeaderName      Code = C.PE_ERR_HEADER_NAME
	ErrHeaderValue     Code = C.PE_ERR_HEADER_VALUE
	ErrTooManyHeaders  Code = C.PE_ERR_TOO_MANY_HEADERS
	ErrHeadersTooLarge Code = C.PE_ERR_HEADERS_TOO_LARGE
	ErrBodyTooLarge    Code = C.PE_ERR_BODY_TOO_LARGE
	ErrPolicy          Code = C.PE_ERR_POLICY
	ErrTimeout         Code = C.PE_ERR_TIMEOUT
	ErrWorker          Code = C.PE_ERR_WORKER
	ErrBusy            Code = C.PE_ERR_BUSY
	ErrState           Code = C.PE_ERR_STATE
	ErrUnsupported     Code = C.PE_ERR_UNSUPPORTED
	ErrIO              Code = C.PE_ERR_IO
	ErrInvalidValue    Code = C.PE_ERR_INVALID_VALUE
)

// Error returns the library's description of c (pe_strerror).
func (c Code) Error() string { return C.GoString(C.pe_strerror(C.int(c))) }

// Name returns the symbolic name of c, e.g. "PE_ERR_HEADER_VALUE" (pe_errname).
func (c Code) Name() string { return C.GoString(C.pe_errname(C.int(c))) }

// Error is a failed call: the library's code, and the message the library
// gave for it (the object's last error message), or the binding's own
// message when the binding refused the call before reaching the library.
type Error struct {
	Code    Code   // the library's return code
	Op      string // the binding's operation, e.g. "Exchange.SetHeader"
	Message string // the library's message; may be empty
}

func (e *Error) Error() string {
	s := "policyexec: " + e.Op + ": " + e.Code.Name() + " (" + e.Code.Error() + ")"
	if e.Message != "" {
		s += ": " + e.Message
	}
	return s
}

// Is makes errors.Is(err, code) true when err carries that Code.
func (e *Error) Is(target error) bool {
	c, ok := target.(Code)
	return ok && c == e.Code
}

// Unwrap returns the Code, so errors.As(err, &code) works too.
func (e *Error) Unwrap() error { return e.Code }

// errClosed is what every method of a closed object returns: the library
// would be handed a freed pointer, so the binding refuses first.
func errClosed(op, what string) error {
	return &Error{Code: ErrState, Op: op, Message: what + " is closed"}
}

func newError(rc C.int, op, msg string) error {
	return &Error{Code: Code(rc), Op: op, Message: msg}
}

// codeOf is the code a Go policy's error becomes in the library: its own
// Code if it carries one, PE_ERR_POLICY otherwise.
func codeOf(err error) C.int {
	var c Code
	if errors.As(err, &c) && c < 0 {
		return C.int(c)
	}
	return C.PE_ERR_POLICY
}

// hasNUL reports a string C would cut short: the binding refuses it rather
// than pass on a different one (e.g. a shorter path).
func hasNUL(s string) bool { return strings.IndexByte(s, 0) >= 0 }

// cInt converts an int for a C int parameter (step index, phase, mode,
// level, limit) without wrapping: a value C's int cannot hold becomes -1,
// which every such parameter refuses, rather than a valid one.
func cInt(v int) C.int {
	if v < -1<<31 || v > 1<<31-1 {
		return -1
	}
	return C.int(v)
}
