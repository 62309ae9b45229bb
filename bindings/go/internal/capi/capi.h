/*
 * The C API side of the Go binding's tests and benchmark: the same work
 * done straight through libpolicyexec, with no Go in between, so that the
 * binding's results can be compared byte for byte and its cost side by
 * side in one process.
 */
#ifndef PE_GO_CAPI_H
#define PE_GO_CAPI_H

#include <policyexec/policyexec.h>

/* An engine with the sample plugin and (if pyworker is not NULL) a pool of
 * one Python worker. The message of a failure goes to err. */
int capi_engine_new(pe_engine **out, const char *plugin, const char *pyworker,
                    const char *pymodules, char *err, size_t errlen);

/* One exchange: the request (headers as "name\0value\0" pairs in a block
 * of hlen bytes) goes through the request phases of the chain built from
 * chain_json; unless a policy answered, the response (status, headers,
 * body) then goes through the response phases. *dump receives (malloc'd)
 * every field of the exchange in the format of capi_dump(). */
int capi_exchange(pe_engine *engine, const char *chain_json, const char *method, const char *path,
                  const char *authority, const char *req_headers, size_t rhlen,
                  const char *req_body, size_t rblen, int status, const char *resp_headers,
                  size_t shlen, const char *resp_body, size_t sblen, char **dump, size_t *dump_len,
                  char *err, size_t errlen);

/* The native-4 loop of the benchmark: n exchanges, each reset, filled, run
 * through the four phases (requests as one run, responses as one run) and
 * read (status, a header, the response body copied out). */
typedef struct capi_native4 capi_native4;
int capi_native4_new(capi_native4 **out, const char *plugin, char *err, size_t errlen);
int capi_native4_run(capi_native4 *b, long n);
void capi_native4_free(capi_native4 *b);

#endif
