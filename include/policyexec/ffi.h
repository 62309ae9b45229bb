/**
 * @file ffi.h
 * @brief Pointer + length variants of the calls that pass ::pe_slice by value.
 *
 * Do not include this file directly: include <policyexec/policyexec.h>.
 *
 * Many foreign function interfaces cannot pass or return a struct by value
 * (LuaJIT's compiler aborts on it and falls back to its interpreter; others
 * refuse outright). Every function of the API that takes or returns a
 * ::pe_slice by value has a twin here, named with the suffix `_n`, that takes
 * `const char *ptr, size_t len` instead, or returns the pointer and stores
 * the length through `size_t *len`. Output slices (`pe_slice *`) stay as
 * they are: every FFI passes a pointer to a struct.
 *
 * Each twin behaves exactly as the function it mirrors: same checks, same
 * return codes, same ownership and lifetimes, same thread-safety, and it
 * sets the same error message. A NULL pointer with a non-zero length is
 * refused with PE_ERR_INVALID_ARGUMENT where the twin returns a code; a NULL
 * pointer with length 0 is the empty string.
 */
#ifndef POLICYEXEC_FFI_H
#define POLICYEXEC_FFI_H

#include <policyexec/async.h>
#include <policyexec/common.h>
#include <policyexec/engine.h>
#include <policyexec/chain.h>
#include <policyexec/exchange.h>
#include <policyexec/policy.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- engine and chains ---- */

/** As pe_engine_has_policy(). */
PE_API int pe_engine_has_policy_n(pe_engine *engine, const char *name, size_t name_len,
                                  const char *version, size_t version_len);

/** As pe_chain_builder_add_step(). */
PE_API int pe_chain_builder_add_step_n(pe_chain_builder *b, const char *name, size_t name_len,
                                       const char *version, size_t version_len,
                                       const char *params_json, size_t params_json_len);

/** As pe_chain_builder_add_json(). */
PE_API int pe_chain_builder_add_json_n(pe_chain_builder *b, const char *json, size_t json_len);

/** As pe_chain_builder_set_executor(). */
PE_API int pe_chain_builder_set_executor_n(pe_chain_builder *b, int step, const char *name,
                                           size_t name_len);

/** As pe_chain_new_from_json(). */
PE_API int pe_chain_new_from_json_n(pe_chain **out, pe_engine *engine, const char *json,
                                    size_t json_len, char *errmsg, size_t errmsg_size);

/**
 * As pe_params_json(): returns the pointer and stores the length in *@p len
 * (which may be NULL).
 */
PE_API const char *pe_params_json_n(const pe_params *params, size_t *len);

/* ---- request line ---- */

/** As pe_exchange_set_method(). */
PE_API int pe_exchange_set_method_n(pe_exchange *ex, const char *method, size_t len);
/** As pe_exchange_set_path(). */
PE_API int pe_exchange_set_path_n(pe_exchange *ex, const char *path, size_t len);
/** As pe_exchange_set_authority(). */
PE_API int pe_exchange_set_authority_n(pe_exchange *ex, const char *authority, size_t len);

/**
 * As pe_exchange_method(): returns the pointer (never NULL) and stores the
 * length in *@p len (which may be NULL). Same lifetime as the slice.
 */
PE_API const char *pe_exchange_method_n(const pe_exchange *ex, size_t *len);
/** As pe_exchange_path(); see pe_exchange_method_n(). */
PE_API const char *pe_exchange_path_n(const pe_exchange *ex, size_t *len);
/** As pe_exchange_authority(); see pe_exchange_method_n(). */
PE_API const char *pe_exchange_authority_n(const pe_exchange *ex, size_t *len);

/* ---- headers ---- */

/** As pe_exchange_header_get(). */
PE_API int pe_exchange_header_get_n(const pe_exchange *ex, pe_dir dir, const char *name,
                                    size_t name_len, pe_slice *value);
/** As pe_exchange_header_get_nth(). */
PE_API int pe_exchange_header_get_nth_n(const pe_exchange *ex, pe_dir dir, const char *name,
                                        size_t name_len, size_t nth, pe_slice *value);
/** As pe_exchange_header_set(). */
PE_API int pe_exchange_header_set_n(pe_exchange *ex, pe_dir dir, const char *name, size_t name_len,
                                    const char *value, size_t value_len);
/** As pe_exchange_header_add(). */
PE_API int pe_exchange_header_add_n(pe_exchange *ex, pe_dir dir, const char *name, size_t name_len,
                                    const char *value, size_t value_len);
/** As pe_exchange_header_remove(). */
PE_API int pe_exchange_header_remove_n(pe_exchange *ex, pe_dir dir, const char *name,
                                       size_t name_len);

/* ---- bodies ---- */

/** As pe_exchange_body(); see pe_exchange_method_n(). */
PE_API const char *pe_exchange_body_n(const pe_exchange *ex, pe_dir dir, size_t *len);
/** As pe_exchange_body_set(). */
PE_API int pe_exchange_body_set_n(pe_exchange *ex, pe_dir dir, const char *data, size_t len);
/** As pe_exchange_body_prepend(). */
PE_API int pe_exchange_body_prepend_n(pe_exchange *ex, pe_dir dir, const char *data, size_t len);
/** As pe_exchange_body_append(). */
PE_API int pe_exchange_body_append_n(pe_exchange *ex, pe_dir dir, const char *data, size_t len);

/* ---- metadata and immediate response ---- */

/** As pe_exchange_meta_get(). */
PE_API int pe_exchange_meta_get_n(const pe_exchange *ex, const char *key, size_t key_len,
                                  pe_slice *value);
/** As pe_exchange_meta_set(). */
PE_API int pe_exchange_meta_set_n(pe_exchange *ex, const char *key, size_t key_len,
                                  const char *value, size_t value_len);
/** As pe_exchange_meta_remove(). */
PE_API int pe_exchange_meta_remove_n(pe_exchange *ex, const char *key, size_t key_len);
/** As pe_exchange_respond(). */
PE_API int pe_exchange_respond_n(pe_exchange *ex, int status, const char *body, size_t body_len);

/* ---- streamed bodies (stream.h) ---- */

/** As pe_body_chunk_data(); see pe_exchange_method_n(). Valid during the callback. */
PE_API const char *pe_body_chunk_data_n(const pe_body_chunk *chunk, size_t *len);
/** As pe_body_chunk_write(). */
PE_API int pe_body_chunk_write_n(pe_body_chunk *chunk, const char *data, size_t len);
/**
 * As pe_chain_stream_body(): *@p out (never NULL) and *@p out_len receive
 * the bytes to forward; both must be non-NULL (else
 * PE_ERR_INVALID_ARGUMENT).
 */
PE_API int pe_chain_stream_body_n(const pe_chain *chain, pe_exchange *ex, pe_dir dir,
                                  const char *chunk, size_t chunk_len, int last, const char **out,
                                  size_t *out_len);
/**
 * As pe_chain_stream_body_async(): *@p out and *@p out_len (both non-NULL,
 * else PE_ERR_INVALID_ARGUMENT) receive the bytes to forward when it
 * returns PE_OK or before @p done is called; they must stay valid until
 * then (@p chunk need not).
 */
PE_API int pe_chain_stream_body_async_n(const pe_chain *chain, pe_exchange *ex, pe_dir dir,
                                        const char *chunk, size_t chunk_len, int last,
                                        const char **out, size_t *out_len, pe_dispatcher *d,
                                        pe_run_done_fn done, void *user_data);

#ifdef __cplusplus
}
#endif

#endif /* POLICYEXEC_FFI_H */
