/**
 * @file policy.h
 * @brief Native (C) policies: definitions, params and plugins.
 *
 * Do not include this file directly: include <policyexec/policyexec.h>.
 */
#ifndef POLICYEXEC_POLICY_H
#define POLICYEXEC_POLICY_H

#include <policyexec/common.h>
#include <policyexec/engine.h>
#include <policyexec/stream.h>

#ifdef __cplusplus
extern "C" {
#endif

/**
 * The params of one step, validated against the policy's param specs before
 * the policy's create callback sees them. Valid only during that callback.
 */
typedef struct pe_params pe_params;

/** JSON type of a declared param. */
typedef enum pe_param_type {
  PE_PARAM_STRING = 0, /**< A JSON string. */
  PE_PARAM_INT = 1,    /**< A JSON integer. */
  PE_PARAM_NUMBER = 2, /**< A JSON integer or real. */
  PE_PARAM_BOOL = 3,   /**< true or false. */
  PE_PARAM_ANY = 4     /**< Any JSON value (object, array, ...). */
} pe_param_type;

/** One param a policy accepts. */
typedef struct pe_param_spec {
  const char *name;   /**< Key in the step's params object. */
  pe_param_type type; /**< Required JSON type. */
  int required;       /**< Non-zero: a step without it fails to build. */
} pe_param_spec;

/** The policy needs the request body buffered (see pe_policy_def.flags). */
#define PE_POLICY_NEEDS_REQUEST_BODY 0x1u
/** The policy needs the response body buffered (see pe_policy_def.flags). */
#define PE_POLICY_NEEDS_RESPONSE_BODY 0x2u

/**
 * A phase callback. It reads and changes @p ex with the pe_exchange_*()
 * functions, which enforce the same rules as for the host.
 *
 * Return PE_OK to go on (having called pe_exchange_respond() to answer at
 * once, if it wants), or a negative value to fail: the step then follows its
 * failure mode and its changes to @p ex are discarded. A policy may call
 * pe_exchange_set_errmsg() first to say why; otherwise the message names the
 * value it returned. Any negative value is the policy's failure, reported as
 * PE_ERR_POLICY (a callback returning -1 is not an "invalid argument" of the
 * library's), except PE_ERR_TIMEOUT, which keeps its meaning (504 when the
 * step fails closed).
 *
 * @p instance is shared by every thread that runs the chain: treat it as
 * read-only here (or protect what you change).
 */
typedef int (*pe_phase_fn)(pe_exchange *ex, void *instance, void *user_data);

/**
 * The ABI revision of pe_policy_def this header describes. 2 added the
 * streamed body callbacks at the end of the struct; a definition that says
 * 1 is read without them (so plugins built against revision 1 still load).
 */
#define PE_POLICY_ABI 2

/**
 * A native policy definition, passed to pe_engine_register_policy() (which
 * copies it, strings and specs included).
 *
 * The phases a policy implements are those whose callback is non-NULL (at
 * least one must be; a streamed body callback implements its body phase).
 * A policy with a buffered body callback needs that body buffered whatever
 * @p flags says, unless it also has the streamed one for that body: then
 * the host may stream, and the buffered callback runs when some other step
 * makes the body buffered (see stream.h).
 */
typedef struct pe_policy_def {
  int abi;                     /**< Set to PE_POLICY_ABI. */
  const char *name;            /**< e.g. "sample-native-request-header". */
  const char *version;         /**< e.g. "1.0.0"; matched exactly. */
  unsigned flags;              /**< PE_POLICY_NEEDS_* bits. */
  const pe_param_spec *params; /**< Accepted params (others are refused). */
  size_t param_count;          /**< Number of entries in @p params. */

  /**
   * Creates an instance from validated params. May be NULL (the instance is
   * then NULL). Return PE_OK and set *@p instance, or a negative code after
   * pe_params_set_errmsg(); the chain then fails to build.
   */
  int (*create)(void **instance, pe_params *params, void *user_data);
  /** Destroys an instance (when its chain goes away). May be NULL. */
  void (*destroy)(void *instance, void *user_data);

  pe_phase_fn on_request_headers;  /**< PE_PHASE_REQUEST_HEADERS, or NULL. */
  pe_phase_fn on_request_body;     /**< PE_PHASE_REQUEST_BODY, or NULL. */
  pe_phase_fn on_response_headers; /**< PE_PHASE_RESPONSE_HEADERS, or NULL. */
  pe_phase_fn on_response_body;    /**< PE_PHASE_RESPONSE_BODY, or NULL. */

  void *user_data; /**< Passed to every callback above. */
  /**
   * Called once with @p user_data when the definition goes away: when the
   * engine is destroyed, or right away if registration fails. May be NULL.
   */
  void (*free_user_data)(void *user_data);

  /* ---- ABI 2 (read only when abi >= 2) ---- */

  /** Streamed PE_PHASE_REQUEST_BODY: one call per chunk (stream.h), or NULL. @since ABI 2 */
  pe_body_chunk_fn on_request_body_chunk;
  /** Streamed PE_PHASE_RESPONSE_BODY: one call per chunk (stream.h), or NULL. @since ABI 2 */
  pe_body_chunk_fn on_response_body_chunk;
  /** Frees a body's state (pe_body_chunk_state()); may be NULL. @since ABI 2 */
  pe_body_state_free_fn free_body_state;
} pe_policy_def;

/**
 * Registers a native policy.
 *
 * @return PE_OK; PE_ERR_INVALID_ARGUMENT (NULL, abi not 1 or 2, empty name or
 *         version, no phase callback, a spec without a name or with an
 *         unknown type, two specs with one name); PE_ERR_EXISTS
 *         (name\@version already registered, native or Python);
 *         PE_ERR_NOMEM. On failure free_user_data has already run and
 *         pe_engine_errmsg() says why.
 * @note Thread-safe. Registering does not change chains already built.
 */
PE_API int pe_engine_register_policy(pe_engine *engine, const pe_policy_def *def);

/**
 * The function a plugin exports as `pe_plugin_init`: it registers the
 * plugin's policies on @p engine and returns PE_OK, or a negative code.
 * @p abi is PE_POLICY_ABI of the loading library.
 */
typedef int (*pe_plugin_init_fn)(pe_engine *engine, int abi);

/** Put before a plugin's pe_plugin_init definition so it is exported. */
#if defined(__GNUC__)
#define PE_PLUGIN_EXPORT __attribute__((visibility("default")))
#else
#define PE_PLUGIN_EXPORT
#endif

/** Name of the symbol a plugin exports. */
#define PE_PLUGIN_INIT_SYMBOL "pe_plugin_init"

/**
 * Loads a plugin: dlopen()s @p path and calls its pe_plugin_init.
 *
 * @return PE_OK; PE_ERR_INVALID_ARGUMENT; PE_ERR_PLUGIN (cannot be opened,
 *         no pe_plugin_init, or init failed: pe_engine_errmsg() says which
 *         and why); PE_ERR_EXISTS if it registers a name\@version that is
 *         taken. A plugin that fails is unloaded, and policies it registered
 *         before failing are removed again.
 * @note Thread-safe. The library stays loaded until the engine goes away.
 */
PE_API int pe_engine_load_plugin(pe_engine *engine, const char *path);

/**
 * Whether name\@version is registered (native or Python): 1 yes, 0 no.
 * Thread-safe.
 */
PE_API int pe_engine_has_policy(pe_engine *engine, pe_slice name, pe_slice version);

/**
 * Reads string param @p key. *@p out points into @p params and is valid
 * until the create callback returns (copy what you keep).
 * @return PE_OK, PE_ERR_NOT_FOUND (absent), PE_ERR_PARAM (not a string),
 *         PE_ERR_INVALID_ARGUMENT.
 */
PE_API int pe_params_get_string(const pe_params *params, const char *key, pe_slice *out);

/** Reads integer param @p key; codes as pe_params_get_string(). */
PE_API int pe_params_get_int(const pe_params *params, const char *key, int64_t *out);

/** Reads number param @p key (integer or real); codes as pe_params_get_string(). */
PE_API int pe_params_get_number(const pe_params *params, const char *key, double *out);

/** Reads boolean param @p key (sets 0 or 1); codes as pe_params_get_string(). */
PE_API int pe_params_get_bool(const pe_params *params, const char *key, int *out);

/**
 * The whole params object as compact JSON text, for policies that take
 * nested values (PE_PARAM_ANY). Valid until the create callback returns.
 */
PE_API pe_slice pe_params_json(const pe_params *params);

/**
 * Explains why the create callback fails; becomes part of the chain
 * builder's error message. Returns PE_OK.
 */
PE_API int pe_params_set_errmsg(pe_params *params, const char *fmt, ...) PE_PRINTF(2, 3);

#ifdef __cplusplus
}
#endif

#endif /* POLICYEXEC_POLICY_H */
