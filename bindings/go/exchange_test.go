package policyexec_test

import (
	"bytes"
	"net/http"
	"reflect"
	"runtime"
	"testing"

	pe "policyexec"
)

func TestRequestLineAndStatus(t *testing.T) {
	x := mustExchange(t, nativeEngine(t))
	if x.Method() != "" || x.Path() != "" || x.Authority() != "" || x.Status() != 0 {
		t.Error("new exchange not empty")
	}
	must(t, x.SetMethod("PATCH"))
	must(t, x.SetPath("/a?b=c"))
	must(t, x.SetAuthority("example.test:8080"))
	must(t, x.SetStatus(204))
	if x.Method() != "PATCH" || x.Path() != "/a?b=c" || x.Authority() != "example.test:8080" || x.Status() != 204 {
		t.Errorf("got %q %q %q %d", x.Method(), x.Path(), x.Authority(), x.Status())
	}
	must(t, x.SetRequest("GET", "/x", ""))
	if x.Method() != "GET" || x.Path() != "/x" || x.Authority() != "" {
		t.Errorf("SetRequest: %q %q %q", x.Method(), x.Path(), x.Authority())
	}
	wantCode(t, x.SetMethod("GE T"), pe.ErrInvalidValue)
	wantCode(t, x.SetPath(""), pe.ErrInvalidValue)
	wantCode(t, x.SetPath("/a b"), pe.ErrInvalidValue)
	wantCode(t, x.SetAuthority("a\nb"), pe.ErrInvalidValue)
	wantCode(t, x.SetRequest("GET", "/\x01", ""), pe.ErrInvalidValue)
	wantCode(t, x.SetStatus(99), pe.ErrInvalidValue)
	wantCode(t, x.SetStatus(1000), pe.ErrInvalidValue)
	wantCode(t, x.SetStatus(-1<<40), pe.ErrInvalidValue)
	if x.LastError() == "" {
		t.Error("no message after a refused call")
	}
	if x.Method() != "GET" || x.Status() != 204 {
		t.Error("a refused call changed the exchange")
	}
}

func TestHeaders(t *testing.T) {
	x := mustExchange(t, nativeEngine(t))
	req := x.Request()
	must(t, req.Add("Accept", "text/html"))
	must(t, req.Add("X-Multi", "1"))
	must(t, req.Add("x-multi", "2"))
	must(t, req.Add("ACCEPT", "application/json"))
	if v, ok := req.Get("accept"); !ok || v != "text/html" {
		t.Errorf("Get: %q %v", v, ok)
	}
	if _, ok := req.Get("absent"); ok {
		t.Error("Get of an absent header")
	}
	if got := req.Values("X-MULTI"); !reflect.DeepEqual(got, []string{"1", "2"}) {
		t.Errorf("Values %q", got)
	}
	if req.Values("absent") != nil || req.Len() != 4 {
		t.Errorf("Len %d", req.Len())
	}
	must(t, req.Set("x-multi", "3"))
	want := []pe.HeaderField{{"Accept", "text/html"}, {"x-multi", "3"}, {"ACCEPT", "application/json"}}
	if got := req.Fields(); !reflect.DeepEqual(got, want) {
		t.Errorf("Fields %q", got)
	}
	h := req.Header()
	if !reflect.DeepEqual(h["Accept"], []string{"text/html", "application/json"}) || h.Get("X-Multi") != "3" {
		t.Errorf("Header %v", h)
	}
	if n, err := req.Del("ACCEPT"); err != nil || n != 2 {
		t.Errorf("Del %d %v", n, err)
	}
	if n, err := req.Del("accept"); err != nil || n != 0 {
		t.Errorf("Del again %d %v", n, err)
	}
	// Many values: more than the getters' stack buffers hold.
	for i := 0; i < 40; i++ {
		must(t, x.Response().Add("v", string(rune('a'+i%26))))
	}
	if len(x.Response().Values("V")) != 40 || len(x.Response().Fields()) != 40 {
		t.Error("40 values")
	}
	if x.Request().Len() != 1 {
		t.Error("sides are not separate")
	}

	// Bad input is refused with its code and changes nothing.
	for _, bad := range []string{"a\r\nInjected: 1", "a\nb", "nul\x00"} {
		wantCode(t, req.Set("x-ok", bad), pe.ErrHeaderValue)
		wantCode(t, req.Add("x-ok", bad), pe.ErrHeaderValue)
	}
	for _, bad := range []string{"", "sp ace", "colon:", "a\r\nb"} {
		wantCode(t, req.Add(bad, "v"), pe.ErrHeaderName)
	}
	if req.Len() != 1 {
		t.Errorf("refused headers were added: %v", req.Fields())
	}

	// Batch add, from fields and from an http.Header.
	must(t, req.AddFields([]pe.HeaderField{{"a", "1"}, {"b", ""}, {"a", "2"}}))
	must(t, req.AddFields(nil))
	if got := req.Values("A"); !reflect.DeepEqual(got, []string{"1", "2"}) {
		t.Errorf("AddFields %q", got)
	}
	err := req.AddFields([]pe.HeaderField{{"c", "1"}, {"d", "bad\n"}})
	wantCode(t, err, pe.ErrHeaderValue)
	must(t, x.Response().AddHeader(http.Header{"Content-Type": {"text/plain"}, "Set-Cookie": {"a=1", "b=2"}}))
	if got := x.Response().Values("set-cookie"); !reflect.DeepEqual(got, []string{"a=1", "b=2"}) {
		t.Errorf("AddHeader %q", got)
	}
}

