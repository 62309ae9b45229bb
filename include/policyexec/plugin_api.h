/**
 * @file plugin_api.h
 * @brief The table of the API that the library hands to a plugin's init.
 *
 * A plugin includes <policyexec/plugin.h> (not this file): it makes every
 * `pe_*` call of the plugin go through the table below, so the plugin needs
 * no symbol from the host. That is what lets plugins load whatever way the
 * host loaded the library: `RTLD_LOCAL` (ctypes, LuaJIT's `ffi.load`, most
 * FFIs), `RTLD_GLOBAL`, or linked statically without `-rdynamic`. The scheme
 * is SQLite's loadable extensions (`sqlite3ext.h`).
 *
 * Hosts and the library include this file only to reach pe_api_table().
 */
#ifndef POLICYEXEC_PLUGIN_API_H
#define POLICYEXEC_PLUGIN_API_H

#include <policyexec/policyexec.h>

#ifdef __cplusplus
extern "C" {
#endif

/**
 * The functions of the table, in table order, as `X(name)` where the
 * function is `pe_<name>`. Entries are only ever appended (an older plugin
 * reads a prefix of a newer library's table), and pe_api_routines.api_size
 * tells a plugin how many there are.
 */
#define PE_API_ROUTINES(X)                                                                         \
  X(chain_builder_add_json)                                                                        \
  X(chain_builder_add_step)                                                                        \
  X(chain_builder_build)                                                                           \
  X(chain_builder_errmsg)                                                                          \
  X(chain_builder_free)                                                                            \
  X(chain_builder_new)                                                                             \
  X(chain_builder_set_enabled)                                                                     \
  X(chain_builder_set_failure_mode)                                                                \
  X(chain_builder_set_timeout)                                                                     \
  X(chain_free)                                                                                    \
  X(chain_needs)                                                                                   \
  X(chain_new_from_json)                                                                           \
  X(chain_phases)                                                                                  \
  X(chain_ref)                                                                                     \
  X(chain_run)                                                                                     \
  X(chain_run_async)                                                                               \
  X(chain_run_phases)                                                                              \
  X(chain_run_phases_async)                                                                        \
  X(chain_step_count)                                                                              \
  X(dispatcher_dispatch)                                                                           \
  X(dispatcher_fd)                                                                                 \
  X(dispatcher_free)                                                                               \
  X(dispatcher_new)                                                                                \
  X(dispatcher_pending)                                                                            \
  X(engine_errmsg)                                                                                 \
  X(engine_free)                                                                                   \
  X(engine_has_policy)                                                                             \
  X(engine_limit)                                                                                  \
  X(engine_load_plugin)                                                                            \
  X(engine_log)                                                                                    \
  X(engine_new)                                                                                    \
  X(engine_options_free)                                                                           \
  X(engine_options_new)                                                                            \
  X(engine_options_set_limit)                                                                      \
  X(engine_options_set_log)                                                                        \
  X(engine_options_set_log_level)                                                                  \
  X(engine_options_set_mem)                                                                        \
  X(engine_options_set_metrics)                                                                    \
  X(engine_python_ping)                                                                            \
  X(engine_python_restarts)                                                                        \
  X(engine_python_worker_pids)                                                                     \
  X(engine_register_policy)                                                                        \
  X(engine_start_python)                                                                           \
  X(errname)                                                                                       \
  X(exchange_authority)                                                                            \
  X(exchange_body)                                                                                 \
  X(exchange_body_append)                                                                          \
  X(exchange_body_prepend)                                                                         \
  X(exchange_body_set)                                                                             \
  X(exchange_engine)                                                                               \
  X(exchange_errmsg)                                                                               \
  X(exchange_free)                                                                                 \
  X(exchange_header_add)                                                                           \
  X(exchange_header_at)                                                                            \
  X(exchange_header_count)                                                                         \
  X(exchange_header_get)                                                                           \
  X(exchange_header_get_nth)                                                                       \
  X(exchange_header_remove)                                                                        \
  X(exchange_header_set)                                                                           \
  X(exchange_meta_at)                                                                              \
  X(exchange_meta_count)                                                                           \
  X(exchange_meta_get)                                                                             \
  X(exchange_meta_remove)                                                                          \
  X(exchange_meta_set)                                                                             \
  X(exchange_method)                                                                               \
  X(exchange_new)                                                                                  \
  X(exchange_path)                                                                                 \
  X(exchange_reset)                                                                                \
  X(exchange_respond)                                                                              \
  X(exchange_set_authority)                                                                        \
  X(exchange_set_errmsg)                                                                           \
  X(exchange_set_method)                                                                           \
  X(exchange_set_path)                                                                             \
  X(exchange_set_status)                                                                           \
  X(exchange_status)                                                                               \
  X(exchange_verdict)                                                                              \
  X(params_get_bool)                                                                               \
  X(params_get_int)                                                                                \
  X(params_get_number)                                                                             \
  X(params_get_string)                                                                             \
  X(params_json)                                                                                   \
  X(params_set_errmsg)                                                                             \
  X(phase_name)                                                                                    \
  X(python_options_add_module_path)                                                                \
  X(python_options_free)                                                                           \
  X(python_options_new)                                                                            \
  X(python_options_set_cpu_affinity)                                                               \
  X(python_options_set_default_timeout)                                                            \
  X(python_options_set_max_in_flight)                                                              \
  X(python_options_set_max_message)                                                                \
  X(python_options_set_restart_backoff)                                                            \
  X(python_options_set_startup_timeout)                                                            \
  X(python_options_set_worker_path)                                                                \
  X(python_options_set_workers)                                                                    \
  X(strerror)                                                                                      \
  X(version)                                                                                       \
  X(engine_has_policy_n)                                                                           \
  X(chain_builder_add_step_n)                                                                      \
  X(chain_builder_add_json_n)                                                                      \
  X(chain_new_from_json_n)                                                                         \
  X(params_json_n)                                                                                 \
  X(exchange_set_method_n)                                                                         \
  X(exchange_set_path_n)                                                                           \
  X(exchange_set_authority_n)                                                                      \
  X(exchange_method_n)                                                                             \
  X(exchange_path_n)                                                                               \
  X(exchange_authority_n)                                                                          \
  X(exchange_header_get_n)                                                                         \
  X(exchange_header_get_nth_n)                                                                     \
  X(exchange_header_set_n)                                                                         \
  X(exchange_header_add_n)                                                                         \
  X(exchange_header_remove_n)                                                                      \
  X(exchange_body_n)                                                                               \
  X(exchange_body_set_n)                                                                           \
  X(exchange_body_prepend_n)                                                                       \
  X(exchange_body_append_n)                                                                        \
  X(exchange_meta_get_n)                                                                           \
  X(exchange_meta_set_n)                                                                           \
  X(exchange_meta_remove_n)                                                                        \
  X(exchange_respond_n)                                                                            \
  X(chain_builder_set_executor)                                                                    \
  X(chain_builder_set_executor_n)                                                                  \
  X(python_options_set_name)                                                                       \
  X(python_options_set_create_timeout)                                                             \
  X(engine_grpc_ping)                                                                              \
  X(engine_start_grpc)                                                                             \
  X(grpc_options_free)                                                                             \
  X(grpc_options_new)                                                                              \
  X(grpc_options_set_default_timeout)                                                              \
  X(grpc_options_set_keepalive)                                                                    \
  X(grpc_options_set_max_in_flight)                                                                \
  X(grpc_options_set_max_message)                                                                  \
  X(grpc_options_set_module_path)                                                                  \
  X(grpc_options_set_name)                                                                         \
  X(grpc_options_set_reconnect_backoff)                                                            \
  X(grpc_options_set_retries)                                                                      \
  X(grpc_options_set_startup_timeout)                                                              \
  X(grpc_options_set_target)                                                                       \
  X(grpc_options_set_tls)                                                                          \
  X(python_options_set_worker_max_in_flight)                                                       \
  X(python_options_set_virtualenv)                                                                 \
  X(body_chunk_data)                                                                               \
  X(body_chunk_is_last)                                                                            \
  X(body_chunk_dir)                                                                                \
  X(body_chunk_write)                                                                              \
  X(body_chunk_keep)                                                                               \
  X(body_chunk_state)                                                                              \
  X(chain_body_plan)                                                                               \
  X(chain_stream_body)                                                                             \
  X(exchange_stream_state)                                                                         \
  X(body_chunk_data_n)                                                                             \
  X(body_chunk_write_n)                                                                            \
  X(chain_stream_body_n)                                                                           \
  X(python_options_set_shm_threshold)                                                              \
  X(chain_stream_body_async)                                                                       \
  X(chain_stream_body_async_n)                                                                     \
  X(exchange_changes)                                                                              \
  X(exchange_changes_clear)

/** The revision of pe_api_routines this header describes. */
#define PE_API_ROUTINES_VERSION 1

/**
 * The API as a table of function pointers: member `name` is `&pe_name`.
 * The library's table is static and constant: valid as long as the library
 * stays loaded, and safe to read from any thread.
 */
typedef struct pe_api_routines {
  size_t api_size; /**< sizeof the library's table: which entries exist. */
  int api_version; /**< PE_API_ROUTINES_VERSION of the library. */
  /** @cond PE_API_MEMBERS */
#define PE__API_MEMBER(name) __typeof__(pe_##name) *name;
  PE_API_ROUTINES(PE__API_MEMBER)
#undef PE__API_MEMBER
  /** @endcond */
} pe_api_routines;

/**
 * The plugin entry point the library looks for first (a plugin built with
 * <policyexec/plugin.h> exports it): it receives @p api, the library's
 * table, and registers the plugin's policies on @p engine. Plugins that
 * export only `pe_plugin_init` (the old entry point) still load, but only in
 * hosts that made the library's symbols global.
 */
typedef int (*pe_plugin_init_v2_fn)(pe_engine *engine, int abi, const pe_api_routines *api);

/** Name of the symbol of a ::pe_plugin_init_v2_fn. */
#define PE_PLUGIN_INIT_V2_SYMBOL "pe_plugin_init_v2"

/**
 * The library's table of its API. Never NULL; static; thread-safe.
 */
PE_API const pe_api_routines *pe_api_table(void);

#ifdef __cplusplus
}
#endif

#endif /* POLICYEXEC_PLUGIN_API_H */
