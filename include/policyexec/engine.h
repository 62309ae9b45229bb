/**
 * @file engine.h
 * @brief The engine: policy registry, limits, allocator, log and metrics.
 *
 * Do not include this file directly: include <policyexec/policyexec.h>.
 */
#ifndef POLICYEXEC_ENGINE_H
#define POLICYEXEC_ENGINE_H

#include <policyexec/common.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Options for pe_engine_new(); see pe_engine_options_new(). */
typedef struct pe_engine_options pe_engine_options;

/**
 * Allocator hooks. Every allocation the engine, its chains and exchanges
 * make goes through them (JSON parsing at build time excepted: jansson has
 * one process-wide allocator). All four must be set.
 */
typedef struct pe_mem {
  void *(*malloc)(size_t size, void *user_data);               /**< As malloc(3). */
  void (*free)(void *ptr, void *user_data);                    /**< As free(3). */
  void *(*calloc)(size_t nmemb, size_t size, void *user_data); /**< As calloc(3). */
  void *(*realloc)(void *ptr, size_t size, void *user_data);   /**< As realloc(3). */
  void *user_data;                                             /**< Passed to each hook. */
} pe_mem;

/** Severity of a log message. */
typedef enum pe_log_level {
  PE_LOG_ERROR = 0,
  PE_LOG_WARN = 1,
  PE_LOG_INFO = 2,
  PE_LOG_DEBUG = 3
} pe_log_level;

/**
 * Log callback. @p message is NUL-terminated and valid only during the call.
 * May be called from any thread that uses the engine, its chains or
 * exchanges, so it must be thread-safe.
 */
typedef void (*pe_log_fn)(pe_log_level level, const char *message, void *user_data);

/** How a step ended, as reported to the metrics callback. */
typedef enum pe_step_outcome {
  PE_STEP_OK = 0,        /**< Ran and returned success. */
  PE_STEP_RESPONDED = 1, /**< Ran and produced an immediate response. */
  PE_STEP_FAILED = 2,    /**< Returned an error, raised, or broke a rule. */
  PE_STEP_TIMEOUT = 3,   /**< Did not finish within its timeout. */
  PE_STEP_CRASHED = 4    /**< Its worker died or broke the protocol. */
} pe_step_outcome;

/** One step execution, as reported to the metrics callback. */
typedef struct pe_step_event {
  pe_slice policy_name;    /**< Policy name. */
  pe_slice policy_version; /**< Policy version. */
  size_t step_index;       /**< Position of the step in its chain. */
  pe_phase phase;          /**< Phase that ran. */
  pe_step_outcome outcome; /**< How it ended. */
  int failure_open;        /**< 1 if the step's failure mode is open. */
  uint64_t duration_ns;    /**< Wall time of the step (or of its batch). */
} pe_step_event;

/**
 * Metrics callback, called after every step that ran. Called on the thread
 * that runs the phase (or dispatches its completion); must be thread-safe.
 * When no callback is set, the library does not read the clock.
 */
typedef void (*pe_metrics_fn)(const pe_step_event *event, void *user_data);

/** Configurable limits; see pe_engine_options_set_limit(). */
typedef enum pe_limit {
  PE_LIMIT_HEADER_COUNT = 0, /**< Headers per side. Default 100. */
  PE_LIMIT_HEADER_BYTES = 1, /**< Sum of name and value bytes per side. Default 64 KiB. */
  PE_LIMIT_BODY_BYTES = 2,   /**< Bytes per body. Default 16 MiB. */
  PE_LIMIT_META_COUNT = 3,   /**< Metadata entries. Default 100. */
  PE_LIMIT_META_BYTES = 4    /**< Sum of metadata key and value bytes. Default 64 KiB. */
} pe_limit;

/**
 * Creates an options object with every setting at its default.
 *
 * @return PE_OK, PE_ERR_INVALID_ARGUMENT (@p out NULL) or PE_ERR_NOMEM; on
 *         failure *@p out is untouched.
 * @note Ownership: the caller frees it with pe_engine_options_free(); it may
 *       be freed right after pe_engine_new(), which copies it.
 */
PE_API int pe_engine_options_new(pe_engine_options **out);

/** Frees @p opts. NULL is a no-op. */
PE_API void pe_engine_options_free(pe_engine_options *opts);

/**
 * Sets the allocator hooks (copied). NULL restores malloc/free.
 * @return PE_OK, or PE_ERR_INVALID_ARGUMENT if @p opts is NULL or a hook in
 *         @p mem is NULL.
 */
PE_API int pe_engine_options_set_mem(pe_engine_options *opts, const pe_mem *mem);

/**
 * Sets the log callback. NULL @p fn silences the engine (the default).
 * @return PE_OK or PE_ERR_INVALID_ARGUMENT.
 */
PE_API int pe_engine_options_set_log(pe_engine_options *opts, pe_log_fn fn, void *user_data);

/**
 * Sets the most verbose level passed to the log callback (default PE_LOG_INFO).
 * @return PE_OK or PE_ERR_INVALID_ARGUMENT.
 */
PE_API int pe_engine_options_set_log_level(pe_engine_options *opts, pe_log_level level);

/**
 * Sets the metrics callback (default none).
 * @return PE_OK or PE_ERR_INVALID_ARGUMENT.
 */
PE_API int pe_engine_options_set_metrics(pe_engine_options *opts, pe_metrics_fn fn,
                                         void *user_data);

/**
 * Sets limit @p which to @p value (must be at least 1).
 * @return PE_OK, or PE_ERR_INVALID_ARGUMENT for an unknown limit or 0.
 */
PE_API int pe_engine_options_set_limit(pe_engine_options *opts, pe_limit which, size_t value);

/**
 * Creates an engine.
 *
 * @param out  receives the engine; untouched on failure.
 * @param opts options (copied), or NULL for all defaults.
 * @return PE_OK, PE_ERR_INVALID_ARGUMENT or PE_ERR_NOMEM.
 * @note Ownership: release with pe_engine_free().
 */
PE_API int pe_engine_new(pe_engine **out, const pe_engine_options *opts);

/**
 * Drops the caller's reference. The engine (and its registered policies,
 * whose free_user_data hooks then run) goes away once every chain and
 * exchange made from it is freed too. NULL is a no-op.
 *
 * Going away stops the Python worker pool: SIGTERM to every worker, SIGKILL
 * (to each worker's process group, with what its policies forked) to those
 * left after the shutdown grace period (1 s). A worker still starting up or
 * re-creating instances (a slow constructor) is not waited for beyond it.
 */
PE_API void pe_engine_free(pe_engine *engine);

/**
 * The current value of limit @p which, or 0 for an unknown limit.
 * Thread-safe.
 */
PE_API size_t pe_engine_limit(const pe_engine *engine, pe_limit which);

/**
 * The message of the last failing call on @p engine (register, load a
 * plugin), e.g. "plugin ./x.so: undefined symbol pe_plugin_init".
 * Never NULL; "" if nothing has failed.
 *
 * @note The string is overwritten by the engine's next failing call from any
 *       thread: read it right away, from the thread whose call failed.
 */
PE_API const char *pe_engine_errmsg(const pe_engine *engine);

/**
 * Passes @p message to the engine's log callback at @p level, as the library
 * does. For policies and hosts that want one log stream. Thread-safe.
 */
PE_API void pe_engine_log(pe_engine *engine, pe_log_level level, const char *fmt, ...)
    PE_PRINTF(3, 4);

#ifdef __cplusplus
}
#endif

#endif /* POLICYEXEC_ENGINE_H */
