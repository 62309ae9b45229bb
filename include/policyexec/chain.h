/**
 * @file chain.h
 * @brief Chains of policy steps: building them, and running a phase.
 *
 * Do not include this file directly: include <policyexec/policyexec.h>.
 */
#ifndef POLICYEXEC_CHAIN_H
#define POLICYEXEC_CHAIN_H

#include <policyexec/common.h>
#include <policyexec/engine.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Collects steps, then builds a chain. Used by one thread at a time. */
typedef struct pe_chain_builder pe_chain_builder;

/** What a failing step does to its exchange. */
typedef enum pe_failure_mode {
  /** Fail closed (the default): answer at once with 500 (504 on a timeout). */
  PE_FAIL_CLOSED = 0,
  /** Fail open: skip the step and discard what it changed. */
  PE_FAIL_OPEN = 1
} pe_failure_mode;

/** The request body must be buffered before PE_PHASE_REQUEST_BODY (pe_chain_needs()). */
#define PE_NEEDS_REQUEST_BODY 0x1u
/** The response body must be buffered before PE_PHASE_RESPONSE_BODY (pe_chain_needs()). */
#define PE_NEEDS_RESPONSE_BODY 0x2u

/**
 * Creates an empty builder for chains of @p engine's policies.
 * @return PE_OK, PE_ERR_INVALID_ARGUMENT or PE_ERR_NOMEM; *@p out untouched
 *         on failure.
 */
PE_API int pe_chain_builder_new(pe_chain_builder **out, pe_engine *engine);

/** Frees @p b (not the chains it built). NULL is a no-op. */
PE_API void pe_chain_builder_free(pe_chain_builder *b);

/**
 * Appends a step that runs policy @p name\@version with @p params_json (a
 * JSON object, copied; an empty slice means `{}`). The step starts enabled,
 * failing closed, and with no timeout of its own: an out-of-process step
 * then gets the pool's default (pe_python_options_set_default_timeout()).
 *
 * Only the JSON syntax is checked here; the policy and its params are
 * checked by pe_chain_builder_build().
 *
 * @return the new step's index (>= 0); PE_ERR_INVALID_ARGUMENT (empty name
 *         or version); PE_ERR_JSON (not a JSON object); PE_ERR_NOMEM.
 */
PE_API int pe_chain_builder_add_step(pe_chain_builder *b, pe_slice name, pe_slice version,
                                     pe_slice params_json);

/** Sets step @p step's failure mode. @return PE_OK or PE_ERR_INVALID_ARGUMENT. */
PE_API int pe_chain_builder_set_failure_mode(pe_chain_builder *b, int step, pe_failure_mode mode);

/**
 * Sets step @p step's timeout in milliseconds (1 .. 3600000). It bounds
 * out-of-process steps; a native step cannot be interrupted and ignores it.
 * @return PE_OK or PE_ERR_INVALID_ARGUMENT.
 */
PE_API int pe_chain_builder_set_timeout(pe_chain_builder *b, int step, uint32_t timeout_ms);

/**
 * Enables (non-zero) or disables step @p step. A disabled step is kept in
 * the chain but never runs and needs nothing.
 * @return PE_OK or PE_ERR_INVALID_ARGUMENT.
 */
PE_API int pe_chain_builder_set_enabled(pe_chain_builder *b, int step, int enabled);

/**
 * Names the executor that runs step @p step (an out-of-process policy): the
 * name an executor was started under, e.g. "python" for the pool of
 * pe_engine_start_python() (see pe_python_options_set_name()). Without it a
 * step runs on the executor that advertised its policy, else on "python".
 * One chain may mix native steps and steps of several executors; consecutive
 * steps of one executor travel as one batch.
 *
 * The name is checked when the chain is built: no such executor fails the
 * build with PE_ERR_NOT_FOUND, and a native step that names one with
 * PE_ERR_INVALID_ARGUMENT.
 *
 * @return PE_OK; PE_ERR_INVALID_ARGUMENT (no such step, or a name that is
 *         empty, longer than 63 bytes or holds NUL); PE_ERR_NOMEM.
 */
PE_API int pe_chain_builder_set_executor(pe_chain_builder *b, int step, pe_slice name);

/**
 * Appends the steps described by a JSON document: either an array of step
 * objects or an object whose "policies" member is one. A step object is
 *
 *     {"name": "...", "version": "...", "params": {...},
 *      "failure_mode": "closed" | "open", "timeout_ms": 1000, "enabled": true,
 *      "executor": "python"}
 *
 * where only name and version are required ("executor": see
 * pe_chain_builder_set_executor()).
 *
 * @return PE_OK; PE_ERR_JSON (syntax, or a member of the wrong type or an
 *         unknown member; the message names the step and member);
 *         PE_ERR_NOMEM. On failure no step is added.
 */
PE_API int pe_chain_builder_add_json(pe_chain_builder *b, pe_slice json);

