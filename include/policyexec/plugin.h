/**
 * @file plugin.h
 * @brief The header a plugin includes: its `pe_*` calls go through the table
 *        the library hands to its init, so it needs no symbol from the host.
 *
 * Write a plugin as before, with this header in place of
 * <policyexec/policyexec.h> (the one line that changes):
 *
 * @code
 * #include <policyexec/plugin.h>
 *
 * PE_PLUGIN_EXPORT int pe_plugin_init(pe_engine *engine, int abi) {
 *   ... pe_engine_register_policy(engine, &def) ...
 * }
 * @endcode
 *
 * How: this header defines (weakly, once per plugin whatever its number of
 * files) the entry point `pe_plugin_init_v2`, which stores the table it
 * receives and calls the plugin's own `pe_plugin_init` (renamed by a macro
 * so that the library does not find it first), and it defines every `pe_*`
 * function name as a macro that calls through that table. A plugin built so
 * loads in any host: library opened `RTLD_LOCAL` by an FFI, `RTLD_GLOBAL`,
 * or linked statically without `-rdynamic`.
 *
 * A library older than the plugin (whose table lacks entries the plugin was
 * built with) is refused with PE_ERR_UNSUPPORTED before the plugin runs.
 *
 * Include it in every file of the plugin that calls `pe_*`, and nowhere else
 * (never in the library or a host). GCC or Clang (weak symbols, typeof).
 */
#ifndef POLICYEXEC_PLUGIN_H
#define POLICYEXEC_PLUGIN_H

#include <policyexec/plugin_api.h>

/** @cond PE_PLUGIN_INTERNALS */
#ifdef __cplusplus
extern "C" {
#endif

__attribute__((weak, visibility("hidden"))) const pe_api_routines *pe__api;

__attribute__((visibility("default"))) int pe__plugin_init(pe_engine *engine, int abi);

__attribute__((visibility("default"))) int pe_plugin_init_v2(pe_engine *engine, int abi,
                                                             const pe_api_routines *api);

__attribute__((weak, visibility("default"))) int pe_plugin_init_v2(pe_engine *engine, int abi,
                                                                   const pe_api_routines *api) {
  if (!api || api->api_size < sizeof(pe_api_routines))
    return PE_ERR_UNSUPPORTED;
  pe__api = api;
  return pe__plugin_init(engine, abi);
}

#ifdef __cplusplus
}
#endif

/* The plugin's own init, called by the entry point above. */
#define pe_plugin_init pe__plugin_init

