/* A stand-in for policyexec-pyworker that breaks the rules on purpose, so
 * that the engine's own checks can be tested: it speaks the executor
 * protocol (same command line: --socket PATH, other options ignored) and
 * offers policies whose replies are malformed, oversized or carry edits a
 * real worker would refuse to send.
 *
 *   fake-ok         sets request header x-fake: ok
 *   fake-crlf       sets request header x-evil: "a\r\ninjected: 1"
 *   fake-badname    sets request header "bad name: x"
 *   fake-bigstatus  sets the status to 1000
 *   fake-malformed  answers with bytes that do not parse
 *   fake-oversized  announces a 2 GiB reply
 *   fake-extra      answers with one result more than asked
 *
 * Request body policies whose replacement body travels in shared memory
 * (ShmRef), honestly or not:
 *   fake-shm-ok        a sealed memfd holding "shared-ok"
 *   fake-shm-nofd      a reference without any fd
 *   fake-shm-pipe      a pipe instead of a memfd
 *   fake-shm-unsealed  a memfd without seals
 *   fake-shm-beyond    a range beyond the end of the memfd
 *   fake-shm-overflow  an offset + length that wraps around 2^64
 *   fake-shm-flood     64 fds with a reply that refers to none
 *   fake-shm-midframe  an fd with half a frame header, then exits
 *
 * Streamed request body policies (chunk_phases), whose answers to a
 * StreamChunk are honest or not:
 *   fake-chunk-ok        passes the chunk on (a run of its input)
 *   fake-chunk-beyond    a run one byte past the end of the input
 *   fake-chunk-overflow  a run whose offset + length wraps around 2^64
 *   fake-chunk-keep      holds back one byte more than the input
 *   fake-chunk-body      a body edit
 *   fake-chunk-two       two results for one step
 */
#include "pe_fdpass.h"
#include "pe_frame.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <policyexec/v1/executor.pb-c.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define MAX_CONNS 64
#define MAX_INSTANCES 256

static const char *const policies[] = {
    "fake-ok",         "fake-crlf",         "fake-badname",        "fake-bigstatus",
    "fake-malformed",  "fake-oversized",    "fake-extra",          "fake-body",
    "fake-shm-ok",     "fake-shm-nofd",     "fake-shm-pipe",       "fake-shm-unsealed",
    "fake-shm-beyond", "fake-shm-overflow", "fake-shm-flood",      "fake-shm-midframe",
    "fake-chunk-ok",   "fake-chunk-beyond", "fake-chunk-overflow", "fake-chunk-keep",
    "fake-chunk-body", "fake-chunk-two"};
#define NPOLICIES (sizeof policies / sizeof policies[0])

static struct {
  uint64_t id;
  int policy;
} instances[MAX_INSTANCES];
static size_t ninstances;

static int read_all(int fd, void *buf, size_t len) {
  char *p = buf;
  while (len) {
    ssize_t n = read(fd, p, len);
    if (n <= 0) {
      if (n < 0 && errno == EINTR)
        continue;
      return -1;
    }
    p += n;
    len -= (size_t)n;
  }
  return 0;
}

static int write_all(int fd, const void *buf, size_t len) {
  const char *p = buf;
  while (len) {
    ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
    if (n <= 0) {
      if (n < 0 && errno == EINTR)
        continue;
      return -1;
    }
    p += n;
    len -= (size_t)n;
  }
  return 0;
}

static int send_raw(int fd, uint32_t announced, const void *payload, size_t len) {
  unsigned char hdr[PE__FRAME_HEADER];
  pe__frame_len_put(hdr, announced);
  return write_all(fd, hdr, sizeof hdr) || write_all(fd, payload, len) ? -1 : 0;
}

/* Sends bytes [0, len) of buf with fds attached to the first one. */
static int send_with_fds(int fd, const void *buf, size_t len, const int *fds, size_t nfds) {
  ssize_t n = pe__sendmsg_fds(fd, buf, len, fds, nfds);
  if (n <= 0)
    return -1;
  return write_all(fd, (const char *)buf + n, len - (size_t)n);
}

/* The response, with fds (if any) sent along with its first byte. */
static int send_response_fds(int fd, Policyexec__V1__Response *resp, const int *fds, size_t nfds) {
  size_t len = policyexec__v1__response__get_packed_size(resp);
  unsigned char *buf = malloc(PE__FRAME_HEADER + len);
  if (!buf)
    return -1;
  pe__frame_len_put(buf, (uint32_t)len);
  policyexec__v1__response__pack(resp, buf + PE__FRAME_HEADER);
  int rc = nfds ? send_with_fds(fd, buf, PE__FRAME_HEADER + len, fds, nfds)
                : write_all(fd, buf, PE__FRAME_HEADER + len);
  free(buf);
  return rc;
}

