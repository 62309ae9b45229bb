/**
 * @file exchange.h
 * @brief One HTTP request/response as policies see and change it.
 *
 * Do not include this file directly: include <policyexec/policyexec.h>.
 *
 * An exchange is used by one thread at a time: the host's, or the policy
 * callback it is running. Every function here enforces the same rules
 * whoever calls it: header names must be RFC 9110 tokens, header values must
 * not contain CR, LF or NUL, and the engine's limits on header count, header
 * bytes, body bytes and metadata hold at all times.
 *
 * Slices returned by the getters point into the exchange and stay valid
 * until the next change to the exchange (any setter, pe_exchange_reset(),
 * pe_exchange_free(), or a phase run).
 */
#ifndef POLICYEXEC_EXCHANGE_H
#define POLICYEXEC_EXCHANGE_H

#include <policyexec/common.h>
#include <policyexec/engine.h>

#ifdef __cplusplus
extern "C" {
#endif

/** What the host does after a phase. */
typedef enum pe_verdict {
  /** Go on: forward the (possibly changed) request or response. */
  PE_VERDICT_CONTINUE = 0,
  /**
   * Answer the client now with the response status, headers and body of the
   * exchange (set by pe_exchange_respond() or a failing closed step); do not
   * run later phases.
   */
  PE_VERDICT_RESPOND = 1
} pe_verdict;

/**
 * Creates an empty exchange for chains of @p engine.
 * @return PE_OK, PE_ERR_INVALID_ARGUMENT or PE_ERR_NOMEM; *@p out untouched
 *         on failure.
 * @note Ownership: release with pe_exchange_free().
 */
PE_API int pe_exchange_new(pe_exchange **out, pe_engine *engine);

/**
 * Frees @p ex. NULL is a no-op. A phase of @p ex still pending
 * (pe_chain_run_async()) is cancelled: its done callback is never called,
 * and the worker's reply is dropped when it comes. In that case call this
 * on the dispatcher's thread, like anything else touching that run.
 */
PE_API void pe_exchange_free(pe_exchange *ex);

/**
 * Empties @p ex for the next request, keeping its memory so that a reused
 * exchange does not allocate again for requests of a similar size.
 * @return PE_OK, or PE_ERR_STATE while a phase is pending or when called
 *         from a policy callback running on @p ex (the run would restart
 *         with the emptied exchange); nothing changes then.
 */
PE_API int pe_exchange_reset(pe_exchange *ex);

/** The engine @p ex belongs to. */
PE_API pe_engine *pe_exchange_engine(const pe_exchange *ex);

/* ---- request line ---- */

/**
 * Sets the request method (an RFC 9110 token, e.g. "GET").
 * @return PE_OK, PE_ERR_INVALID_VALUE, PE_ERR_INVALID_ARGUMENT, PE_ERR_NOMEM.
 */
PE_API int pe_exchange_set_method(pe_exchange *ex, pe_slice method);

/**
 * Sets the request target (e.g. "/v1/items?id=3"): non-empty, no control
 * characters, spaces or bytes >= 0x7f.
 * @return PE_OK, PE_ERR_INVALID_VALUE, PE_ERR_INVALID_ARGUMENT, PE_ERR_NOMEM.
 */
PE_API int pe_exchange_set_path(pe_exchange *ex, pe_slice path);

/**
 * Sets the authority (host[:port]); may be empty. Same character rules as
 * the path.
 * @return PE_OK, PE_ERR_INVALID_VALUE, PE_ERR_INVALID_ARGUMENT, PE_ERR_NOMEM.
 */
PE_API int pe_exchange_set_authority(pe_exchange *ex, pe_slice authority);

/** The request method ("" until set). */
PE_API pe_slice pe_exchange_method(const pe_exchange *ex);
/** The request target ("" until set). */
PE_API pe_slice pe_exchange_path(const pe_exchange *ex);
/** The authority ("" until set). */
PE_API pe_slice pe_exchange_authority(const pe_exchange *ex);

/* ---- status ---- */

/**
 * Sets the response status (100 .. 999).
 * @return PE_OK, PE_ERR_INVALID_VALUE or PE_ERR_INVALID_ARGUMENT.
 */
PE_API int pe_exchange_set_status(pe_exchange *ex, int status);

/** The response status, or 0 until set. */
PE_API int pe_exchange_status(const pe_exchange *ex);

/* ---- headers (names compare case-insensitively; order is kept) ---- */

/** Number of header fields on side @p dir (a name with two values counts 2). */
PE_API size_t pe_exchange_header_count(const pe_exchange *ex, pe_dir dir);

/**
 * The @p index-th header field of side @p dir, in order, for iteration.
 * @return PE_OK, or PE_ERR_NOT_FOUND past the end, PE_ERR_INVALID_ARGUMENT.
 */
PE_API int pe_exchange_header_at(const pe_exchange *ex, pe_dir dir, size_t index, pe_slice *name,
                                 pe_slice *value);

/**
 * The first value of header @p name on side @p dir.
 * @return PE_OK, PE_ERR_NOT_FOUND, PE_ERR_INVALID_ARGUMENT.
 */
PE_API int pe_exchange_header_get(const pe_exchange *ex, pe_dir dir, pe_slice name,
                                  pe_slice *value);

/**
 * The @p nth (0-based) value of header @p name on side @p dir.
 * @return PE_OK, PE_ERR_NOT_FOUND, PE_ERR_INVALID_ARGUMENT.
 */
PE_API int pe_exchange_header_get_nth(const pe_exchange *ex, pe_dir dir, pe_slice name, size_t nth,
                                      pe_slice *value);

/**
 * Replaces every value of @p name with @p value (adds it if absent; the new
 * field takes the place of the first old one).
 *
 * Values may not contain CR, LF, NUL or DEL (0x7f): PE_ERR_HEADER_VALUE.
 * While a policy runs (a native callback, or the edits a Python worker sent
 * back), the framing and hop-by-hop headers Content-Length,
 * Transfer-Encoding, Connection, Keep-Alive, Proxy-Connection, TE, Trailer
 * and Upgrade (any case) are refused with PE_ERR_FRAMING_HEADER: the proxy
 * frames the messages it writes, and a policy changing them would desync
 * the connection. The host itself may set them outside a run.
 *
 * @return PE_OK, PE_ERR_HEADER_NAME, PE_ERR_HEADER_VALUE,
 *         PE_ERR_FRAMING_HEADER, PE_ERR_TOO_MANY_HEADERS,
 *         PE_ERR_HEADERS_TOO_LARGE, PE_ERR_NOMEM, PE_ERR_INVALID_ARGUMENT.
 *         On error nothing changes.
 */
PE_API int pe_exchange_header_set(pe_exchange *ex, pe_dir dir, pe_slice name, pe_slice value);

/**
 * Appends a field @p name: @p value, keeping existing values.
 * @return as pe_exchange_header_set().
 */
PE_API int pe_exchange_header_add(pe_exchange *ex, pe_dir dir, pe_slice name, pe_slice value);

/**
 * Removes every value of @p name.
 * @return the number of fields removed (0 if none), or
 *         PE_ERR_INVALID_ARGUMENT, or PE_ERR_FRAMING_HEADER when a policy
 *         tries to remove a framing or hop-by-hop header (see
 *         pe_exchange_header_set()).
 */
PE_API int pe_exchange_header_remove(pe_exchange *ex, pe_dir dir, pe_slice name);

/* ---- bodies ---- */

/** The buffered body of side @p dir (empty until set). */
PE_API pe_slice pe_exchange_body(const pe_exchange *ex, pe_dir dir);

/**
 * Replaces the body of side @p dir with a copy of @p data.
 * @return PE_OK, PE_ERR_BODY_TOO_LARGE, PE_ERR_NOMEM, PE_ERR_INVALID_ARGUMENT.
 *         On error the body is unchanged.
 */
PE_API int pe_exchange_body_set(pe_exchange *ex, pe_dir dir, pe_slice data);

/** Inserts a copy of @p data before the body. @return as pe_exchange_body_set(). */
PE_API int pe_exchange_body_prepend(pe_exchange *ex, pe_dir dir, pe_slice data);

/**
 * Appends a copy of @p data to the body; a host buffering a body chunk by
 * chunk calls this per chunk. @return as pe_exchange_body_set().
 */
PE_API int pe_exchange_body_append(pe_exchange *ex, pe_dir dir, pe_slice data);

/* ---- metadata: a string map shared by all steps and phases ---- */

/** Number of metadata entries. */
PE_API size_t pe_exchange_meta_count(const pe_exchange *ex);

/**
 * The @p index-th metadata entry, for iteration.
 * @return PE_OK, PE_ERR_NOT_FOUND past the end, PE_ERR_INVALID_ARGUMENT.
 */
PE_API int pe_exchange_meta_at(const pe_exchange *ex, size_t index, pe_slice *key, pe_slice *value);

/**
 * The value of metadata @p key (keys compare exactly, byte for byte).
 * @return PE_OK, PE_ERR_NOT_FOUND, PE_ERR_INVALID_ARGUMENT.
 */
PE_API int pe_exchange_meta_get(const pe_exchange *ex, pe_slice key, pe_slice *value);

/**
 * Sets metadata @p key (non-empty, any bytes) to @p value (any bytes).
 * @return PE_OK, PE_ERR_TOO_MANY_HEADERS / PE_ERR_HEADERS_TOO_LARGE when the
 *         metadata limits are reached, PE_ERR_NOMEM, PE_ERR_INVALID_ARGUMENT.
 */
PE_API int pe_exchange_meta_set(pe_exchange *ex, pe_slice key, pe_slice value);

/**
 * Removes metadata @p key.
 * @return 1 if it was there, 0 if not, or PE_ERR_INVALID_ARGUMENT.
 */
PE_API int pe_exchange_meta_remove(pe_exchange *ex, pe_slice key);

/* ---- immediate response and verdict ---- */

/**
 * Answers at once: clears the response headers, sets the response status to
 * @p status and the response body to @p body, and sets the verdict to
 * PE_VERDICT_RESPOND, which stops the chain after the current step. Add
 * headers to the answer with pe_exchange_header_add(ex, PE_RESPONSE, ...).
 *
 * @return PE_OK, PE_ERR_INVALID_VALUE (status outside 100..999),
 *         PE_ERR_BODY_TOO_LARGE, PE_ERR_NOMEM, PE_ERR_INVALID_ARGUMENT.
 */
PE_API int pe_exchange_respond(pe_exchange *ex, int status, pe_slice body);

/** The verdict so far (PE_VERDICT_CONTINUE for a new or reset exchange). */
PE_API pe_verdict pe_exchange_verdict(const pe_exchange *ex);

/* ---- what the chain changed ---- */

/**
 * Parts of an exchange, as bits of pe_exchange_changes(). A host that
 * mirrors the exchange into its own structures (an nginx request, a
 * gateway's message) rebuilds only the parts whose bit is set.
 */
typedef enum pe_change {
  PE_CHANGE_METHOD = 1u << 0,           /**< pe_exchange_set_method() */
  PE_CHANGE_PATH = 1u << 1,             /**< pe_exchange_set_path() */
  PE_CHANGE_AUTHORITY = 1u << 2,        /**< pe_exchange_set_authority() */
  PE_CHANGE_REQUEST_HEADERS = 1u << 3,  /**< a request header set, added or removed */
  PE_CHANGE_REQUEST_BODY = 1u << 4,     /**< the buffered request body */
  PE_CHANGE_STATUS = 1u << 5,           /**< the response status */
  PE_CHANGE_RESPONSE_HEADERS = 1u << 6, /**< a response header set, added or removed */
  PE_CHANGE_RESPONSE_BODY = 1u << 7,    /**< the buffered response body */
  PE_CHANGE_METADATA = 1u << 8          /**< a metadata entry set or removed */
} pe_change;

/** Every ::pe_change bit. */
#define PE_CHANGE_ALL 0x1ffu

/**
 * Which parts of @p ex policy steps changed (::pe_change bits) since the
 * exchange was created or reset, or since the host cleared those bits with
 * pe_exchange_changes_clear().
 *
 * Only edits made by policies count: native callbacks (buffered or
 * streamed), out-of-process steps' replies, and the 500/504 answer of a
 * step failing closed or pe_exchange_respond() from a step (status,
 * response headers and body). The host's own calls (filling the exchange
 * from its request) set no bit, so a host fills, runs, and then asks. A
 * bit means "a setter succeeded on this part", not "the value differs": a
 * policy that writes a header back unchanged sets its bit. The edits of a
 * fail-open step that failed are rolled back, and so are its bits. The
 * bytes a streamed body hands out through pe_chain_stream_body() are not
 * edits of the buffered body and set no bit.
 *
 * Cheap (a field read): call it after every phase.
 * @return the bits; 0 for NULL.
 * @note Thread-safety: as every exchange function, one thread at a time.
 */
PE_API unsigned pe_exchange_changes(const pe_exchange *ex);

/**
 * Clears the ::pe_change bits in @p mask (PE_CHANGE_ALL: all of them), for
 * a host that mirrors a part, then runs more phases and wants to know what
 * changed since. pe_exchange_reset() clears them all.
 * @return PE_OK, or PE_ERR_INVALID_ARGUMENT for NULL @p ex.
 */
PE_API int pe_exchange_changes_clear(pe_exchange *ex, unsigned mask);

/* ---- errors ---- */

/**
 * The message of the last failure on @p ex: a refused call, or the last step
 * that failed (naming its policy and phase). Never NULL; "" if none. Valid
 * until the next call that changes @p ex.
 */
PE_API const char *pe_exchange_errmsg(const pe_exchange *ex);

/**
 * For policies: explains why the current step is about to fail. Shown in
 * pe_exchange_errmsg() and the log with the step's name.
 * @return PE_OK, or PE_ERR_INVALID_ARGUMENT if @p ex or @p fmt is NULL.
 */
PE_API int pe_exchange_set_errmsg(pe_exchange *ex, const char *fmt, ...) PE_PRINTF(2, 3);

#ifdef __cplusplus
}
#endif

#endif /* POLICYEXEC_EXCHANGE_H */
