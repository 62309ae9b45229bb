package policyexec_test

import (
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"

	pe "policyexec"
)

type tagger struct{ header, value string }

// A Go policy with params, an instance, and every phase.
func registerTagger(t *testing.T, e *pe.Engine, destroyed *int32) {
	must(t, e.RegisterPolicy(pe.PolicyDef{
		Name: "go-tagger", Version: "1.0.0",
		NeedsRequestBody: true,
		Params: []pe.ParamSpec{
			{Name: "header", Type: pe.ParamString, Required: true},
			{Name: "count", Type: pe.ParamInt},
			{Name: "ratio", Type: pe.ParamNumber},
			{Name: "loud", Type: pe.ParamBool},
			{Name: "extra", Type: pe.ParamAny},
		},
		Create: func(p *pe.Params) (interface{}, error) {
			h, err := p.String("header")
			if err != nil {
				return nil, err
			}
			// Ill-typed reads fail with ErrParam, absent ones ErrNotFound.
			if _, err := p.Int("header"); !errors.Is(err, pe.ErrParam) {
				return nil, fmt.Errorf("Int of a string: %v", err)
			}
			if _, err := p.Number("header"); !errors.Is(err, pe.ErrParam) {
				return nil, fmt.Errorf("Number of a string: %v", err)
			}
			if _, err := p.Bool("header"); !errors.Is(err, pe.ErrParam) {
				return nil, fmt.Errorf("Bool of a string: %v", err)
			}
			if _, err := p.String("nope"); !errors.Is(err, pe.ErrNotFound) {
				return nil, fmt.Errorf("String of an absent param: %v", err)
			}
			if _, err := p.String("header\x00"); !errors.Is(err, pe.ErrInvalidArgument) {
				return nil, fmt.Errorf("String of a key with NUL: %v", err)
			}
			if h == "refuse" {
				return nil, errors.New("header 'refuse' is refused")
			}
			n, err := p.Int("count")
			if err != nil && !errors.Is(err, pe.ErrNotFound) {
				return nil, err
			}
			r, _ := p.Number("ratio")
			loud, _ := p.Bool("loud")
			js, err := p.JSON()
			if err != nil {
				return nil, err
			}
			v := strings.Repeat("x", int(n)) + js
			if loud {
				v = strings.ToUpper(v)
			}
			if r == 0.5 {
				v += "-half"
			}
			return &tagger{h, v}, nil
		},
		Destroy: func(inst interface{}) { atomic.AddInt32(destroyed, 1) },
		OnRequestHeaders: func(ex *pe.Exchange, inst interface{}) error {
			tg := inst.(*tagger)
			return ex.Request().Set(tg.header, tg.value)
		},
		OnRequestBody: func(ex *pe.Exchange, inst interface{}) error {
			return ex.Request().AppendBody([]byte("[go]"))
		},
		OnResponseHeaders: func(ex *pe.Exchange, inst interface{}) error {
			return ex.SetMeta("go", ex.Method())
		},
		OnResponseBody: func(ex *pe.Exchange, inst interface{}) error {
			m, _ := ex.Meta("go")
			return ex.Response().PrependBody([]byte(m + ":"))
		},
	}))
}

