//go:build policyexec_nopkgconfig

package policyexec

// With -tags policyexec_nopkgconfig the flags come from the environment:
//   CGO_CFLAGS="-I/opt/pe/include" CGO_LDFLAGS="-L/opt/pe/lib -Wl,-rpath,/opt/pe/lib"

/*
#cgo LDFLAGS: -lpolicyexec
*/
import "C"
