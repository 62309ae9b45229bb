/**
 * @file stream.h
 * @brief Streamed bodies: per-chunk policy callbacks, and the per-body plan
 *        that tells a host whether to pass a body through, stream it or
 *        buffer it.
 *
 * Do not include this file directly: include <policyexec/policyexec.h>.
 *
 * A policy step sees a body in one of two ways:
 *
 * - *buffered*: one call with the whole body (pe_policy_def.on_request_body
 *   / on_response_body; Python on_request_body / on_response_body);
 * - *streamed*: one call per chunk, in order, the last one flagged
 *   (pe_policy_def.on_request_body_chunk / on_response_body_chunk, native
 *   policies of ABI 2; Python policies defining on_request_body_chunk /
 *   on_response_body_chunk, run by the local Python pool: one worker
 *   round trip per chunk and step). The step writes what goes on with
 *   pe_body_chunk_write() (nothing: the chunk is dropped; the chunk itself:
 *   passed; other bytes: replaced; more: appended), and may hold back the
 *   tail of what it saw with pe_body_chunk_keep() until the next chunk
 *   shows whether it matters.
 *
 * A chain then plans each body (pe_chain_body_plan()): PE_BODY_PASS when no
 * step looks at it, PE_BODY_STREAM when only streamed steps do, and
 * PE_BODY_BUFFER when some step wants it whole. A host that streams feeds
 * each chunk to pe_chain_stream_body() and forwards what comes out. A host
 * that buffers (or one that knows nothing of streaming and follows
 * pe_chain_needs()) runs the body phase as before: streamed steps then run
 * there, in chain order among the buffered ones, with the whole body as a
 * single last chunk; so a chain means the same thing to every host.
 */
#ifndef POLICYEXEC_STREAM_H
#define POLICYEXEC_STREAM_H

#include <policyexec/common.h>

