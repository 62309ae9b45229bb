/* Pointer + length twins of the streamed-body calls (stream.h), as
 * pe_ffi.c does for the rest of the API: each rebuilds the slice and calls
 * its twin. Public API only. */
#include <policyexec/policyexec.h>

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
