/*
 * Unit tests of request-target normalisation (gw_path.c): every spelling of
 * a path that an upstream would resolve to the same resource normalises to
 * one form, and what cannot be normalised safely is refused.
 */
#include "gw_path.h"

#include <stdio.h>
#include <string.h>

static int failures;

/* Checks that @p in normalises to @p want (NULL: refused). */
static void expect(const char *in, const char *want) {
  char out[256];
  size_t n = gw_path_normalize(in, strlen(in), out);
  if (!want && n == 0)
    return;
  if (want && n == strlen(want) && memcmp(out, want, n) == 0)
    return;
  fprintf(stderr, "normalise %s: got %.*s (%zu), want %s\n", in, (int)n, out, n,
          want ? want : "(refused)");
  failures++;
}

int main(void) {
  /* The spellings of the issue: all are /static/secret/file.txt. */
  expect("/static/../static/secret/file.txt", "/static/secret/file.txt");
  expect("/static/%73ecret/file.txt", "/static/secret/file.txt");
  expect("/static//secret/file.txt", "/static/secret/file.txt");
  expect("/static/./secret/file.txt", "/static/secret/file.txt");
  expect("/static/%2e%2E/static/secret/file.txt", "/static/secret/file.txt");
  expect("/static/secret/./", "/static/secret/");
  expect("/static/secret/x/..", "/static/secret/");
  /* Unchanged forms; non-unreserved encodings keep (upper-case) encoding. */
  expect("/", "/");
  expect("/a/b?x=/../y&z=%2F", "/a/b?x=/../y&z=%2F");
  expect("/a%20b/c%3f", "/a%20b/c%3F");
  expect("/a/", "/a/");
  expect("//", "/");
  expect("/a/..", "/");
  /* Refused: what the upstream could read as another path. */
  expect("/static%2Fsecret/file.txt", NULL);
  expect("/static%2fsecret", NULL);
  expect("/static\\secret", NULL);
  expect("/static%5Csecret", NULL);
  expect("/static%00secret", NULL);
  expect("/a/%", NULL);
  expect("/a/%4", NULL);
  expect("/a/%zz", NULL);
  expect("/..", NULL);
  expect("/a/../../b", NULL);
  expect("/a#frag", NULL);
  expect("a/b", NULL);
  /* API contexts must be in normal form and plain path characters. */
  if (!gw_path_context_ok("/static") || !gw_path_context_ok("/static/secret") ||
      !gw_path_context_ok("/a%20b") || gw_path_context_ok("/a b") || gw_path_context_ok("/a//b") ||
      gw_path_context_ok("/a/./b") || gw_path_context_ok("/%73ecret") ||
      gw_path_context_ok("/a?b") || gw_path_context_ok("a")) {
    fprintf(stderr, "gw_path_context_ok: wrong verdict\n");
    failures++;
  }
  if (failures)
    fprintf(stderr, "%d failures\n", failures);
  else
    printf("gw_path: all checks passed\n");
  return failures ? 1 : 0;
}
