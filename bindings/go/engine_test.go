package policyexec_test

import (
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	pe "policyexec"
)

func TestErrorCarriesCodeAndMessage(t *testing.T) {
	e := nativeEngine(t)
	err := e.LoadPlugin("/nonexistent/plugin.so")
	pErr := wantCode(t, err, pe.ErrPlugin)
	if !strings.Contains(pErr.Message, "/nonexistent/plugin.so") {
		t.Errorf("message does not name the plugin: %q", pErr.Message)
	}
	if !errors.Is(err, pe.ErrPlugin) || errors.Is(err, pe.ErrJSON) {
		t.Errorf("errors.Is does not follow the code: %v", err)
	}
	var c pe.Code
	if !errors.As(err, &c) || c != pe.ErrPlugin {
		t.Errorf("errors.As gives %v", c)
	}
	if pe.ErrPlugin.Name() != "PE_ERR_PLUGIN" || pe.ErrPlugin.Error() == "" {
		t.Errorf("code name %q text %q", pe.ErrPlugin.Name(), pe.ErrPlugin.Error())
	}
	for _, s := range []string{"Engine.LoadPlugin", "PE_ERR_PLUGIN", pErr.Message} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("%q lacks %q", err.Error(), s)
		}
	}
	wantCode(t, e.LoadPlugin("nul\x00byte"), pe.ErrInvalidArgument)
}

func TestEngineOptionsAndQueries(t *testing.T) {
	var mu sync.Mutex
	var logs []string
	var events []pe.StepEvent
	e, err := pe.NewEngine(&pe.EngineOptions{
		Limits:   map[pe.Limit]int{pe.LimitHeaderCount: 3, pe.LimitBodyBytes: 64},
		LogLevel: pe.LogDebug,
		Log: func(level pe.LogLevel, msg string) {
			mu.Lock()
			logs = append(logs, msg)
			mu.Unlock()
		},
		Metrics: func(ev pe.StepEvent) {
			mu.Lock()
			events = append(events, ev)
			mu.Unlock()
		},
	})
	must(t, err)
	defer e.Close()
	if e.Limit(pe.LimitHeaderCount) != 3 || e.Limit(pe.LimitBodyBytes) != 64 || e.Limit(pe.LimitMetaCount) != 100 {
		t.Errorf("limits %d %d %d", e.Limit(pe.LimitHeaderCount), e.Limit(pe.LimitBodyBytes), e.Limit(pe.LimitMetaCount))
	}
	if e.Limit(pe.Limit(99)) != 0 || e.Limit(pe.Limit(1<<32)) != 0 {
		t.Error("unknown limit not 0")
	}
	must(t, e.LoadPlugin(pluginPath(t)))
	if !e.HasPolicy("sample-native-request-body", "1.0.0") || e.HasPolicy("sample-native-request-body", "9") {
		t.Error("HasPolicy")
	}
	e.Log(pe.LogWarn, "hello from Go")

	c := mustChain(t, e, native4)
	x := mustExchange(t, e)
	must(t, x.Request().SetBody([]byte("b")))
	must(t, c.RunPhases(x, pe.RequestHeaders, pe.ResponseBody))
	mu.Lock()
	defer mu.Unlock()
	if len(logs) == 0 || !strings.Contains(strings.Join(logs, "\n"), "hello from Go") {
		t.Errorf("log callback did not get the message: %q", logs)
	}
	if len(events) != 4 {
		t.Fatalf("metrics: %d events, want 4: %+v", len(events), events)
	}
	ev := events[0]
	if ev.PolicyName != "sample-native-request-body" || ev.PolicyVersion != "1.0.0" || ev.StepIndex != 1 ||
		ev.Phase != pe.RequestBody || ev.Outcome != pe.StepOK || ev.FailureOpen {
		t.Errorf("first event %+v", ev)
	}

	// Limits are enforced with their codes.
	wantCode(t, x.Request().SetBody(make([]byte, 65)), pe.ErrBodyTooLarge)
	x2 := mustExchange(t, e)
	for i := 0; i < 3; i++ {
		must(t, x2.Request().Add("h", "v"))
	}
	wantCode(t, x2.Request().Add("h", "v"), pe.ErrTooManyHeaders)
}