static int send_response(int fd, Policyexec__V1__Response *resp) {
  static const int none[1] = {-1};
  return send_response_fds(fd, resp, none, 0);
}

/* A memfd holding s, sealed with seals (0: none). */
static int memfd_with(const char *s, unsigned seals) {
  int fd = memfd_create("fake-body", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  size_t len = strlen(s);
  if (fd < 0 || pwrite(fd, s, len, 0) != (ssize_t)len || (seals && fcntl(fd, F_ADD_SEALS, seals)))
    abort();
  return fd;
}

#define ALL_SEALS (F_SEAL_WRITE | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL)

static int policy_of(uint64_t id) {
  for (size_t i = 0; i < ninstances; i++)
    if (instances[i].id == id)
      return instances[i].policy;
  return -1;
}

static ProtobufCBinaryData bin(const char *s) {
  ProtobufCBinaryData b = {strlen(s), (uint8_t *)s};
  return b;
}

/* The answer of a fake-chunk-* policy to a StreamChunk (one step). */
static int answer_chunk(int fd, uint64_t id, const Policyexec__V1__RunPhase *run) {
  Policyexec__V1__StepResult result = POLICYEXEC__V1__STEP_RESULT__INIT,
                             *ptrs[2] = {&result, &result};
  Policyexec__V1__ChunkPiece piece = POLICYEXEC__V1__CHUNK_PIECE__INIT, *pieces[1] = {&piece};
  Policyexec__V1__BodyEdit body = POLICYEXEC__V1__BODY_EDIT__INIT, *bodies[1] = {&body};
  int p = run->n_instance_ids ? policy_of(run->instance_ids[0]) : -1;
  const char *lie = p >= 0 ? policies[p] + strlen("fake-chunk-") : "";
  size_t len = run->data ? run->data->request_body.len : 0;
  piece.input = 1;
  piece.length = len;
  result.n_chunk_out = 1;
  result.chunk_out = pieces;
  if (!strcmp(lie, "beyond"))
    piece.length = len + 1;
  if (!strcmp(lie, "overflow"))
    piece.offset = UINT64_MAX - 1, piece.length = 5;
  if (!strcmp(lie, "keep"))
    result.chunk_keep = len + 1;
  if (!strcmp(lie, "body")) {
    body.replace = 1;
    body.replacement = bin("evil");
    result.n_bodies = 1;
    result.bodies = bodies;
  }
  Policyexec__V1__RunReply reply = POLICYEXEC__V1__RUN_REPLY__INIT;
  reply.n_steps = !strcmp(lie, "two") ? 2 : 1;
  reply.steps = ptrs;
  Policyexec__V1__Response resp = POLICYEXEC__V1__RESPONSE__INIT;
  resp.id = id;
  resp.body_case = POLICYEXEC__V1__RESPONSE__BODY_RUN;
  resp.run = &reply;
  return send_response(fd, &resp);
}

static int answer_run(int fd, uint64_t id, const Policyexec__V1__RunPhase *run) {
  if (run->stream)
    return answer_chunk(fd, id, run);
  Policyexec__V1__StepResult results[8], *ptrs[9];
  Policyexec__V1__HeaderEdit edits[8], *edit_ptrs[8];
  Policyexec__V1__BodyEdit body_edits[8], *body_ptrs[8];
  ProtobufCBinaryData values[8];
  Policyexec__V1__ShmRef ref = POLICYEXEC__V1__SHM_REF__INIT;
  int fds[64];
  size_t nfds = 0;
  size_t n = run->n_instance_ids < 8 ? run->n_instance_ids : 8;
  size_t count = n;
  for (size_t i = 0; i < n; i++) {
    policyexec__v1__step_result__init(&results[i]);
    ptrs[i] = &results[i];
    int p = policy_of(run->instance_ids[i]);
    const char *name = p >= 0 ? policies[p] : "";
    if (!strcmp(name, "fake-malformed"))
      return send_raw(fd, 5, "\xff\xff\xff\xff\xff", 5);
    if (!strcmp(name, "fake-oversized"))
      return send_raw(fd, 0x7fffffffu, "", 0);
    if (!strcmp(name, "fake-extra"))
      count = n + 1;
    if (!strcmp(name, "fake-bigstatus"))
      results[i].status = 1000;
    if (!strcmp(name, "fake-body")) { /* a body edit whatever the phase */
      policyexec__v1__body_edit__init(&body_edits[i]);
      body_edits[i].side = POLICYEXEC__V1__SIDE__SIDE_REQUEST;
      body_edits[i].replace = 1;
      body_edits[i].replacement = bin("evil");
      body_ptrs[i] = &body_edits[i];
      results[i].n_bodies = 1;
      results[i].bodies = &body_ptrs[i];
    }
    if (!strncmp(name, "fake-shm-", 9)) {
      const char *lie = name + 9;
      if (!strcmp(lie, "midframe")) {
        /* An fd with half a frame header, then the connection ends. */
        int mfd = memfd_with("partial", ALL_SEALS);
        send_with_fds(fd, "\0\0", 2, &mfd, 1);
        exit(0);
      }
      policyexec__v1__body_edit__init(&body_edits[i]);
      body_edits[i].side = POLICYEXEC__V1__SIDE__SIDE_REQUEST;
      body_edits[i].replace = 1;
      body_edits[i].replacement_shm = &ref;
      body_ptrs[i] = &body_edits[i];
      results[i].n_bodies = 1;
      results[i].bodies = &body_ptrs[i];
      ref.length = 9; /* "shared-ok" */
      if (!strcmp(lie, "ok") || !strcmp(lie, "beyond") || !strcmp(lie, "overflow")) {
        fds[nfds++] = memfd_with("shared-ok", ALL_SEALS);
        if (!strcmp(lie, "beyond"))
          ref.length = 10;
        if (!strcmp(lie, "overflow"))
          ref.offset = UINT64_MAX - 4;
      } else if (!strcmp(lie, "pipe")) {
        int pp[2];
        if (pipe(pp) != 0)
          abort();
        close(pp[1]);
        fds[nfds++] = pp[0];
      } else if (!strcmp(lie, "unsealed")) {
        fds[nfds++] = memfd_with("shared-ok", 0);
      } else if (!strcmp(lie, "flood")) {
        body_edits[i].replacement_shm = NULL;
        body_edits[i].replacement = bin("flooded");
        for (; nfds < 64; nfds++)
          fds[nfds] = memfd_with("x", ALL_SEALS);
      }
    }
    const char *hname = NULL, *hvalue = NULL;
    if (!strcmp(name, "fake-ok"))
      hname = "x-fake", hvalue = "ok";
    else if (!strcmp(name, "fake-crlf"))
      hname = "x-evil", hvalue = "a\r\ninjected: 1";
    else if (!strcmp(name, "fake-badname"))
      hname = "bad name", hvalue = "x";
    if (hname) {
      policyexec__v1__header_edit__init(&edits[i]);
      edits[i].side = POLICYEXEC__V1__SIDE__SIDE_REQUEST;
      edits[i].name = bin(hname);
      values[i] = bin(hvalue);
      edits[i].n_values = 1;
      edits[i].values = &values[i];
      edit_ptrs[i] = &edits[i];
      results[i].n_headers = 1;
      results[i].headers = &edit_ptrs[i];
    }
  }
  if (count > n) {
    policyexec__v1__step_result__init(&results[n < 8 ? n : 7]);
    ptrs[n] = &results[n < 8 ? n : 7];
  }
  Policyexec__V1__RunReply reply = POLICYEXEC__V1__RUN_REPLY__INIT;
  reply.n_steps = count;
  reply.steps = ptrs;
  Policyexec__V1__Response resp = POLICYEXEC__V1__RESPONSE__INIT;
  resp.id = id;
  resp.body_case = POLICYEXEC__V1__RESPONSE__BODY_RUN;
  resp.run = &reply;
  int rc = send_response_fds(fd, &resp, fds, nfds);
  for (size_t i = 0; i < nfds; i++)
    close(fds[i]);
  return rc;
}

/* Serves one request; -1 ends the connection. */
static int serve(int fd) {
  unsigned char hdr[PE__FRAME_HEADER];
  if (read_all(fd, hdr, sizeof hdr))
    return -1;
  size_t len = pe__frame_len_get(hdr);
  unsigned char *buf = malloc(len ? len : 1);
  if (!buf || read_all(fd, buf, len)) {
    free(buf);
    return -1;
  }
  Policyexec__V1__Request *req = policyexec__v1__request__unpack(NULL, len, buf);
  free(buf);
  if (!req)
    return -1;
  Policyexec__V1__Response resp = POLICYEXEC__V1__RESPONSE__INIT;
  resp.id = req->id;
  Policyexec__V1__HelloReply hello = POLICYEXEC__V1__HELLO_REPLY__INIT;
  Policyexec__V1__PolicyInfo infos[NPOLICIES], *info_ptrs[NPOLICIES];
  Policyexec__V1__CreateReply created = POLICYEXEC__V1__CREATE_REPLY__INIT;
  Policyexec__V1__DestroyReply destroyed = POLICYEXEC__V1__DESTROY_REPLY__INIT;
  Policyexec__V1__Pong pong = POLICYEXEC__V1__PONG__INIT;
  int rc = 0;
  switch (req->body_case) {
  case POLICYEXEC__V1__REQUEST__BODY_HELLO:
    for (size_t i = 0; i < NPOLICIES; i++) {
      policyexec__v1__policy_info__init(&infos[i]);
      infos[i].name = (char *)policies[i];
      infos[i].version = "1.0.0";
      infos[i].phases = 1u << POLICYEXEC__V1__PHASE__PHASE_REQUEST_HEADERS;
      if (!strncmp(policies[i], "fake-shm-", 9)) {
        infos[i].phases = 1u << POLICYEXEC__V1__PHASE__PHASE_REQUEST_BODY;
        infos[i].needs_request_body = 1;
      }
      if (!strncmp(policies[i], "fake-chunk-", 11))
        infos[i].phases = infos[i].chunk_phases = 1u << POLICYEXEC__V1__PHASE__PHASE_REQUEST_BODY;
      info_ptrs[i] = &infos[i];
    }
    hello.protocol_version = POLICYEXEC__V1__PROTOCOL_VERSION__PROTOCOL_VERSION_CURRENT;
    hello.n_policies = NPOLICIES;
    hello.policies = info_ptrs;
    hello.pid = (uint32_t)getpid();
    hello.runtime = "fake";
    resp.body_case = POLICYEXEC__V1__RESPONSE__BODY_HELLO;
    resp.hello = &hello;
    rc = send_response(fd, &resp);
    break;
  case POLICYEXEC__V1__REQUEST__BODY_CREATE: {
    int p = -1;
    for (size_t i = 0; i < NPOLICIES; i++)
      if (!strcmp(req->create->name, policies[i]))
        p = (int)i;
    created.ok = p >= 0 && ninstances < MAX_INSTANCES;
    created.error = created.ok ? "" : "unknown policy";
    if (created.ok) {
      instances[ninstances].id = req->create->instance_id;
      instances[ninstances++].policy = p;
    }
    resp.body_case = POLICYEXEC__V1__RESPONSE__BODY_CREATE;
    resp.create = &created;
    rc = send_response(fd, &resp);
    break;
  }
  case POLICYEXEC__V1__REQUEST__BODY_DESTROY:
    resp.body_case = POLICYEXEC__V1__RESPONSE__BODY_DESTROY;
    resp.destroy = &destroyed;
    rc = send_response(fd, &resp);
    break;
  case POLICYEXEC__V1__REQUEST__BODY_PING:
    pong.instances = ninstances;
    resp.body_case = POLICYEXEC__V1__RESPONSE__BODY_PONG;
    resp.pong = &pong;
    rc = send_response(fd, &resp);
    break;
  case POLICYEXEC__V1__REQUEST__BODY_RUN:
    rc = answer_run(fd, req->id, req->run);
    break;
  default:
    rc = -1;
  }
  policyexec__v1__request__free_unpacked(req, NULL);
  return rc;
}

int main(int argc, char **argv) {
  const char *path = NULL;
  for (int i = 1; i + 1 < argc; i++)
    if (!strcmp(argv[i], "--socket"))
      path = argv[i + 1];
  if (!path) {
    fprintf(stderr, "usage: %s --socket PATH\n", argv[0]);
    return 2;
  }
  int lfd = socket(AF_UNIX, SOCK_STREAM, 0);
  struct sockaddr_un addr = {.sun_family = AF_UNIX};
  snprintf(addr.sun_path, sizeof addr.sun_path, "%s", path);
  unlink(path);
  if (lfd < 0 || bind(lfd, (struct sockaddr *)&addr, sizeof addr) || listen(lfd, 16)) {
    perror("fake_worker: listen");
    return 1;
  }
  struct pollfd fds[MAX_CONNS + 1] = {{.fd = lfd, .events = POLLIN}};
  nfds_t nfds = 1;
  for (;;) {
    if (poll(fds, nfds, -1) < 0 && errno != EINTR)
      return 1;
    for (nfds_t i = 1; i < nfds; i++) {
      if (!fds[i].revents)
        continue;
      if (serve(fds[i].fd) != 0) {
        close(fds[i].fd);
        fds[i--] = fds[--nfds];
      }
    }
    if ((fds[0].revents & POLLIN) && nfds <= MAX_CONNS) {
      int cfd = accept(lfd, NULL, NULL);
      if (cfd >= 0)
        fds[nfds++] = (struct pollfd){.fd = cfd, .events = POLLIN};
    }
  }
}
