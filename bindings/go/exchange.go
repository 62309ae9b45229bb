package policyexec

/*
#include "pe_go.h"

// The exchange travels as an integer: cgo neither checks an integer
// argument nor boxes it (a pointer to an incomplete C type is boxed into an
// interface for the check, which allocates on every call).
#define PE_GO_EX(h) ((pe_exchange *)(h))

static void pe_go_x_free(uintptr_t h) { pe_exchange_free(PE_GO_EX(h)); }
static int pe_go_x_reset(uintptr_t h) { return pe_exchange_reset(PE_GO_EX(h)); }
static pe_slice pe_go_x_method(uintptr_t h) { return pe_exchange_method(PE_GO_EX(h)); }
static pe_slice pe_go_x_path(uintptr_t h) { return pe_exchange_path(PE_GO_EX(h)); }
static pe_slice pe_go_x_authority(uintptr_t h) { return pe_exchange_authority(PE_GO_EX(h)); }
static int pe_go_x_set_status(uintptr_t h, int s) { return pe_exchange_set_status(PE_GO_EX(h), s); }
static int pe_go_x_status(uintptr_t h) { return pe_exchange_status(PE_GO_EX(h)); }
static int pe_go_x_verdict(uintptr_t h) { return (int)pe_exchange_verdict(PE_GO_EX(h)); }
static const char *pe_go_x_errmsg(uintptr_t h) { return pe_exchange_errmsg(PE_GO_EX(h)); }
static size_t pe_go_x_header_count(uintptr_t h, int dir) {
  return pe_exchange_header_count(PE_GO_EX(h), (pe_dir)dir);
}
static pe_slice pe_go_x_body(uintptr_t h, int dir) {
  return pe_exchange_body(PE_GO_EX(h), (pe_dir)dir);
}
static size_t pe_go_x_meta_count(uintptr_t h) { return pe_exchange_meta_count(PE_GO_EX(h)); }

// A lookup's value and code, returned by value: an out-parameter on the Go
// stack would escape to the heap.
typedef struct pe_go_found {
  pe_slice value;
  int rc;
} pe_go_found;

static inline pe_slice pe_go_x(_GoString_ s) {
  pe_slice out = {_GoStringPtr(s), _GoStringLen(s)};
  return out;
}

// One crossing for the whole request line: cgo costs tens of ns per call.
static int pe_go_set_request(uintptr_t exh, _GoString_ method, _GoString_ path,
                             _GoString_ authority) {
  pe_exchange *ex = PE_GO_EX(exh);
  int rc = pe_exchange_set_method(ex, pe_go_x(method));
  if (rc == PE_OK)
    rc = pe_exchange_set_path(ex, pe_go_x(path));
  if (rc == PE_OK)
    rc = pe_exchange_set_authority(ex, pe_go_x(authority));
  return rc;
}

static int pe_go_set_method(uintptr_t exh, _GoString_ s) {
  pe_exchange *ex = PE_GO_EX(exh);
  return pe_exchange_set_method(ex, pe_go_x(s));
}
static int pe_go_set_path(uintptr_t exh, _GoString_ s) {
  pe_exchange *ex = PE_GO_EX(exh);
  return pe_exchange_set_path(ex, pe_go_x(s));
}
static int pe_go_set_authority(uintptr_t exh, _GoString_ s) {
  pe_exchange *ex = PE_GO_EX(exh);
  return pe_exchange_set_authority(ex, pe_go_x(s));
}

static pe_go_found pe_go_header_get(uintptr_t exh, int dir, _GoString_ name, size_t nth) {
  pe_go_found f = {{NULL, 0}, 0};
  f.rc = pe_exchange_header_get_nth(PE_GO_EX(exh), (pe_dir)dir, pe_go_x(name), nth, &f.value);
  return f;
}

// All values of one name, in order, into out[0..cap); returns how many
// there are (possibly more than cap).
static size_t pe_go_header_values(uintptr_t exh, int dir, _GoString_ name, pe_slice *out,
                                  size_t cap) {
  pe_exchange *ex = PE_GO_EX(exh);
  size_t n = 0;
  pe_slice v;
  while (pe_exchange_header_get_nth(ex, (pe_dir)dir, pe_go_x(name), n, &v) == PE_OK) {
    if (n < cap)
      out[n] = v;
    n++;
  }
  return n;
}

static int pe_go_header_set(uintptr_t exh, int dir, _GoString_ name, _GoString_ value) {
  pe_exchange *ex = PE_GO_EX(exh);
  return pe_exchange_header_set(ex, (pe_dir)dir, pe_go_x(name), pe_go_x(value));
}
static int pe_go_header_add(uintptr_t exh, int dir, _GoString_ name, _GoString_ value) {
  pe_exchange *ex = PE_GO_EX(exh);
  return pe_exchange_header_add(ex, (pe_dir)dir, pe_go_x(name), pe_go_x(value));
}
static int pe_go_header_remove(uintptr_t exh, int dir, _GoString_ name) {
  pe_exchange *ex = PE_GO_EX(exh);
  return pe_exchange_header_remove(ex, (pe_dir)dir, pe_go_x(name));
}

// Adds n fields whose names and values lie back to back in buf, with
// lens[2i] and lens[2i+1] the lengths of field i. Stops at the first error
// and returns it, with *done the number of fields added.
static int pe_go_header_add_many(uintptr_t exh, int dir, const char *buf, const size_t *lens,
                                 size_t n, size_t *done) {
  pe_exchange *ex = PE_GO_EX(exh);
  size_t off = 0;
  for (size_t i = 0; i < n; i++) {
    pe_slice name = {buf + off, lens[2 * i]};
    off += lens[2 * i];
    pe_slice value = {buf + off, lens[2 * i + 1]};
    off += lens[2 * i + 1];
    int rc = pe_exchange_header_add(ex, (pe_dir)dir, name, value);
    if (rc < 0) {
      *done = i;
      return rc;
    }
  }
  *done = n;
  return PE_OK;
}

// Every field of one side into out[0..2*cap) as name, value pairs; returns
// the number of fields (possibly more than cap).
static size_t pe_go_headers(uintptr_t exh, int dir, pe_slice *out, size_t cap) {
  pe_exchange *ex = PE_GO_EX(exh);
  size_t n = pe_exchange_header_count(ex, (pe_dir)dir);
  for (size_t i = 0; i < n && i < cap; i++)
    pe_exchange_header_at(ex, (pe_dir)dir, i, &out[2 * i], &out[2 * i + 1]);
  return n;
}

static size_t pe_go_metas(uintptr_t exh, pe_slice *out, size_t cap) {
  pe_exchange *ex = PE_GO_EX(exh);
  size_t n = pe_exchange_meta_count(ex);
  for (size_t i = 0; i < n && i < cap; i++)
    pe_exchange_meta_at(ex, i, &out[2 * i], &out[2 * i + 1]);
  return n;
}

static int pe_go_body(uintptr_t exh, int dir, int op, const void *p, size_t n) {
  pe_exchange *ex = PE_GO_EX(exh);
  pe_slice data = {(const char *)p, n};
  switch (op) {
  case 0:
    return pe_exchange_body_set(ex, (pe_dir)dir, data);
  case 1:
    return pe_exchange_body_prepend(ex, (pe_dir)dir, data);
  default:
    return pe_exchange_body_append(ex, (pe_dir)dir, data);
  }
}

// Status and body in one crossing.
static int pe_go_set_response(uintptr_t exh, int status, const void *p, size_t n) {
  pe_exchange *ex = PE_GO_EX(exh);
  int rc = pe_exchange_set_status(ex, status);
  if (rc == PE_OK)
    rc = pe_exchange_body_set(ex, PE_RESPONSE, (pe_slice){(const char *)p, n});
  return rc;
}

static int pe_go_respond(uintptr_t exh, int status, const void *p, size_t n) {
  pe_exchange *ex = PE_GO_EX(exh);
  return pe_exchange_respond(ex, status, (pe_slice){(const char *)p, n});
}

static pe_go_found pe_go_meta_get(uintptr_t exh, _GoString_ key) {
  pe_go_found f = {{NULL, 0}, 0};
  f.rc = pe_exchange_meta_get(PE_GO_EX(exh), pe_go_x(key), &f.value);
  return f;
}
static int pe_go_meta_set(uintptr_t exh, _GoString_ key, _GoString_ value) {
  pe_exchange *ex = PE_GO_EX(exh);
  return pe_exchange_meta_set(ex, pe_go_x(key), pe_go_x(value));
}
static int pe_go_meta_remove(uintptr_t exh, _GoString_ key) {
  pe_exchange *ex = PE_GO_EX(exh);
  return pe_exchange_meta_remove(ex, pe_go_x(key));
}
*/
import "C"

