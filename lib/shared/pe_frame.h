/*
 * The frame of the local executor protocol: a 4-byte big-endian length,
 * then that many bytes of protobuf. Header-only, because both ends need it:
 * the library (lib/python/pe_py_conn.c), the worker
 * (bindings/python/worker/pw_frame.c) and the test stand-ins.
 */
#ifndef PE_FRAME_H
#define PE_FRAME_H

#include <stdint.h>

#define PE__FRAME_HEADER 4

static inline uint32_t pe__frame_len_get(const unsigned char *h) {
  return (uint32_t)h[0] << 24 | (uint32_t)h[1] << 16 | (uint32_t)h[2] << 8 | (uint32_t)h[3];
}

static inline void pe__frame_len_put(unsigned char *h, uint32_t len) {
  h[0] = (unsigned char)(len >> 24);
  h[1] = (unsigned char)(len >> 16);
  h[2] = (unsigned char)(len >> 8);
  h[3] = (unsigned char)len;
}

#endif /* PE_FRAME_H */
