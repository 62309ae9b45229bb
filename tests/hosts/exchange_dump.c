/* The reference for the bindings' byte-for-byte tests: runs one fixed
 * exchange through a chain with the C API and prints everything the
 * exchange holds afterwards in a canonical text form. The Python and LuaJIT
 * tests run the same script through their binding and compare outputs.
 *
 *   exchange_dump PLUGIN.so PYWORKER CHAIN.json [PYTHON_MODULE_DIR...]
 *
 * The script (keep it identical in bindings/python/tests/dump.py and
 * bindings/lua/tests/dump.lua): POST /echo?x=1 to backend.local:9000 with
 * headers User-Agent: dump, Accept: a, accept: b, x-in: v\xe9, metadata
 * tenant=t1 and body "hello\0world\xff"; run the request phases one by one
 * (stop at an immediate response); then status 200, Content-Type:
 * text/plain, Set-Cookie: a=1, set-cookie: b=2, the request body echoed, and
 * both response phases in one run. Bytes outside 0x21..0x7e print as \xHH. */
#include <policyexec/policyexec.h>
#include <stdio.h>
#include <stdlib.h>

static void put_escaped(pe_slice s) {
  for (size_t i = 0; i < s.len; i++) {
    unsigned char c = (unsigned char)s.ptr[i];
    if (c < 0x21 || c > 0x7e || c == '\\')
      printf("\\x%02x", c);
    else
      putchar(c);
  }
}

static void put_line(const char *label, pe_slice s) {
  printf("%s ", label);
  put_escaped(s);
  putchar('\n');
}

static void dump(const pe_exchange *ex, int rc) {
  pe_slice k, v;
  printf("rc %s\nverdict %d\nstatus %d\n", pe_errname(rc), (int)pe_exchange_verdict(ex),
         pe_exchange_status(ex));
  put_line("method", pe_exchange_method(ex));
  put_line("path", pe_exchange_path(ex));
  put_line("authority", pe_exchange_authority(ex));
  static const char *const side[2] = {"request", "response"};
  for (int d = 0; d < 2; d++) {
    for (size_t i = 0; pe_exchange_header_at(ex, (pe_dir)d, i, &k, &v) == PE_OK; i++) {
      printf("%s-header ", side[d]);
      put_escaped(k);
      printf(": ");
      put_escaped(v);
      putchar('\n');
    }
    printf("%s-body ", side[d]);
    put_escaped(pe_exchange_body(ex, (pe_dir)d));
    putchar('\n');
  }
  for (size_t i = 0; pe_exchange_meta_at(ex, i, &k, &v) == PE_OK; i++) {
    printf("meta ");
    put_escaped(k);
    printf("=");
    put_escaped(v);
    putchar('\n');
  }
}

static int run_script(const pe_chain *chain, pe_exchange *ex) {
  int rc = pe_exchange_set_method(ex, PE_LIT("POST"));
  rc = rc ? rc : pe_exchange_set_path(ex, PE_LIT("/echo?x=1"));
  rc = rc ? rc : pe_exchange_set_authority(ex, PE_LIT("backend.local:9000"));
  rc = rc ? rc : pe_exchange_header_add(ex, PE_REQUEST, PE_LIT("User-Agent"), PE_LIT("dump"));
  rc = rc ? rc : pe_exchange_header_add(ex, PE_REQUEST, PE_LIT("Accept"), PE_LIT("a"));
  rc = rc ? rc : pe_exchange_header_add(ex, PE_REQUEST, PE_LIT("accept"), PE_LIT("b"));
  rc = rc ? rc : pe_exchange_header_add(ex, PE_REQUEST, PE_LIT("x-in"), PE_LIT("v\xe9"));
  rc = rc ? rc : pe_exchange_meta_set(ex, PE_LIT("tenant"), PE_LIT("t1"));
  rc = rc ? rc : pe_exchange_body_set(ex, PE_REQUEST, PE_LIT("hello\0world\xff"));
  for (int p = PE_PHASE_REQUEST_HEADERS; rc == PE_OK && p <= PE_PHASE_REQUEST_BODY; p++)
    if (pe_exchange_verdict(ex) == PE_VERDICT_CONTINUE)
      rc = pe_chain_run(chain, ex, (pe_phase)p);
  if (rc || pe_exchange_verdict(ex) != PE_VERDICT_CONTINUE)
    return rc;
  rc = pe_exchange_set_status(ex, 200);
  rc = rc ? rc
          : pe_exchange_header_add(ex, PE_RESPONSE, PE_LIT("Content-Type"), PE_LIT("text/plain"));
  rc = rc ? rc : pe_exchange_header_add(ex, PE_RESPONSE, PE_LIT("Set-Cookie"), PE_LIT("a=1"));
  rc = rc ? rc : pe_exchange_header_add(ex, PE_RESPONSE, PE_LIT("set-cookie"), PE_LIT("b=2"));
  rc = rc ? rc : pe_exchange_body_set(ex, PE_RESPONSE, pe_exchange_body(ex, PE_REQUEST));
  return rc ? rc
            : pe_chain_run_phases(chain, ex, PE_PHASE_RESPONSE_HEADERS, PE_PHASE_RESPONSE_BODY);
}

static char *read_file(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f)
    return NULL;
  static char buf[1 << 16];
  *len = fread(buf, 1, sizeof buf, f);
  fclose(f);
  return buf;
}

int main(int argc, char **argv) {
  if (argc < 4) {
    fprintf(stderr, "usage: %s PLUGIN.so PYWORKER CHAIN.json [PYTHON_MODULE_DIR...]\n", argv[0]);
    return 2;
  }
  size_t json_len = 0;
  const char *json = read_file(argv[3], &json_len);
  pe_engine *engine = NULL;
  pe_python_options *py = NULL;
  pe_chain *chain = NULL;
  pe_exchange *ex = NULL;
  char err[512] = "";
  int rc = json ? pe_engine_new(&engine, NULL) : PE_ERR_IO;
  rc = rc ? rc : pe_engine_load_plugin(engine, argv[1]);
  if (rc == PE_OK && argc > 4) {
    rc = pe_python_options_new(&py);
    rc = rc ? rc : pe_python_options_set_workers(py, 1);
    rc = rc ? rc : pe_python_options_set_worker_path(py, argv[2]);
    for (int i = 4; rc == PE_OK && i < argc; i++)
      rc = pe_python_options_add_module_path(py, argv[i]);
    rc = rc ? rc : pe_engine_start_python(engine, py);
    pe_python_options_free(py);
  }
  if (rc) {
    fprintf(stderr, "engine: %s: %s\n", pe_errname(rc), engine ? pe_engine_errmsg(engine) : "");
    pe_engine_free(engine);
    return 1;
  }
  rc = pe_chain_new_from_json(&chain, engine, pe_bytes(json, json_len), err, sizeof err);
  rc = rc ? rc : pe_exchange_new(&ex, engine);
  if (rc) {
    fprintf(stderr, "chain: %s: %s\n", pe_errname(rc), err);
    pe_engine_free(engine);
    return 1;
  }
  dump(ex, run_script(chain, ex));
  pe_exchange_free(ex);
  pe_chain_free(chain);
  pe_engine_free(engine);
  return 0;
}