import (
	"net/http"
	"runtime"
	"unsafe"
)

// Dir is the side of an exchange a header or body call addresses.
type Dir int

// The sides.
const (
	Request  Dir = C.PE_REQUEST
	Response Dir = C.PE_RESPONSE
)

// Verdict is what the host does after a phase (pe_verdict).
type Verdict int

// The verdicts.
const (
	Continue Verdict = C.PE_VERDICT_CONTINUE // forward the (changed) request or response
	Respond  Verdict = C.PE_VERDICT_RESPOND  // answer now with the exchange's response
)

// Exchange is one HTTP request/response as policies see and change it.
// Use it from one goroutine at a time. Close it when done (a finalizer
// does it for an unreachable Exchange); Reset reuses its memory for the
// next request. Every method of a closed Exchange fails with ErrState.
//
// Strings and byte slices handed in are copied by the library before the
// call returns; what the getters return is a Go copy.
type Exchange struct {
	ptr      C.uintptr_t // the pe_exchange; 0 once closed or lent back
	engine   *Engine
	borrowed bool // the library's exchange, lent to a Go policy
}

// NewExchange creates an empty exchange for chains of e (pe_exchange_new).
func (e *Engine) NewExchange() (*Exchange, error) {
	if !e.enter() {
		return nil, errClosed("Engine.NewExchange", "engine")
	}
	x := &Exchange{engine: e}
	var p *C.pe_exchange
	if rc := C.pe_exchange_new(&p, e.ptr); rc < 0 {
		e.exit()
		return nil, newError(rc, "Engine.NewExchange", "")
	}
	x.ptr = C.uintptr_t(uintptr(unsafe.Pointer(p)))
	runtime.SetFinalizer(x, (*Exchange).Close)
	return x, nil
}

