/**
 * @file grpc.h
 * @brief Remote executors: Python policies on other hosts, over gRPC.
 *
 * Do not include this file directly: include <policyexec/policyexec.h>.
 *
 * A gRPC executor sends each batch of steps as one unary call of service
 * `policyexec.v1.Executor` (proto/policyexec/v1/executor.proto) to a target
 * that gRPC resolves and balances itself: `dns:///executors.example:50051`
 * (every address of the name, round-robin), `ipv4:10.0.0.1:50051,10.0.0.2:50051`,
 * `unix:///run/policyexec.sock`, or `grpc://host:port` (read as
 * `dns:///host:port`). Any server of that service is an executor:
 * `policyexec-executor` (the Python worker behind a gRPC port) or one's own.
 *
 * Every call is self-describing (each step's policy, version and params go
 * with it; an executor that has not seen an instance creates it first), so
 * any executor behind the target may serve any call. Each call's deadline
 * is the sum of its steps' timeouts. A call that exceeds it ends with
 * PE_STEP_TIMEOUT (PE_ERR_TIMEOUT); an executor that cannot be reached or
 * fails the call ends it with PE_STEP_CRASHED (PE_ERR_WORKER); both follow
 * each step's failure mode. gRPC reconnects by itself with back-off.
 *
 * All of gRPC lives in a separate module, `libpolicyexec-grpc.so`, loaded
 * by pe_engine_start_grpc() (never before), and gRPC itself starts on the
 * first run that needs it in the process: a host that builds its engine
 * and chains and then forks (nginx's master) starts gRPC in each child.
 * Until then the library asks executors what they serve and checks
 * params from a short-lived child process of its own.
 */
#ifndef POLICYEXEC_GRPC_H
#define POLICYEXEC_GRPC_H

#include <policyexec/common.h>
#include <policyexec/engine.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Settings of a gRPC executor; see pe_grpc_options_new(). */
typedef struct pe_grpc_options pe_grpc_options;

/**
 * Creates gRPC executor options with every setting at its default: name
 * "grpc", no target (one must be set), a 1000 ms default step timeout, 1024
 * calls in flight, keepalive pings every 30 s (10 s to answer), reconnect
 * back-off from 100 ms up to 2000 ms, message limit derived from the
 * engine's limits, plaintext, 10 s to start (the first contact).
 *
 * @return PE_OK, PE_ERR_INVALID_ARGUMENT (@p out NULL) or PE_ERR_NOMEM; on
 *         failure *@p out is untouched.
 * @note Ownership: free with pe_grpc_options_free(); pe_engine_start_grpc()
 *       copies it.
 */
PE_API int pe_grpc_options_new(pe_grpc_options **out);

/** Frees @p opts. NULL is a no-op. */
PE_API void pe_grpc_options_free(pe_grpc_options *opts);

/**
 * Names the executor (default "grpc"); chain steps name it with
 * `"executor": "<name>"` or pe_chain_builder_set_executor().
 * @return PE_OK, or PE_ERR_INVALID_ARGUMENT (NULL, empty, longer than 63 bytes).
 */
PE_API int pe_grpc_options_set_name(pe_grpc_options *opts, const char *name);

/**
 * Sets the target (copied): a gRPC target name (`dns:///host:port`,
 * `ipv4:addr:port[,addr:port...]`, `ipv6:...`, `unix:///path`) or
 * `grpc://host:port`.
 * @return PE_OK, PE_ERR_INVALID_ARGUMENT (NULL or empty) or PE_ERR_NOMEM.
 */
PE_API int pe_grpc_options_set_target(pe_grpc_options *opts, const char *target);

/**
 * Sets the timeout of steps that keep their chain's default (1 .. 3600000
 * ms; default 1000).
 * @return PE_OK or PE_ERR_INVALID_ARGUMENT.
 */
PE_API int pe_grpc_options_set_default_timeout(pe_grpc_options *opts, uint32_t timeout_ms);

/**
 * Sets how many calls may be in flight at once over the whole engine
 * (default 1024). Past it a batch fails at once with PE_ERR_BUSY and
 * pe_chain_run_async() returns PE_ERR_BUSY.
 * @return PE_OK, or PE_ERR_INVALID_ARGUMENT for 0.
 */
PE_API int pe_grpc_options_set_max_in_flight(pe_grpc_options *opts, size_t max_calls);

/**
 * Sets HTTP/2 keepalive: a ping every @p interval_ms on each connection,
 * which is closed (and re-made) when no answer comes within @p timeout_ms.
 * 0 turns keepalive off.
 * @return PE_OK, or PE_ERR_INVALID_ARGUMENT (@p timeout_ms 0 with keepalive on).
 */
PE_API int pe_grpc_options_set_keepalive(pe_grpc_options *opts, uint32_t interval_ms,
                                         uint32_t timeout_ms);