#define pe_chain_builder_add_json (pe__api->chain_builder_add_json)
#define pe_chain_builder_add_step (pe__api->chain_builder_add_step)
#define pe_chain_builder_build (pe__api->chain_builder_build)
#define pe_chain_builder_errmsg (pe__api->chain_builder_errmsg)
#define pe_chain_builder_free (pe__api->chain_builder_free)
#define pe_chain_builder_new (pe__api->chain_builder_new)
#define pe_chain_builder_set_enabled (pe__api->chain_builder_set_enabled)
#define pe_chain_builder_set_failure_mode (pe__api->chain_builder_set_failure_mode)
#define pe_chain_builder_set_timeout (pe__api->chain_builder_set_timeout)
#define pe_chain_free (pe__api->chain_free)
#define pe_chain_needs (pe__api->chain_needs)
#define pe_chain_new_from_json (pe__api->chain_new_from_json)
#define pe_chain_phases (pe__api->chain_phases)
#define pe_chain_ref (pe__api->chain_ref)
#define pe_chain_run (pe__api->chain_run)
#define pe_chain_run_async (pe__api->chain_run_async)
#define pe_chain_run_phases (pe__api->chain_run_phases)
#define pe_chain_run_phases_async (pe__api->chain_run_phases_async)
#define pe_chain_step_count (pe__api->chain_step_count)
#define pe_dispatcher_dispatch (pe__api->dispatcher_dispatch)
#define pe_dispatcher_fd (pe__api->dispatcher_fd)
#define pe_dispatcher_free (pe__api->dispatcher_free)
#define pe_dispatcher_new (pe__api->dispatcher_new)
#define pe_dispatcher_pending (pe__api->dispatcher_pending)
#define pe_engine_errmsg (pe__api->engine_errmsg)
#define pe_engine_free (pe__api->engine_free)
#define pe_engine_has_policy (pe__api->engine_has_policy)
#define pe_engine_limit (pe__api->engine_limit)
#define pe_engine_load_plugin (pe__api->engine_load_plugin)
#define pe_engine_log (pe__api->engine_log)
#define pe_engine_new (pe__api->engine_new)
#define pe_engine_options_free (pe__api->engine_options_free)
#define pe_engine_options_new (pe__api->engine_options_new)
#define pe_engine_options_set_limit (pe__api->engine_options_set_limit)
#define pe_engine_options_set_log (pe__api->engine_options_set_log)
#define pe_engine_options_set_log_level (pe__api->engine_options_set_log_level)
#define pe_engine_options_set_mem (pe__api->engine_options_set_mem)
#define pe_engine_options_set_metrics (pe__api->engine_options_set_metrics)
#define pe_engine_python_ping (pe__api->engine_python_ping)
#define pe_engine_python_restarts (pe__api->engine_python_restarts)
#define pe_engine_python_worker_pids (pe__api->engine_python_worker_pids)
#define pe_engine_register_policy (pe__api->engine_register_policy)
#define pe_engine_start_python (pe__api->engine_start_python)
#define pe_errname (pe__api->errname)
#define pe_exchange_authority (pe__api->exchange_authority)
#define pe_exchange_body (pe__api->exchange_body)
#define pe_exchange_body_append (pe__api->exchange_body_append)
#define pe_exchange_body_prepend (pe__api->exchange_body_prepend)
#define pe_exchange_body_set (pe__api->exchange_body_set)
#define pe_exchange_engine (pe__api->exchange_engine)
#define pe_exchange_errmsg (pe__api->exchange_errmsg)
#define pe_exchange_free (pe__api->exchange_free)
#define pe_exchange_header_add (pe__api->exchange_header_add)
#define pe_exchange_header_at (pe__api->exchange_header_at)
#define pe_exchange_header_count (pe__api->exchange_header_count)
#define pe_exchange_header_get (pe__api->exchange_header_get)
#define pe_exchange_header_get_nth (pe__api->exchange_header_get_nth)
#define pe_exchange_header_remove (pe__api->exchange_header_remove)
#define pe_exchange_header_set (pe__api->exchange_header_set)
#define pe_exchange_meta_at (pe__api->exchange_meta_at)
#define pe_exchange_meta_count (pe__api->exchange_meta_count)
#define pe_exchange_meta_get (pe__api->exchange_meta_get)
#define pe_exchange_meta_remove (pe__api->exchange_meta_remove)
#define pe_exchange_meta_set (pe__api->exchange_meta_set)
#define pe_exchange_method (pe__api->exchange_method)
#define pe_exchange_new (pe__api->exchange_new)
#define pe_exchange_path (pe__api->exchange_path)
#define pe_exchange_reset (pe__api->exchange_reset)
#define pe_exchange_respond (pe__api->exchange_respond)
#define pe_exchange_set_authority (pe__api->exchange_set_authority)
#define pe_exchange_set_errmsg (pe__api->exchange_set_errmsg)
#define pe_exchange_set_method (pe__api->exchange_set_method)
#define pe_exchange_set_path (pe__api->exchange_set_path)
#define pe_exchange_set_status (pe__api->exchange_set_status)
#define pe_exchange_status (pe__api->exchange_status)
#define pe_exchange_verdict (pe__api->exchange_verdict)
#define pe_params_get_bool (pe__api->params_get_bool)
#define pe_params_get_int (pe__api->params_get_int)
#define pe_params_get_number (pe__api->params_get_number)
#define pe_params_get_string (pe__api->params_get_string)
#define pe_params_json (pe__api->params_json)
#define pe_params_set_errmsg (pe__api->params_set_errmsg)
#define pe_phase_name (pe__api->phase_name)
#define pe_python_options_add_module_path (pe__api->python_options_add_module_path)
#define pe_python_options_free (pe__api->python_options_free)
#define pe_python_options_new (pe__api->python_options_new)
#define pe_python_options_set_cpu_affinity (pe__api->python_options_set_cpu_affinity)
#define pe_python_options_set_default_timeout (pe__api->python_options_set_default_timeout)
#define pe_python_options_set_max_in_flight (pe__api->python_options_set_max_in_flight)
#define pe_python_options_set_max_message (pe__api->python_options_set_max_message)
#define pe_python_options_set_restart_backoff (pe__api->python_options_set_restart_backoff)
#define pe_python_options_set_startup_timeout (pe__api->python_options_set_startup_timeout)
#define pe_python_options_set_worker_path (pe__api->python_options_set_worker_path)
#define pe_python_options_set_workers (pe__api->python_options_set_workers)
#define pe_strerror (pe__api->strerror)
#define pe_version (pe__api->version)
#define pe_engine_has_policy_n (pe__api->engine_has_policy_n)
#define pe_chain_builder_add_step_n (pe__api->chain_builder_add_step_n)
#define pe_chain_builder_add_json_n (pe__api->chain_builder_add_json_n)
#define pe_chain_new_from_json_n (pe__api->chain_new_from_json_n)
#define pe_params_json_n (pe__api->params_json_n)
#define pe_exchange_set_method_n (pe__api->exchange_set_method_n)
#define pe_exchange_set_path_n (pe__api->exchange_set_path_n)
#define pe_exchange_set_authority_n (pe__api->exchange_set_authority_n)
#define pe_exchange_method_n (pe__api->exchange_method_n)
#define pe_exchange_path_n (pe__api->exchange_path_n)
#define pe_exchange_authority_n (pe__api->exchange_authority_n)
#define pe_exchange_header_get_n (pe__api->exchange_header_get_n)
#define pe_exchange_header_get_nth_n (pe__api->exchange_header_get_nth_n)
#define pe_exchange_header_set_n (pe__api->exchange_header_set_n)
#define pe_exchange_header_add_n (pe__api->exchange_header_add_n)
#define pe_exchange_header_remove_n (pe__api->exchange_header_remove_n)
#define pe_exchange_body_n (pe__api->exchange_body_n)
#define pe_exchange_body_set_n (pe__api->exchange_body_set_n)
#define pe_exchange_body_prepend_n (pe__api->exchange_body_prepend_n)
#define pe_exchange_body_append_n (pe__api->exchange_body_append_n)
#define pe_exchange_meta_get_n (pe__api->exchange_meta_get_n)
#define pe_exchange_meta_set_n (pe__api->exchange_meta_set_n)
#define pe_exchange_meta_remove_n (pe__api->exchange_meta_remove_n)
#define pe_exchange_respond_n (pe__api->exchange_respond_n)
#define pe_chain_builder_set_executor (pe__api->chain_builder_set_executor)
#define pe_chain_builder_set_executor_n (pe__api->chain_builder_set_executor_n)
#define pe_python_options_set_name (pe__api->python_options_set_name)
#define pe_python_options_set_create_timeout (pe__api->python_options_set_create_timeout)
#define pe_engine_grpc_ping (pe__api->engine_grpc_ping)
#define pe_engine_start_grpc (pe__api->engine_start_grpc)
#define pe_grpc_options_free (pe__api->grpc_options_free)
#define pe_grpc_options_new (pe__api->grpc_options_new)
#define pe_grpc_options_set_default_timeout (pe__api->grpc_options_set_default_timeout)
#define pe_grpc_options_set_keepalive (pe__api->grpc_options_set_keepalive)
#define pe_grpc_options_set_max_in_flight (pe__api->grpc_options_set_max_in_flight)
#define pe_grpc_options_set_max_message (pe__api->grpc_options_set_max_message)
#define pe_grpc_options_set_module_path (pe__api->grpc_options_set_module_path)
#define pe_grpc_options_set_name (pe__api->grpc_options_set_name)
#define pe_grpc_options_set_reconnect_backoff (pe__api->grpc_options_set_reconnect_backoff)
#define pe_grpc_options_set_retries (pe__api->grpc_options_set_retries)
#define pe_grpc_options_set_startup_timeout (pe__api->grpc_options_set_startup_timeout)
#define pe_grpc_options_set_target (pe__api->grpc_options_set_target)
#define pe_grpc_options_set_tls (pe__api->grpc_options_set_tls)
#define pe_python_options_set_worker_max_in_flight                                                 \
  (pe__api->python_options_set_worker_max_in_flight)