// Close frees the exchange (pe_exchange_free). Idempotent. On an exchange
// lent to a Go policy it does nothing: the library owns that one.
func (x *Exchange) Close() {
	if x.ptr == 0 || x.borrowed {
		return
	}
	runtime.SetFinalizer(x, nil)
	C.pe_go_x_free(x.ptr)
	x.ptr = 0
	x.engine.exit()
}

func (x *Exchange) closed(op string) error {
	if x.borrowed {
		return errClosed(op, "exchange (used after the policy callback returned)")
	}
	return errClosed(op, "exchange")
}

// err builds the error of a failed call from the exchange's message.
func (x *Exchange) err(rc C.int, op string) error {
	return newError(rc, op, C.GoString(C.pe_go_x_errmsg(x.ptr)))
}

func (x *Exchange) check(rc C.int, op string) error {
	if rc < 0 {
		return x.err(rc, op)
	}
	return nil
}

// Reset empties the exchange for the next request, keeping its memory
// (pe_exchange_reset).
func (x *Exchange) Reset() error {
	if x.ptr == 0 {
		return x.closed("Exchange.Reset")
	}
	if x.borrowed {
		return &Error{Code: ErrState, Op: "Exchange.Reset", Message: "a policy may not reset the exchange"}
	}
	err := x.check(C.pe_go_x_reset(x.ptr), "Exchange.Reset")
	runtime.KeepAlive(x)
	return err
}

