/**
 * @file python.h
 * @brief Python policies: the pool of policyexec-pyworker processes.
 *
 * Do not include this file directly: include <policyexec/policyexec.h>.
 *
 * Python policies run out of process, in a pool of `policyexec-pyworker`
 * processes that the engine starts, supervises and stops. Once the pool is
 * started, every Python policy the workers found is registered on the
 * engine and chains name it exactly like a native one.
 *
 * Supervision: a worker that dies (signal, exit, broken protocol, a reply
 * larger than the message limit) or that lets a step overrun its timeout is
 * killed, reaped and replaced; the replacement re-creates every live
 * instance before it takes traffic. Steps in flight on it fail per their
 * failure mode (PE_STEP_CRASHED / PE_STEP_TIMEOUT). A worker that keeps
 * dying shortly after its start is restarted with an exponential back-off.
 * Failures are noticed by the threads that run phases (or dispatch their
 * completions), which kill the worker and spawn its replacement; one
 * supervisor thread, started with the pool and joined by pe_engine_free(),
 * finishes the replacement's start-up and respawns workers whose back-off
 * has passed, so that no host thread waits for a fresh interpreter while
 * another worker is ready.
 *
 * Child processes: the workers are children of the host process, and the
 * pool reaps each one itself with waitpid() on its pid. A host whose SIGCHLD
 * handler reaps every child (`waitpid(-1, ...)`, as nginx's master-process
 * handler does) takes that status first: the pool then still notices the
 * death (its socket closes) and replaces the worker, but the reason it
 * gives is "was reaped elsewhere", and the host sees a child it did not
 * start exit. Such hosts should restore SIGCHLD to its default in the
 * processes that start a pool, or skip the worker pids they did not fork
 * (the nginx module does the former, doc/DECISIONS.md §17).
 */
#ifndef POLICYEXEC_PYTHON_H
#define POLICYEXEC_PYTHON_H

#include <policyexec/common.h>
#include <policyexec/engine.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Settings of the Python worker pool; see pe_python_options_new(). */
typedef struct pe_python_options pe_python_options;

/**
 * Creates Python options with every setting at its default: one worker per
 * online CPU, the installed worker binary, no module path, a 1000 ms default
 * step timeout, 1024 calls in flight, a restart back-off of 50 ms doubling
 * up to 5000 ms, a 15 s start-up timeout and a 1 s shutdown grace period.
 *
 * @return PE_OK, PE_ERR_INVALID_ARGUMENT (@p out NULL) or PE_ERR_NOMEM; on
 *         failure *@p out is untouched.
 * @note Ownership: free with pe_python_options_free(). Allocated with the C
 *       library's malloc (there is no engine yet); pe_engine_start_python()
 *       copies it, so it may be freed right after.
 */
PE_API int pe_python_options_new(pe_python_options **out);

/** Frees @p opts. NULL is a no-op. */
PE_API void pe_python_options_free(pe_python_options *opts);

/**
 * Names the pool as an executor (default "python"). A chain step runs on
 * the pool that advertised its policy first, or on the executor it names
 * (pe_chain_builder_set_executor(), "executor" in the JSON chain format), so
 * an engine may run several pools, e.g. with different module paths.
 * @return PE_OK, or PE_ERR_INVALID_ARGUMENT (NULL, empty, or longer than 63
 *         bytes).
 */
PE_API int pe_python_options_set_name(pe_python_options *opts, const char *name);

/**
 * Sets the number of worker processes (1 .. 256); 0 restores the default,
 * one per online CPU. Each worker has its own interpreter and GIL.
 * @return PE_OK or PE_ERR_INVALID_ARGUMENT.
 */
PE_API int pe_python_options_set_workers(pe_python_options *opts, unsigned workers);

/**
 * Sets the path of the policyexec-pyworker binary (copied). NULL restores
 * the default, the path it was installed to (libexecdir).
 * @return PE_OK, PE_ERR_INVALID_ARGUMENT (empty path) or PE_ERR_NOMEM.
 */
PE_API int pe_python_options_set_worker_path(pe_python_options *opts, const char *path);

/**
 * Adds a directory whose `*.py` modules define policies (copied). May be
 * called several times; the workers import the directories in that order.
 * @return PE_OK, PE_ERR_INVALID_ARGUMENT (NULL or empty) or PE_ERR_NOMEM.
 */
PE_API int pe_python_options_add_module_path(pe_python_options *opts, const char *dir);

/**
 * Sets the timeout of Python steps that keep the default timeout of their
 * chain (1 .. 3600000 ms; default 1000). A step configured with
 * pe_chain_builder_set_timeout() to a value other than the built-in default
 * of 1000 ms keeps its own.
 * @return PE_OK or PE_ERR_INVALID_ARGUMENT.
 */