func TestBodies(t *testing.T) {
	x := mustExchange(t, nativeEngine(t))
	req := x.Request()
	if b := req.Body(); b == nil || len(b) != 0 {
		t.Errorf("empty body %v", b)
	}
	bin := []byte{0, 1, 2, 0xff, '\r', '\n', 0}
	must(t, req.SetBody(bin))
	must(t, req.PrependBody([]byte("<")))
	must(t, req.AppendBody([]byte(">")))
	must(t, req.AppendBody(nil))
	want := append(append([]byte("<"), bin...), '>')
	got := req.Body()
	if !bytes.Equal(got, want) {
		t.Errorf("body %q", got)
	}
	got[0] = 'X' // a copy: the exchange is unchanged
	if !bytes.Equal(req.Body(), want) || len(x.Response().Body()) != 0 {
		t.Error("Body is not a copy, or sides mix")
	}
	must(t, req.SetBody(nil))
	if len(req.Body()) != 0 {
		t.Error("SetBody(nil)")
	}
	must(t, x.SetResponse(201, []byte("made")))
	if x.Status() != 201 || string(x.Response().Body()) != "made" {
		t.Error("SetResponse")
	}
	wantCode(t, x.SetResponse(42, nil), pe.ErrInvalidValue)
	wantCode(t, x.SetResponse(-1<<40, nil), pe.ErrInvalidValue)
}

func TestMetadata(t *testing.T) {
	x := mustExchange(t, nativeEngine(t))
	if _, ok := x.Meta("k"); ok || x.MetaLen() != 0 {
		t.Error("new exchange has metadata")
	}
	must(t, x.SetMeta("k", "v\x00bin"))
	must(t, x.SetMeta("K", "upper"))
	if v, ok := x.Meta("k"); !ok || v != "v\x00bin" {
		t.Errorf("Meta %q", v)
	}
	if x.MetaLen() != 2 || !reflect.DeepEqual(x.MetaFields(), []pe.HeaderField{{"k", "v\x00bin"}, {"K", "upper"}}) {
		t.Errorf("MetaFields %q", x.MetaFields())
	}
	wantCode(t, x.SetMeta("", "v"), pe.ErrInvalidArgument)
	if ok, err := x.DeleteMeta("k"); !ok || err != nil {
		t.Error("DeleteMeta")
	}
	if ok, err := x.DeleteMeta("k"); ok || err != nil {
		t.Error("DeleteMeta again")
	}
	if ok, err := x.DeleteMeta(""); ok || err != nil { // as the C API: nothing to remove
		t.Errorf("DeleteMeta(\"\") %v %v", ok, err)
	}
	for i := 0; i < 40; i++ {
		must(t, x.SetMeta(string(rune('a'+i)), "v"))
	}
	if len(x.MetaFields()) != 41 {
		t.Errorf("%d entries", len(x.MetaFields()))
	}
}