// goStr and goBytes copy a slice the library owns into Go memory (with a
// size_t length: C.GoStringN and C.GoBytes take a C int, which a body over
// 2 GiB would wrap).
func goStr(s C.pe_slice) string {
	if s.len == 0 {
		return ""
	}
	return string(unsafe.Slice((*byte)(unsafe.Pointer(s.ptr)), int(s.len)))
}

func goBytes(s C.pe_slice) []byte {
	out := make([]byte, int(s.len))
	if s.len > 0 {
		copy(out, unsafe.Slice((*byte)(unsafe.Pointer(s.ptr)), int(s.len)))
	}
	return out
}

// SetRequest sets method, path and authority in one call (each as its own
// setter below; stops at the first error).
func (x *Exchange) SetRequest(method, path, authority string) error {
	if x.ptr == 0 {
		return x.closed("Exchange.SetRequest")
	}
	err := x.check(C.pe_go_set_request(x.ptr, method, path, authority), "Exchange.SetRequest")
	runtime.KeepAlive(x)
	return err
}

// SetMethod sets the request method, an RFC 9110 token (ErrInvalidValue).
func (x *Exchange) SetMethod(method string) error {
	if x.ptr == 0 {
		return x.closed("Exchange.SetMethod")
	}
	err := x.check(C.pe_go_set_method(x.ptr, method), "Exchange.SetMethod")
	runtime.KeepAlive(x)
	return err
}

// SetPath sets the request target, e.g. "/v1/items?id=3" (ErrInvalidValue).
func (x *Exchange) SetPath(path string) error {
	if x.ptr == 0 {
		return x.closed("Exchange.SetPath")
	}
	err := x.check(C.pe_go_set_path(x.ptr, path), "Exchange.SetPath")
	runtime.KeepAlive(x)
	return err
}

// SetAuthority sets host[:port]; may be empty (ErrInvalidValue).
func (x *Exchange) SetAuthority(authority string) error {
	if x.ptr == 0 {
		return x.closed("Exchange.SetAuthority")
	}
	err := x.check(C.pe_go_set_authority(x.ptr, authority), "Exchange.SetAuthority")
	runtime.KeepAlive(x)
	return err
}

// Method is the request method ("" until set, or once closed).
func (x *Exchange) Method() string {
	if x.ptr == 0 {
		return ""
	}
	s := goStr(C.pe_go_x_method(x.ptr))
	runtime.KeepAlive(x)
	return s
}

// Path is the request target ("" until set, or once closed).
func (x *Exchange) Path() string {
	if x.ptr == 0 {
		return ""
	}
	s := goStr(C.pe_go_x_path(x.ptr))
	runtime.KeepAlive(x)
	return s
}

// Authority is the authority ("" until set, or once closed).
func (x *Exchange) Authority() string {
	if x.ptr == 0 {
		return ""
	}
	s := goStr(C.pe_go_x_authority(x.ptr))
	runtime.KeepAlive(x)
	return s
}

// SetStatus sets the response status, 100..999 (ErrInvalidValue).
func (x *Exchange) SetStatus(status int) error {
	if x.ptr == 0 {
		return x.closed("Exchange.SetStatus")
	}
	if status < 0 || status > 1<<30 {
		return &Error{Code: ErrInvalidValue, Op: "Exchange.SetStatus", Message: "status out of range"}
	}
	err := x.check(C.pe_go_x_set_status(x.ptr, C.int(status)), "Exchange.SetStatus")
	runtime.KeepAlive(x)
	return err
}

// Status is the response status, 0 until set (or once closed).
func (x *Exchange) Status() int {
	if x.ptr == 0 {
		return 0
	}
	s := int(C.pe_go_x_status(x.ptr))
	runtime.KeepAlive(x)
	return s
}