func TestGoPolicy(t *testing.T) {
	e := nativeEngine(t)
	var destroyed int32
	registerTagger(t, e, &destroyed)
	if !e.HasPolicy("go-tagger", "1.0.0") {
		t.Fatal("not registered")
	}
	c, err := e.NewChainFromJSON(`[{"name": "go-tagger", "version": "1.0.0",
		"params": {"header": "x-go", "count": 2, "ratio": 0.5, "loud": true, "extra": [1]}},
		{"name": "sample-native-response-body", "version": "1.0.0"}]`)
	must(t, err)
	if c.Needs()&pe.NeedsRequestBody == 0 {
		t.Error("NeedsRequestBody not passed on")
	}
	x := mustExchange(t, e)
	must(t, x.SetRequest("PUT", "/", ""))
	must(t, c.RunPhases(x, pe.RequestHeaders, pe.RequestBody))
	v, _ := x.Request().Get("x-go")
	if v != `XX{"HEADER":"X-GO","COUNT":2,"RATIO":0.5,"LOUD":TRUE,"EXTRA":[1]}-half` {
		t.Errorf("x-go: %q", v)
	}
	if string(x.Request().Body()) != "[go]" {
		t.Errorf("body %q", x.Request().Body())
	}
	must(t, x.SetResponse(200, []byte("r")))
	must(t, c.RunPhases(x, pe.ResponseHeaders, pe.ResponseBody))
	// Response phases run in reverse: the native prefix first, then Go's.
	if string(x.Response().Body()) != "PUT:[sample-response-body]r" {
		t.Errorf("response body %q", x.Response().Body())
	}
	c.Close()
	if atomic.LoadInt32(&destroyed) != 1 {
		t.Errorf("Destroy ran %d times", destroyed)
	}

	// Params are validated against the spec; Create's error is the build's.
	_, err = e.NewChainFromJSON(`[{"name": "go-tagger", "version": "1.0.0"}]`)
	wantCode(t, err, pe.ErrParam)
	_, err = e.NewChainFromJSON(`[{"name": "go-tagger", "version": "1.0.0", "params": {"header": 5}}]`)
	wantCode(t, err, pe.ErrParam)
	_, err = e.NewChainFromJSON(`[{"name": "go-tagger", "version": "1.0.0", "params": {"header": "refuse"}}]`)
	pErr := wantCode(t, err, pe.ErrParam) // what the library makes of any refusal
	if !strings.Contains(pErr.Message, "header 'refuse' is refused") {
		t.Errorf("message %q", pErr.Message)
	}
}

func TestGoPolicyRegistrationErrors(t *testing.T) {
	e := nativeEngine(t)
	noop := func(*pe.Exchange, interface{}) error { return nil }
	wantCode(t, e.RegisterPolicy(pe.PolicyDef{Name: "none", Version: "1"}), pe.ErrInvalidArgument)
	wantCode(t, e.RegisterPolicy(pe.PolicyDef{Name: "", Version: "1", OnRequestHeaders: noop}), pe.ErrInvalidArgument)
	wantCode(t, e.RegisterPolicy(pe.PolicyDef{Name: "a\x00b", Version: "1", OnRequestHeaders: noop}), pe.ErrInvalidArgument)
	wantCode(t, e.RegisterPolicy(pe.PolicyDef{Name: "a", Version: "1", OnRequestHeaders: noop,
		Params: []pe.ParamSpec{{Name: "x\x00"}}}), pe.ErrInvalidArgument)
	if e.HasPolicy("a", "1") {
		t.Error("a name cut at its NUL was registered")
	}
	wantCode(t, e.RegisterPolicy(pe.PolicyDef{Name: "p", Version: "1", OnRequestHeaders: noop,
		Params: []pe.ParamSpec{{Name: "a"}, {Name: "a"}}}), pe.ErrInvalidArgument)
	err := e.RegisterPolicy(pe.PolicyDef{Name: "sample-native-request-body", Version: "1.0.0", OnRequestHeaders: noop})
	pErr := wantCode(t, err, pe.ErrExists)
	if pErr.Message == "" {
		t.Error("no message")
	}
}

