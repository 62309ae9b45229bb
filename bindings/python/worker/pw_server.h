/* The worker's event loop: one thread, poll() over the listening sockets and
 * the engine connections, requests of one connection served in order (a
 * batch awaiting a coroutine is answered when it ends: pw_async.h). */
#ifndef PW_SERVER_H
#define PW_SERVER_H

#include <signal.h>
#include <stddef.h>

#include "pw_requests.h"

typedef struct pw_server_config {
  const int *listen_fds; /* accept engine connections here */
  size_t n_listen;
  const int *conn_fds; /* already connected (inherited) */
  size_t n_conn;
  size_t max_message;
} pw_server_config;

/* Serves until the last connection closes after at least one was made, or
 * *@p stop becomes non-zero. All fds must be non-blocking. Returns 0, or -1
 * when out of memory. Closes the connections (not the listening fds). */
int pw_server_run(const pw_server_config *cfg, pw_handler *h, volatile sig_atomic_t *stop);

#endif