// SetResponse sets the response status and body in one call, as a proxy
// does when the upstream's answer is complete.
func (x *Exchange) SetResponse(status int, body []byte) error {
	if x.ptr == 0 {
		return x.closed("Exchange.SetResponse")
	}
	if status < 0 || status > 1<<30 {
		return &Error{Code: ErrInvalidValue, Op: "Exchange.SetResponse", Message: "status out of range"}
	}
	var p unsafe.Pointer
	if len(body) > 0 {
		p = unsafe.Pointer(&body[0])
	}
	err := x.check(C.pe_go_set_response(x.ptr, C.int(status), p, C.size_t(len(body))), "Exchange.SetResponse")
	runtime.KeepAlive(x)
	return err
}

// Respond answers at once (pe_exchange_respond): clears the response
// headers, sets status and body, and sets the verdict to Respond, which
// stops the chain after the current step.
func (x *Exchange) Respond(status int, body []byte) error {
	if x.ptr == 0 {
		return x.closed("Exchange.Respond")
	}
	if status < 0 || status > 1<<30 {
		return &Error{Code: ErrInvalidValue, Op: "Exchange.Respond", Message: "status out of range"}
	}
	var p unsafe.Pointer
	if len(body) > 0 {
		p = unsafe.Pointer(&body[0])
	}
	err := x.check(C.pe_go_respond(x.ptr, C.int(status), p, C.size_t(len(body))), "Exchange.Respond")
	runtime.KeepAlive(x)
	return err
}

// Verdict is the verdict so far (Continue for a new, reset or closed
// exchange).
func (x *Exchange) Verdict() Verdict {
	if x.ptr == 0 {
		return Continue
	}
	v := Verdict(C.pe_go_x_verdict(x.ptr))
	runtime.KeepAlive(x)
	return v
}

// LastError is the message of the last failure on the exchange: a refused
// call, or the last step that failed, naming its policy and phase
// (pe_exchange_errmsg). "" if none.
func (x *Exchange) LastError() string {
	if x.ptr == 0 {
		return ""
	}
	s := C.GoString(C.pe_go_x_errmsg(x.ptr))
	runtime.KeepAlive(x)
	return s
}

// Request is the request side: its headers and body.
func (x *Exchange) Request() Side { return Side{x, Request} }

// Response is the response side: its headers and body.
func (x *Exchange) Response() Side { return Side{x, Response} }

// Side is one side of an exchange. Header names compare case-insensitively,
// a name may have several values, and the order of fields is kept. Names
// must be RFC 9110 tokens (ErrHeaderName) and values carry no CR, LF or NUL
// (ErrHeaderValue); the engine's limits hold (ErrTooManyHeaders,
// ErrHeadersTooLarge, ErrBodyTooLarge). On an error nothing changes.
type Side struct {
	x   *Exchange
	dir Dir
}

// HeaderField is one header field.
type HeaderField struct{ Name, Value string }

// Get returns the first value of name, and whether there is one.
func (s Side) Get(name string) (string, bool) {
	x := s.x
	if x.ptr == 0 {
		return "", false
	}
	f := C.pe_go_header_get(x.ptr, C.int(s.dir), name, 0)
	out := goStr(f.value)
	runtime.KeepAlive(x)
	return out, f.rc == C.PE_OK
}

// Values returns every value of name, in order (nil if none).
func (s Side) Values(name string) []string {
	x := s.x
	if x.ptr == 0 {
		return nil
	}
	var buf [8]C.pe_slice
	n := int(C.pe_go_header_values(x.ptr, C.int(s.dir), name, &buf[0], C.size_t(len(buf))))
	vals := buf[:]
	if n > len(buf) {
		vals = make([]C.pe_slice, n)
		n = int(C.pe_go_header_values(x.ptr, C.int(s.dir), name, &vals[0], C.size_t(n)))
	}
	if n == 0 {
		runtime.KeepAlive(x)
		return nil
	}
	out := make([]string, n)
	for i := range out {
		out[i] = goStr(vals[i])
	}
	runtime.KeepAlive(x)
	return out
}

