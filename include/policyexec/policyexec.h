/**
 * @file policyexec.h
 * @brief libpolicyexec: run chains of policies on HTTP exchanges.
 *
 * The one header to include. The objects:
 *
 * - ::pe_engine: policy registry, limits, allocator, log and metrics
 *   callbacks (thread-safe);
 * - ::pe_chain: an immutable, shareable ordered list of policy steps,
 *   built with a ::pe_chain_builder;
 * - ::pe_exchange: one request/response, used by one thread at a time.
 *
 * Conventions: functions return 0 (PE_OK) or a negative PE_ERR_* code
 * (pe_strerror() describes it; the object that failed keeps a message);
 * `pe_x_new(&out, ...)` leaves `*out` untouched on failure; `pe_x_free(NULL)`
 * does nothing; strings are ::pe_slice values; `user_data` is the last
 * argument of every callback.
 */
#ifndef POLICYEXEC_POLICYEXEC_H
#define POLICYEXEC_POLICYEXEC_H

#include <policyexec/version.h>
#include <policyexec/common.h>
#include <policyexec/engine.h>
#include <policyexec/policy.h>
#include <policyexec/chain.h>
#include <policyexec/stream.h>
#include <policyexec/exchange.h>
#include <policyexec/python.h>
#include <policyexec/grpc.h>
#include <policyexec/async.h>
#include <policyexec/ffi.h>

#endif /* POLICYEXEC_POLICYEXEC_H */
