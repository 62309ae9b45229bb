package policyexec_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	pe "policyexec"
)

// The smallest host, as examples/embed/embed.c in C: load the sample
// plugin, build the native-4 chain, run one exchange through all four
// phases and print what the policies did.
func Example() {
	engine, err := pe.NewEngine(nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer engine.Close()
	if err := engine.LoadPlugin(samplePlugin()); err != nil {
		fmt.Println(err)
		return
	}
	chain, err := engine.NewChainFromJSON(`[
		{"name": "sample-native-request-body", "version": "1.0.0"},
		{"name": "sample-native-response-header", "version": "1.0.0"},
		{"name": "sample-native-response-body", "version": "1.0.0"}]`)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer chain.Close()
	fmt.Printf("buffer request body: %v, response body: %v\n",
		chain.Needs()&pe.NeedsRequestBody != 0, chain.Needs()&pe.NeedsResponseBody != 0)

	x, err := engine.NewExchange()
	if err != nil {
		fmt.Println(err)
		return
	}
	defer x.Close()
	_ = x.SetRequest("POST", "/echo", "")
	_ = x.Request().Add("Content-Type", "text/plain")
	_ = x.Request().SetBody([]byte("hello"))
	for phase := pe.RequestHeaders; phase <= pe.ResponseBody; phase++ {
		if phase == pe.ResponseHeaders { // the upstream echoes the body
			_ = x.SetResponse(200, x.Request().Body())
		}
		if err := chain.Run(x, phase); err != nil {
			fmt.Println(err)
			return
		}
		if x.Verdict() == pe.Respond {
			break
		}
	}
	for _, f := range x.Response().Fields() {
		fmt.Printf("%s: %s\n", f.Name, f.Value)
	}
	fmt.Printf("%d %s\n", x.Status(), x.Response().Body())

	// Bad input gets the library's code (and message, in err.Error()).
	err = x.Request().Set("x-injected", "a\r\nSet-Cookie: evil=1")
	fmt.Println(errors.Is(err, pe.ErrHeaderValue), err.(*pe.Error).Code.Name())
	// Output:
	// buffer request body: true, response body: true
	// x-sample-policy-phase: response-header
	// 200 [sample-response-body][sample-request-body]hello
	// true PE_ERR_HEADER_VALUE
}

// samplePlugin is where the build put sample_native_policies.so.
func samplePlugin() string {
	if p := os.Getenv("PE_GO_PLUGIN"); p != "" {
		return p
	}
	return filepath.Join("..", "..", "build", "examples", "policies", "sample_native_policies.so")
}
