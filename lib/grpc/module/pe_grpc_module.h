/* Private header of libpolicyexec-grpc.so (see pe_grpc_transport.h). */
#ifndef PE_GRPC_MODULE_H
#define PE_GRPC_MODULE_H

#include "pe_grpc_transport.h"

#include <grpc/grpc.h>
#include <pthread.h>

/* Starts gRPC in this process on first use. 0, or -1 with err when it was
 * started by a parent before fork (gRPC cannot cross a fork). */
int pe__grpc_started(char *err);

/* The state of one unary call: its batch of six ops. */
typedef struct pe__grpc_unary {
  grpc_call *call;
  grpc_byte_buffer *send, *recv;
  grpc_metadata_array initial_md, trailing_md;
  grpc_status_code status;
  grpc_slice details;
  int started;
} pe__grpc_unary;

/* Creates the call on cq and starts its batch with tag. 0, or -1 with err
 * (then u holds nothing). */
int pe__grpc_unary_begin(pe__grpc_unary *u, pe__grpc_channel *ch, grpc_completion_queue *cq,
                         const char *method, const void *req, size_t len, int64_t timeout_ns,
                         void *tag, char *err);
/* After the batch completed: fills r (if not NULL) and releases u. */
void pe__grpc_unary_end(pe__grpc_unary *u, pe__grpc_result *r);

void pe__grpc_result_release(pe__grpc_result *r);

/* pe_grpc_queue.c: the transport's non-blocking entries. */
int pe__grpc_queue_new(pe__grpc_queue **out, int *fd, char *err);
void pe__grpc_queue_free(pe__grpc_queue *q, pe__grpc_done_fn done, void *ud);
int pe__grpc_call_start(pe__grpc_channel *ch, pe__grpc_queue *q, const char *method,
                        const void *req, size_t len, int64_t timeout_ns, void *tag, char *err);
size_t pe__grpc_queue_drain(pe__grpc_queue *q, pe__grpc_done_fn done, void *ud);

#endif /* PE_GRPC_MODULE_H */