func TestGoPolicyFailures(t *testing.T) {
	e := nativeEngine(t)
	var kept *pe.Exchange
	var keptParams *pe.Params
	must(t, e.RegisterPolicy(pe.PolicyDef{Name: "go-fail", Version: "1",
		OnRequestHeaders: func(ex *pe.Exchange, _ interface{}) error {
			must(t, ex.Request().Set("x-partial", "1")) // discarded when it fails
			return errors.New("no entry for you")
		}}))
	must(t, e.RegisterPolicy(pe.PolicyDef{Name: "go-code", Version: "1",
		OnRequestHeaders: func(ex *pe.Exchange, _ interface{}) error {
			return &pe.Error{Code: pe.ErrTimeout, Op: "test"}
		}}))
	must(t, e.RegisterPolicy(pe.PolicyDef{Name: "go-panic", Version: "1",
		OnRequestHeaders: func(ex *pe.Exchange, _ interface{}) error { panic("boom") }}))
	must(t, e.RegisterPolicy(pe.PolicyDef{Name: "go-deny", Version: "1",
		Create: func(p *pe.Params) (interface{}, error) { keptParams = p; return nil, nil },
		OnRequestHeaders: func(ex *pe.Exchange, inst interface{}) error {
			if inst != nil {
				t.Errorf("instance %v", inst)
			}
			kept = ex
			if _, ok := ex.Request().Get("authorization"); ok {
				return nil
			}
			must(t, ex.Respond(401, []byte("who are you?")))
			must(t, ex.Response().Add("www-authenticate", "Basic"))
			wantCode(t, ex.Reset(), pe.ErrState)
			ex.Close() // a no-op on a lent exchange
			return nil
		}}))
	must(t, e.RegisterPolicy(pe.PolicyDef{Name: "go-panic-create", Version: "1",
		Create:           func(p *pe.Params) (interface{}, error) { panic("create boom") },
		OnRequestHeaders: func(*pe.Exchange, interface{}) error { return nil }}))

	run := func(chain string) *pe.Exchange {
		c := mustChain(t, e, chain)
		x := mustExchange(t, e)
		must(t, x.SetRequest("GET", "/", ""))
		must(t, c.Run(x, pe.RequestHeaders))
		return x
	}
	// Closed: 500, the error's text in LastError.
	x := run(`[{"name": "go-fail", "version": "1"}]`)
	if x.Verdict() != pe.Respond || x.Status() != 500 || !strings.Contains(x.LastError(), "no entry for you") {
		t.Errorf("closed failure: %d %d %q", x.Verdict(), x.Status(), x.LastError())
	}
	// Open: skipped, its partial change discarded.
	x = run(`[{"name": "go-fail", "version": "1", "failure_mode": "open"},
		{"name": "sample-native-request-header", "version": "1.0.0"}]`)
	if _, ok := x.Request().Get("x-partial"); ok || x.Verdict() != pe.Continue {
		t.Error("open failure kept its changes")
	}
	if v, _ := x.Request().Get("x-sample-policy-phase"); v != "request-header" {
		t.Error("the step after an open failure did not run")
	}
	// A Code carried by the error reaches the library (timeout gives 504).
	x = run(`[{"name": "go-code", "version": "1"}]`)
	if x.Status() != 504 {
		t.Errorf("ErrTimeout from Go gave %d", x.Status())
	}
	// A panic fails the step instead of crashing through C.
	x = run(`[{"name": "go-panic", "version": "1"}]`)
	if x.Status() != 500 || !strings.Contains(x.LastError(), "boom") {
		t.Errorf("panic: %d %q", x.Status(), x.LastError())
	}
	_, err := e.NewChainFromJSON(`[{"name": "go-panic-create", "version": "1"}]`)
	pErr := wantCode(t, err, pe.ErrParam)
	if !strings.Contains(pErr.Message, "create boom") {
		t.Errorf("message %q", pErr.Message)
	}
	// An immediate response from Go stops the chain.
	x = run(`[{"name": "go-deny", "version": "1"}, {"name": "sample-native-request-header", "version": "1.0.0"}]`)
	if x.Verdict() != pe.Respond || x.Status() != 401 || string(x.Response().Body()) != "who are you?" {
		t.Errorf("deny: %d %d %q", x.Verdict(), x.Status(), x.Response().Body())
	}
	if v, _ := x.Response().Get("WWW-Authenticate"); v != "Basic" {
		t.Error("header of the immediate response")
	}
	if _, ok := x.Request().Get("x-sample-policy-phase"); ok {
		t.Error("the chain went on after Respond")
	}
	// What a policy was lent may not be used after its callback.
	wantCode(t, kept.Request().Set("a", "b"), pe.ErrState)
	if _, ok := kept.Request().Get("authorization"); ok || kept.Method() != "" {
		t.Error("a lent exchange answered after its callback")
	}
	_, err = keptParams.String("a")
	wantCode(t, err, pe.ErrState)
	_, err = keptParams.Int("a")
	wantCode(t, err, pe.ErrState)
	_, err = keptParams.Number("a")
	wantCode(t, err, pe.ErrState)
	_, err = keptParams.Bool("a")
	wantCode(t, err, pe.ErrState)
	_, err = keptParams.JSON()
	wantCode(t, err, pe.ErrState)
}
