/*
 * ngx_http_policyexec_module: runs libpolicyexec chains at nginx's four
 * hook points. Declarations shared by the module's files, one job each:
 *
 *   ngx_http_policyexec_module.c   directives, configuration, module hooks
 *   ngx_http_policyexec_engine.c   the engine: validation at configuration
 *                                  time, one engine + dispatcher per worker
 *   ngx_http_policyexec_ctx.c      per-request state, async runs, cleanup
 *   ngx_http_policyexec_request.c  request headers and body (precontent)
 *   ngx_http_policyexec_filter.c   response headers and body (filters)
 *   ngx_http_policyexec_headers.c  headers between nginx and the exchange
 *   ngx_http_policyexec_stream.c   streamed bodies (pe_chain_stream_body_async)
 *   ngx_http_policyexec_status.c   step counters (shared memory), status page
 */
#ifndef NGX_HTTP_POLICYEXEC_H
#define NGX_HTTP_POLICYEXEC_H

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <policyexec/policyexec.h>

/* r->buffered bit held while a response phase is pending: nginx then keeps
 * the request open (ngx_http_writer) until the filter lets go. nginx's own
 * bits are 0x01..0x08 (SSI, SUB, COPY, IMAGE) and 0xf0 (low level); 0x08
 * (image_filter) never meets a held response of ours, whose body image_filter
 * would see only after the chain. */
#define NGX_HTTP_POLICYEXEC_BUFFERED 0x08

/* One policyexec_chain directive. The JSON is checked at configuration time
 * (nginx -t); the chain itself is built per worker, after the fork. */
typedef struct {
  ngx_str_t json;
  ngx_str_t where; /* "location /x", "server", "http": for messages */
  ngx_str_t file;  /* configuration file and line of the directive */
  ngx_uint_t line;
  pe_chain *chain;       /* per worker */
  unsigned phases;       /* pe_chain_phases() */
  unsigned needs;        /* pe_chain_needs() */
  unsigned char plan[2]; /* pe_chain_body_plan() by pe_dir */
} ngx_http_pe_spec_t;

typedef struct {
  ngx_array_t plugins;      /* ngx_str_t, full paths */
  ngx_array_t python_paths; /* ngx_str_t, full paths */
  ngx_str_t python_worker;  /* policyexec-pyworker binary, or empty */
  ngx_uint_t python_workers;
  ngx_msec_t python_timeout;
  ngx_flag_t python_cpu_affinity;
  ngx_flag_t sched_batch;
  size_t max_body;
  size_t max_header_bytes;
  ngx_uint_t max_headers;
  ngx_array_t specs; /* ngx_http_pe_spec_t * */
  ngx_shm_zone_t *shm_zone;
} ngx_http_pe_main_conf_t;

typedef struct {
  ngx_flag_t enable;
  ngx_http_pe_spec_t *spec; /* NULL: no chain here */
} ngx_http_pe_loc_conf_t;

/* Where the request side is. */
typedef enum {
  PE_NGX_REQ_NEW = 0,
  PE_NGX_REQ_HEADERS, /* request-headers phase started */
  PE_NGX_REQ_READING, /* reading the request body */
  PE_NGX_REQ_BODY,    /* request-body phase started */
  PE_NGX_REQ_DONE     /* forwarded, or answered at once */
} ngx_http_pe_req_state_t;

/* Where the response side is. */
typedef enum {
  PE_NGX_RESP_NONE = 0,
  PE_NGX_RESP_PASS,    /* headers gone on; body passes through */
  PE_NGX_RESP_HOLD,    /* collecting the body into the exchange */
  PE_NGX_RESP_WAIT_H,  /* response-headers phase pending; output saved */
  PE_NGX_RESP_WAIT_HB, /* both response phases pending */
  PE_NGX_RESP_STREAM,  /* the body goes through pe_chain_stream_body */
  PE_NGX_RESP_SENT     /* our own body is out; upstream bytes dropped */
} ngx_http_pe_resp_state_t;

typedef struct ngx_http_pe_ctx_s ngx_http_pe_ctx_t;
typedef void (*ngx_http_pe_next_pt)(ngx_http_pe_ctx_t *ctx);

struct ngx_http_pe_ctx_s {
  ngx_http_request_t *request;
  ngx_http_pe_spec_t *spec;
  pe_exchange *ex;
  ngx_queue_t live;           /* in the worker's list of live exchanges */
  ngx_http_pe_next_pt resume; /* continuation of the pending run */
  ngx_chain_t *out;           /* response output saved while a phase runs */
  ngx_http_pe_req_state_t req;
  ngx_http_pe_resp_state_t resp;
  ngx_str_t last_err; /* last step failure logged for this request */
  /* Streamed bodies (ngx_http_policyexec_stream.c): our own output buffers
   * (free, and handed on but not yet written), bytes handed on per pe_dir. */
  ngx_chain_t *stream_free;
  ngx_chain_t *stream_busy;
  off_t streamed[2];
  off_t request_in; /* request body bytes taken in (the client's) */
  /* Non-blocking streaming (pe_chain_stream_body_async): input waiting per
   * pe_dir, its head being the buffer whose chunk is in flight when the
   * bit of stream_wait is set; the library writes that chunk's output to
   * stream_o and its result code to stream_rc. */
  ngx_chain_t *stream_q[2];
  pe_slice stream_chunk;
  pe_slice stream_o;
  int stream_rc;
  unsigned stream_wait : 2; /* bit per pe_dir */
  unsigned stream_dir : 1;  /* the pe_dir of the chunk in flight */
  unsigned pending : 1;
  unsigned body_read : 1;
  unsigned responded : 1;    /* answered from a request phase */
  unsigned stream_ended : 2; /* bit per pe_dir: its last chunk went through */
  unsigned answer : 1;       /* a streamed request body stopped: answer with the exchange */
  unsigned head_held : 1;    /* a streamed response's head waits for its first bytes */
};

