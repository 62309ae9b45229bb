package policyexec_test

import (
	"bytes"
	"fmt"
	"testing"

	pe "policyexec"
	"policyexec/internal/capi"
)

// The same exchange through the binding and through the C API must leave
// byte-identical results: status, verdict, request line, headers of both
// sides in order, bodies and metadata.

// dump writes what capi.c's dump() writes.
func dump(x *pe.Exchange) []byte {
	var b bytes.Buffer
	put := func(tag, s string) { fmt.Fprintf(&b, "%s %d:%s\n", tag, len(s), s) }
	put("status", fmt.Sprint(x.Status()))
	put("verdict", fmt.Sprint(int(x.Verdict())))
	put("method", x.Method())
	put("path", x.Path())
	put("authority", x.Authority())
	for _, f := range x.Request().Fields() {
		put("req-header", f.Name)
		put("req-header", f.Value)
	}
	put("req-body", string(x.Request().Body()))
	for _, f := range x.Response().Fields() {
		put("resp-header", f.Name)
		put("resp-header", f.Value)
	}
	put("resp-body", string(x.Response().Body()))
	for _, f := range x.MetaFields() {
		put("meta", f.Name)
		put("meta", f.Value)
	}
	return b.Bytes()
}

type scenario struct {
	name, chain, method, path, authority string
	reqHeaders                           []capi.Field
	reqBody                              []byte
	status                               int
	respHeaders                          []capi.Field
	respBody                             []byte
}

// goExchange does what capi_exchange does, through the binding.
func goExchange(t *testing.T, e *pe.Engine, s scenario) []byte {
	c, err := e.NewChainFromJSON(s.chain)
	must(t, err)
	defer c.Close()
	x, err := e.NewExchange()
	must(t, err)
	defer x.Close()
	must(t, x.SetRequest(s.method, s.path, s.authority))
	for _, f := range s.reqHeaders {
		must(t, x.Request().Add(f.Name, f.Value))
	}
	must(t, x.Request().SetBody(s.reqBody))
	must(t, c.Run(x, pe.RequestHeaders))
	if x.Verdict() == pe.Continue {
		must(t, c.Run(x, pe.RequestBody))
	}
	if x.Verdict() == pe.Continue {
		must(t, x.SetStatus(s.status))
		for _, f := range s.respHeaders {
			must(t, x.Response().Add(f.Name, f.Value))
		}
		must(t, x.Response().SetBody(s.respBody))
		must(t, c.Run(x, pe.ResponseHeaders))
		if x.Verdict() == pe.Continue {
			must(t, c.Run(x, pe.ResponseBody))
		}
	}
	return dump(x)
}

const mixedChain = `[
 {"name": "sample-native-request-header", "version": "1.0.0"},
 {"name": "sample-python-request-body", "version": "1.0.0"},
 {"name": "sample-native-request-body", "version": "1.0.0"},
 {"name": "sample-native-response-header", "version": "1.0.0"},
 {"name": "sample-python-response-header", "version": "1.0.0"},
 {"name": "sample-native-response-body", "version": "1.0.0"},
 {"name": "sample-python-response-body", "version": "1.0.0"},
 {"name": "sample-python-request-header", "version": "1.0.0"}]`

func TestMixedChainMatchesCAPI(t *testing.T) {
	plugin, worker, modules := pluginPath(t), pyworkerPath(t), pyModules(t)
	ce, err := capi.NewEngine(plugin, worker, modules)
	must(t, err)
	defer ce.Close()
	e := nativeEngine(t)
	must(t, e.StartPython(&pe.PythonOptions{Workers: 1, WorkerPath: worker, ModulePaths: []string{modules}}))

	binary := make([]byte, 300)
	for i := range binary {
		binary[i] = byte(i * 7)
	}
	scenarios := []scenario{
		{name: "mixed", chain: mixedChain, method: "POST", path: "/v1/items?id=3", authority: "api.example.test",
			reqHeaders: []capi.Field{{Name: "Content-Type", Value: "application/octet-stream"}, {Name: "X-Multi", Value: "1"},
				{Name: "x-multi", Value: "2"}, {Name: "X-Sample-Policy-Phase", Value: "client"}},
			reqBody: binary, status: 201,
			respHeaders: []capi.Field{{Name: "Set-Cookie", Value: "a=1"}, {Name: "set-cookie", Value: "b=2"}, {Name: "Server", Value: "upstream"}},
			respBody:    []byte("response \x00 with NUL")},
		{name: "empty bodies", chain: mixedChain, method: "GET", path: "/", status: 204},
		{name: "python then native on one body", chain: `[{"name": "sample-python-request-body", "version": "1.0.0"},
			{"name": "sample-native-request-body", "version": "1.0.0", "failure_mode": "open"}]`,
			method: "PUT", path: "/x", reqBody: []byte("abc"), status: 200, respBody: []byte("ok")},
	}
	for _, s := range scenarios {
		t.Run(s.name, func(t *testing.T) {
			want, err := ce.Exchange(s.chain, s.method, s.path, s.authority, s.reqHeaders, s.reqBody,
				s.status, s.respHeaders, s.respBody)
			must(t, err)
			got := goExchange(t, e, s)
			if !bytes.Equal(got, want) {
				t.Errorf("binding and C API differ:\n--- C\n%q\n--- Go\n%q", want, got)
			}
			if !bytes.Contains(got, []byte("[sample-request-body]")) && len(s.reqBody) > 0 {
				t.Errorf("the chain did not run: %q", got)
			}
		})
	}
}