PE_API int pe_python_options_set_default_timeout(pe_python_options *opts, uint32_t timeout_ms);

/**
 * Sets how many batches may be in flight to the workers at once, over the
 * whole engine (default 1024). Past it, a Python batch fails at once with
 * PE_ERR_BUSY (following each step's failure mode), and
 * pe_chain_run_async() of a phase with Python steps returns PE_ERR_BUSY.
 * @return PE_OK, or PE_ERR_INVALID_ARGUMENT for 0.
 */
PE_API int pe_python_options_set_max_in_flight(pe_python_options *opts, size_t max_calls);

/**
 * Sets how many batches may be in flight to one worker at once (default
 * 512). A worker whose steps await I/O (`async def` phase methods) serves
 * that many at the same time; a batch goes to the least loaded worker, and
 * when every worker is at its cap it fails at once with PE_ERR_BUSY (and
 * pe_chain_run_async() returns PE_ERR_BUSY), as with
 * pe_python_options_set_max_in_flight(): nothing queues without bound.
 * @return PE_OK, or PE_ERR_INVALID_ARGUMENT for 0 or a NULL @p opts.
 */
PE_API int pe_python_options_set_worker_max_in_flight(pe_python_options *opts, size_t max_calls);

/**
 * Sets the size from which a body goes to and from the workers in shared
 * memory instead of inside the message (default 65536 bytes; 0: never).
 * Such a body is written once into a sealed memfd passed along with the
 * message, and the worker's policy reads it in place (a read-only
 * `policyexec.Body`); a replacement body of that size comes back the same
 * way and is checked (seals, size) before the engine copies it. Smaller
 * bodies are cheaper inline. Remote executors (gRPC) always get bodies
 * inline.
 * @return PE_OK, or PE_ERR_INVALID_ARGUMENT for a NULL @p opts.
 */
PE_API int pe_python_options_set_shm_threshold(pe_python_options *opts, size_t bytes);

/**
 * Names a virtualenv whose packages Python policies may import: the
 * workers add its `lib/pythonX.Y/site-packages` (and its .pth files) to
 * `sys.path`, after the system's own packages (Debian's `python3-*`, which
 * are always importable). The interpreter stays the system one the worker
 * is linked against, started isolated from the environment: the virtualenv
 * must be made with that interpreter's version (`python3 -m venv DIR`). A
 * directory without that site-packages makes the workers fail to start
 * (PE_ERR_WORKER from pe_engine_start_python(), with the reason logged).
 * @param opts the options to change.
 * @param dir the virtualenv's root directory (copied), or NULL for none.
 * @return PE_OK, PE_ERR_INVALID_ARGUMENT (NULL @p opts or empty @p dir),
 *         PE_ERR_NOMEM.
 */
PE_API int pe_python_options_set_virtualenv(pe_python_options *opts, const char *dir);

/**
 * Sets the restart back-off. A worker that dies within a second of its
 * start is restarted after @p initial_ms, doubling on each such death up to
 * @p max_ms; a worker that lived longer is restarted at once. While a worker
 * waits out its back-off, batches go to the other workers (or fail with
 * PE_ERR_WORKER when none is up).
 * @return PE_OK, or PE_ERR_INVALID_ARGUMENT if @p initial_ms > @p max_ms.
 */
PE_API int pe_python_options_set_restart_backoff(pe_python_options *opts, uint32_t initial_ms,
                                                 uint32_t max_ms);

/**
 * Sets how long a worker may take from its spawn to its handshake's reply
 * (default 15000 ms), and how long a control call (destroy, ping) may take.
 * Creating instances has its own timeout: pe_python_options_set_create_timeout().
 * @return PE_OK, or PE_ERR_INVALID_ARGUMENT for 0.
 */
PE_API int pe_python_options_set_startup_timeout(pe_python_options *opts, uint32_t timeout_ms);

/**
 * Sets how long creating one Python policy instance on one worker may take:
 * the policy's constructor and its validate() (default 5000 ms). Chain
 * building creates every instance on every worker, and a worker replacing
 * a dead one re-creates every live instance, each within this timeout.
 *
 * The worker interrupts a constructor still running then (between Python
 * bytecodes, or in an interrupted sleep or read) and goes on serving; the
 * chain build fails with PE_ERR_TIMEOUT and a message naming the step, the
 * policy name\@version and this timeout. A constructor the worker cannot
 * interrupt (blocked in C code) gets its worker killed and replaced after a
 * short grace, for that reason. While an instance is being created on a
 * worker, batches go to the other workers when one is ready, and a batch
 * that waited on such a worker past its deadline fails by its failure mode
 * without that worker being killed for it. Shutdown does not wait for a
 * create in progress: workers get the shutdown grace period
 * (see pe_engine_free()), then are killed.
 *
 * @return PE_OK, or PE_ERR_INVALID_ARGUMENT for NULL, 0 or more than an
 *         hour.
 * @note Thread-safety: as every pe_python_options setter, not for
 *       concurrent use on one options object.
 */
