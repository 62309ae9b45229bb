package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
)

func artefact(t *testing.T, env, rel string) string {
	p := os.Getenv(env)
	if p == "" {
		p = filepath.Join("..", "..", "..", "..", rel)
	}
	abs, err := filepath.Abs(p)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(abs); err != nil {
		t.Fatalf("%s: %v (set %s, or build the project in build/ first)", env, err, env)
	}
	return abs
}

// The proxy in front of an upstream that echoes what it received, with a
// chain of a Go policy, four native and one Python policy.
func TestReverseProxy(t *testing.T) {
	var upstreamCalls int32
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		atomic.AddInt32(&upstreamCalls, 1)
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("X-Seen-Phase", r.Header.Get("X-Sample-Policy-Phase"))
		w.Header()["X-Seen-Multi"] = r.Header.Values("X-Multi")
		w.Header().Set("X-Seen-Path", r.URL.RequestURI())
		_, _ = w.Write(body)
	}))
	defer upstream.Close()

	engine, err := NewEngine(artefact(t, "PE_GO_PLUGIN", "build/examples/policies/sample_native_policies.so"),
		artefact(t, "PE_GO_PYWORKER", "build/bin/policyexec-pyworker"),
		artefact(t, "PE_GO_PYMODULES", "examples/policies/python"))
	if err != nil {
		t.Fatal(err)
	}
	defer engine.Close()
	chain, err := engine.NewChainFromJSON(strings.Replace(defaultChain, "]",
		`, {"name": "sample-python-response-header", "version": "1.0.0"}]`, 1))
	if err != nil {
		t.Fatal(err)
	}
	defer chain.Close()
	target, _ := url.Parse(upstream.URL)
	front := httptest.NewServer(NewProxy(target, engine, chain))
	defer front.Close()

	do := func(auth bool) *http.Response {
		req, _ := http.NewRequest("POST", front.URL+"/echo?x=1", strings.NewReader("hello"))
		req.Header.Add("X-Multi", "a")
		req.Header.Add("X-Multi", "b")
		if auth {
			req.Header.Set("Authorization", "Basic dTpw")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}

	for i := 0; i < 3; i++ { // exchanges are reused from the pool
		resp := do(true)
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(body) != "[sample-response-body][sample-request-body]hello" {
			t.Fatalf("status %d body %q", resp.StatusCode, body)
		}
		if resp.ContentLength != int64(len(body)) {
			t.Errorf("Content-Length %d for %d bytes", resp.ContentLength, len(body))
		}
		if got := resp.Header.Get("X-Sample-Policy-Phase"); got != "response-header" {
			t.Errorf("response header %q", got)
		}
		if got := resp.Header.Get("X-Seen-Phase"); got != "request-header" {
			t.Errorf("the upstream saw %q", got)
		}
		if got := resp.Header.Values("X-Seen-Multi"); !reflect.DeepEqual(got, []string{"a", "b"}) {
			t.Errorf("multi-valued header reached the upstream as %q", got)
		}
		if got := resp.Header.Get("X-Seen-Path"); got != "/echo?x=1" {
			t.Errorf("path %q", got)
		}
	}

	// The Go policy answers at once; the upstream is not called.
	before := atomic.LoadInt32(&upstreamCalls)
	resp := do(false)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 401 || string(body) != "authorization required\n" ||
		resp.Header.Get("WWW-Authenticate") != `Basic realm="example"` {
		t.Errorf("denied: %d %q %v", resp.StatusCode, body, resp.Header)
	}
	if atomic.LoadInt32(&upstreamCalls) != before {
		t.Error("the upstream was called for a denied request")
	}
}
