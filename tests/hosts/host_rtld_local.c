/* A host that opens libpolicyexec RTLD_LOCAL, as ctypes, LuaJIT's ffi.load
 * and most FFIs do, reaches the whole API through pe_api_table() (its only
 * dlsym), loads the sample plugin and runs the native-4 chain.
 *
 *   host_rtld_local LIBPOLICYEXEC.so PLUGIN.so
 *
 * Before plugins received the API table this failed: the plugin's pe_*
 * references could not be resolved ("undefined symbol"). Exit 0 on success. */
#include <dlfcn.h>
#include <policyexec/plugin_api.h>
#include <stdio.h>
#include <string.h>

static const char native4[] =
    "[{\"name\": \"sample-native-response-header\", \"version\": \"1.0.0\"},"
    " {\"name\": \"sample-native-request-body\", \"version\": \"1.0.0\"},"
    " {\"name\": \"sample-native-response-header\", \"version\": \"1.0.0\"},"
    " {\"name\": \"sample-native-response-body\", \"version\": \"1.0.0\"}]";

static int run(const pe_api_routines *api, const char *plugin) {
  pe_engine *engine = NULL;
  pe_chain *chain = NULL;
  pe_exchange *ex = NULL;
  char err[256] = "";
  int rc = api->engine_new(&engine, NULL);
  rc = rc ? rc : api->engine_load_plugin(engine, plugin);
  if (rc) {
    fprintf(stderr, "load_plugin: %s: %s\n", api->errname(rc),
            engine ? api->engine_errmsg(engine) : "");
    api->engine_free(engine);
    return 1;
  }
  rc = api->chain_new_from_json_n(&chain, engine, native4, strlen(native4), err, sizeof err);
  rc = rc ? rc : api->exchange_new(&ex, engine);
  rc = rc ? rc : api->exchange_set_method_n(ex, "POST", 4);
  rc = rc ? rc : api->exchange_set_path_n(ex, "/", 1);
  rc = rc ? rc : api->exchange_body_set_n(ex, PE_REQUEST, "hello", 5);
  rc = rc ? rc : api->chain_run_phases(chain, ex, PE_PHASE_REQUEST_HEADERS, PE_PHASE_REQUEST_BODY);
  rc = rc ? rc : api->exchange_set_status(ex, 200);
  size_t n = 0;
  const char *body = api->exchange_body_n(ex, PE_REQUEST, &n);
  rc = rc ? rc : api->exchange_body_set_n(ex, PE_RESPONSE, body, n);
  rc =
      rc ? rc : api->chain_run_phases(chain, ex, PE_PHASE_RESPONSE_HEADERS, PE_PHASE_RESPONSE_BODY);
  pe_slice v = {0};
  rc = rc ? rc : api->exchange_header_get_n(ex, PE_RESPONSE, "x-sample-policy-phase", 21, &v);
  body = api->exchange_body_n(ex, PE_RESPONSE, &n);
  printf("x-sample-policy-phase: %.*s\nbody: %.*s\n", (int)v.len, v.ptr ? v.ptr : "", (int)n, body);
  static const char want[] = "[sample-response-body][sample-request-body]hello";
  if (rc == PE_OK && (n != strlen(want) || memcmp(body, want, n) != 0))
    rc = PE_ERR_POLICY;
  if (rc)
    fprintf(stderr, "run: %s: %s %s\n", api->errname(rc), err, ex ? api->exchange_errmsg(ex) : "");
  api->exchange_free(ex);
  api->chain_free(chain);
  api->engine_free(engine);
  return rc ? 1 : 0;
}

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: %s LIBPOLICYEXEC.so PLUGIN.so\n", argv[0]);
    return 2;
  }
  void *lib = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
  if (!lib) {
    fprintf(stderr, "dlopen: %s\n", dlerror());
    return 1;
  }
  /* The library's own symbols must not be visible globally, or this test
   * would prove nothing. */
  if (dlsym(RTLD_DEFAULT, "pe_engine_new")) {
    fprintf(stderr, "pe_engine_new is global: the test is void\n");
    return 1;
  }
  const pe_api_routines *(*table)(void) =
      (const pe_api_routines *(*)(void))dlsym(lib, "pe_api_table");
  if (!table) {
    fprintf(stderr, "no pe_api_table in %s\n", argv[1]);
    return 1;
  }
  int rc = run(table(), argv[2]);
  dlclose(lib);
  return rc;
}
