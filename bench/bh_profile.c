/*
 * Profiles: the chains of the design brief (native-4, python-4, mix-4), an
 * empty chain to subtract the host's own cost, native-N / python-N for a
 * chain-length sweep (the native-4 pattern repeated to N steps), and
 * native-body / python-body: one request-body step, for large bodies;
 * python-io: one coroutine step that awaits a 10 ms timer (a policy waiting
 * on I/O), to measure how many such waits a worker keeps in flight.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bh.h"

static const int pattern4[4] = {BH_RESP_HEADER, BH_REQ_BODY, BH_RESP_HEADER, BH_RESP_BODY};
static const char *const role_names[4] = {"response-header", "request-body", "response-body",
                                          "request-header"};

static void add_step(bh_profile *p, bh_kind kind, int role) {
  p->kinds[p->hooks] = kind;
  p->roles[p->hooks] = role;
  p->hooks++;
  if (kind == BH_PYTHON)
    p->uses_python = true;
  if (role == BH_REQ_BODY)
    p->request_prefixes++;
  else if (role == BH_RESP_BODY)
    p->response_prefixes++;
  else if (role == BH_RESP_HEADER)
    p->response_header = true;
  else
    p->request_header = true;
}

int bh_profile_parse(const char *name, bh_profile *out, char *err, size_t errlen) {
  bh_profile p;
  memset(&p, 0, sizeof p);
  if (strlen(name) >= sizeof p.name) {
    snprintf(err, errlen, "profile name too long: %s", name);
    return -1;
  }
  strcpy(p.name, name);

  if (strcmp(name, "empty") == 0) {
    *out = p;
    return 0;
  }
  /* One request-body step: what moving a body to a policy and back costs. */
  if (strcmp(name, "native-body") == 0 || strcmp(name, "python-body") == 0) {
    add_step(&p, name[0] == 'n' ? BH_NATIVE : BH_PYTHON, BH_REQ_BODY);
    *out = p;
    return 0;
  }
  if (strcmp(name, "python-io") == 0) {
    add_step(&p, BH_PYTHON, BH_REQ_HEADER);
    p.io_wait = true;
    *out = p;
    return 0;
  }
  if (strcmp(name, "mix-4") == 0) {
    add_step(&p, BH_NATIVE, BH_RESP_HEADER);
    add_step(&p, BH_PYTHON, BH_REQ_BODY);
    add_step(&p, BH_NATIVE, BH_RESP_BODY);
    add_step(&p, BH_PYTHON, BH_RESP_HEADER);
    *out = p;
    return 0;
  }
  bh_kind kind;
  const char *num;
  if (strncmp(name, "native-", 7) == 0) {
    kind = BH_NATIVE;
    num = name + 7;
  } else if (strncmp(name, "python-", 7) == 0) {
    kind = BH_PYTHON;
    num = name + 7;
  } else {
    snprintf(err, errlen,
             "unknown profile '%s' (empty, native-N, python-N, mix-4, native-body, python-body, "
             "python-io)",
             name);
    return -1;
  }
  char *end;
  long n = strtol(num, &end, 10);
  if (*num == '\0' || *end != '\0' || n < 1 || n > 64) {
    snprintf(err, errlen, "profile '%s': N must be 1..64", name);
    return -1;
  }
  for (long i = 0; i < n; i++)
    add_step(&p, kind, pattern4[i % 4]);
  *out = p;
  return 0;
}

char *bh_profile_chain_json(const bh_profile *p) {
  size_t cap = 64 + p->hooks * 128;
  char *json = malloc(cap);
  if (!json)
    return NULL;
  if (p->io_wait) {
    snprintf(json, cap,
             "[{\"name\": \"sample-python-io-wait\", \"version\": \"1.0.0\", "
             "\"params\": {\"ms\": 10}}]");
    return json;
  }
  size_t len = (size_t)snprintf(json, cap, "[");
  for (size_t i = 0; i < p->hooks; i++) {
    bool remote = p->kinds[i] == BH_PYTHON && p->executor[0];
    len += (size_t)snprintf(
        json + len, cap - len, "%s{\"name\": \"sample-%s-%s\", \"version\": \"1.0.0\"%s%s%s}",
        i ? ", " : "", p->kinds[i] == BH_NATIVE ? "native" : "python", role_names[p->roles[i]],
        remote ? ", \"executor\": \"" : "", remote ? p->executor : "", remote ? "\"" : "");
  }
  snprintf(json + len, cap - len, "]");
  return json;
}