// Set replaces every value of name with value (adding it if absent).
func (s Side) Set(name, value string) error {
	x := s.x
	if x.ptr == 0 {
		return x.closed("Exchange.Set")
	}
	err := x.check(C.pe_go_header_set(x.ptr, C.int(s.dir), name, value), "Exchange.Set")
	runtime.KeepAlive(x)
	return err
}

// Add appends a field, keeping existing values of name.
func (s Side) Add(name, value string) error {
	x := s.x
	if x.ptr == 0 {
		return x.closed("Exchange.Add")
	}
	err := x.check(C.pe_go_header_add(x.ptr, C.int(s.dir), name, value), "Exchange.Add")
	runtime.KeepAlive(x)
	return err
}

// Del removes every value of name and returns how many fields went.
func (s Side) Del(name string) (int, error) {
	x := s.x
	if x.ptr == 0 {
		return 0, x.closed("Exchange.Del")
	}
	rc := C.pe_go_header_remove(x.ptr, C.int(s.dir), name)
	runtime.KeepAlive(x)
	if rc < 0 {
		return 0, x.err(rc, "Exchange.Del")
	}
	return int(rc), nil
}

// Len is the number of header fields (a name with two values counts 2).
func (s Side) Len() int {
	x := s.x
	if x.ptr == 0 {
		return 0
	}
	n := int(C.pe_go_x_header_count(x.ptr, C.int(s.dir)))
	runtime.KeepAlive(x)
	return n
}

// AddFields appends fields in order, in one call into the library. It
// stops at the first field refused and returns that error; the fields
// before it stay added.
func (s Side) AddFields(fields []HeaderField) error {
	x := s.x
	if x.ptr == 0 {
		return x.closed("Exchange.AddFields")
	}
	if len(fields) == 0 {
		return nil
	}
	// Names and values back to back in one buffer, with their lengths:
	// memory passed to C may not hold Go pointers.
	size := 0
	for _, f := range fields {
		size += len(f.Name) + len(f.Value)
	}
	buf := make([]byte, 0, size+1)
	lens := make([]C.size_t, 2*len(fields))
	for i, f := range fields {
		buf = append(buf, f.Name...)
		buf = append(buf, f.Value...)
		lens[2*i], lens[2*i+1] = C.size_t(len(f.Name)), C.size_t(len(f.Value))
	}
	buf = append(buf, 0) // never empty, so &buf[0] exists
	var done C.size_t
	rc := C.pe_go_header_add_many(x.ptr, C.int(s.dir), (*C.char)(unsafe.Pointer(&buf[0])), &lens[0], C.size_t(len(fields)), &done)
	runtime.KeepAlive(x)
	if rc < 0 {
		return x.err(rc, "Exchange.AddFields")
	}
	return nil
}

// AddHeader appends every field of h (in h's key order, which Go's maps
// do not fix; values of one name keep their order).
func (s Side) AddHeader(h http.Header) error {
	fields := make([]HeaderField, 0, len(h))
	for name, vals := range h {
		for _, v := range vals {
			fields = append(fields, HeaderField{name, v})
		}
	}
	return s.AddFields(fields)
}

// Fields returns every header field, in order.
func (s Side) Fields() []HeaderField {
	x := s.x
	if x.ptr == 0 {
		return nil
	}
	var buf [32]C.pe_slice
	pairs := buf[:]
	n := int(C.pe_go_headers(x.ptr, C.int(s.dir), &pairs[0], C.size_t(len(pairs)/2)))
	if 2*n > len(pairs) {
		pairs = make([]C.pe_slice, 2*n)
		n = int(C.pe_go_headers(x.ptr, C.int(s.dir), &pairs[0], C.size_t(n)))
	}
	out := make([]HeaderField, n)
	for i := range out {
		out[i] = HeaderField{goStr(pairs[2*i]), goStr(pairs[2*i+1])}
	}
	runtime.KeepAlive(x)
	return out
}

