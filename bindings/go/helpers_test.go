package policyexec_test

import (
	"os"
	"path/filepath"
	"testing"

	pe "policyexec"
)

// paths of the build tree's artefacts: CTest sets the variables; by hand,
// the defaults are those of a build in ../../build.
func artefact(t testing.TB, env, rel string) string {
	p := os.Getenv(env)
	if p == "" {
		p = filepath.Join("..", "..", "build", rel)
	}
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("%s: %v (set %s, or build the project in ../../build first)", env, err, env)
	}
	abs, err := filepath.Abs(p)
	if err != nil {
		t.Fatal(err)
	}
	return abs
}

func pluginPath(t testing.TB) string {
	return artefact(t, "PE_GO_PLUGIN", "examples/policies/sample_native_policies.so")
}
func pyworkerPath(t testing.TB) string {
	return artefact(t, "PE_GO_PYWORKER", "bin/policyexec-pyworker")
}
func pyModules(t testing.TB) string {
	p := os.Getenv("PE_GO_PYMODULES")
	if p == "" {
		p = filepath.Join("..", "..", "examples", "policies", "python")
	}
	abs, err := filepath.Abs(p)
	if err != nil {
		t.Fatal(err)
	}
	return abs
}

// nativeEngine is an engine with the sample plugin loaded, closed at the
// end of the test.
func nativeEngine(t testing.TB) *pe.Engine {
	t.Helper()
	e, err := pe.NewEngine(nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	if err := e.LoadPlugin(pluginPath(t)); err != nil {
		t.Fatal(err)
	}
	return e
}

func mustChain(t testing.TB, e *pe.Engine, json string) *pe.Chain {
	t.Helper()
	c, err := e.NewChainFromJSON(json)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func mustExchange(t testing.TB, e *pe.Engine) *pe.Exchange {
	t.Helper()
	x, err := e.NewExchange()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(x.Close)
	return x
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// wantCode fails unless err is an *Error with code c.
func wantCode(t testing.TB, err error, c pe.Code) *pe.Error {
	t.Helper()
	pErr, ok := err.(*pe.Error)
	if !ok {
		t.Fatalf("want *policyexec.Error with %s, got %T %v", c.Name(), err, err)
	}
	if pErr.Code != c {
		t.Fatalf("want %s, got %v", c.Name(), err)
	}
	return pErr
}

const native4 = `[{"name": "sample-native-response-header", "version": "1.0.0"},
 {"name": "sample-native-request-body", "version": "1.0.0"},
 {"name": "sample-native-response-header", "version": "1.0.0"},
 {"name": "sample-native-response-body", "version": "1.0.0"}]`
