/*
 * sample-native-redact: the streamed sample policy. It masks card-like
 * numbers in request and response bodies of any size, chunk by chunk: every
 * run of 13 to 19 ASCII digits (not touching another digit) keeps its last
 * four digits and has the others replaced by '*'. Lengths never change.
 *
 * A run may straddle chunks, so a chunk that ends in digits holds them back
 * (pe_body_chunk_keep) until the next chunk shows where the run ends. At
 * most 20 digits are held: a run that long is no card number however it
 * goes on, and the 20 held digits still tell the next call so.
 */
#include "sample_redact.h"

#define MIN_RUN 13
#define MAX_RUN 19

static int is_digit(char c) {
  return c >= '0' && c <= '9';
}

/* Writes a complete digit run, masked if it is card-like. */
static int write_run(pe_body_chunk *chunk, const char *run, size_t len) {
  if (len < MIN_RUN || len > MAX_RUN)
    return pe_body_chunk_write(chunk, pe_bytes(run, len));
  char masked[MAX_RUN];
  memset(masked, '*', len - 4);
  memcpy(masked + len - 4, run + len - 4, 4);
  return pe_body_chunk_write(chunk, pe_bytes(masked, len));
}

static int redact_chunk(pe_exchange *ex, pe_body_chunk *chunk, void *instance, void *user_data) {
  (void)ex;
  (void)instance;
  (void)user_data;
  pe_slice data = pe_body_chunk_data(chunk);
  const char *p = data.ptr, *end = data.ptr + data.len;
  int last = pe_body_chunk_is_last(chunk);
  int rc = PE_OK;
  while (p < end && rc == PE_OK) {
    const char *q = p;
    while (q < end && !is_digit(*q))
      q++;
    if (q > p) /* plain bytes go on as they are, in one write */
      rc = pe_body_chunk_write(chunk, pe_bytes(p, (size_t)(q - p)));
    if (q == end || rc != PE_OK)
      break;
    const char *r = q;
    while (r < end && is_digit(*r))
      r++;
    size_t len = (size_t)(r - q);
    if (r == end && !last) { /* the run may go on in the next chunk */
      size_t keep = len > MAX_RUN + 1 ? MAX_RUN + 1 : len;
      rc = pe_body_chunk_write(chunk, pe_bytes(q, len - keep));
      if (rc == PE_OK)
        rc = pe_body_chunk_keep(chunk, keep);
      break;
    }
    rc = write_run(chunk, q, len);
    p = r;
  }
  return rc;
}

int sample_redact_register(pe_engine *engine) {
  pe_policy_def def = {.abi = PE_POLICY_ABI,
                       .name = "sample-native-redact",
                       .version = "1.0.0",
                       .on_request_body_chunk = redact_chunk,
                       .on_response_body_chunk = redact_chunk};
  return pe_engine_register_policy(engine, &def);
}
