/**
 * @file async.h
 * @brief Non-blocking phase runs, completed through one pollable fd per
 *        host thread.
 *
 * Do not include this file directly: include <policyexec/policyexec.h>.
 *
 * A host with an event loop creates one ::pe_dispatcher per loop thread,
 * adds pe_dispatcher_fd() to its loop for readability, and starts phases
 * with pe_chain_run_async(). A phase whose Python steps are in flight
 * returns PE_PENDING; when the fd becomes readable the host calls
 * pe_dispatcher_dispatch(), which reads the workers' replies, applies them,
 * resumes the runs and calls their completion callbacks, all on that thread.
 * Step timeouts are part of the same fd (a timer inside it), so a host need
 * not track them.
 *
 * The library takes no global lock on this path and runs it on no thread of
 * its own: each dispatcher has its own connection to each worker. (The
 * pool's supervisor thread only brings replaced workers back up.)
 *
 *     pe_dispatcher *d;
 *     pe_dispatcher_new(&d, engine);
 *     add_to_loop(pe_dispatcher_fd(d), on_readable);     // level-triggered
 *     ...
 *     int rc = pe_chain_run_async(chain, ex, PE_PHASE_REQUEST_HEADERS, d, done, req);
 *     if (rc == PE_OK) done_now(req);            // completed, done not called
 *     else if (rc == PE_PENDING) ;               // done(ex, PE_OK, req) later
 *     else fail(req, rc);                        // done never called
 *     ...
 *     void on_readable(void) { pe_dispatcher_dispatch(d); }
 */
#ifndef POLICYEXEC_ASYNC_H
#define POLICYEXEC_ASYNC_H

#include <policyexec/common.h>
#include <policyexec/engine.h>

