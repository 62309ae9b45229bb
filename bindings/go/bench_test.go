package policyexec_test

import (
	"bytes"
	"testing"

	pe "policyexec"
	"policyexec/internal/capi"
)

// The native-4 exchange of doc/BENCHMARKS.md: reset, fill the request, run
// the request phases as one run, fill the response, run the response
// phases as one run, read status, a header and the response body. The C
// side (capi_native4_run in internal/capi/capi.c) makes the same library
// calls; keep the two in step.

var (
	body     = []byte("hello")
	wantBody = []byte("[sample-response-body]hello")
)

func native4Once(c *pe.Chain, x *pe.Exchange) ([]byte, error) {
	if err := x.Reset(); err != nil {
		return nil, err
	}
	if err := x.SetRequest("POST", "/echo", "example.test"); err != nil {
		return nil, err
	}
	req := x.Request()
	if err := req.Add("content-type", "text/plain"); err != nil {
		return nil, err
	}
	if err := req.SetBody(body); err != nil {
		return nil, err
	}
	if err := c.RunPhases(x, pe.RequestHeaders, pe.RequestBody); err != nil {
		return nil, err
	}
	if err := x.SetResponse(200, body); err != nil {
		return nil, err
	}
	if err := c.RunPhases(x, pe.ResponseHeaders, pe.ResponseBody); err != nil {
		return nil, err
	}
	resp := x.Response()
	if _, ok := resp.Get("x-sample-policy-phase"); !ok || x.Status() != 200 {
		return nil, pe.ErrState
	}
	return resp.Body(), nil
}

func TestNative4Loop(t *testing.T) {
	e := nativeEngine(t)
	c := mustChain(t, e, native4)
	x := mustExchange(t, e)
	for i := 0; i < 3; i++ {
		out, err := native4Once(c, x)
		must(t, err)
		if !bytes.Equal(out, wantBody) {
			t.Fatalf("body %q", out)
		}
	}
	n, err := capi.NewNative4(pluginPath(t))
	must(t, err)
	defer n.Close()
	must(t, n.Run(3))
}

func BenchmarkNative4Go(b *testing.B) {
	e := nativeEngine(b)
	c := mustChain(b, e, native4)
	x := mustExchange(b, e)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := native4Once(c, x); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkNative4C(b *testing.B) {
	n, err := capi.NewNative4(pluginPath(b))
	if err != nil {
		b.Fatal(err)
	}
	defer n.Close()
	b.ResetTimer()
	if err := n.Run(b.N); err != nil {
		b.Fatal(err)
	}
}

// The cost of one cgo crossing on this machine, for the account in
// doc/BENCHMARKS.md: the cheapest call of the library.
func BenchmarkCgoCall(b *testing.B) {
	x := mustExchange(b, nativeEngine(b))
	for i := 0; i < b.N; i++ {
		_ = x.Status()
	}
}

// The same exchange with one call per field and one Run per phase (16
// crossings instead of 10): what the batched calls save.
func native4PerField(c *pe.Chain, x *pe.Exchange) ([]byte, error) {
	req, resp := x.Request(), x.Response()
	for _, err := range []error{
		x.Reset(), x.SetMethod("POST"), x.SetPath("/echo"), x.SetAuthority("example.test"),
		req.Add("content-type", "text/plain"), req.SetBody(body),
		c.Run(x, pe.RequestHeaders), c.Run(x, pe.RequestBody),
		x.SetStatus(200), resp.SetBody(body),
		c.Run(x, pe.ResponseHeaders), c.Run(x, pe.ResponseBody),
	} {
		if err != nil {
			return nil, err
		}
	}
	if _, ok := resp.Get("x-sample-policy-phase"); !ok || x.Status() != 200 {
		return nil, pe.ErrState
	}
	return resp.Body(), nil
}

func TestNative4PerFieldLoop(t *testing.T) {
	e := nativeEngine(t)
	c := mustChain(t, e, native4)
	x := mustExchange(t, e)
	out, err := native4PerField(c, x)
	must(t, err)
	if !bytes.Equal(out, wantBody) {
		t.Fatalf("body %q", out)
	}
}

func BenchmarkNative4GoPerField(b *testing.B) {
	e := nativeEngine(b)
	c := mustChain(b, e, native4)
	x := mustExchange(b, e)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := native4PerField(c, x); err != nil {
			b.Fatal(err)
		}
	}
}
