/* The executor's gRPC server: service policyexec.v1.Executor (method Call)
 * and grpc.health.v1.Health (Check), served one call at a time by the
 * thread that holds the interpreter. */
#ifndef PX_SERVER_H
#define PX_SERVER_H

#include <signal.h>
#include <stddef.h>

#include "pw_requests.h"

typedef struct px_config {
  const char **listen; /* gRPC addresses: host:port, unix:/path, ... */
  size_t n_listen;
  size_t max_message;
  const char *tls_cert, *tls_key; /* PEM files; NULL: plaintext */
  const char *tls_client_ca;      /* PEM file: require client certificates (mTLS) */
  unsigned drain_ms;              /* on SIGTERM, how long in-flight calls may take */
  unsigned max_connection_age_ms; /* 0: connections live as long as clients keep them */
} px_config;

/* Serves until *stop becomes non-zero, then drains: stops accepting calls,
 * finishes those in flight (cancelling what is left after drain_ms), and
 * returns 0; -1 when the server cannot start (logged). */
int px_serve(const px_config *cfg, pw_handler *h, volatile sig_atomic_t *stop);

#endif