/**
 * Builds the chain: resolves every policy, validates every step's params
 * against its spec, creates every instance, and computes the phases that run
 * and the bodies to buffer. The builder may then be freed or reused.
 *
 * @return PE_OK; PE_ERR_UNKNOWN_POLICY; PE_ERR_NOT_FOUND (a step names an
 *         executor that is not running); PE_ERR_INVALID_ARGUMENT (a native
 *         step names an executor); PE_ERR_PARAM (missing, unknown or
 *         ill-typed param, or a create callback that refused its params);
 *         PE_ERR_NOMEM; or the error of a backend that could not create an
 *         instance. pe_chain_builder_errmsg() names the step, the policy and
 *         what was wrong. On failure *@p out is untouched and every instance
 *         already created is destroyed.
 * @note Ownership: release the chain with pe_chain_free().
 */
PE_API int pe_chain_builder_build(pe_chain_builder *b, pe_chain **out);

/**
 * The message of the builder's last failure, e.g. "step 2
 * (sample-native-request-header@1.0.0): param 'value': expected string".
 * Never NULL; "" if nothing failed. Valid until the next call on @p b.
 */
PE_API const char *pe_chain_builder_errmsg(const pe_chain_builder *b);

/**
 * Builds a chain from a JSON document in one call (see
 * pe_chain_builder_add_json()). @p errmsg, if not NULL, receives up to
 * @p errmsg_size - 1 bytes of the error message, NUL-terminated.
 * @return as pe_chain_builder_add_json() and pe_chain_builder_build().
 */
PE_API int pe_chain_new_from_json(pe_chain **out, pe_engine *engine, pe_slice json, char *errmsg,
                                  size_t errmsg_size);

/** Takes one more reference on @p chain and returns it. Thread-safe. */
PE_API pe_chain *pe_chain_ref(pe_chain *chain);

/**
 * Drops one reference; the last one destroys every instance. NULL is a
 * no-op. Thread-safe. An exchange must not be running a phase of the chain
 * when its last reference goes.
 */
PE_API void pe_chain_free(pe_chain *chain);

/** Number of steps (enabled or not). */
PE_API size_t pe_chain_step_count(const pe_chain *chain);

/** Mask of PE_PHASE_BIT()s of the phases where at least one enabled step runs. */
PE_API unsigned pe_chain_phases(const pe_chain *chain);

/** Mask of PE_NEEDS_* bits: the bodies a host must buffer for this chain. */
PE_API unsigned pe_chain_needs(const pe_chain *chain);

/**
 * Runs @p phase of @p chain on @p ex and waits for it to finish.
 *
 * Request phases run the steps in chain order, response phases in reverse.
 * A step that answers at once (pe_exchange_respond()) stops the chain; so
 * does a failing step whose mode is closed, which answers 500 (504 on a
 * timeout). A failing step whose mode is open is skipped and its changes are
 * discarded. Step failures are not errors of this call: they are logged,
 * reported to the metrics callback, and recorded in pe_exchange_errmsg().
 *
 * Once the verdict is PE_VERDICT_RESPOND, later phases do nothing.
 *
 * @return PE_OK when the phase is complete (see pe_exchange_verdict());
 *         PE_ERR_INVALID_ARGUMENT (NULL, bad phase, or an exchange of
 *         another engine); PE_ERR_STATE (a phase of @p ex is still pending,
 *         or the call comes from a policy callback running on @p ex: a
 *         callback may run *another* exchange, never its own, which would
 *         recurse or corrupt the outer run).
 * @note Thread-safety: any number of threads may run @p chain at once, each
 *       on its own exchange.
 */
PE_API int pe_chain_run(const pe_chain *chain, pe_exchange *ex, pe_phase phase);

/**
 * Runs the phases @p first to @p last of @p chain on @p ex, in order, as
 * one run; the same as calling pe_chain_run() for each of them, except
 * that out-of-process steps at the end of one phase and at the start of
 * the next travel to the Python workers in one batch: one round trip
 * instead of two.
 *
 * Use it when the data of all these phases is on @p ex before the first
 * one starts. A proxy that buffers the whole response (because the chain
 * needs it, see pe_chain_needs()) runs PE_PHASE_RESPONSE_HEADERS to
 * PE_PHASE_RESPONSE_BODY once the body is complete. Each step still sees
 * only what its own phase shows (a response-headers step does not see the
 * body) and every edit of the steps before it, whatever their phase.
 *
 * @return as pe_chain_run(); PE_ERR_INVALID_ARGUMENT also when
 *         @p first > @p last.
 * @note Thread-safety: as pe_chain_run().
 */
PE_API int pe_chain_run_phases(const pe_chain *chain, pe_exchange *ex, pe_phase first,
                               pe_phase last);

#ifdef __cplusplus
}
#endif

#endif /* POLICYEXEC_CHAIN_H */