/**
 * Sets the reconnect back-off: after a failed connection gRPC waits
 * @p initial_ms, growing up to @p max_ms. Calls made while no executor is
 * reachable fail at once (PE_STEP_CRASHED) instead of waiting. These are
 * not connection timeouts: a connection attempt (TCP and HTTP/2 handshake,
 * TLS included) may take gRPC's default 20 s; calls made while it is under
 * way wait for it, up to their own deadline (then PE_STEP_TIMEOUT).
 * @return PE_OK, or PE_ERR_INVALID_ARGUMENT (0, or @p initial_ms > @p max_ms).
 */
PE_API int pe_grpc_options_set_reconnect_backoff(pe_grpc_options *opts, uint32_t initial_ms,
                                                 uint32_t max_ms);

/**
 * Sets the largest message sent or received, in bytes. 0 (default) derives
 * it from the engine's limits as the Python pool does (four bodies plus
 * headers and metadata), so every legal batch fits; gRPC's own default of
 * 4 MiB would refuse large bodies.
 * @return PE_OK, or PE_ERR_INVALID_ARGUMENT below 4096 (0 excepted) or
 *         above 2 GiB - 1.
 */
PE_API int pe_grpc_options_set_max_message(pe_grpc_options *opts, size_t bytes);

/**
 * Uses TLS with the PEM files given (paths, copied; read when the channel
 * is made): @p ca_file the roots that sign the executors' certificates
 * (NULL: the system's), @p cert_file and @p key_file the client's own
 * certificate and key for mutual TLS (both or neither).
 * @return PE_OK, PE_ERR_INVALID_ARGUMENT (only one of cert and key) or
 *         PE_ERR_NOMEM.
 */
PE_API int pe_grpc_options_set_tls(pe_grpc_options *opts, const char *ca_file,
                                   const char *cert_file, const char *key_file);

/**
 * Sets how long the first contact may take (the call that lists the
 * executor's policies, and each instance check while building a chain),
 * default 10000 ms.
 * @return PE_OK, or PE_ERR_INVALID_ARGUMENT for 0.
 */
PE_API int pe_grpc_options_set_startup_timeout(pe_grpc_options *opts, uint32_t timeout_ms);

/**
 * Turns gRPC's retry machinery on (the default) or off. On, a call that
 * never reached an executor (its connection closing under it, e.g. an
 * executor restarting or recycling connections) is replayed on another
 * connection instead of failing. Off saves its per-call cost (about 13 us a
 * call, measured on loopback; doc/BENCHMARKS.md) at the price of those
 * calls failing (PE_STEP_CRASHED, per each step's failure mode).
 * @return PE_OK, or PE_ERR_INVALID_ARGUMENT (@p opts NULL).
 */
PE_API int pe_grpc_options_set_retries(pe_grpc_options *opts, int enabled);

/**
 * Sets the path of `libpolicyexec-grpc.so` (copied). NULL restores the
 * default: beside the loaded libpolicyexec.so, else the installed libdir.
 * @return PE_OK, PE_ERR_INVALID_ARGUMENT (empty) or PE_ERR_NOMEM.
 */
PE_API int pe_grpc_options_set_module_path(pe_grpc_options *opts, const char *path);

/**
 * Starts a gRPC executor on @p engine: loads the module, asks one executor
 * behind the target for its policies (Hello), and registers them (a
 * name\@version another executor registered first stays with it; a step
 * may still name this one).
 *
 * @return PE_OK; PE_ERR_INVALID_ARGUMENT (@p engine NULL, no target);
 *         PE_ERR_STATE (an executor of that name is running);
 *         PE_ERR_UNSUPPORTED (the module is missing: the library was built
 *         without libgrpc-dev, or 8 executors run already); PE_ERR_WORKER
 *         (no executor answered within the start-up timeout, or it speaks
 *         another protocol version); PE_ERR_EXISTS (a policy's name\@version
 *         is registered as a native policy); PE_ERR_NOMEM. pe_engine_errmsg()
 *         says what went wrong.
 * @note Not thread-safe with respect to other calls on @p engine.
 */
PE_API int pe_engine_start_grpc(pe_engine *engine, const pe_grpc_options *opts);

/**
 * Health check of the gRPC executor named @p name: one Ping call.
 *
 * @param engine the engine that runs the executor.
 * @param name the executor's name (pe_grpc_options_set_name()).
 * @param alive if not NULL, receives 1 when an executor answered, else 0.
 * @return PE_OK when one answered; PE_ERR_WORKER when none did;
 *         PE_ERR_STATE (no gRPC executor of that name);
 *         PE_ERR_INVALID_ARGUMENT.
 * @note Thread-safe. Blocks up to the start-up timeout.
 */
PE_API int pe_engine_grpc_ping(pe_engine *engine, const char *name, size_t *alive);

#ifdef __cplusplus
}
#endif

#endif /* POLICYEXEC_GRPC_H */