#ifdef __cplusplus
extern "C" {
#endif

/** One chunk of a body as a streamed step sees it; valid during the callback. */
typedef struct pe_body_chunk pe_body_chunk;

/**
 * A streamed body callback: called once per chunk of the body, in order,
 * the last call with pe_body_chunk_is_last() true (possibly with no data).
 *
 * Read the input with pe_body_chunk_data(); write what goes on to the next
 * step with pe_body_chunk_write() (any number of times; writing nothing
 * drops the input); hold back the input's last bytes with
 * pe_body_chunk_keep() (they come again, first, in the next chunk's data).
 * State of one body (a hash, a count) lives behind pe_body_chunk_state();
 * the library calls pe_policy_def.free_body_state() on it when the body
 * ends, fails or is abandoned.
 *
 * @p ex may be read (headers, metadata) and its metadata changed. Header
 * changes made here may come too late for a host that has forwarded the
 * headers already: a host forwards headers before it streams the body.
 * pe_exchange_respond() here stops the stream (see ::pe_stream_state).
 *
 * Return PE_OK, or a negative value to fail: the step follows its failure
 * mode. Open: what it wrote in this call is discarded, this call's input
 * (including the bytes it kept back before) goes on unchanged, and the step
 * is skipped for the rest of this body. Closed: the stream stops; see
 * ::pe_stream_state for what the host then does.
 *
 * @p instance is shared by every thread that runs the chain: per-body
 * state belongs in pe_body_chunk_state().
 */
typedef int (*pe_body_chunk_fn)(pe_exchange *ex, pe_body_chunk *chunk, void *instance,
                                void *user_data);

/**
 * Frees the state a streamed step left in *pe_body_chunk_state() (called
 * only when it is not NULL): after the last chunk, after the step failed,
 * or when an exchange whose body was not finished is reset or freed.
 */
typedef void (*pe_body_state_free_fn)(void *state, void *instance, void *user_data);

/** The input bytes of this call: the bytes kept back last time, then the new chunk. */
PE_API pe_slice pe_body_chunk_data(const pe_body_chunk *chunk);

/** Non-zero on the last chunk of the body (its data may be empty). */
PE_API int pe_body_chunk_is_last(const pe_body_chunk *chunk);

/** Which body this is: PE_REQUEST or PE_RESPONSE. */
PE_API pe_dir pe_body_chunk_dir(const pe_body_chunk *chunk);

/**
 * Appends a copy of @p data to what this step passes on. @p data may point
 * into pe_body_chunk_data().
 * @return PE_OK; PE_ERR_BODY_TOO_LARGE (this call's output would exceed the
 *         engine's PE_LIMIT_BODY_BYTES); PE_ERR_NOMEM;
 *         PE_ERR_INVALID_ARGUMENT. On error the output is unchanged.
 */
PE_API int pe_body_chunk_write(pe_body_chunk *chunk, pe_slice data);

/**
 * Holds back the last @p n bytes of pe_body_chunk_data(): they are not
 * passed on now, and come again at the start of the next call's data.
 * The last call in a run wins.
 * @return PE_OK; PE_ERR_STATE on the last chunk (nothing can be held past
 *         the end: write it); PE_ERR_INVALID_ARGUMENT (more than the data).
 */
PE_API int pe_body_chunk_keep(pe_body_chunk *chunk, size_t n);

/**
 * The step's state slot for this body: NULL on the first chunk; whatever
 * the step stored there afterwards. Freed by pe_policy_def.free_body_state.
 * Never NULL for a valid @p chunk.
 */
PE_API void **pe_body_chunk_state(pe_body_chunk *chunk);

/** What a host does with a body of an exchange (pe_chain_body_plan()). */
typedef enum pe_body_plan {
  /** No enabled step looks at it: forward it as it comes, run nothing. */
  PE_BODY_PASS = 0,
  /**
   * Only streamed steps do: feed each chunk to pe_chain_stream_body() and
   * forward what it gives back (its length may change: frame the body
   * chunked or close-delimited, not with the original Content-Length).
   * Do not also run the body phase (it would find nothing to do).
   */
  PE_BODY_STREAM = 1,
  /**
   * Some step wants the whole body (a buffered native or Python step, an
   * out-of-process step whose executor does not stream, such as a gRPC
   * executor, or a PE_POLICY_NEEDS_* flag):
   * buffer it (within PE_LIMIT_BODY_BYTES) and run the body phase.
   */
  PE_BODY_BUFFER = 2
} pe_body_plan;

/**
 * The plan for body @p dir of @p chain. Computed when the chain is built.
 * pe_chain_needs() has the body's PE_NEEDS_* bit exactly when the plan is
 * not PE_BODY_PASS, so a host that does not stream stays correct.
 * @return the plan; PE_BODY_PASS for NULL or a bad @p dir. Thread-safe.
 */
PE_API pe_body_plan pe_chain_body_plan(const pe_chain *chain, pe_dir dir);

/** Where a streamed body of an exchange stands (pe_exchange_stream_state()). */
typedef enum pe_stream_state {
  /** No chunk of this body has been streamed. */
  PE_STREAM_IDLE = 0,
  /** Chunks went through; more are expected. */
  PE_STREAM_OPEN = 1,
  /** The last chunk went through: the body is complete. */
  PE_STREAM_ENDED = 2,
  /**
   * The stream stopped (a fail-closed step failed, or a step answered with
   * pe_exchange_respond()) before any output byte of this body was handed
   * out: the verdict is PE_VERDICT_RESPOND and the host answers the client
   * with the exchange's response (500, or 504 on a timeout, when a step
   * failed) if it has sent nothing of the message yet, else cuts the
   * connection. For a request body the client has seen nothing yet: the
   * host drops the upstream request and answers.
   */
  PE_STREAM_STOPPED_CLEAN = 3,
  /**
   * The stream stopped after output bytes of this body were handed out:
   * the host must cut the message it was forwarding (close the connection,
   * or reset the stream), never end it normally: the receiver must not
   * mistake a truncated body for a complete one. For a request body the
   * client may still get the exchange's response.
   */
  PE_STREAM_STOPPED_CUT = 4
} pe_stream_state;

/**
 * Streams one chunk of body @p dir of @p ex through the streamed steps of
 * @p chain (request: in chain order; response: in reverse), each step's
 * output feeding the next. Call it for every chunk as it arrives, and once
 * with @p last non-zero at the end (with the final bytes, or none): a body
 * of 0 bytes is one call with no data and @p last set.
 *
 * *@p out receives the bytes to forward now (possibly none: steps may hold
 * bytes back). It points into @p ex, or into @p chunk where the steps pass
 * its bytes on unchanged (no copy is made then), and stays valid until the
 * next call on @p ex and as long as @p chunk's memory. With no streamed
 * step for @p dir, *@p out is @p chunk itself.
 *
 * @return PE_OK: forward *@p out (after @p last, the body is complete);
 *         PE_ERR_POLICY or PE_ERR_TIMEOUT: the stream stopped at a step
 *         that failed closed or answered; pe_exchange_stream_state() says
 *         whether the host may still answer (PE_STREAM_STOPPED_CLEAN) or
 *         must cut (PE_STREAM_STOPPED_CUT); pe_exchange_errmsg() says
 *         why. PE_ERR_STATE: the body already ended or stopped, the verdict
 *         was PE_VERDICT_RESPOND before the first chunk, or a phase of
 *         @p ex is pending; PE_ERR_NOMEM (the stream stops as a failure
 *         would); PE_ERR_INVALID_ARGUMENT (NULL, bad @p dir, an exchange
 *         of another engine, or a chain other than the one this body began
 *         with). *@p out is empty on any error.
 * @note Thread-safety: as pe_chain_run(): any number of threads on the
 *       same chain, each on its own exchange. Blocking: a streamed Python
 *       step costs one worker round trip per call (within the step's
 *       timeout); a step that times out or whose worker dies or is
 *       replaced mid-body fails by its failure mode (PE_ERR_TIMEOUT /
 *       PE_ERR_POLICY). pe_chain_stream_body_async() (async.h) does not
 *       block.
 */
PE_API int pe_chain_stream_body(const pe_chain *chain, pe_exchange *ex, pe_dir dir, pe_slice chunk,
                                int last, pe_slice *out);

/** Where body @p dir of @p ex stands; PE_STREAM_IDLE for NULL or a bad @p dir. */
PE_API pe_stream_state pe_exchange_stream_state(const pe_exchange *ex, pe_dir dir);

#ifdef __cplusplus
}
#endif

#endif /* POLICYEXEC_STREAM_H */
