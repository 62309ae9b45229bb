// Command reverseproxy is a reverse proxy (net/http/httputil.ReverseProxy)
// that runs a libpolicyexec chain on every request: native plugins, Go
// policies and Python policies alike.
//
//	go run ./examples/reverseproxy -upstream http://127.0.0.1:9000 \
//	    -plugin build/examples/policies/sample_native_policies.so
//
// With -python-worker and -python-modules it also starts the Python pool,
// so -chain may name Python policies.
package main

import (
	"flag"
	"log"
	"net/http"
	"net/url"
	"os"

	pe "policyexec"
)

const defaultChain = `[
 {"name": "require-auth", "version": "1.0.0", "params": {"realm": "example"}},
 {"name": "sample-native-request-header", "version": "1.0.0"},
 {"name": "sample-native-request-body", "version": "1.0.0"},
 {"name": "sample-native-response-header", "version": "1.0.0"},
 {"name": "sample-native-response-body", "version": "1.0.0"}]`

func main() {
	listen := flag.String("listen", "127.0.0.1:8080", "address to listen on")
	upstream := flag.String("upstream", "http://127.0.0.1:9000", "upstream URL")
	plugin := flag.String("plugin", "", "native plugin .so to load (e.g. sample_native_policies.so)")
	chainFile := flag.String("chain", "", "chain JSON file (default: require-auth + the four native samples)")
	worker := flag.String("python-worker", "", "policyexec-pyworker binary: start the Python pool")
	modules := flag.String("python-modules", "", "directory of Python policies (with -python-worker)")
	flag.Parse()

	target, err := url.Parse(*upstream)
	if err != nil {
		log.Fatal(err)
	}
	engine, err := NewEngine(*plugin, *worker, *modules)
	if err != nil {
		log.Fatal(err)
	}
	defer engine.Close()
	chainJSON := defaultChain
	if *chainFile != "" {
		b, err := os.ReadFile(*chainFile)
		if err != nil {
			log.Fatal(err)
		}
		chainJSON = string(b)
	}
	chain, err := engine.NewChainFromJSON(chainJSON)
	if err != nil {
		log.Fatal(err)
	}
	defer chain.Close()
	log.Printf("listening on %s, forwarding to %s", *listen, target)
	log.Fatal(http.ListenAndServe(*listen, NewProxy(target, engine, chain)))
}

// NewEngine makes an engine with the plugin, the Go policy require-auth,
// and (if worker is set) the Python pool.
func NewEngine(plugin, worker, modules string) (*pe.Engine, error) {
	engine, err := pe.NewEngine(&pe.EngineOptions{
		LogLevel: pe.LogWarn,
		Log:      func(level pe.LogLevel, msg string) { log.Printf("policyexec: %s", msg) },
	})
	if err != nil {
		return nil, err
	}
	if err := registerRequireAuth(engine); err != nil {
		engine.Close()
		return nil, err
	}
	if plugin != "" {
		if err := engine.LoadPlugin(plugin); err != nil {
			engine.Close()
			return nil, err
		}
	}
	if worker != "" {
		opts := &pe.PythonOptions{WorkerPath: worker}
		if modules != "" {
			opts.ModulePaths = []string{modules}
		}
		if err := engine.StartPython(opts); err != nil {
			engine.Close()
			return nil, err
		}
	}
	return engine, nil
}

// registerRequireAuth registers a Go policy: requests without an
// Authorization header get 401 at once, and never reach the upstream.
func registerRequireAuth(engine *pe.Engine) error {
	return engine.RegisterPolicy(pe.PolicyDef{
		Name: "require-auth", Version: "1.0.0",
		Params: []pe.ParamSpec{{Name: "realm", Type: pe.ParamString}},
		Create: func(p *pe.Params) (interface{}, error) {
			realm, err := p.String("realm")
			if err != nil {
				realm = "policyexec"
			}
			return `Basic realm="` + realm + `"`, nil
		},
		OnRequestHeaders: func(ex *pe.Exchange, challenge interface{}) error {
			if _, ok := ex.Request().Get("authorization"); ok {
				return nil
			}
			if err := ex.Respond(401, []byte("authorization required\n")); err != nil {
				return err
			}
			return ex.Response().Set("www-authenticate", challenge.(string))
		},
	})
}
