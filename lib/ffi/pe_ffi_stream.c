/* Pointer + length twins of the streamed-body calls (stream.h), as
 * pe_ffi.c does for the rest of the API: each rebuilds the slice and calls
 * its twin. Public API only. */
#include <policyexec/policyexec.h>

#include <stdlib.h>

const char *pe_body_chunk_data_n(const pe_body_chunk *chunk, size_t *len) {
  pe_slice s = pe_body_chunk_data(chunk);
  if (len)
    *len = s.len;
  return s.ptr ? s.ptr : "";
}

int pe_body_chunk_write_n(pe_body_chunk *chunk, const char *data, size_t len) {
  if (!data && len)
    return PE_ERR_INVALID_ARGUMENT;
  return pe_body_chunk_write(chunk, pe_bytes(data, len));
}

int pe_chain_stream_body_n(const pe_chain *chain, pe_exchange *ex, pe_dir dir, const char *chunk,
                           size_t chunk_len, int last, const char **out, size_t *out_len) {
  pe_slice o = PE_LIT("");
  int rc = (!chunk && chunk_len) || !out || !out_len
               ? PE_ERR_INVALID_ARGUMENT
               : pe_chain_stream_body(chain, ex, dir, pe_bytes(chunk, chunk_len), last, &o);
  if (out)
    *out = o.ptr ? o.ptr : "";
  if (out_len)
    *out_len = o.len;
  return rc;
}

/* pe_chain_stream_body_async_n: the library writes the output slice when
 * the chunk completes, so the slice lives here until then, and the
 * completion copies it to the caller's pointer + length. */
typedef struct async_n {
  pe_slice out;
  const char **out_ptr;
  size_t *out_len;
  pe_run_done_fn done;
  void *user_data;
} async_n;

static void async_n_copy(const async_n *a) {
  *a->out_ptr = a->out.ptr ? a->out.ptr : "";
  *a->out_len = a->out.len;
}

static void async_n_done(pe_exchange *ex, int rc, void *user_data) {
  async_n a = *(async_n *)user_data;
  free(user_data);
  async_n_copy(&a);
  a.done(ex, rc, a.user_data);
}

int pe_chain_stream_body_async_n(const pe_chain *chain, pe_exchange *ex, pe_dir dir,
                                 const char *chunk, size_t chunk_len, int last, const char **out,
                                 size_t *out_len, pe_dispatcher *d, pe_run_done_fn done,
                                 void *user_data) {
  if (out)
    *out = "";
  if (out_len)
    *out_len = 0;
  if ((!chunk && chunk_len) || !out || !out_len || !done)
    return PE_ERR_INVALID_ARGUMENT;
  async_n *a = malloc(sizeof *a);
  if (!a)
    return PE_ERR_NOMEM;
  *a = (async_n){.out_ptr = out, .out_len = out_len, .done = done, .user_data = user_data};
  int rc = pe_chain_stream_body_async(chain, ex, dir, pe_bytes(chunk, chunk_len), last, &a->out, d,
                                      async_n_done, a);
  if (rc == PE_PENDING)
    return rc; /* async_n_done frees a */
  async_n_copy(a);
  free(a);
  return rc;
}
