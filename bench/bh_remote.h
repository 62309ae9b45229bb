/* bench_hooks --executor: remote executor processes and their floor. */
#ifndef BH_REMOTE_H
#define BH_REMOTE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct bh_remote {
  char name[16]; /* "grpc" or "interop": the executor's name in the engine */
  char target[64];
  pid_t pid;
} bh_remote;

/* Starts a "grpc" (policyexec-executor on python_path) or "interop"
 * (python3-grpcio) executor on a free loopback port, on CPU cpu (-1: where
 * the scheduler likes; the bench pins it where it pins the local pool's
 * first worker, so that both transports are measured placed alike).
 * 0, or -1 with err. */
int bh_remote_spawn(const char *kind, const char *python_path, int cpu, bh_remote *out, char *err,
                    size_t errlen);
void bh_remote_stop(bh_remote *r);
/* p50/p99 of an empty gRPC round trip (Health/Check) to target, made as the
 * engine's non-blocking (or blocking) calls are, from this thread pinned to
 * CPU cpu (-1: unpinned) as the profiles' first host thread is; *cpu_ns:
 * CPU time per call of this process and its children (the executor).
 * 0, or -1. */
int bh_grpc_floor(const char *target, uint64_t iterations, bool blocking, int cpu, uint64_t *p50_ns,
                  uint64_t *p99_ns, uint64_t *cpu_ns);

#endif