// Header returns the fields as an http.Header (names canonicalised by
// http.Header.Add, values of one name in order).
func (s Side) Header() http.Header {
	fields := s.Fields()
	h := make(http.Header, len(fields))
	for _, f := range fields {
		h.Add(f.Name, f.Value)
	}
	return h
}

const (
	bodySet = iota
	bodyPrepend
	bodyAppend
)

func (s Side) body(op int, data []byte, name string) error {
	x := s.x
	if x.ptr == 0 {
		return x.closed(name)
	}
	var p unsafe.Pointer
	if len(data) > 0 {
		p = unsafe.Pointer(&data[0])
	}
	err := x.check(C.pe_go_body(x.ptr, C.int(s.dir), C.int(op), p, C.size_t(len(data))), name)
	runtime.KeepAlive(x)
	return err
}

// Body returns a copy of the buffered body (empty until set).
func (s Side) Body() []byte {
	x := s.x
	if x.ptr == 0 {
		return nil
	}
	b := goBytes(C.pe_go_x_body(x.ptr, C.int(s.dir)))
	runtime.KeepAlive(x)
	return b
}

// SetBody replaces the body with a copy of data.
func (s Side) SetBody(data []byte) error { return s.body(bodySet, data, "Exchange.SetBody") }

// PrependBody inserts a copy of data before the body.
func (s Side) PrependBody(data []byte) error {
	return s.body(bodyPrepend, data, "Exchange.PrependBody")
}

// AppendBody appends a copy of data to the body (a host buffering a body
// chunk by chunk calls it per chunk).
func (s Side) AppendBody(data []byte) error { return s.body(bodyAppend, data, "Exchange.AppendBody") }

// Meta returns the value of metadata key (keys compare byte for byte), and
// whether it is set.
func (x *Exchange) Meta(key string) (string, bool) {
	if x.ptr == 0 {
		return "", false
	}
	f := C.pe_go_meta_get(x.ptr, key)
	out := goStr(f.value)
	runtime.KeepAlive(x)
	return out, f.rc == C.PE_OK
}

// SetMeta sets metadata key (non-empty, any bytes) to value (any bytes).
func (x *Exchange) SetMeta(key, value string) error {
	if x.ptr == 0 {
		return x.closed("Exchange.SetMeta")
	}
	err := x.check(C.pe_go_meta_set(x.ptr, key, value), "Exchange.SetMeta")
	runtime.KeepAlive(x)
	return err
}

// DeleteMeta removes metadata key; it says whether the key was there.
func (x *Exchange) DeleteMeta(key string) (bool, error) {
	if x.ptr == 0 {
		return false, x.closed("Exchange.DeleteMeta")
	}
	rc := C.pe_go_meta_remove(x.ptr, key)
	runtime.KeepAlive(x)
	if rc < 0 {
		return false, x.err(rc, "Exchange.DeleteMeta")
	}
	return rc == 1, nil
}

// MetaLen is the number of metadata entries.
func (x *Exchange) MetaLen() int {
	if x.ptr == 0 {
		return 0
	}
	n := int(C.pe_go_x_meta_count(x.ptr))
	runtime.KeepAlive(x)
	return n
}

// MetaFields returns every metadata entry, in order, as Name/Value pairs.
func (x *Exchange) MetaFields() []HeaderField {
	if x.ptr == 0 {
		return nil
	}
	var buf [32]C.pe_slice
	pairs := buf[:]
	n := int(C.pe_go_metas(x.ptr, &pairs[0], C.size_t(len(pairs)/2)))
	if 2*n > len(pairs) {
		pairs = make([]C.pe_slice, 2*n)
		n = int(C.pe_go_metas(x.ptr, &pairs[0], C.size_t(n)))
	}
	out := make([]HeaderField, n)
	for i := range out {
		out[i] = HeaderField{goStr(pairs[2*i]), goStr(pairs[2*i+1])}
	}
	runtime.KeepAlive(x)
	return out
}