func TestRespondVerdictReset(t *testing.T) {
	e := nativeEngine(t)
	x := mustExchange(t, e)
	if x.Verdict() != pe.Continue {
		t.Error("new verdict")
	}
	must(t, x.Response().Set("x-old", "1"))
	must(t, x.Respond(403, []byte("denied")))
	if x.Verdict() != pe.Respond || x.Status() != 403 || string(x.Response().Body()) != "denied" || x.Response().Len() != 0 {
		t.Error("Respond")
	}
	wantCode(t, x.Respond(7, nil), pe.ErrInvalidValue)
	wantCode(t, x.Respond(-1<<40, nil), pe.ErrInvalidValue)
	// Later phases do nothing once the verdict is Respond.
	c := mustChain(t, e, native4)
	must(t, c.Run(x, pe.ResponseBody))
	if string(x.Response().Body()) != "denied" {
		t.Error("a phase ran after Respond")
	}
	must(t, x.SetMeta("k", "v"))
	must(t, x.Reset())
	if x.Verdict() != pe.Continue || x.Status() != 0 || x.MetaLen() != 0 || len(x.Response().Body()) != 0 {
		t.Error("Reset")
	}
}

func TestExchangeUseAfterClose(t *testing.T) {
	e := nativeEngine(t)
	x, err := e.NewExchange()
	must(t, err)
	x.Close()
	x.Close() // idempotent
	for name, err := range map[string]error{
		"Reset": x.Reset(), "SetRequest": x.SetRequest("GET", "/", ""), "SetMethod": x.SetMethod("GET"),
		"SetPath": x.SetPath("/"), "SetAuthority": x.SetAuthority("a"), "SetStatus": x.SetStatus(200),
		"SetResponse": x.SetResponse(200, nil), "Respond": x.Respond(200, nil), "SetMeta": x.SetMeta("k", "v"),
		"Set": x.Request().Set("a", "b"), "Add": x.Request().Add("a", "b"),
		"AddFields": x.Request().AddFields([]pe.HeaderField{{"a", "b"}}), "SetBody": x.Request().SetBody([]byte("a")),
		"PrependBody": x.Response().PrependBody(nil), "AppendBody": x.Response().AppendBody(nil),
	} {
		if e, ok := err.(*pe.Error); !ok || e.Code != pe.ErrState {
			t.Errorf("%s on a closed exchange: %v", name, err)
		}
	}
	_, err = x.DeleteMeta("k")
	wantCode(t, err, pe.ErrState)
	_, err = x.Request().Del("a")
	wantCode(t, err, pe.ErrState)
	_, ok1 := x.Request().Get("a")
	_, ok2 := x.Meta("a")
	if ok1 || ok2 || x.Method() != "" || x.Path() != "" || x.Authority() != "" || x.Status() != 0 ||
		x.Verdict() != pe.Continue || x.LastError() != "" || x.MetaLen() != 0 || x.MetaFields() != nil ||
		x.Request().Len() != 0 || x.Request().Values("a") != nil || x.Request().Fields() != nil ||
		x.Request().Body() != nil {
		t.Error("a closed exchange answered")
	}
	c := mustChain(t, e, native4)
	wantCode(t, c.Run(x, pe.RequestHeaders), pe.ErrState)
}

// Objects dropped without Close are freed by their finalizers; the engine
// stays alive while its children do. Run under the sanitizer build, a
// double free or a leak here fails the test.
func TestFinalizers(t *testing.T) {
	for i := 0; i < 50; i++ {
		e, err := pe.NewEngine(nil)
		must(t, err)
		must(t, e.LoadPlugin(pluginPath(t)))
		c, err := e.NewChainFromJSON(native4)
		must(t, err)
		b, err := e.NewChainBuilder()
		must(t, err)
		x, err := e.NewExchange()
		must(t, err)
		must(t, x.Request().Set("a", "b"))
		if i%2 == 0 {
			e.Close() // closed, while children are left to finalizers
		}
		_, _ = c, b
	}
	for i := 0; i < 5; i++ {
		runtime.GC()
	}
}