#ifdef __cplusplus
extern "C" {
#endif

/**
 * Completes the non-blocking runs of one host thread. Not thread-safe: use
 * each dispatcher from one thread at a time (normally its loop's thread).
 */
typedef struct pe_dispatcher pe_dispatcher;

/**
 * Called when a phase that returned PE_PENDING is complete. @p rc is PE_OK
 * (read the outcome with pe_exchange_verdict(); step failures are not
 * errors, as for pe_chain_run()). Called from pe_dispatcher_dispatch() (or
 * pe_dispatcher_free()) on the dispatcher's thread. The callback may start
 * the next phase of @p ex, free @p ex, or run other exchanges; it must not
 * call pe_dispatcher_dispatch() or pe_dispatcher_free() on the same
 * dispatcher.
 */
typedef void (*pe_run_done_fn)(pe_exchange *ex, int rc, void *user_data);

/**
 * Creates a dispatcher for runs of @p engine's chains. Holds a reference to
 * @p engine until freed. The Python pool may be started before or after.
 *
 * @return PE_OK, PE_ERR_INVALID_ARGUMENT, PE_ERR_NOMEM, or PE_ERR_IO (no
 *         epoll or timer fd could be made); *@p out is untouched on failure.
 * @note Ownership: free with pe_dispatcher_free().
 */
PE_API int pe_dispatcher_new(pe_dispatcher **out, pe_engine *engine);

/**
 * Frees @p d. Runs still pending are cancelled first: their in-flight steps
 * fail as crashed (per their failure modes), the rest of the phase runs
 * synchronously with any further Python step failing with PE_ERR_STATE,
 * and their done callbacks are called before this returns. NULL is a no-op.
 */
PE_API void pe_dispatcher_free(pe_dispatcher *d);

/**
 * The file descriptor to watch for readability (level-triggered). It stays
 * the same for the dispatcher's lifetime; do not read it or close it.
 * @return the fd, or PE_ERR_INVALID_ARGUMENT.
 */
PE_API int pe_dispatcher_fd(const pe_dispatcher *d);

/**
 * Does the work that made the fd readable without blocking: reads the
 * workers' replies, applies them, handles timeouts and dead workers,
 * resumes the runs and calls the done callbacks of those that completed.
 * Calling it when nothing is ready is harmless.
 *
 * @return the number of runs completed (>= 0), or PE_ERR_INVALID_ARGUMENT.
 */
PE_API int pe_dispatcher_dispatch(pe_dispatcher *d);

/** The number of runs of @p d still pending (0 for NULL). */
PE_API size_t pe_dispatcher_pending(const pe_dispatcher *d);

/**
 * Runs @p phase of @p chain on @p ex without blocking on Python steps.
 * Semantics are those of pe_chain_run(): the order of steps, failure
 * modes, immediate responses.
 *
 * @return PE_OK: the phase is complete now, and @p done is not called;
 *         PE_PENDING: a Python batch is in flight, and @p done will be
 *         called once from pe_dispatcher_dispatch() on @p d's thread;
 *         PE_ERR_INVALID_ARGUMENT (NULL, bad phase, or objects of different
 *         engines); PE_ERR_STATE (a phase of @p ex is already pending,
 *         @p d is being freed, or the call comes from a policy callback
 *         running on @p ex: a run may not re-enter its own exchange); PE_ERR_BUSY (the phase has
 * Python steps and the engine's in-flight limit is reached: nothing ran). On an error
 *         @p done is never called and @p ex is unchanged.
 * @note While pending, @p ex must not be used, reset or freed, and @p chain
 *       must stay alive.
 */
PE_API int pe_chain_run_async(const pe_chain *chain, pe_exchange *ex, pe_phase phase,
                              pe_dispatcher *d, pe_run_done_fn done, void *user_data);

/**
 * Runs the phases @p first to @p last of @p chain on @p ex as one
 * non-blocking run: pe_chain_run_phases() (one batch, one round trip, for
 * the Python steps that end one phase and start the next) with the
 * completion of pe_chain_run_async(). @p done is called once, after
 * @p last.
 *
 * @return as pe_chain_run_async(); PE_ERR_INVALID_ARGUMENT also when
 *         @p first > @p last.
 */
PE_API int pe_chain_run_phases_async(const pe_chain *chain, pe_exchange *ex, pe_phase first,
                                     pe_phase last, pe_dispatcher *d, pe_run_done_fn done,
                                     void *user_data);

/**
 * The non-blocking pe_chain_stream_body(): pushes one chunk of body @p dir
 * of @p ex through the streamed steps of @p chain; a streamed Python step
 * is sent to its worker without waiting, and the chunk completes from
 * pe_dispatcher_dispatch() on @p d's thread. The host pauses reading the
 * body while a chunk is pending (it may only push the next chunk after the
 * completion).
 *
 * *@p out receives the bytes to forward (see pe_chain_stream_body() for
 * their lifetime, with "the next call" meaning the next chunk's), before
 * this returns PE_OK or before @p done is called: @p out must stay valid
 * until then. @p chunk's memory need only be valid during this call (the
 * library copies what a pending step still needs).
 *
 * @return PE_OK: the chunk went through now (*@p out is set, @p done is
 *         not called); PE_PENDING: @p done will be called once, with the
 *         chunk's result code (PE_OK, PE_ERR_POLICY, PE_ERR_TIMEOUT,
 *         PE_ERR_NOMEM, as pe_chain_stream_body() returns them: see
 *         pe_exchange_stream_state()); every error of
 *         pe_chain_stream_body(), returned at once with @p done never
 *         called; PE_ERR_INVALID_ARGUMENT also for a NULL @p d or @p done,
 *         or a dispatcher of another engine; PE_ERR_STATE also when @p d is
 *         being freed or a phase or chunk of @p ex is pending.
 * @note While pending, @p ex must not be used or reset (it may be freed:
 *       the chunk is then abandoned and @p done is not called), and
 *       @p chain must stay alive. Thread-safety: as pe_chain_run_async().
 */
PE_API int pe_chain_stream_body_async(const pe_chain *chain, pe_exchange *ex, pe_dir dir,
                                      pe_slice chunk, int last, pe_slice *out, pe_dispatcher *d,
                                      pe_run_done_fn done, void *user_data);

#ifdef __cplusplus
}
#endif

#endif /* POLICYEXEC_ASYNC_H */
