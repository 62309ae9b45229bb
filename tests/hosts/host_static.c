/* A host linked with the static library, without --whole-archive and without
 * -rdynamic: the plugin it loads must find the whole API in the table it is
 * handed, since the executable exports nothing.
 *
 *   host_static PLUGIN.so        (exit 0 on success)
 *
 * The only pe_* functions linked in are the ones called here; the sample
 * plugin calls others (pe_exchange_body_prepend, pe_engine_register_policy). */
#include <policyexec/policyexec.h>
#include <stdio.h>

static const char native4[] =
    "[{\"name\": \"sample-native-response-header\", \"version\": \"1.0.0\"},"
    " {\"name\": \"sample-native-request-body\", \"version\": \"1.0.0\"},"
    " {\"name\": \"sample-native-response-header\", \"version\": \"1.0.0\"},"
    " {\"name\": \"sample-native-response-body\", \"version\": \"1.0.0\"}]";

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s PLUGIN.so\n", argv[0]);
    return 2;
  }
  pe_engine *engine = NULL;
  pe_chain *chain = NULL;
  pe_exchange *ex = NULL;
  char err[256] = "";
  int rc = pe_engine_new(&engine, NULL);
  rc = rc ? rc : pe_engine_load_plugin(engine, argv[1]);
  if (rc) {
    fprintf(stderr, "load_plugin: %s: %s\n", pe_errname(rc),
            engine ? pe_engine_errmsg(engine) : "");
    pe_engine_free(engine);
    return 1;
  }
  rc = pe_chain_new_from_json(&chain, engine, PE_LIT(native4), err, sizeof err);
  rc = rc ? rc : pe_exchange_new(&ex, engine);
  rc = rc ? rc : pe_exchange_set_method(ex, PE_LIT("GET"));
  rc = rc ? rc : pe_exchange_set_path(ex, PE_LIT("/"));
  rc = rc ? rc : pe_chain_run_phases(chain, ex, PE_PHASE_REQUEST_HEADERS, PE_PHASE_REQUEST_BODY);
  rc = rc ? rc : pe_exchange_set_status(ex, 200);
  rc = rc ? rc : pe_chain_run_phases(chain, ex, PE_PHASE_RESPONSE_HEADERS, PE_PHASE_RESPONSE_BODY);
  pe_slice v = {0};
  rc = rc ? rc : pe_exchange_header_get(ex, PE_RESPONSE, PE_LIT("x-sample-policy-phase"), &v);
  if (rc)
    fprintf(stderr, "run: %s: %s %s\n", pe_errname(rc), err, ex ? pe_exchange_errmsg(ex) : "");
  else
    printf("x-sample-policy-phase: %.*s\n", (int)v.len, v.ptr);
  pe_exchange_free(ex);
  pe_chain_free(chain);
  pe_engine_free(engine);
  return rc ? 1 : 0;
}
