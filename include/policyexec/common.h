/**
 * @file common.h
 * @brief Basic types shared by every part of the API: slices, phases,
 *        return codes and the export macro.
 *
 * Do not include this file directly: include <policyexec/policyexec.h>.
 */
#ifndef POLICYEXEC_COMMON_H
#define POLICYEXEC_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Marks a symbol as part of the public ABI (everything else is hidden). */
#if defined(__GNUC__) && defined(PE_BUILDING_LIBRARY)
#define PE_API __attribute__((visibility("default")))
#else
#define PE_API
#endif

/** Lets the compiler check printf-style arguments of a PE_API function. */
#if defined(__GNUC__)
#define PE_PRINTF(fmt, args) __attribute__((format(printf, fmt, args)))
#else
#define PE_PRINTF(fmt, args)
#endif

/**
 * The engine owns the policy registry and the settings every chain and
 * exchange made from it share. All engine functions are thread-safe.
 *
 * The engine is reference-counted: every chain and exchange made from it
 * holds a reference, so pe_engine_free() may be called while they live; the
 * engine goes away when the last of them is freed.
 */
typedef struct pe_engine pe_engine;

/**
 * A built chain: immutable, reference-counted, and safe to run from any
 * number of threads at once (each on its own exchange).
 */
typedef struct pe_chain pe_chain;

/**
 * One HTTP request/response as policies see and change it: request line,
 * headers of both sides, bodies, status, metadata and the verdict. Used by
 * one thread at a time; see exchange.h.
 */
typedef struct pe_exchange pe_exchange;

/**
 * A read-only run of bytes: not NUL-terminated, may contain any byte.
 *
 * Slices handed out by the library point into memory the library owns; each
 * function that returns one says how long it stays valid. Slices handed in
 * are copied before the call returns unless the function says otherwise.
 */
typedef struct pe_slice {
  const char *ptr; /**< First byte; may be NULL when len is 0. */
  size_t len;      /**< Number of bytes. */
} pe_slice;

/** A slice over a string literal, without its terminating NUL. */
#define PE_LIT(s) ((pe_slice){(s), sizeof(s) - 1})

/** A slice over a NUL-terminated string (NULL gives the empty slice). */
static inline pe_slice pe_str(const char *s) {
  pe_slice out = {s, s ? strlen(s) : 0};
  return out;
}

/** A slice over @p len bytes at @p ptr. */
static inline pe_slice pe_bytes(const void *ptr, size_t len) {
  pe_slice out = {(const char *)ptr, len};
  return out;
}

/**
 * The four hook points of an exchange, in the order a proxy meets them.
 * Request phases run a chain's steps in order; response phases in reverse.
 */
typedef enum pe_phase {
  PE_PHASE_REQUEST_HEADERS = 0,  /**< Request line and headers arrived. */
  PE_PHASE_REQUEST_BODY = 1,     /**< The whole request body is buffered. */
  PE_PHASE_RESPONSE_HEADERS = 2, /**< Response status and headers arrived. */
  PE_PHASE_RESPONSE_BODY = 3     /**< The whole response body is buffered. */
} pe_phase;

/** Number of phases; valid phases are 0 .. PE_PHASE_COUNT-1. */
#define PE_PHASE_COUNT 4
/** Bit for @p phase in a phase mask. */
#define PE_PHASE_BIT(phase) (1u << (unsigned)(phase))

/** Which side of the exchange a header or body call addresses. */
typedef enum pe_dir {
  PE_REQUEST = 0, /**< The request sent by the client. */
  PE_RESPONSE = 1 /**< The response (from upstream, or an immediate one). */
} pe_dir;

/**
 * Return codes. 0 is success, negative values are errors. Numbers are never
 * reused: a retired code keeps its slot.
 */
typedef enum pe_error {
  PE_OK = 0,                      /**< Success. */
  PE_PENDING = 1,                 /**< Not an error: the work completes later. */
  PE_ERR_INVALID_ARGUMENT = -1,   /**< NULL or out-of-range argument. */
  PE_ERR_NOMEM = -2,              /**< An allocation failed. */
  PE_ERR_NOT_FOUND = -3,          /**< No such header, key, param or policy. */
  PE_ERR_EXISTS = -4,             /**< name\@version is already registered. */
  PE_ERR_JSON = -5,               /**< A JSON document could not be parsed. */
  PE_ERR_PARAM = -6,              /**< A param is missing, unknown or ill-typed. */
  PE_ERR_UNKNOWN_POLICY = -7,     /**< No policy with that name\@version. */
  PE_ERR_PLUGIN = -8,             /**< A plugin could not be loaded or initialised. */
  PE_ERR_HEADER_NAME = -9,        /**< Header name is not an RFC 9110 token. */
  PE_ERR_HEADER_VALUE = -10,      /**< Header value contains CR, LF, NUL or DEL. */
  PE_ERR_TOO_MANY_HEADERS = -11,  /**< Header count limit exceeded. */
  PE_ERR_HEADERS_TOO_LARGE = -12, /**< Header bytes limit exceeded. */
  PE_ERR_BODY_TOO_LARGE = -13,    /**< Body bytes limit exceeded. */
  PE_ERR_POLICY = -14,            /**< A policy reported a failure. */
  PE_ERR_TIMEOUT = -15,           /**< A step did not finish in time. */
  PE_ERR_WORKER = -16,            /**< A worker died or broke the protocol. */
  PE_ERR_BUSY = -17,              /**< Too many calls in flight. */
  PE_ERR_STATE = -18,             /**< The call is not valid in this state. */
  PE_ERR_UNSUPPORTED = -19,       /**< The feature is not available here. */
  PE_ERR_IO = -20,                /**< A system call failed. */
  PE_ERR_INVALID_VALUE = -21,     /**< Method, path, authority or status invalid. */
  /** A policy tried to set or remove a framing or hop-by-hop header
   *  (Content-Length, Transfer-Encoding, Connection, Keep-Alive,
   *  Proxy-Connection, TE, Trailer, Upgrade): those belong to the proxy. */
  PE_ERR_FRAMING_HEADER = -22
} pe_error;

/**
 * A short English description of @p code, e.g. "header value contains CR,
 * LF or NUL". Never NULL; unknown codes give "unknown error code".
 * Thread-safe; the string is static.
 */
PE_API const char *pe_strerror(int code);

/**
 * The symbolic name of @p code, e.g. "PE_ERR_HEADER_VALUE".
 * Never NULL; unknown codes give "PE_ERR_UNKNOWN". Thread-safe; static.
 */
PE_API const char *pe_errname(int code);

/** The phase's name as used in JSON and logs, e.g. "request_headers". */
PE_API const char *pe_phase_name(pe_phase phase);

#ifdef __cplusplus
}
#endif

#endif /* POLICYEXEC_COMMON_H */
