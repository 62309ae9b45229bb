/*
 * The smallest host: load the sample plugin, build the native-4 chain, run
 * one exchange through all four phases and print what the policies did.
 *
 *   cc embed.c $(pkg-config --cflags --libs policyexec) -o embed
 *   ./embed /path/to/sample_native_policies.so
 */
#include <policyexec/policyexec.h>
#include <stdio.h>

static const char native4[] =
    "[{\"name\": \"sample-native-response-header\", \"version\": \"1.0.0\"},"
    " {\"name\": \"sample-native-request-body\", \"version\": \"1.0.0\"},"
    " {\"name\": \"sample-native-response-header\", \"version\": \"1.0.0\"},"
    " {\"name\": \"sample-native-response-body\", \"version\": \"1.0.0\"}]";

static void print_side(pe_exchange *ex, pe_dir dir) {
  pe_slice name, value, body = pe_exchange_body(ex, dir);
  for (size_t i = 0; pe_exchange_header_at(ex, dir, i, &name, &value) == PE_OK; i++)
    printf("  %.*s: %.*s\n", (int)name.len, name.ptr, (int)value.len, value.ptr);
  printf("  body: %.*s\n", (int)body.len, body.ptr);
}

int main(int argc, char **argv) {
  const char *plugin = argc > 1 ? argv[1] : "./sample_native_policies.so";
  pe_engine *engine = NULL;
  pe_chain *chain = NULL;
  pe_exchange *ex = NULL;
  char err[256];
  int rc;

  if ((rc = pe_engine_new(&engine, NULL)) < 0 || (rc = pe_engine_load_plugin(engine, plugin)) < 0) {
    fprintf(stderr, "engine: %s: %s\n", pe_strerror(rc), engine ? pe_engine_errmsg(engine) : "");
    pe_engine_free(engine);
    return 1;
  }
  if ((rc = pe_chain_new_from_json(&chain, engine, PE_LIT(native4), err, sizeof err)) < 0) {
    fprintf(stderr, "chain: %s: %s\n", pe_strerror(rc), err);
    pe_engine_free(engine);
    return 1;
  }
  printf("chain: %zu steps, bodies to buffer: request=%s response=%s\n", pe_chain_step_count(chain),
         pe_chain_needs(chain) & PE_NEEDS_REQUEST_BODY ? "yes" : "no",
         pe_chain_needs(chain) & PE_NEEDS_RESPONSE_BODY ? "yes" : "no");

  /* The request, as a proxy would fill it in. */
  rc = pe_exchange_new(&ex, engine);
  if (rc == PE_OK) {
    pe_exchange_set_method(ex, PE_LIT("POST"));
    pe_exchange_set_path(ex, PE_LIT("/echo"));
    pe_exchange_header_add(ex, PE_REQUEST, PE_LIT("content-type"), PE_LIT("text/plain"));
    pe_exchange_body_set(ex, PE_REQUEST, PE_LIT("hello"));
  }
  for (int phase = 0; rc == PE_OK && phase < PE_PHASE_COUNT; phase++) {
    if (phase == PE_PHASE_RESPONSE_HEADERS) { /* the upstream echoes the body */
      pe_exchange_set_status(ex, 200);
      pe_exchange_body_set(ex, PE_RESPONSE, pe_exchange_body(ex, PE_REQUEST));
    }
    rc = pe_chain_run(chain, ex, (pe_phase)phase);
    if (rc == PE_OK && pe_exchange_verdict(ex) == PE_VERDICT_RESPOND)
      break;
  }
  if (rc == PE_OK) {
    printf("request sent upstream:\n");
    print_side(ex, PE_REQUEST);
    printf("response %d sent to the client:\n", pe_exchange_status(ex));
    print_side(ex, PE_RESPONSE);
  } else {
    fprintf(stderr, "run: %s: %s\n", pe_strerror(rc), ex ? pe_exchange_errmsg(ex) : "");
  }
  pe_exchange_free(ex);
  pe_chain_free(chain);
  pe_engine_free(engine);
  return rc == PE_OK ? 0 : 1;
}
