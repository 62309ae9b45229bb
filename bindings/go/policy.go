package policyexec

/*
#include "pe_go.h"

static void pe_go_params_errmsg(pe_params *p, _GoString_ msg) {
  pe_params_set_errmsg(p, "%.*s", (int)_GoStringLen(msg), _GoStringPtr(msg));
}

static void pe_go_exchange_errmsg(uintptr_t ex, _GoString_ msg) {
  pe_exchange_set_errmsg((pe_exchange *)ex, "%.*s", (int)_GoStringLen(msg), _GoStringPtr(msg));
}
*/
import "C"

import (
	"runtime/cgo"
	"unsafe"
)

// ParamType is the JSON type of a declared param (pe_param_type).
type ParamType int

// The param types.
const (
	ParamString ParamType = C.PE_PARAM_STRING
	ParamInt    ParamType = C.PE_PARAM_INT
	ParamNumber ParamType = C.PE_PARAM_NUMBER
	ParamBool   ParamType = C.PE_PARAM_BOOL
	ParamAny    ParamType = C.PE_PARAM_ANY
)

// ParamSpec is one param a policy accepts (pe_param_spec).
type ParamSpec struct {
	Name     string
	Type     ParamType
	Required bool
}

// PhaseFunc is a Go policy's callback for one phase. It reads and changes
// ex (valid only during the call: the binding refuses its use afterwards)
// and returns nil to go on, or an error to fail the step, which then follows
// its failure mode: the error's Code if it carries one, else ErrPolicy, and
// its text becomes the exchange's error message. A panic fails the step the
// same way. instance is what Create returned (nil without Create); it is
// shared by every goroutine running the chain.
type PhaseFunc func(ex *Exchange, instance interface{}) error

// PolicyDef defines a native policy written in Go (pe_policy_def). The
// phases it implements are its non-nil phase functions (at least one).
type PolicyDef struct {
	Name, Version     string
	NeedsRequestBody  bool // the request body must be buffered
	NeedsResponseBody bool // the response body must be buffered
	Params            []ParamSpec

	// Create makes an instance from a step's validated params when a chain
	// is built; may be nil. An error fails the build and its text is part
	// of the builder's message.
	Create func(params *Params) (interface{}, error)
	// Destroy releases an instance when its chain goes away; may be nil.
	Destroy func(instance interface{})

	OnRequestHeaders  PhaseFunc
	OnRequestBody     PhaseFunc
	OnResponseHeaders PhaseFunc
	OnResponseBody    PhaseFunc
}

// policy is what the library's user_data handle holds.
type policy struct {
	PolicyDef
	phases [PhaseCount]PhaseFunc
}

// instanceBox lets a nil instance have a handle too.
type instanceBox struct{ v interface{} }

// RegisterPolicy registers a Go policy (pe_engine_register_policy): chains
// then name it like any other. It stays registered until the engine goes.
func (e *Engine) RegisterPolicy(def PolicyDef) error {
	if !e.enter() {
		return errClosed("Engine.RegisterPolicy", "engine")
	}
	defer e.exit()
	nul := hasNUL(def.Name) || hasNUL(def.Version)
	for _, ps := range def.Params {
		nul = nul || hasNUL(ps.Name)
	}
	if nul {
		return &Error{Code: ErrInvalidArgument, Op: "Engine.RegisterPolicy", Message: "name, version or param name contains NUL"}
	}
	p := &policy{PolicyDef: def}
	p.phases = [PhaseCount]PhaseFunc{def.OnRequestHeaders, def.OnRequestBody, def.OnResponseHeaders, def.OnResponseBody}
	var mask C.uint
	for i, fn := range p.phases {
		if fn != nil {
			mask |= 1 << uint(i)
		}
	}
	var flags C.uint
	if def.NeedsRequestBody {
		flags |= C.PE_POLICY_NEEDS_REQUEST_BODY
	}
	if def.NeedsResponseBody {
		flags |= C.PE_POLICY_NEEDS_RESPONSE_BODY
	}
	// The definition's strings go to C memory: the library copies them,
	// but a Go memory array holding pointers may not be passed to C.
	cstrs := make([]*C.char, 0, 2+len(def.Params))
	defer func() {
		for _, s := range cstrs {
			C.free(unsafe.Pointer(s))
		}
	}()
	cstr := func(s string) *C.char {
		c := C.CString(s)
		cstrs = append(cstrs, c)
		return c
	}
	name, version := cstr(def.Name), cstr(def.Version)
	var specs *C.pe_param_spec
	if n := len(def.Params); n > 0 {
		specs = (*C.pe_param_spec)(C.calloc(C.size_t(n), C.size_t(unsafe.Sizeof(C.pe_param_spec{}))))
		defer C.free(unsafe.Pointer(specs))
		arr := unsafe.Slice(specs, n)
		for i, ps := range def.Params {
			arr[i].name = cstr(ps.Name)
			arr[i]._type = C.pe_param_type(ps.Type)
			if ps.Required {
				arr[i].required = 1
			}
		}
	}
	hasCreate := C.int(0)
	if def.Create != nil {
		hasCreate = 1
	}
	h := cgo.NewHandle(p) // deleted by the library's free_user_data hook
	rc := C.pe_go_register_policy(e.ptr, name, version, flags, specs, C.size_t(len(def.Params)), mask, hasCreate, C.uintptr_t(h))
	if rc < 0 {
		return e.err(rc, "Engine.RegisterPolicy")
	}
	return nil
}