PE_API int pe_python_options_set_create_timeout(pe_python_options *opts, uint32_t timeout_ms);

/**
 * Sets the largest message accepted from (and announced to) a worker, in
 * bytes. 0 (the default) derives it from the engine's limits: four bodies
 * plus headers and metadata, so any legal batch fits. A longer reply is a
 * protocol violation: the worker is treated as dead.
 * @return PE_OK, or PE_ERR_INVALID_ARGUMENT below 4096 bytes (0 excepted).
 */
PE_API int pe_python_options_set_max_message(pe_python_options *opts, size_t bytes);

/**
 * Pins worker i to the i-th CPU the host process may run on (wrapping
 * around), and makes each call prefer the worker pinned to the CPU the
 * calling thread is on (another one when that worker is busy or down).
 *
 * Why: a round trip between two processes on one CPU costs ~10 us; across
 * CPUs it costs a cross-CPU wake-up as well, which on virtual machines can be
 * tens to hundreds of microseconds. A host that runs one event-loop thread
 * per CPU (pinned, like the reference gateway) then keeps each exchange on
 * one CPU from the proxy to the Python policy and back. Off by default.
 *
 * @return PE_OK, or PE_ERR_INVALID_ARGUMENT if @p opts is NULL.
 */
PE_API int pe_python_options_set_cpu_affinity(pe_python_options *opts, int enabled);

/**
 * Starts the Python worker pool of @p engine: spawns the workers, waits for
 * each one's handshake, and registers every Python policy they advertise
 * (name, version, phases, body needs) in the engine's registry.
 *
 * Call it once, after pe_engine_new() and before building chains that name
 * Python policies or sharing the engine between threads. The pool stops
 * when the engine goes away (the last pe_engine_free() / chain / exchange
 * reference): each worker gets SIGTERM, then SIGKILL after the grace period,
 * is reaped, and the pool's socket directory is removed.
 *
 * @param engine the engine whose pool to start.
 * @param opts options (copied), or NULL for the defaults.
 * @return PE_OK; PE_ERR_INVALID_ARGUMENT (@p engine NULL); PE_ERR_STATE (a
 *         pool or executor of the same name is already started: see
 *         pe_python_options_set_name()); PE_ERR_UNSUPPORTED (the engine
 *         holds 8 executors already); PE_ERR_WORKER (a worker could not be
 *         spawned, died or did not complete its handshake in time);
 *         PE_ERR_EXISTS (a Python policy's name\@version is already
 *         registered); PE_ERR_IO (no socket directory could be made);
 *         PE_ERR_NOMEM. On failure every worker started is stopped again and
 *         pe_engine_errmsg() says what went wrong.
 * @note Not thread-safe with respect to other calls on @p engine.
 */
PE_API int pe_engine_start_python(pe_engine *engine, const pe_python_options *opts);

/**
 * Health check of the first pool started: sends Ping to every worker on its control connection,
 * with the start-up timeout. A worker that does not answer is killed and replaced; one that is down
 * is restarted (back-off permitting).
 *
 * @param engine the engine whose pool to check.
 * @param alive if not NULL, receives the number of workers that answered.
 * @return PE_OK when every worker answered; PE_ERR_WORKER when some did not;
 *         PE_ERR_STATE when the pool is not started; PE_ERR_INVALID_ARGUMENT.
 * @note Thread-safe. Blocks for up to one round trip per worker.
 */
PE_API int pe_engine_python_ping(pe_engine *engine, size_t *alive);

/**
 * Lists the process ids of the workers, e.g. to watch their memory.
 *
 * @param engine the engine whose pool to list.
 * @param pids receives up to @p cap ids, in worker order; a worker that is
 *        down (waiting out its back-off) gives 0. May be NULL when @p cap is 0.
 * @param cap the number of entries @p pids has room for.
 * @return the number of workers (which may exceed @p cap), or 0 when the
 *         pool is not started.
 * @note Thread-safe. A pid may be stale as soon as it is returned.
 */
PE_API size_t pe_engine_python_worker_pids(pe_engine *engine, int *pids, size_t cap);

/**
 * The number of times a worker of @p engine has been replaced since the
 * pool started (deaths, timeouts, protocol violations). Thread-safe.
 */
PE_API uint64_t pe_engine_python_restarts(pe_engine *engine);

#ifdef __cplusplus
}
#endif

#endif /* POLICYEXEC_PYTHON_H */
