// Package policyexec is the Go binding of libpolicyexec: it runs chains of
// HTTP policies (native C plugins, Go functions registered as policies,
// and Python policies in out-of-process workers) at the four hook points
// of an exchange.
//
// The objects map one to one onto the C API: Engine (pe_engine), ChainBuilder
// and Chain (pe_chain_builder, pe_chain), Exchange (pe_exchange). Errors
// are *Error values carrying the library's Code and message. Close frees an
// object at once; a finalizer frees an object that became unreachable; an
// object is never freed twice, and a closed object's methods return an
// error with code ErrState instead of touching freed memory.
//
// The binding finds the library with pkg-config (package policyexec); see
// README.md for a build tree or an explicit path.
package policyexec
