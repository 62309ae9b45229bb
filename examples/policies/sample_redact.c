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

#include <stdint.h>

#define MIN_RUN 13
#define MAX_RUN 19

/* Bit i set when p[i] is an ASCII digit, for the 64 bytes at p. The scan
 * then jumps from run to run with ctz instead of testing every byte: on
 * most bodies digits are rare, and this policy must keep up with a proxy
 * moving a gigabyte a second. */
#if defined(__SSE2__)
#include <emmintrin.h>
static uint64_t digit_mask64(const char *p) {
  uint64_t m = 0;
  for (int k = 0; k < 4; k++) {
    __m128i v = _mm_sub_epi8(_mm_loadu_si128((const __m128i *)(const void *)(p + 16 * k)),
                             _mm_set1_epi8('0'));
    /* unsigned v <= 9  <=>  min(v, 9) == v */
    __m128i digit = _mm_cmpeq_epi8(_mm_min_epu8(v, _mm_set1_epi8(9)), v);
    m |= (uint64_t)(uint16_t)_mm_movemask_epi8(digit) << (16 * k);
  }
  return m;
}
#else
static uint64_t digit_mask64(const char *p) {
  uint64_t m = 0;
  for (int i = 0; i < 64; i++)
    m |= (uint64_t)((unsigned char)(p[i] - '0') < 10) << i;
  return m;
}
#endif

/* Masks card-like runs as they close and writes the bytes between them. */
typedef struct scan {
  pe_body_chunk *chunk;
  const char *plain; /* first byte not written yet */
  const char *run;   /* start of the digit run under way, or NULL */
  int rc;
} scan;

/* Writes a complete digit run, masked if it is card-like. */
static void close_run(scan *sc, const char *end) {
  size_t len = (size_t)(end - sc->run);
  if (len >= MIN_RUN && len <= MAX_RUN && sc->rc == PE_OK) {
    char masked[MAX_RUN];
    memset(masked, '*', len - 4);
    memcpy(masked + len - 4, end - 4, 4);
    sc->rc = pe_body_chunk_write(sc->chunk, pe_bytes(sc->plain, (size_t)(sc->run - sc->plain)));
    if (sc->rc == PE_OK)
      sc->rc = pe_body_chunk_write(sc->chunk, pe_bytes(masked, len));
    sc->plain = end;
  }
  sc->run = NULL;
}

/* Follows the runs of the 64-bit digit mask m of the bytes at p. */
static void scan_mask(scan *sc, const char *p, uint64_t m, int width) {
  int i = 0;
  while (i < width) {
    if (!sc->run) {
      uint64_t rest = m >> i;
      if (rest == 0)
        return;
      i += __builtin_ctzll(rest);
      sc->run = p + i;
    }
    uint64_t gaps = ~m >> i;
    if (width < 64)
      gaps |= ~0ull << (width - i); /* no bytes past width */
    if (gaps == 0)
      return; /* the run goes on past these bytes */
    i += __builtin_ctzll(gaps);
    if (i >= width)
      return;
    close_run(sc, p + i);
  }
}

/* Non-zero when the 64-bit digit mask m holds a run of MIN_RUN (13) set
 * bits: r8 has bit i set when bits i..i+7 are, and r8 & r8 >> 5 when bits
 * i..i+12 are. */
static uint64_t has_card_run(uint64_t m) {
  uint64_t r2 = m & (m >> 1), r4 = r2 & (r2 >> 2), r8 = r4 & (r4 >> 4);
  return r8 & (r8 >> 5);
}

static int redact_chunk(pe_exchange *ex, pe_body_chunk *chunk, void *instance, void *user_data) {
  (void)ex;
  (void)instance;
  (void)user_data;
  pe_slice data = pe_body_chunk_data(chunk);
  const char *p = data.ptr, *end = data.ptr + data.len;
  scan sc = {.chunk = chunk, .plain = p, .run = NULL, .rc = PE_OK};
  for (; end - p >= 64 && sc.rc == PE_OK; p += 64) {
    uint64_t m = digit_mask64(p);
    /* Most blocks of most bodies hold only short runs that end inside them
     * (random bytes: a digit every 25 bytes): they leave nothing to write or
     * carry, and following their runs one by one cost as much as the rest
     * of the proxy's work on a body. */
    if (!sc.run && !(m >> 63) && !has_card_run(m))
      continue;
    scan_mask(&sc, p, m, 64);
  }
  if (p < end && sc.rc == PE_OK) {
    uint64_t m = 0;
    int width = (int)(end - p);
    for (int i = 0; i < width; i++)
      m |= (uint64_t)((unsigned char)(p[i] - '0') < 10) << i;
    scan_mask(&sc, p, m, width);
  }
  if (sc.rc != PE_OK)
    return sc.rc;
  if (sc.run && !pe_body_chunk_is_last(chunk)) { /* the run may go on in the next chunk */
    size_t len = (size_t)(end - sc.run);
    size_t keep = len > MAX_RUN + 1 ? MAX_RUN + 1 : len;
    int rc = pe_body_chunk_write(chunk, pe_bytes(sc.plain, (size_t)(end - keep - sc.plain)));
    return rc == PE_OK ? pe_body_chunk_keep(chunk, keep) : rc;
  }
  if (sc.run)
    close_run(&sc, end);
  if (sc.rc == PE_OK && end > sc.plain)
    sc.rc = pe_body_chunk_write(chunk, pe_bytes(sc.plain, (size_t)(end - sc.plain)));
  return sc.rc;
}

int sample_redact_register(pe_engine *engine) {
  pe_policy_def def = {.abi = PE_POLICY_ABI,
                       .name = "sample-native-redact",
                       .version = "1.0.0",
                       .on_request_body_chunk = redact_chunk,
                       .on_response_body_chunk = redact_chunk};
  return pe_engine_register_policy(engine, &def);
}