#define pe_python_options_set_virtualenv (pe__api->python_options_set_virtualenv)
#define pe_body_chunk_data (pe__api->body_chunk_data)
#define pe_body_chunk_is_last (pe__api->body_chunk_is_last)
#define pe_body_chunk_dir (pe__api->body_chunk_dir)
#define pe_body_chunk_write (pe__api->body_chunk_write)
#define pe_body_chunk_keep (pe__api->body_chunk_keep)
#define pe_body_chunk_state (pe__api->body_chunk_state)
#define pe_chain_body_plan (pe__api->chain_body_plan)
#define pe_chain_stream_body (pe__api->chain_stream_body)
#define pe_exchange_stream_state (pe__api->exchange_stream_state)
#define pe_body_chunk_data_n (pe__api->body_chunk_data_n)
#define pe_body_chunk_write_n (pe__api->body_chunk_write_n)
#define pe_chain_stream_body_n (pe__api->chain_stream_body_n)
#define pe_chain_stream_body_async (pe__api->chain_stream_body_async)
#define pe_chain_stream_body_async_n (pe__api->chain_stream_body_async_n)
#define pe_python_options_set_shm_threshold (pe__api->python_options_set_shm_threshold)
#define pe_exchange_changes (pe__api->exchange_changes)
#define pe_exchange_changes_clear (pe__api->exchange_changes_clear)
/** @endcond */

#endif /* POLICYEXEC_PLUGIN_H */