// Params are a step's validated params, seen by PolicyDef.Create; valid
// only during that call.
type Params struct{ ptr *C.pe_params }

func (p *Params) check(op string) error {
	if p.ptr == nil {
		return errClosed(op, "params (used after Create returned)")
	}
	return nil
}

func (p *Params) checkKey(op, key string) error {
	if err := p.check(op); err != nil {
		return err
	}
	if hasNUL(key) {
		return &Error{Code: ErrInvalidArgument, Op: op, Message: "key contains NUL"}
	}
	return nil
}

// String reads string param key (pe_params_get_string): ErrNotFound when
// absent.
func (p *Params) String(key string) (string, error) {
	if err := p.checkKey("Params.String", key); err != nil {
		return "", err
	}
	ck := C.CString(key)
	defer C.free(unsafe.Pointer(ck))
	var s C.pe_slice
	if rc := C.pe_params_get_string(p.ptr, ck, &s); rc < 0 {
		return "", newError(rc, "Params.String", key)
	}
	return goStr(s), nil
}

// Int reads integer param key (pe_params_get_int).
func (p *Params) Int(key string) (int64, error) {
	if err := p.checkKey("Params.Int", key); err != nil {
		return 0, err
	}
	ck := C.CString(key)
	defer C.free(unsafe.Pointer(ck))
	var v C.int64_t
	if rc := C.pe_params_get_int(p.ptr, ck, &v); rc < 0 {
		return 0, newError(rc, "Params.Int", key)
	}
	return int64(v), nil
}

// Number reads number param key (pe_params_get_number).
func (p *Params) Number(key string) (float64, error) {
	if err := p.checkKey("Params.Number", key); err != nil {
		return 0, err
	}
	ck := C.CString(key)
	defer C.free(unsafe.Pointer(ck))
	var v C.double
	if rc := C.pe_params_get_number(p.ptr, ck, &v); rc < 0 {
		return 0, newError(rc, "Params.Number", key)
	}
	return float64(v), nil
}

// Bool reads boolean param key (pe_params_get_bool).
func (p *Params) Bool(key string) (bool, error) {
	if err := p.checkKey("Params.Bool", key); err != nil {
		return false, err
	}
	ck := C.CString(key)
	defer C.free(unsafe.Pointer(ck))
	var v C.int
	if rc := C.pe_params_get_bool(p.ptr, ck, &v); rc < 0 {
		return false, newError(rc, "Params.Bool", key)
	}
	return v != 0, nil
}

// JSON returns the whole params object as compact JSON (pe_params_json).
func (p *Params) JSON() (string, error) {
	if err := p.check("Params.JSON"); err != nil {
		return "", err
	}
	s := C.pe_params_json(p.ptr)
	return goStr(s), nil
}

func setParamsErrmsg(p *C.pe_params, msg string)   { C.pe_go_params_errmsg(p, msg) }
func setExchangeErrmsg(ex C.uintptr_t, msg string) { C.pe_go_exchange_errmsg(ex, msg) }
