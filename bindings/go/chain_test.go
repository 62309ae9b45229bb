package policyexec_test

import (
	"strings"
	"sync"
	"testing"
	"time"

	pe "policyexec"
)

func TestChainBuilder(t *testing.T) {
	e := nativeEngine(t)
	b, err := e.NewChainBuilder()
	must(t, err)
	defer b.Close()
	i, err := b.AddStep("sample-native-request-header", "1.0.0", "")
	must(t, err)
	j, err := b.AddStep("sample-native-response-body", "1.0.0", "{}")
	must(t, err)
	if i != 0 || j != 1 {
		t.Errorf("indexes %d %d", i, j)
	}
	must(t, b.SetFailureMode(j, pe.FailOpen))
	must(t, b.SetTimeout(j, 250*time.Millisecond))
	must(t, b.SetEnabled(j, false))
	must(t, b.SetEnabled(j, true))
	must(t, b.AddJSON(`{"policies": [{"name": "sample-native-request-body", "version": "1.0.0", "failure_mode": "open"}]}`))
	c, err := b.Build()
	must(t, err)
	defer c.Close()
	if c.StepCount() != 3 {
		t.Errorf("StepCount %d", c.StepCount())
	}
	wantPhases := uint(1<<pe.RequestHeaders | 1<<pe.RequestBody | 1<<pe.ResponseBody)
	if c.Phases() != wantPhases || c.Needs() != pe.NeedsRequestBody|pe.NeedsResponseBody {
		t.Errorf("Phases %b Needs %b", c.Phases(), c.Needs())
	}

	// Bad input, each with the library's code and message.
	_, err = b.AddStep("", "1.0.0", "")
	wantCode(t, err, pe.ErrInvalidArgument)
	_, err = b.AddStep("x", "1", "[1]")
	wantCode(t, err, pe.ErrJSON)
	_, err = b.AddStep("x", "1", "{broken")
	wantCode(t, err, pe.ErrJSON)
	wantCode(t, b.SetFailureMode(99, pe.FailOpen), pe.ErrInvalidArgument)
	wantCode(t, b.SetTimeout(0, 0), pe.ErrInvalidArgument)
	wantCode(t, b.SetTimeout(0, 2*time.Hour), pe.ErrInvalidArgument)
	wantCode(t, b.SetTimeout(99, time.Second), pe.ErrInvalidArgument)
	wantCode(t, b.SetEnabled(-1, true), pe.ErrInvalidArgument)
	// Values C's int cannot hold are refused, not wrapped onto step 0.
	wantCode(t, b.SetEnabled(1<<32, false), pe.ErrInvalidArgument)
	wantCode(t, b.SetFailureMode(0, pe.FailureMode(1<<32|1)), pe.ErrInvalidArgument)
	pErr := wantCode(t, b.AddJSON(`[{"name": "a", "version": "1", "colour": "red"}]`), pe.ErrJSON)
	if !strings.Contains(pErr.Message, "colour") {
		t.Errorf("message does not name the member: %q", pErr.Message)
	}
	wantCode(t, b.AddJSON(`[{"name": "a"`), pe.ErrJSON)

	// Unknown policy, at build time.
	b2, err := e.NewChainBuilder()
	must(t, err)
	defer b2.Close()
	_, err = b2.AddStep("no-such-policy", "1.0.0", "")
	must(t, err)
	_, err = b2.Build()
	pErr = wantCode(t, err, pe.ErrUnknownPolicy)
	if !strings.Contains(pErr.Message, "no-such-policy") {
		t.Errorf("message %q", pErr.Message)
	}

	b.Close()
	b.Close()
	_, err = b.AddStep("a", "1", "")
	wantCode(t, err, pe.ErrState)
	wantCode(t, b.AddJSON("[]"), pe.ErrState)
	wantCode(t, b.SetEnabled(0, true), pe.ErrState)
	wantCode(t, b.SetTimeout(0, time.Second), pe.ErrState)
	wantCode(t, b.SetFailureMode(0, pe.FailOpen), pe.ErrState)
	_, err = b.Build()
	wantCode(t, err, pe.ErrState)
}

func TestChainFromJSONErrors(t *testing.T) {
	e := nativeEngine(t)
	_, err := e.NewChainFromJSON(`[{"name": `)
	wantCode(t, err, pe.ErrJSON)
	_, err = e.NewChainFromJSON(`[{"name": "sample-native-request-body", "version": "2.0.0"}]`)
	pErr := wantCode(t, err, pe.ErrUnknownPolicy)
	if !strings.Contains(pErr.Message, "sample-native-request-body") {
		t.Errorf("message %q", pErr.Message)
	}
	_, err = e.NewChainFromJSON(`[{"name": "sample-native-request-body", "version": "1.0.0", "params": {"x": 1}}]`)
	wantCode(t, err, pe.ErrParam)
}

func TestRunNative4(t *testing.T) {
	e := nativeEngine(t)
	c := mustChain(t, e, native4)
	x := mustExchange(t, e)
	must(t, x.SetRequest("POST", "/echo", ""))
	must(t, x.Request().SetBody([]byte("hello")))
	must(t, c.Run(x, pe.RequestHeaders))
	must(t, c.Run(x, pe.RequestBody))
	if string(x.Request().Body()) != "[sample-request-body]hello" {
		t.Errorf("request body %q", x.Request().Body())
	}
	must(t, x.SetResponse(200, x.Request().Body()))
	must(t, c.RunPhases(x, pe.ResponseHeaders, pe.ResponseBody))
	if v, _ := x.Response().Get("X-Sample-Policy-Phase"); v != "response-header" {
		t.Errorf("header %q", v)
	}
	if string(x.Response().Body()) != "[sample-response-body][sample-request-body]hello" || x.Verdict() != pe.Continue {
		t.Errorf("response body %q", x.Response().Body())
	}
	wantCode(t, c.Run(x, pe.Phase(7)), pe.ErrInvalidArgument)
	wantCode(t, c.Run(x, pe.Phase(1<<32)), pe.ErrInvalidArgument)
	wantCode(t, c.RunPhases(x, pe.ResponseBody, pe.RequestHeaders), pe.ErrInvalidArgument)

	// An exchange of another engine is refused.
	other := nativeEngine(t)
	wantCode(t, c.Run(mustExchange(t, other), pe.RequestHeaders), pe.ErrInvalidArgument)
}

// Close while other goroutines run the chain: the chain is freed once,
// after the last run in flight, and later runs get ErrState.
func TestChainCloseWhileRunning(t *testing.T) {
	e := nativeEngine(t)
	c, err := e.NewChainFromJSON(native4)
	must(t, err)
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		x := mustExchange(t, e)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				_ = x.Reset()
				if err := c.RunPhases(x, pe.RequestHeaders, pe.ResponseBody); err != nil {
					if pErr, ok := err.(*pe.Error); !ok || pErr.Code != pe.ErrState {
						t.Errorf("run: %v", err)
					}
					return
				}
			}
		}()
	}
	time.Sleep(20 * time.Millisecond)
	c.Close()
	wg.Wait()
	c.Close()
	if c.StepCount() != 0 || c.Phases() != 0 || c.Needs() != 0 {
		t.Error("a closed chain answered")
	}
}

func TestPhaseNames(t *testing.T) {
	if pe.RequestHeaders.String() != "request_headers" || pe.ResponseBody.String() != "response_body" {
		t.Errorf("%s %s", pe.RequestHeaders, pe.ResponseBody)
	}
}
