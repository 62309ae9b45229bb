/*
 * C side of the Go binding: checks that the library's headers are there and
 * of a version this binding knows, and declares the trampolines that turn
 * the library's callbacks (C function pointers + void *user_data) into
 * calls of exported Go functions. The user_data of every Go callback is a
 * runtime/cgo.Handle carried as uintptr_t, never a Go pointer.
 */
#ifndef PE_GO_H
#define PE_GO_H

#if defined(__has_include) && !defined(__CPPCHECK__) /* cppcheck cannot evaluate it */
#if !__has_include(<policyexec/policyexec.h>)
#error                                                                                             \
    "libpolicyexec headers not found: install libpolicyexec (pkg-config policyexec), put policyexec-uninstalled.pc of a build tree on PKG_CONFIG_PATH, or build with -tags policyexec_nopkgconfig and CGO_CFLAGS=-I<prefix>/include (see bindings/go/README.md)"
#endif
#endif

#include <policyexec/policyexec.h>
#include <stdint.h>
#include <stdlib.h>

#if PE_VERSION_MAJOR != 0
#error "this Go binding was written for libpolicyexec 0.x"
#endif

/* Trampolines, defined in pe_go_callbacks.c. */
void pe_go_log_tramp(pe_log_level level, const char *message, void *user_data);
void pe_go_metrics_tramp(const pe_step_event *event, void *user_data);

/*
 * Registers a Go policy: @p phases is a mask of PE_PHASE_BIT()s of the
 * phases the Go side implements, @p has_create whether it creates
 * instances (the Go side then owns one handle per instance), @p handle is
 * the cgo.Handle of the Go definition (deleted by the free_user_data hook,
 * which the library also runs when registration fails).
 */
int pe_go_register_policy(pe_engine *engine, const char *name, const char *version, unsigned flags,
                          const pe_param_spec *params, size_t param_count, unsigned phases,
                          int has_create, uintptr_t handle);

#endif /* PE_GO_H */