func TestEngineBadOptions(t *testing.T) {
	_, err := pe.NewEngine(&pe.EngineOptions{Limits: map[pe.Limit]int{pe.LimitBodyBytes: 0}})
	wantCode(t, err, pe.ErrInvalidArgument)
	_, err = pe.NewEngine(&pe.EngineOptions{Limits: map[pe.Limit]int{pe.Limit(42): 1}})
	wantCode(t, err, pe.ErrInvalidArgument)
	_, err = pe.NewEngine(&pe.EngineOptions{Log: func(pe.LogLevel, string) {}, LogLevel: pe.LogLevel(17)})
	wantCode(t, err, pe.ErrInvalidArgument)
}

func TestEngineUseAfterClose(t *testing.T) {
	e, err := pe.NewEngine(nil)
	must(t, err)
	must(t, e.LoadPlugin(pluginPath(t)))
	x := mustExchange(t, e) // keeps the C engine alive after e.Close
	e.Close()
	e.Close() // idempotent
	wantCode(t, e.LoadPlugin(pluginPath(t)), pe.ErrState)
	wantCode(t, e.RegisterPolicy(pe.PolicyDef{Name: "a", Version: "1", OnRequestHeaders: func(*pe.Exchange, interface{}) error { return nil }}), pe.ErrState)
	wantCode(t, e.StartPython(nil), pe.ErrState)
	_, err = e.NewExchange()
	wantCode(t, err, pe.ErrState)
	_, err = e.NewChainFromJSON(native4)
	wantCode(t, err, pe.ErrState)
	_, err = e.NewChainBuilder()
	wantCode(t, err, pe.ErrState)
	_, err = e.PythonPing()
	wantCode(t, err, pe.ErrState)
	if e.HasPolicy("sample-native-request-body", "1.0.0") || e.Limit(pe.LimitBodyBytes) != 0 ||
		e.PythonWorkerPIDs() != nil || e.PythonRestarts() != 0 {
		t.Error("a closed engine answered")
	}
	e.Log(pe.LogError, "ignored")
	// The exchange made before still works: it holds its engine.
	must(t, x.Request().Set("a", "b"))
}

func TestPythonPool(t *testing.T) {
	e := nativeEngine(t)
	if _, err := e.PythonPing(); !errors.Is(err, pe.ErrState) {
		t.Errorf("ping before start: %v", err)
	}
	if e.PythonWorkerPIDs() != nil {
		t.Error("pids before start")
	}
	for field, opts := range map[string]*pe.PythonOptions{
		"Workers":        {Workers: 1000},
		"WorkerPath":     {WorkerPath: "nul\x00"},
		"ModulePaths":    {ModulePaths: []string{""}},
		"ModulePaths ":   {ModulePaths: []string{"a\x00b"}},
		"DefaultTimeout": {DefaultTimeout: 2 * time.Hour},
		"MaxInFlight":    {MaxInFlight: -1},
		"Workers ":       {Workers: -1},
		"MaxMessage ":    {MaxMessage: -4096},
		"RestartBackoff": {RestartBackoffInitial: 2 * time.Second, RestartBackoffMax: time.Second},
		"StartupTimeout": {StartupTimeout: time.Microsecond},
		"MaxMessage":     {MaxMessage: 100},
	} {
		pErr := wantCode(t, e.StartPython(opts), pe.ErrInvalidArgument)
		if pErr.Message != "invalid PythonOptions."+strings.TrimSpace(field) {
			t.Errorf("%s: %v", field, pErr)
		}
	}
	err := e.StartPython(&pe.PythonOptions{Workers: 1, WorkerPath: "/nonexistent/pyworker"})
	wantCode(t, err, pe.ErrWorker)
	must(t, e.StartPython(&pe.PythonOptions{
		Workers: 2, WorkerPath: pyworkerPath(t), ModulePaths: []string{pyModules(t)},
		DefaultTimeout: 5e9, MaxInFlight: 64, RestartBackoffInitial: 10e6, RestartBackoffMax: 1e9,
		StartupTimeout: 30e9, MaxMessage: 1 << 20,
	}))
	wantCode(t, e.StartPython(nil), pe.ErrState)
	if !e.HasPolicy("sample-python-request-header", "1.0.0") {
		t.Error("Python policies not registered")
	}
	alive, err := e.PythonPing()
	must(t, err)
	pids := e.PythonWorkerPIDs()
	if alive != 2 || len(pids) != 2 || pids[0] <= 0 || pids[1] <= 0 {
		t.Errorf("alive %d pids %v", alive, pids)
	}
	if e.PythonRestarts() != 0 {
		t.Errorf("restarts %d", e.PythonRestarts())
	}
}
