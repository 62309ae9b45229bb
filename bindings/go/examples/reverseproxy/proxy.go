package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"sync"

	pe "policyexec"
)

// Proxy is a net/http/httputil.ReverseProxy that runs a policy chain on
// every exchange: the request phases before the request goes upstream, the
// response phases before the response goes back. A policy's immediate
// response (e.g. a 401) is sent without calling the upstream.
type Proxy struct {
	engine *pe.Engine
	chain  *pe.Chain
	rp     *httputil.ReverseProxy
	// Exchanges are reused (Reset keeps their memory); one dropped by the
	// pool is freed by its finalizer.
	pool sync.Pool
}

type ctxKey struct{}

// NewProxy forwards to target, running chain (made from engine).
func NewProxy(target *url.URL, engine *pe.Engine, chain *pe.Chain) *Proxy {
	p := &Proxy{engine: engine, chain: chain}
	p.rp = httputil.NewSingleHostReverseProxy(target)
	p.rp.ModifyResponse = p.responsePhases
	p.rp.ErrorHandler = func(w http.ResponseWriter, r *http.Request, err error) {
		status := http.StatusBadGateway
		var pErr *pe.Error
		if errors.As(err, &pErr) {
			status = statusOf(pErr)
		}
		http.Error(w, err.Error(), status)
	}
	return p
}

// statusOf maps an error of the binding to the status a client gets.
func statusOf(err *pe.Error) int {
	switch err.Code {
	case pe.ErrBodyTooLarge:
		return http.StatusRequestEntityTooLarge
	case pe.ErrHeadersTooLarge, pe.ErrTooManyHeaders:
		return http.StatusRequestHeaderFieldsTooLarge
	case pe.ErrHeaderName, pe.ErrHeaderValue, pe.ErrInvalidValue:
		return http.StatusBadRequest
	}
	return http.StatusInternalServerError
}

func (p *Proxy) fail(w http.ResponseWriter, err error) {
	var pErr *pe.Error
	status := http.StatusInternalServerError
	if errors.As(err, &pErr) {
		status = statusOf(pErr)
	}
	http.Error(w, err.Error(), status)
}

// readAll reads at most limit bytes, or fails with ErrBodyTooLarge.
func readAll(r io.Reader, limit int) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, int64(limit)+1))
	if err != nil {
		return nil, err
	}
	if len(b) > limit {
		return nil, &pe.Error{Code: pe.ErrBodyTooLarge, Op: "proxy", Message: "body over the engine's limit"}
	}
	return b, nil
}

func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	x, _ := p.pool.Get().(*pe.Exchange)
	if x == nil {
		var err error
		if x, err = p.engine.NewExchange(); err != nil {
			p.fail(w, err)
			return
		}
	}
	defer func() {
		if x.Reset() == nil {
			p.pool.Put(x)
		} else {
			x.Close()
		}
	}()

	if err := p.requestPhases(x, r); err != nil {
		p.fail(w, err)
		return
	}
	if x.Verdict() == pe.Respond {
		writeExchange(w, x)
		return
	}
	out := r.Clone(context.WithValue(r.Context(), ctxKey{}, x))
	out.Method = x.Method()
	out.Header = x.Request().Header()
	if u, err := url.ParseRequestURI(x.Path()); err == nil {
		out.URL.Path, out.URL.RawPath, out.URL.RawQuery = u.Path, u.RawPath, u.RawQuery
	}
	if p.chain.Needs()&pe.NeedsRequestBody != 0 {
		body := x.Request().Body()
		out.Body = io.NopCloser(bytes.NewReader(body))
		out.ContentLength = int64(len(body))
		out.Header.Set("Content-Length", strconv.Itoa(len(body)))
		out.TransferEncoding = nil
	}
	p.rp.ServeHTTP(w, out)
}

func (p *Proxy) requestPhases(x *pe.Exchange, r *http.Request) error {
	if err := x.SetRequest(r.Method, r.URL.RequestURI(), r.Host); err != nil {
		return err
	}
	if err := x.Request().AddHeader(r.Header); err != nil {
		return err
	}
	if err := p.chain.Run(x, pe.RequestHeaders); err != nil || x.Verdict() == pe.Respond {
		return err
	}
	if p.chain.Needs()&pe.NeedsRequestBody == 0 {
		return nil
	}
	body, err := readAll(r.Body, p.engine.Limit(pe.LimitBodyBytes))
	if err != nil {
		return err
	}
	if err := x.Request().SetBody(body); err != nil {
		return err
	}
	return p.chain.Run(x, pe.RequestBody)
}

// responsePhases runs as the ReverseProxy's ModifyResponse.
func (p *Proxy) responsePhases(resp *http.Response) error {
	x, ok := resp.Request.Context().Value(ctxKey{}).(*pe.Exchange)
	if !ok {
		return fmt.Errorf("no exchange in the request's context")
	}
	if err := x.SetStatus(resp.StatusCode); err != nil {
		return err
	}
	if err := x.Response().AddHeader(resp.Header); err != nil {
		return err
	}
	last := pe.ResponseHeaders
	buffered := p.chain.Needs()&pe.NeedsResponseBody != 0
	if buffered {
		body, err := readAll(resp.Body, p.engine.Limit(pe.LimitBodyBytes))
		resp.Body.Close()
		if err != nil {
			return err
		}
		if err := x.Response().SetBody(body); err != nil {
			return err
		}
		last = pe.ResponseBody // headers and body in one run
	}
	if err := p.chain.RunPhases(x, pe.ResponseHeaders, last); err != nil {
		return err
	}
	resp.StatusCode = x.Status()
	resp.Status = fmt.Sprintf("%d %s", x.Status(), http.StatusText(x.Status()))
	resp.Header = x.Response().Header()
	if buffered || x.Verdict() == pe.Respond {
		if !buffered {
			resp.Body.Close()
		}
		body := x.Response().Body()
		resp.Body = io.NopCloser(bytes.NewReader(body))
		resp.ContentLength = int64(len(body))
		resp.Header.Set("Content-Length", strconv.Itoa(len(body)))
		resp.TransferEncoding = nil
	}
	return nil
}

// writeExchange sends the exchange's immediate response.
func writeExchange(w http.ResponseWriter, x *pe.Exchange) {
	body := x.Response().Body()
	h := w.Header()
	for name, vals := range x.Response().Header() {
		h[name] = vals
	}
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(x.Status())
	_, _ = w.Write(body)
}
