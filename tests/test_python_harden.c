/* The Python backend's robustness fixes, with the real worker: framing
 * headers refused from a worker's reply; a process forked by a policy dies
 * with its worker; a SIGKILLed host leaves no socket directory behind. */
#include "test_python_util.h"

#include <dirent.h>
#include <sys/wait.h>

/* Waits up to timeout_ms for a process to be gone (or a zombie nobody
 * reaps yet). */
static int gone_within(int pid, int timeout_ms) {
  for (int waited = 0; waited < timeout_ms; waited += 20) {
    char path[64], buf[256];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f)
      return 1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *close_paren = strrchr(buf, ')');
    if (close_paren && close_paren[1] == ' ' && close_paren[2] == 'Z')
      return 1;
    py_sleep_ms(20);
  }
  return 0;
}

/* Runs test-forker and returns the pid of the child it started. */
static int start_forker_child(pe_engine *e, const pe_chain *forker) {
  pe_exchange *ex = py_exchange(e);
  ck_assert_int_eq(pe_chain_run(forker, ex, PE_PHASE_REQUEST_HEADERS), PE_OK);
  ck_assert_msg(pe_exchange_verdict(ex) == PE_VERDICT_CONTINUE, "%s", pe_exchange_errmsg(ex));
  pe_slice v;
  ck_assert_int_eq(pe_exchange_header_get(ex, PE_REQUEST, PE_LIT("x-child"), &v), PE_OK);
  char buf[32];
  snprintf(buf, sizeof buf, "%.*s", (int)v.len, v.ptr);
  pe_exchange_free(ex);
  int child = atoi(buf);
  ck_assert_int_gt(child, 1);
  ck_assert(py_process_exists(child));
  return child;
}

START_TEST(forked_child_dies_with_its_replaced_worker) {
  pe_engine *e = py_engine(1);
  pe_chain *forker = py_chain(e, "[{\"name\":\"test-forker\",\"version\":\"1.0.0\"}]");
  pe_chain *slow = py_chain(e, "[{\"name\":\"test-sleep\",\"version\":\"1.0.0\","
                               "\"timeout_ms\":200}]");
  int child = start_forker_child(e, forker);
  /* A timeout gets the worker killed and replaced. */
  pe_exchange *ex = py_exchange(e);
  ck_assert_int_eq(pe_chain_run(slow, ex, PE_PHASE_REQUEST_HEADERS), PE_OK);
  ck_assert_int_eq(pe_exchange_status(ex), 504);
  pe_exchange_free(ex);
  ck_assert_uint_eq(pe_engine_python_restarts(e), 1);
  ck_assert_msg(gone_within(child, 5000), "child %d outlived its worker", child);
  /* And at shutdown. */
  child = start_forker_child(e, forker);
  pe_chain_free(forker);
  pe_chain_free(slow);
  pe_engine_free(e);
  ck_assert_msg(gone_within(child, 5000), "child %d outlived the pool", child);
}
END_TEST

static int dir_is_empty(const char *path) {
  DIR *d = opendir(path);
  ck_assert_ptr_nonnull(d);
  int empty = 1;
  struct dirent *de;
  while ((de = readdir(d)))
    if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
      empty = 0;
  closedir(d);
  return empty;
}

/* The host is SIGKILLed: its workers exit (the lifeline) and the last one
 * removes the socket directory, which the engine had no chance to. */
START_TEST(sigkilled_host_leaves_no_socket_directory) {
  char tmp[] = "/tmp/pe-sigkill-XXXXXX";
  ck_assert_ptr_nonnull(mkdtemp(tmp));
  int ready[2];
  ck_assert_int_eq(pipe(ready), 0);
  pid_t host = fork();
  ck_assert_int_ge(host, 0);
  if (host == 0) {
    setenv("TMPDIR", tmp, 1);
    pe_engine *e = py_engine(2);
    (void)e;
    ck_assert_int_eq(write(ready[1], "r", 1), 1);
    for (;;)
      pause();
  }
  close(ready[1]);
  char byte;
  ck_assert_int_eq(read(ready[0], &byte, 1), 1);
  close(ready[0]);
  ck_assert(!dir_is_empty(tmp)); /* the pool's socket directory */
  kill(host, SIGKILL);
  int status;
  ck_assert_int_eq(waitpid(host, &status, 0), host);
  int empty = 0;
  for (int waited = 0; waited < 5000 && !(empty = dir_is_empty(tmp)); waited += 20)
    py_sleep_ms(20);
  ck_assert_msg(empty, "a socket directory was left in %s", tmp);
  rmdir(tmp);
}
END_TEST

/* A Python policy's framing-header edits are refused like a native one's. */
START_TEST(framing_headers_from_python_are_refused) {
  pe_engine *e = py_engine(1);
  static const char *const cases[] = {
      "{\"name\":\"content-length\"}", "{\"name\":\"Transfer-Encoding\"}",
      "{\"name\":\"connection\"}", "{\"name\":\"content-length\",\"remove\":true}"};
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char json[256];
    snprintf(json, sizeof json, "[{\"name\":\"test-framing\",\"version\":\"1.0.0\",\"params\":%s}]",
             cases[i]);
    pe_chain *c = py_chain(e, json);
    pe_exchange *ex = py_exchange(e);
    ck_assert_int_eq(pe_exchange_set_status(ex, 200), PE_OK);
    ck_assert_int_eq(
        pe_exchange_header_set(ex, PE_RESPONSE, PE_LIT("content-length"), PE_LIT("12")), PE_OK);
    ck_assert_int_eq(pe_chain_run(c, ex, PE_PHASE_RESPONSE_HEADERS), PE_OK);
    ck_assert_msg(pe_exchange_status(ex) == 500, "%s: %d", cases[i], pe_exchange_status(ex));
    ck_assert_msg(strstr(pe_exchange_errmsg(ex), "belong to the proxy"), "%s: %s", cases[i],
                  pe_exchange_errmsg(ex));
    pe_exchange_free(ex);
    pe_chain_free(c);
  }
  pe_engine_free(e);
}
END_TEST

int main(void) {
  Suite *s = suite_create("python_harden");
  TCase *tc = tcase_create("harden");
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, framing_headers_from_python_are_refused);
  tcase_add_test(tc, forked_child_dies_with_its_replaced_worker);
  tcase_add_test(tc, sigkilled_host_leaves_no_socket_directory);
  suite_add_tcase(s, tc);
  return pe_test_run_suite(s);
}