extern ngx_module_t ngx_http_policyexec_module;

/* ngx_http_policyexec_engine.c */
ngx_int_t ngx_http_pe_validate(ngx_conf_t *cf, ngx_http_pe_main_conf_t *pmcf);
ngx_int_t ngx_http_pe_worker_start(ngx_cycle_t *cycle, ngx_http_pe_main_conf_t *pmcf);
void ngx_http_pe_worker_stop(ngx_cycle_t *cycle);
pe_dispatcher *ngx_http_pe_dispatcher(void);
ngx_int_t ngx_http_pe_worker_exiting(void);
pe_exchange *ngx_http_pe_take_exchange(void);
void ngx_http_pe_give_exchange(pe_exchange *ex);
ngx_queue_t *ngx_http_pe_live_queue(void);
/* A run of @p ctx is pending (sets ctx->pending) / is over (clears it): a
 * graceful shutdown waits while any is. */
void ngx_http_pe_wait_start(ngx_http_pe_ctx_t *ctx);
void ngx_http_pe_wait_stop(ngx_http_pe_ctx_t *ctx);

/* ngx_http_policyexec_ctx.c */
ngx_http_pe_ctx_t *ngx_http_pe_ctx_create(ngx_http_request_t *r, ngx_http_pe_spec_t *spec);
/* Runs phases first..last. Returns NGX_OK when they are complete (the
 * caller goes on), NGX_AGAIN when a Python batch is in flight: @p next then
 * runs from the dispatcher once they are. */
ngx_int_t ngx_http_pe_run(ngx_http_pe_ctx_t *ctx, pe_phase first, pe_phase last,
                          ngx_http_pe_next_pt next);
ngx_int_t ngx_http_pe_responded(ngx_http_pe_ctx_t *ctx);
void ngx_http_pe_free_live(void);
void ngx_http_pe_log_failure(ngx_http_pe_ctx_t *ctx);

/* ngx_http_policyexec_headers.c */
ngx_int_t ngx_http_pe_fill_request(ngx_http_request_t *r, pe_exchange *ex);
ngx_int_t ngx_http_pe_apply_request(ngx_http_request_t *r, pe_exchange *ex);
ngx_int_t ngx_http_pe_fill_response(ngx_http_request_t *r, pe_exchange *ex);
ngx_int_t ngx_http_pe_apply_response(ngx_http_request_t *r, pe_exchange *ex, off_t length);
ngx_chain_t *ngx_http_pe_body_chain(ngx_http_request_t *r, pe_slice body);
int ngx_http_pe_append_buf(ngx_http_request_t *r, pe_exchange *ex, pe_dir dir, ngx_buf_t *b);

/* ngx_http_policyexec_request.c */
ngx_int_t ngx_http_pe_precontent_handler(ngx_http_request_t *r);

/* ngx_http_policyexec_filter.c */
ngx_int_t ngx_http_pe_filter_init(ngx_conf_t *cf);
ngx_int_t ngx_http_pe_after_both(ngx_http_request_t *r, ngx_http_pe_ctx_t *ctx);

/* ngx_http_policyexec_stream.c */
/* Streams the buffers of @p in (body @p dir) through the chain's streamed
 * steps; *@p out receives what to pass on. NGX_OK; NGX_AGAIN when a chunk
 * went to a Python worker: the rest of the input waits (its buffers stay
 * busy, so their owner reads no further) until the chunk completes from
 * the dispatcher, which then calls the filter again (with no input) through
 * the request's own handlers; NGX_DECLINED when the stream stopped
 * (pe_exchange_stream_state() says how); NGX_ERROR. */
ngx_int_t ngx_http_pe_stream(ngx_http_request_t *r, ngx_http_pe_ctx_t *ctx, pe_dir dir,
                             ngx_chain_t *in, ngx_chain_t **out);
/* After the next filter took @p out: our buffers it wrote go back to the
 * free list, and the input buffers they were copied from are released. */
void ngx_http_pe_stream_sweep(ngx_http_request_t *r, ngx_http_pe_ctx_t *ctx, ngx_chain_t **out);
ngx_int_t ngx_http_pe_request_body_filter_init(void);

/* ngx_http_policyexec_filter.c: a streamed response chunk completed: the
 * waiting output goes on, and the request's write handler moves along. */
void ngx_http_pe_stream_response_resume(ngx_http_pe_ctx_t *ctx);

/* ngx_http_policyexec_status.c */
ngx_int_t ngx_http_pe_status_zone(ngx_conf_t *cf, ngx_http_pe_main_conf_t *pmcf);
void ngx_http_pe_on_step(const pe_step_event *event, void *user_data);
char *ngx_http_pe_status(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);

#endif /* NGX_HTTP_POLICYEXEC_H */
