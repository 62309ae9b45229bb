//go:build !policyexec_nopkgconfig

package policyexec

// By default cgo asks pkg-config for the flags of the installed library (or
// of a build tree, through policyexec-uninstalled.pc on PKG_CONFIG_PATH).
// Build with -tags policyexec_nopkgconfig and set CGO_CFLAGS / CGO_LDFLAGS
// to use a library that pkg-config does not know about.

/*
#cgo pkg-config: policyexec
*/
import "C"
