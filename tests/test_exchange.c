/* pe_exchange.c, pe_headers.c, pe_body.c: every promise exchange.h makes
 * about the request line, status, headers, bodies, metadata, the immediate
 * response, errors, limits and memory reuse. */
#include "pe_internal.h"
#include "pe_test_util.h"

#include <stdio.h>
#include <stdlib.h>

/* ---- fixtures ---- */

static pe_test_alloc alloc;
static pe_engine *engine;
static pe_exchange *ex;

static void setup(void) {
  memset(&alloc, 0, sizeof alloc);
  engine = pe_test_engine(&alloc);
  ck_assert_int_eq(pe_exchange_new(&ex, engine), PE_OK);
}

static void teardown(void) {
  pe_exchange_free(ex);
  pe_engine_free(engine);
  ex = NULL;
  engine = NULL;
  ck_assert_int_eq(atomic_load(&alloc.allocs), atomic_load(&alloc.frees));
}

/* An engine with one limit lowered (on top of the counting allocator). */
static pe_engine *engine_with_limit(pe_test_alloc *a, pe_limit which, size_t value) {
  pe_engine_options *opts = NULL;
  pe_engine *e = NULL;
  pe_mem m = pe_test_mem(a);
  ck_assert_int_eq(pe_engine_options_new(&opts), PE_OK);
  ck_assert_int_eq(pe_engine_options_set_mem(opts, &m), PE_OK);
  ck_assert_int_eq(pe_engine_options_set_limit(opts, which, value), PE_OK);
  ck_assert_int_eq(pe_engine_new(&e, opts), PE_OK);
  pe_engine_options_free(opts);
  return e;
}

static void use_limit(pe_limit which, size_t value) {
  pe_exchange_free(ex);
  pe_engine_free(engine);
  engine = engine_with_limit(&alloc, which, value);
  ck_assert_int_eq(pe_exchange_new(&ex, engine), PE_OK);
}

static void assert_errmsg_has(const char *needle) {
  const char *msg = pe_exchange_errmsg(ex);
  ck_assert_msg(strstr(msg, needle) != NULL, "errmsg '%s' lacks '%s'", msg, needle);
}

static pe_slice hdr(pe_dir dir, const char *name) {
  pe_slice v = {NULL, 0};
  ck_assert_int_eq(pe_exchange_header_get(ex, dir, pe_str(name), &v), PE_OK);
  return v;
}

/* ---- lifecycle ---- */

START_TEST(new_exchange_is_empty) {
  ck_assert_ptr_eq(pe_exchange_engine(ex), engine);
  ck_assert_slice_eq(pe_exchange_method(ex), "");
  ck_assert_slice_eq(pe_exchange_path(ex), "");
  ck_assert_slice_eq(pe_exchange_authority(ex), "");
  ck_assert_ptr_nonnull(pe_exchange_method(ex).ptr);
  ck_assert_int_eq(pe_exchange_status(ex), 0);
  ck_assert_int_eq(pe_exchange_verdict(ex), PE_VERDICT_CONTINUE);
  ck_assert_str_eq(pe_exchange_errmsg(ex), "");
  ck_assert_uint_eq(pe_exchange_header_count(ex, PE_REQUEST), 0);
  ck_assert_uint_eq(pe_exchange_header_count(ex, PE_RESPONSE), 0);
  ck_assert_uint_eq(pe_exchange_meta_count(ex), 0);
  ck_assert_slice_eq(pe_exchange_body(ex, PE_REQUEST), "");
  ck_assert_slice_eq(pe_exchange_body(ex, PE_RESPONSE), "");
}
END_TEST

START_TEST(new_failure_leaves_out_untouched) {
  pe_exchange *out = (pe_exchange *)&alloc; /* any sentinel */
  ck_assert_int_eq(pe_exchange_new(NULL, engine), PE_ERR_INVALID_ARGUMENT);
  ck_assert_int_eq(pe_exchange_new(&out, NULL), PE_ERR_INVALID_ARGUMENT);
  ck_assert_ptr_eq(out, (pe_exchange *)&alloc);
  atomic_store(&alloc.fail_at, atomic_load(&alloc.attempts) + 1);
  ck_assert_int_eq(pe_exchange_new(&out, engine), PE_ERR_NOMEM);
  ck_assert_ptr_eq(out, (pe_exchange *)&alloc);
  pe_exchange_free(NULL); /* no-op */
}
END_TEST

START_TEST(exchange_keeps_engine_alive) {
  pe_test_alloc a = {0};
  pe_engine *e = pe_test_engine(&a);
  pe_exchange *x = NULL;
  ck_assert_int_eq(pe_exchange_new(&x, e), PE_OK);
  pe_engine_free(e); /* the exchange still holds a reference */
  ck_assert_int_eq(pe_exchange_header_set(x, PE_REQUEST, PE_LIT("a"), PE_LIT("b")), PE_OK);
  ck_assert_ptr_eq(pe_exchange_engine(x), e);
  pe_exchange_free(x);
  ck_assert_int_eq(atomic_load(&a.allocs), atomic_load(&a.frees));
}
END_TEST

/* ---- request line ---- */

START_TEST(request_line) {
  ck_assert_int_eq(pe_exchange_set_method(ex, PE_LIT("GET")), PE_OK);
  ck_assert_int_eq(pe_exchange_set_path(ex, PE_LIT("/v1/items?id=3")), PE_OK);
  ck_assert_int_eq(pe_exchange_set_authority(ex, PE_LIT("example.com:8080")), PE_OK);
  ck_assert_slice_eq(pe_exchange_method(ex), "GET");
  ck_assert_slice_eq(pe_exchange_path(ex), "/v1/items?id=3");
  ck_assert_slice_eq(pe_exchange_authority(ex), "example.com:8080");
  ck_assert_int_eq(pe_exchange_set_method(ex, PE_LIT("M-SEARCH")), PE_OK);
  ck_assert_slice_eq(pe_exchange_method(ex), "M-SEARCH");
  ck_assert_int_eq(pe_exchange_set_authority(ex, PE_LIT("")), PE_OK); /* may be empty */
  ck_assert_slice_eq(pe_exchange_authority(ex), "");
}
END_TEST

START_TEST(request_line_refusals) {
  pe_exchange_set_method(ex, PE_LIT("GET"));
  pe_exchange_set_path(ex, PE_LIT("/ok"));
  pe_exchange_set_authority(ex, PE_LIT("host"));
  static const char *bad_methods[] = {"", "GE T", "GET\r\n", "G:T", "GET/", "G\xc3\xa9T"};
  for (size_t i = 0; i < sizeof bad_methods / sizeof bad_methods[0]; i++) {
    ck_assert_int_eq(pe_exchange_set_method(ex, pe_str(bad_methods[i])), PE_ERR_INVALID_VALUE);
    assert_errmsg_has("method");
  }
  ck_assert_int_eq(pe_exchange_set_method(ex, PE_LIT("G\0T")), PE_ERR_INVALID_VALUE);
  assert_errmsg_has("G\\x00T");
  static const char *bad_paths[] = {"", "/a b", "/a\tb", "/a\r\nHost: x", "/\x7f", "/caf\xc3\xa9"};
  for (size_t i = 0; i < sizeof bad_paths / sizeof bad_paths[0]; i++) {
    ck_assert_int_eq(pe_exchange_set_path(ex, pe_str(bad_paths[i])), PE_ERR_INVALID_VALUE);
    assert_errmsg_has("path");
  }
  ck_assert_int_eq(pe_exchange_set_authority(ex, PE_LIT("a b")), PE_ERR_INVALID_VALUE);
  assert_errmsg_has("authority");
  ck_assert_int_eq(pe_exchange_set_authority(ex, PE_LIT("a\nb")), PE_ERR_INVALID_VALUE);
  ck_assert_int_eq(pe_exchange_set_method(ex, pe_bytes(NULL, 3)), PE_ERR_INVALID_ARGUMENT);
  ck_assert_int_eq(pe_exchange_set_path(ex, pe_bytes(NULL, 3)), PE_ERR_INVALID_ARGUMENT);
  ck_assert_int_eq(pe_exchange_set_authority(ex, pe_bytes(NULL, 3)), PE_ERR_INVALID_ARGUMENT);
  /* Refusals changed nothing. */
  ck_assert_slice_eq(pe_exchange_method(ex), "GET");
  ck_assert_slice_eq(pe_exchange_path(ex), "/ok");
  ck_assert_slice_eq(pe_exchange_authority(ex), "host");
}
END_TEST

/* ---- status ---- */

START_TEST(status_range) {
  ck_assert_int_eq(pe_exchange_set_status(ex, 100), PE_OK);
  ck_assert_int_eq(pe_exchange_status(ex), 100);
  ck_assert_int_eq(pe_exchange_set_status(ex, 999), PE_OK);
  ck_assert_int_eq(pe_exchange_status(ex), 999);
  ck_assert_int_eq(pe_exchange_set_status(ex, 204), PE_OK);
  static const int bad[] = {99, 1000, 0, -1, -200, 100000};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    ck_assert_int_eq(pe_exchange_set_status(ex, bad[i]), PE_ERR_INVALID_VALUE);
    assert_errmsg_has("status");
  }
  ck_assert_int_eq(pe_exchange_status(ex), 204);
}
END_TEST

/* ---- headers ---- */

START_TEST(header_get_set_add_remove) {
  ck_assert_int_eq(pe_exchange_header_add(ex, PE_REQUEST, PE_LIT("Host"), PE_LIT("a.example")),
                   PE_OK);
  ck_assert_int_eq(pe_exchange_header_add(ex, PE_REQUEST, PE_LIT("Accept"), PE_LIT("*/*")), PE_OK);
  ck_assert_int_eq(pe_exchange_header_add(ex, PE_REQUEST, PE_LIT("x-multi"), PE_LIT("1")), PE_OK);
  ck_assert_int_eq(pe_exchange_header_add(ex, PE_REQUEST, PE_LIT("X-Multi"), PE_LIT("2")), PE_OK);
  ck_assert_int_eq(pe_exchange_header_add(ex, PE_REQUEST, PE_LIT("X-MULTI"), PE_LIT("")), PE_OK);
  ck_assert_uint_eq(pe_exchange_header_count(ex, PE_REQUEST), 5);
  ck_assert_uint_eq(pe_exchange_header_count(ex, PE_RESPONSE), 0);

  /* Case-insensitive lookups, nth value, order kept, original case kept. */
  ck_assert_slice_eq(hdr(PE_REQUEST, "HOST"), "a.example");
  pe_slice v, n;
  ck_assert_int_eq(pe_exchange_header_get_nth(ex, PE_REQUEST, PE_LIT("x-multi"), 1, &v), PE_OK);
  ck_assert_slice_eq(v, "2");
  ck_assert_int_eq(pe_exchange_header_get_nth(ex, PE_REQUEST, PE_LIT("x-multi"), 2, &v), PE_OK);
  ck_assert_slice_eq(v, "");
  ck_assert_int_eq(pe_exchange_header_get_nth(ex, PE_REQUEST, PE_LIT("x-multi"), 3, &v),
                   PE_ERR_NOT_FOUND);
  ck_assert_int_eq(pe_exchange_header_get(ex, PE_RESPONSE, PE_LIT("host"), &v), PE_ERR_NOT_FOUND);
  ck_assert_int_eq(pe_exchange_header_get(ex, PE_REQUEST, PE_LIT("missing"), &v), PE_ERR_NOT_FOUND);
  ck_assert_int_eq(pe_exchange_header_at(ex, PE_REQUEST, 3, &n, &v), PE_OK);
  ck_assert_slice_eq(n, "X-Multi");
  ck_assert_slice_eq(v, "2");
  ck_assert_int_eq(pe_exchange_header_at(ex, PE_REQUEST, 5, &n, &v), PE_ERR_NOT_FOUND);

  /* set replaces every value, in the place of the first. */
  ck_assert_int_eq(pe_exchange_header_set(ex, PE_REQUEST, PE_LIT("X-MULTI"), PE_LIT("one")), PE_OK);
  ck_assert_uint_eq(pe_exchange_header_count(ex, PE_REQUEST), 3);
  ck_assert_int_eq(pe_exchange_header_at(ex, PE_REQUEST, 2, &n, &v), PE_OK);
  ck_assert_slice_eq(n, "X-MULTI");
  ck_assert_slice_eq(v, "one");
  ck_assert_int_eq(pe_exchange_header_set(ex, PE_REQUEST, PE_LIT("new"), PE_LIT("last")), PE_OK);
  ck_assert_int_eq(pe_exchange_header_at(ex, PE_REQUEST, 3, &n, &v), PE_OK);
  ck_assert_slice_eq(n, "new");
  ck_assert_int_eq(pe_exchange_header_set(ex, PE_REQUEST, PE_LIT("host"), PE_LIT("b")), PE_OK);
  ck_assert_int_eq(pe_exchange_header_at(ex, PE_REQUEST, 0, &n, &v), PE_OK);
  ck_assert_slice_eq(n, "host");
  ck_assert_slice_eq(v, "b");

  /* remove returns the number of fields removed. */
  ck_assert_int_eq(pe_exchange_header_add(ex, PE_REQUEST, PE_LIT("accept"), PE_LIT("x")), PE_OK);
  ck_assert_int_eq(pe_exchange_header_remove(ex, PE_REQUEST, PE_LIT("ACCEPT")), 2);
  ck_assert_int_eq(pe_exchange_header_remove(ex, PE_REQUEST, PE_LIT("accept")), 0);
  ck_assert_int_eq(pe_exchange_header_remove(ex, PE_RESPONSE, PE_LIT("host")), 0);
  ck_assert_uint_eq(pe_exchange_header_count(ex, PE_REQUEST), 3);
  ck_assert_int_eq(pe_exchange_header_at(ex, PE_REQUEST, 0, &n, &v), PE_OK);
  ck_assert_slice_eq(n, "host");
  ck_assert_int_eq(pe_exchange_header_at(ex, PE_REQUEST, 1, &n, &v), PE_OK);
  ck_assert_slice_eq(n, "X-MULTI");
  ck_assert_int_eq(pe_exchange_header_at(ex, PE_REQUEST, 2, &n, &v), PE_OK);
  ck_assert_slice_eq(n, "new");

  /* The two sides are independent. */
  ck_assert_int_eq(pe_exchange_header_set(ex, PE_RESPONSE, PE_LIT("host"), PE_LIT("r")), PE_OK);
  ck_assert_slice_eq(hdr(PE_RESPONSE, "host"), "r");
  ck_assert_slice_eq(hdr(PE_REQUEST, "host"), "b");
}
END_TEST

START_TEST(header_copied_from_itself) {
  /* A getter's slice fed back into a setter (a common policy idiom). */
  pe_exchange_header_set(ex, PE_REQUEST, PE_LIT("host"), PE_LIT("a.example"));
  for (int i = 0; i < 90; i++)
    ck_assert_int_eq(
        pe_exchange_header_add(ex, PE_REQUEST, PE_LIT("x-orig-host"), hdr(PE_REQUEST, "host")),
        PE_OK);
  ck_assert_int_eq(
      pe_exchange_header_set(ex, PE_REQUEST, PE_LIT("host"), hdr(PE_REQUEST, "x-orig-host")),
      PE_OK);
  ck_assert_slice_eq(hdr(PE_REQUEST, "host"), "a.example");
  pe_slice v;
  ck_assert_int_eq(pe_exchange_header_get_nth(ex, PE_REQUEST, PE_LIT("x-orig-host"), 89, &v),
                   PE_OK);
  ck_assert_slice_eq(v, "a.example");
}
END_TEST

START_TEST(header_value_refusals) {
  pe_exchange_header_set(ex, PE_REQUEST, PE_LIT("x-keep"), PE_LIT("v"));
  static const struct {
    pe_slice value;
    const char *what;
  } bad[] = {
      {PE_LIT("a\rb"), "CR"},
      {PE_LIT("a\nX-Injected: 1"), "LF"},
      {PE_LIT("ab\0c"), "NUL"},
      {PE_LIT("\r\n"), "CR at byte 0"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    for (int dir = PE_REQUEST; dir <= PE_RESPONSE; dir++) {
      ck_assert_int_eq(pe_exchange_header_set(ex, (pe_dir)dir, PE_LIT("x-keep"), bad[i].value),
                       PE_ERR_HEADER_VALUE);
      assert_errmsg_has("'x-keep'");
      assert_errmsg_has(bad[i].what);
      assert_errmsg_has(dir == PE_REQUEST ? "request" : "response");
      ck_assert_int_eq(pe_exchange_header_add(ex, (pe_dir)dir, PE_LIT("x-new"), bad[i].value),
                       PE_ERR_HEADER_VALUE);
      assert_errmsg_has("'x-new'");
    }
  }
  ck_assert_uint_eq(pe_exchange_header_count(ex, PE_REQUEST), 1);
  ck_assert_uint_eq(pe_exchange_header_count(ex, PE_RESPONSE), 0);
  ck_assert_slice_eq(hdr(PE_REQUEST, "x-keep"), "v");
}
END_TEST

START_TEST(header_name_refusals) {
  static const pe_slice bad[] = {PE_LIT(""),       PE_LIT("bad name"), PE_LIT("x:y"),
                                 PE_LIT("a\r\nb"), PE_LIT("x\0y"),     PE_LIT("caf\xc3\xa9"),
                                 PE_LIT("(x)"),    PE_LIT("a\"b")};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    ck_assert_int_eq(pe_exchange_header_set(ex, PE_REQUEST, bad[i], PE_LIT("v")),
                     PE_ERR_HEADER_NAME);
    assert_errmsg_has("not a valid token");
    ck_assert_int_eq(pe_exchange_header_add(ex, PE_RESPONSE, bad[i], PE_LIT("v")),
                     PE_ERR_HEADER_NAME);
  }
  /* The message shows the name escaped: no raw control bytes. */
  ck_assert_int_eq(pe_exchange_header_add(ex, PE_REQUEST, PE_LIT("a\r\nb"), PE_LIT("v")),
                   PE_ERR_HEADER_NAME);
  assert_errmsg_has("'a\\x0d\\x0ab'");
  /* The name is checked before the value. */
  ck_assert_int_eq(pe_exchange_header_add(ex, PE_REQUEST, PE_LIT("a b"), PE_LIT("\n")),
                   PE_ERR_HEADER_NAME);
  /* A very long name is truncated in the message, which stays readable. */
  char name[1000];
  memset(name, 'n', sizeof name);
  name[500] = ' ';
  ck_assert_int_eq(pe_exchange_header_add(ex, PE_REQUEST, pe_bytes(name, sizeof name), PE_LIT("")),
                   PE_ERR_HEADER_NAME);
  assert_errmsg_has("...");
  ck_assert_uint_lt(strlen(pe_exchange_errmsg(ex)), PE__ERRMSG_SIZE);
  ck_assert_uint_eq(pe_exchange_header_count(ex, PE_REQUEST), 0);
  ck_assert_uint_eq(pe_exchange_header_count(ex, PE_RESPONSE), 0);
}
END_TEST

START_TEST(header_count_limit) {
  use_limit(PE_LIMIT_HEADER_COUNT, 3);
  for (int dir = PE_REQUEST; dir <= PE_RESPONSE; dir++) {
    ck_assert_int_eq(pe_exchange_header_add(ex, (pe_dir)dir, PE_LIT("a"), PE_LIT("1")), PE_OK);
    ck_assert_int_eq(pe_exchange_header_add(ex, (pe_dir)dir, PE_LIT("a"), PE_LIT("2")), PE_OK);
    ck_assert_int_eq(pe_exchange_header_set(ex, (pe_dir)dir, PE_LIT("b"), PE_LIT("3")), PE_OK);
    ck_assert_int_eq(pe_exchange_header_add(ex, (pe_dir)dir, PE_LIT("c"), PE_LIT("4")),
                     PE_ERR_TOO_MANY_HEADERS);
    assert_errmsg_has("'c'");
    assert_errmsg_has("more than 3");
    ck_assert_int_eq(pe_exchange_header_set(ex, (pe_dir)dir, PE_LIT("c"), PE_LIT("4")),
                     PE_ERR_TOO_MANY_HEADERS);
    /* Replacing an existing name does not add a field. */
    ck_assert_int_eq(pe_exchange_header_set(ex, (pe_dir)dir, PE_LIT("b"), PE_LIT("5")), PE_OK);
    ck_assert_uint_eq(pe_exchange_header_count(ex, (pe_dir)dir), 3);
    /* After a removal there is room again. */
    ck_assert_int_eq(pe_exchange_header_remove(ex, (pe_dir)dir, PE_LIT("a")), 2);
    ck_assert_int_eq(pe_exchange_header_add(ex, (pe_dir)dir, PE_LIT("c"), PE_LIT("4")), PE_OK);
  }
}
END_TEST

START_TEST(header_bytes_limit) {
  use_limit(PE_LIMIT_HEADER_BYTES, 20);
  ck_assert_int_eq(pe_exchange_header_add(ex, PE_REQUEST, PE_LIT("name"), PE_LIT("0123456789")),
                   PE_OK); /* 14 bytes */
  ck_assert_int_eq(pe_exchange_header_add(ex, PE_REQUEST, PE_LIT("x"), PE_LIT("12345")),
                   PE_OK); /* 20 */
  ck_assert_int_eq(pe_exchange_header_add(ex, PE_REQUEST, PE_LIT("y"), PE_LIT("")),
                   PE_ERR_HEADERS_TOO_LARGE);
  assert_errmsg_has("'y'");
  assert_errmsg_has("20 bytes");
  ck_assert_int_eq(pe_exchange_header_set(ex, PE_REQUEST, PE_LIT("x"), PE_LIT("123456")),
                   PE_ERR_HEADERS_TOO_LARGE);
  ck_assert_slice_eq(hdr(PE_REQUEST, "x"), "12345");
  ck_assert_int_eq(pe_exchange_header_set(ex, PE_REQUEST, PE_LIT("x"), PE_LIT("1")), PE_OK);
  /* The response side has its own budget. */
  ck_assert_int_eq(
      pe_exchange_header_add(ex, PE_RESPONSE, PE_LIT("name"), PE_LIT("0123456789abcde")), PE_OK);
  ck_assert_int_eq(
      pe_exchange_header_add(ex, PE_RESPONSE, PE_LIT("name"), PE_LIT("0123456789abcdef")),
      PE_ERR_HEADERS_TOO_LARGE);
  assert_errmsg_has("response");
  ck_assert_uint_eq(pe_exchange_header_count(ex, PE_REQUEST), 2);
  ck_assert_uint_eq(pe_exchange_header_count(ex, PE_RESPONSE), 1);
}
END_TEST

/* ---- bodies ---- */

START_TEST(body_set_append_prepend) {
  for (int dir = PE_REQUEST; dir <= PE_RESPONSE; dir++) {
    pe_dir d = (pe_dir)dir;
    ck_assert_int_eq(pe_exchange_body_set(ex, d, PE_LIT("payload")), PE_OK);
    ck_assert_int_eq(pe_exchange_body_prepend(ex, d, PE_LIT("[pre]")), PE_OK);
    ck_assert_int_eq(pe_exchange_body_append(ex, d, PE_LIT("[post]")), PE_OK);
    ck_assert_slice_eq(pe_exchange_body(ex, d), "[pre]payload[post]");
    ck_assert_int_eq(pe_exchange_body_append(ex, d, pe_bytes(NULL, 0)), PE_OK);
    ck_assert_int_eq(pe_exchange_body_set(ex, d, PE_LIT("")), PE_OK);
    ck_assert_slice_eq(pe_exchange_body(ex, d), "");
  }
  /* A body fed back into itself. */
  pe_exchange_body_set(ex, PE_REQUEST, PE_LIT("ab"));
  for (int i = 0; i < 10; i++)
    ck_assert_int_eq(pe_exchange_body_append(ex, PE_REQUEST, pe_exchange_body(ex, PE_REQUEST)),
                     PE_OK);
  ck_assert_uint_eq(pe_exchange_body(ex, PE_REQUEST).len, 2048);
  ck_assert_int_eq(pe_exchange_body_prepend(ex, PE_RESPONSE, pe_exchange_body(ex, PE_REQUEST)),
                   PE_OK);
  ck_assert_uint_eq(pe_exchange_body(ex, PE_RESPONSE).len, 2048);
}
END_TEST

START_TEST(body_limit) {
  use_limit(PE_LIMIT_BODY_BYTES, 10);
  ck_assert_int_eq(pe_exchange_body_set(ex, PE_REQUEST, PE_LIT("0123456789")), PE_OK);
  ck_assert_int_eq(pe_exchange_body_append(ex, PE_REQUEST, PE_LIT("x")), PE_ERR_BODY_TOO_LARGE);
  assert_errmsg_has("request body");
  assert_errmsg_has("limit of 10 bytes");
  ck_assert_int_eq(pe_exchange_body_prepend(ex, PE_REQUEST, PE_LIT("x")), PE_ERR_BODY_TOO_LARGE);
  ck_assert_int_eq(pe_exchange_body_set(ex, PE_RESPONSE, PE_LIT("0123456789a")),
                   PE_ERR_BODY_TOO_LARGE);
  assert_errmsg_has("response body");
  ck_assert_slice_eq(pe_exchange_body(ex, PE_REQUEST), "0123456789");
  ck_assert_slice_eq(pe_exchange_body(ex, PE_RESPONSE), "");
  ck_assert_int_eq(pe_exchange_body_set(ex, PE_REQUEST, PE_LIT("short")), PE_OK);
  ck_assert_int_eq(pe_exchange_body_append(ex, PE_REQUEST, pe_bytes("x", (size_t)-1)),
                   PE_ERR_BODY_TOO_LARGE); /* no overflow in the check */
  ck_assert_slice_eq(pe_exchange_body(ex, PE_REQUEST), "short");
}
END_TEST

START_TEST(bodies_of_8_mib) {
  const size_t size = 8u << 20, chunk = 64u << 10;
  char *data = malloc(size);
  ck_assert_ptr_nonnull(data);
  for (size_t i = 0; i < size; i++)
    data[i] = (char)(i * 131u + (i >> 16));
  ck_assert_int_eq(pe_exchange_body_set(ex, PE_REQUEST, pe_bytes(data, size)), PE_OK);
  pe_slice b = pe_exchange_body(ex, PE_REQUEST);
  ck_assert_uint_eq(b.len, size);
  ck_assert(memcmp(b.ptr, data, size) == 0);
  /* Chunk by chunk, as a host buffering a body does. */
  for (size_t at = 0; at < size; at += chunk)
    ck_assert_int_eq(pe_exchange_body_append(ex, PE_RESPONSE, pe_bytes(data + at, chunk)), PE_OK);
  ck_assert_int_eq(pe_exchange_body_prepend(ex, PE_RESPONSE, PE_LIT("[sample-response-body]")),
                   PE_OK);
  b = pe_exchange_body(ex, PE_RESPONSE);
  ck_assert_uint_eq(b.len, size + 22);
  ck_assert(memcmp(b.ptr, "[sample-response-body]", 22) == 0);
  ck_assert(memcmp(b.ptr + 22, data, size) == 0);
  free(data);
}
END_TEST

/* ---- bytes >= 0x80 ---- */

START_TEST(non_utf8_bytes_kept) {
  char value[256], body[256];
  size_t n = 0;
  for (int c = 0; c < 256; c++) {
    body[c] = (char)c;
    if (c != '\r' && c != '\n' && c != 0 && c != 0x7f)
      value[n++] = (char)c;
  }
  ck_assert_int_eq(pe_exchange_header_set(ex, PE_REQUEST, PE_LIT("x-bin"), pe_bytes(value, n)),
                   PE_OK);
  pe_slice v = hdr(PE_REQUEST, "x-bin");
  ck_assert_uint_eq(v.len, n);
  ck_assert(memcmp(v.ptr, value, n) == 0);
  ck_assert_int_eq(
      pe_exchange_header_add(ex, PE_RESPONSE, PE_LIT("x-latin1"), PE_LIT("caf\xe9 \x80\xff\xfe")),
      PE_OK);
  ck_assert_slice_eq(hdr(PE_RESPONSE, "x-latin1"), "caf\xe9 \x80\xff\xfe");
  for (int dir = PE_REQUEST; dir <= PE_RESPONSE; dir++) {
    ck_assert_int_eq(pe_exchange_body_set(ex, (pe_dir)dir, pe_bytes(body, sizeof body)), PE_OK);
    v = pe_exchange_body(ex, (pe_dir)dir);
    ck_assert_uint_eq(v.len, sizeof body);
    ck_assert(memcmp(v.ptr, body, sizeof body) == 0);
  }
  ck_assert_int_eq(pe_exchange_meta_set(ex, pe_bytes(body, sizeof body), pe_bytes(body, 200)),
                   PE_OK);
  ck_assert_int_eq(pe_exchange_meta_get(ex, pe_bytes(body, sizeof body), &v), PE_OK);
  ck_assert_uint_eq(v.len, 200);
  ck_assert(memcmp(v.ptr, body, 200) == 0);
}
END_TEST

/* ---- metadata ---- */

START_TEST(meta_map) {
  pe_slice k, v;
  ck_assert_int_eq(pe_exchange_meta_set(ex, PE_LIT("user"), PE_LIT("alice")), PE_OK);
  ck_assert_int_eq(pe_exchange_meta_set(ex, PE_LIT("User"), PE_LIT("other")), PE_OK);
  ck_assert_int_eq(pe_exchange_meta_set(ex, PE_LIT("route"), PE_LIT("")), PE_OK);
  ck_assert_int_eq(pe_exchange_meta_set(ex, PE_LIT("user"), PE_LIT("bob")), PE_OK);
  ck_assert_uint_eq(pe_exchange_meta_count(ex), 3); /* keys are exact: user != User */
  ck_assert_int_eq(pe_exchange_meta_get(ex, PE_LIT("user"), &v), PE_OK);
  ck_assert_slice_eq(v, "bob");
  ck_assert_int_eq(pe_exchange_meta_get(ex, PE_LIT("USER"), &v), PE_ERR_NOT_FOUND);
  ck_assert_int_eq(pe_exchange_meta_at(ex, 1, &k, &v), PE_OK);
  ck_assert_slice_eq(k, "User");
  ck_assert_slice_eq(v, "other");
  ck_assert_int_eq(pe_exchange_meta_at(ex, 3, &k, &v), PE_ERR_NOT_FOUND);
  /* Any bytes in keys and values, CR/LF/NUL included: metadata never goes on the wire. */
  ck_assert_int_eq(pe_exchange_meta_set(ex, PE_LIT("a\r\n\0b"), PE_LIT("x\0y\n")), PE_OK);
  ck_assert_int_eq(pe_exchange_meta_get(ex, PE_LIT("a\r\n\0b"), &v), PE_OK);
  ck_assert_uint_eq(v.len, 4);
  ck_assert(memcmp(v.ptr, "x\0y\n", 4) == 0);
  ck_assert_int_eq(pe_exchange_meta_remove(ex, PE_LIT("user")), 1);
  ck_assert_int_eq(pe_exchange_meta_remove(ex, PE_LIT("user")), 0);
  ck_assert_uint_eq(pe_exchange_meta_count(ex), 3);
  ck_assert_int_eq(pe_exchange_meta_set(ex, PE_LIT(""), PE_LIT("v")), PE_ERR_INVALID_ARGUMENT);
  assert_errmsg_has("metadata key");
  ck_assert_uint_eq(pe_exchange_meta_count(ex), 3);
}
END_TEST

START_TEST(meta_count_limit) {
  use_limit(PE_LIMIT_META_COUNT, 2);
  ck_assert_int_eq(pe_exchange_meta_set(ex, PE_LIT("a"), PE_LIT("1")), PE_OK);
  ck_assert_int_eq(pe_exchange_meta_set(ex, PE_LIT("b"), PE_LIT("2")), PE_OK);
  ck_assert_int_eq(pe_exchange_meta_set(ex, PE_LIT("c"), PE_LIT("3")), PE_ERR_TOO_MANY_HEADERS);
  assert_errmsg_has("metadata 'c'");
  assert_errmsg_has("more than 2");
  ck_assert_int_eq(pe_exchange_meta_set(ex, PE_LIT("b"), PE_LIT("22")), PE_OK);
  ck_assert_uint_eq(pe_exchange_meta_count(ex), 2);
  /* Headers are not metadata: their own limit (default 100) applies. */
  for (int i = 0; i < 5; i++)
    ck_assert_int_eq(pe_exchange_header_add(ex, PE_REQUEST, PE_LIT("h"), PE_LIT("v")), PE_OK);
}
END_TEST

START_TEST(meta_bytes_limit) {
  use_limit(PE_LIMIT_META_BYTES, 10);
  ck_assert_int_eq(pe_exchange_meta_set(ex, PE_LIT("key"), PE_LIT("1234567")), PE_OK);
  ck_assert_int_eq(pe_exchange_meta_set(ex, PE_LIT("k"), PE_LIT("")), PE_ERR_HEADERS_TOO_LARGE);
  assert_errmsg_has("metadata 'k'");
  assert_errmsg_has("10 bytes");
  ck_assert_int_eq(pe_exchange_meta_set(ex, PE_LIT("key"), PE_LIT("12345678")),
                   PE_ERR_HEADERS_TOO_LARGE);
  pe_slice v;
  ck_assert_int_eq(pe_exchange_meta_get(ex, PE_LIT("key"), &v), PE_OK);
  ck_assert_slice_eq(v, "1234567");
  ck_assert_uint_eq(pe_exchange_meta_count(ex), 1);
}
END_TEST

/* ---- immediate response, verdict, errors ---- */

START_TEST(respond_answers_at_once) {
  pe_exchange_set_status(ex, 200);
  pe_exchange_header_add(ex, PE_RESPONSE, PE_LIT("x-upstream"), PE_LIT("1"));
  pe_exchange_header_add(ex, PE_RESPONSE, PE_LIT("x-upstream-2"), PE_LIT("2"));
  pe_exchange_body_set(ex, PE_RESPONSE, PE_LIT("upstream body"));
  pe_exchange_header_add(ex, PE_REQUEST, PE_LIT("x-req"), PE_LIT("kept"));
  pe_exchange_body_set(ex, PE_REQUEST, PE_LIT("request body"));

  ck_assert_int_eq(pe_exchange_respond(ex, 1000, PE_LIT("x")), PE_ERR_INVALID_VALUE);
  ck_assert_int_eq(pe_exchange_respond(ex, 99, PE_LIT("x")), PE_ERR_INVALID_VALUE);
  assert_errmsg_has("status 99");
  ck_assert_int_eq(pe_exchange_verdict(ex), PE_VERDICT_CONTINUE);
  ck_assert_uint_eq(pe_exchange_header_count(ex, PE_RESPONSE), 2);

  ck_assert_int_eq(pe_exchange_respond(ex, 403, PE_LIT("forbidden")), PE_OK);
  ck_assert_int_eq(pe_exchange_verdict(ex), PE_VERDICT_RESPOND);
  ck_assert_int_eq(pe_exchange_status(ex), 403);
  ck_assert_uint_eq(pe_exchange_header_count(ex, PE_RESPONSE), 0);
  ck_assert_slice_eq(pe_exchange_body(ex, PE_RESPONSE), "forbidden");
  /* The request side is untouched. */
  ck_assert_slice_eq(hdr(PE_REQUEST, "x-req"), "kept");
  ck_assert_slice_eq(pe_exchange_body(ex, PE_REQUEST), "request body");
  /* Headers are added to the answer afterwards. */
  ck_assert_int_eq(
      pe_exchange_header_add(ex, PE_RESPONSE, PE_LIT("www-authenticate"), PE_LIT("Bearer")), PE_OK);
  ck_assert_int_eq(pe_exchange_respond(ex, 200, pe_bytes(NULL, 0)), PE_OK);
  ck_assert_slice_eq(pe_exchange_body(ex, PE_RESPONSE), "");
  ck_assert_uint_eq(pe_exchange_header_count(ex, PE_RESPONSE), 0);
}
END_TEST

START_TEST(respond_body_limit) {
  use_limit(PE_LIMIT_BODY_BYTES, 4);
  pe_exchange_header_add(ex, PE_RESPONSE, PE_LIT("x-upstream"), PE_LIT("1"));
  pe_exchange_set_status(ex, 200);
  ck_assert_int_eq(pe_exchange_respond(ex, 500, PE_LIT("12345")), PE_ERR_BODY_TOO_LARGE);
  assert_errmsg_has("response body");
  ck_assert_int_eq(pe_exchange_verdict(ex), PE_VERDICT_CONTINUE);
  ck_assert_int_eq(pe_exchange_status(ex), 200);
  ck_assert_uint_eq(pe_exchange_header_count(ex, PE_RESPONSE), 1);
  ck_assert_int_eq(pe_exchange_respond(ex, 500, PE_LIT("1234")), PE_OK);
}
END_TEST

START_TEST(errmsg_set_and_kept) {
  ck_assert_int_eq(pe_exchange_set_errmsg(ex, "token %s expired at %d", "abc", 42), PE_OK);
  ck_assert_str_eq(pe_exchange_errmsg(ex), "token abc expired at 42");
  /* Successful calls leave the last failure's message in place. */
  ck_assert_int_eq(pe_exchange_set_status(ex, 200), PE_OK);
  ck_assert_str_eq(pe_exchange_errmsg(ex), "token abc expired at 42");
  char big[600];
  memset(big, 'x', sizeof big - 1);
  big[sizeof big - 1] = '\0';
  ck_assert_int_eq(pe_exchange_set_errmsg(ex, "%s", big), PE_OK);
  ck_assert_uint_eq(strlen(pe_exchange_errmsg(ex)), PE__ERRMSG_SIZE - 1);
  ck_assert_int_eq(pe_exchange_set_errmsg(NULL, "x"), PE_ERR_INVALID_ARGUMENT);
}
END_TEST

/* ---- NULL and out-of-range arguments ---- */

START_TEST(invalid_arguments) {
  pe_slice s;
  const pe_dir bad_dir = (pe_dir)2;
  ck_assert_int_eq(pe_exchange_reset(NULL), PE_ERR_INVALID_ARGUMENT);
  ck_assert_ptr_null(pe_exchange_engine(NULL));
  ck_assert_int_eq(pe_exchange_set_method(NULL, PE_LIT("GET")), PE_ERR_INVALID_ARGUMENT);
  ck_assert_int_eq(pe_exchange_set_path(NULL, PE_LIT("/")), PE_ERR_INVALID_ARGUMENT);
  ck_assert_int_eq(pe_exchange_set_authority(NULL, PE_LIT("h")), PE_ERR_INVALID_ARGUMENT);
  ck_assert_slice_eq(pe_exchange_method(NULL), "");
  ck_assert_slice_eq(pe_exchange_path(NULL), "");
  ck_assert_slice_eq(pe_exchange_authority(NULL), "");
  ck_assert_int_eq(pe_exchange_set_status(NULL, 200), PE_ERR_INVALID_ARGUMENT);
  ck_assert_int_eq(pe_exchange_status(NULL), 0);
  ck_assert_uint_eq(pe_exchange_header_count(NULL, PE_REQUEST), 0);
  ck_assert_uint_eq(pe_exchange_header_count(ex, bad_dir), 0);
  ck_assert_int_eq(pe_exchange_header_at(NULL, PE_REQUEST, 0, &s, &s), PE_ERR_INVALID_ARGUMENT);
  ck_assert_int_eq(pe_exchange_header_at(ex, bad_dir, 0, &s, &s), PE_ERR_INVALID_ARGUMENT);
  ck_assert_int_eq(pe_exchange_header_at(ex, PE_REQUEST, 0, NULL, &s), PE_ERR_INVALID_ARGUMENT);
  ck_assert_int_eq(pe_exchange_header_at(ex, PE_REQUEST, 0, &s, NULL), PE_ERR_INVALID_ARGUMENT);
  ck_assert_int_eq(pe_exchange_header_get(NULL, PE_REQUEST, PE_LIT("a"), &s),
                   PE_ERR_INVALID_ARGUMENT);
  ck_assert_int_eq(pe_exchange_header_get(ex, PE_REQUEST, PE_LIT("a"), NULL),
                   PE_ERR_INVALID_ARGUMENT);
  ck_assert_int_eq(pe_exchange_header_get(ex, bad_dir, PE_LIT("a"), &s), PE_ERR_INVALID_ARGUMENT);
  ck_assert_int_eq(pe_exchange_header_get(ex, PE_REQUEST, pe_bytes(NULL, 1), &s),
                   PE_ERR_INVALID_ARGUMENT);
  ck_assert_int_eq(pe_exchange_header_get_nth(NULL, PE_REQUEST, PE_LIT("a"), 0, &s),
                   PE_ERR_INVALID_ARGUMENT);
  ck_assert_int_eq(pe_exchange_header_set(NULL, PE_REQUEST, PE_LIT("a"), PE_LIT("b")),
                   PE_ERR_INVALID_ARGUMENT);
  ck_assert_int_eq(pe_exchange_header_set(ex, bad_dir, PE_LIT("a"), PE_LIT("b")),
                   PE_ERR_INVALID_ARGUMENT);
  ck_assert_int_eq(pe_exchange_header_set(ex, PE_REQUEST, PE_LIT("a"), pe_bytes(NULL, 1)),
                   PE_ERR_INVALID_ARGUMENT);
  ck_assert_int_eq(pe_exchange_header_add(NULL, PE_REQUEST, PE_LIT("a"), PE_LIT("b")),
                   PE_ERR_INVALID_ARGUMENT);
  ck_assert_int_eq(pe_exchange_header_add(ex, PE_REQUEST, pe_bytes(NULL, 1), PE_LIT("b")),
                   PE_ERR_INVALID_ARGUMENT);
  ck_assert_int_eq(pe_exchange_header_remove(NULL, PE_REQUEST, PE_LIT("a")),
                   PE_ERR_INVALID_ARGUMENT);
  ck_assert_int_eq(pe_exchange_header_remove(ex, bad_dir, PE_LIT("a")), PE_ERR_INVALID_ARGUMENT);
  ck_assert_slice_eq(pe_exchange_body(NULL, PE_REQUEST), "");
  ck_assert_slice_eq(pe_exchange_body(ex, bad_dir), "");
  ck_assert_int_eq(pe_exchange_body_set(NULL, PE_REQUEST, PE_LIT("x")), PE_ERR_INVALID_ARGUMENT);
  ck_assert_int_eq(pe_exchange_body_set(ex, bad_dir, PE_LIT("x")), PE_ERR_INVALID_ARGUMENT);
  ck_assert_int_eq(pe_exchange_body_prepend(NULL, PE_REQUEST, PE_LIT("x")),
                   PE_ERR_INVALID_ARGUMENT);
  ck_assert_int_eq(pe_exchange_body_append(ex, PE_REQUEST, pe_bytes(NULL, 1)),
                   PE_ERR_INVALID_ARGUMENT);
  ck_assert_uint_eq(pe_exchange_meta_count(NULL), 0);
  ck_assert_int_eq(pe_exchange_meta_at(NULL, 0, &s, &s), PE_ERR_INVALID_ARGUMENT);
  ck_assert_int_eq(pe_exchange_meta_at(ex, 0, NULL, &s), PE_ERR_INVALID_ARGUMENT);
  ck_assert_int_eq(pe_exchange_meta_get(NULL, PE_LIT("a"), &s), PE_ERR_INVALID_ARGUMENT);
  ck_assert_int_eq(pe_exchange_meta_get(ex, PE_LIT("a"), NULL), PE_ERR_INVALID_ARGUMENT);
  ck_assert_int_eq(pe_exchange_meta_set(NULL, PE_LIT("a"), PE_LIT("b")), PE_ERR_INVALID_ARGUMENT);
  ck_assert_int_eq(pe_exchange_meta_set(ex, PE_LIT("a"), pe_bytes(NULL, 1)),
                   PE_ERR_INVALID_ARGUMENT);
  ck_assert_int_eq(pe_exchange_meta_remove(NULL, PE_LIT("a")), PE_ERR_INVALID_ARGUMENT);
  ck_assert_int_eq(pe_exchange_respond(NULL, 200, PE_LIT("")), PE_ERR_INVALID_ARGUMENT);
  ck_assert_int_eq(pe_exchange_respond(ex, 200, pe_bytes(NULL, 1)), PE_ERR_INVALID_ARGUMENT);
  ck_assert_int_eq(pe_exchange_verdict(NULL), PE_VERDICT_CONTINUE);
  ck_assert_str_eq(pe_exchange_errmsg(NULL), "");
  ck_assert_int_eq(pe_exchange_set_errmsg(ex, NULL), PE_ERR_INVALID_ARGUMENT);
  /* None of it changed ex. */
  ck_assert_uint_eq(pe_exchange_header_count(ex, PE_REQUEST), 0);
  ck_assert_slice_eq(pe_exchange_body(ex, PE_REQUEST), "");
}
END_TEST

/* ---- reset and memory reuse ---- */

/* One request's worth of calls; returns the first failing rc (or PE_OK). */
static int fill_request(pe_exchange *x, int variant) {
  char value[64];
  int rc = PE_OK;
#define TRY(call)                                                                                  \
  do {                                                                                             \
    if ((rc = (call)) < 0)                                                                         \
      return rc;                                                                                   \
  } while (0)
  TRY(pe_exchange_set_method(x, variant % 2 ? PE_LIT("POST") : PE_LIT("GET")));
  TRY(pe_exchange_set_path(x, PE_LIT("/v1/items?id=3&page=2")));
  TRY(pe_exchange_set_authority(x, PE_LIT("api.example.com")));
  for (int i = 0; i < 20; i++) {
    snprintf(value, sizeof value, "value-%d-%d", i, variant % 7);
    TRY(pe_exchange_header_add(x, PE_REQUEST, PE_LIT("x-request-header"), pe_str(value)));
  }
  TRY(pe_exchange_header_set(x, PE_REQUEST, PE_LIT("host"), PE_LIT("api.example.com")));
  TRY(pe_exchange_header_set(x, PE_REQUEST, PE_LIT("x-sample-policy-phase"),
                             PE_LIT("request-header")));
  TRY(pe_exchange_header_remove(x, PE_REQUEST, PE_LIT("X-Request-Header")));
  TRY(pe_exchange_meta_set(x, PE_LIT("route"), PE_LIT("items")));
  TRY(pe_exchange_meta_set(x, PE_LIT("user"), pe_str(value)));
  char body[1024];
  memset(body, 'b', sizeof body);
  TRY(pe_exchange_body_set(x, PE_REQUEST, pe_bytes(body, sizeof body - (size_t)(variant % 13))));
  TRY(pe_exchange_body_prepend(x, PE_REQUEST, PE_LIT("[sample-request-body]")));
  TRY(pe_exchange_set_status(x, 200));
  for (int i = 0; i < 10; i++)
    TRY(pe_exchange_header_add(x, PE_RESPONSE, PE_LIT("x-response-header"), pe_str(value)));
  TRY(pe_exchange_header_set(x, PE_RESPONSE, PE_LIT("x-sample-policy-phase"),
                             PE_LIT("response-header")));
  TRY(pe_exchange_body_append(x, PE_RESPONSE, pe_bytes(body, 512)));
  TRY(pe_exchange_body_append(x, PE_RESPONSE, pe_bytes(body, 512)));
  TRY(pe_exchange_body_prepend(x, PE_RESPONSE, PE_LIT("[sample-response-body]")));
  if (variant % 5 == 0)
    TRY(pe_exchange_respond(x, 403, PE_LIT("forbidden")));
#undef TRY
  return PE_OK;
}

START_TEST(reset_clears_everything) {
  ck_assert_int_eq(fill_request(ex, 0), PE_OK);
  pe_exchange_set_errmsg(ex, "boom");
  ck_assert_int_eq(pe_exchange_reset(ex), PE_OK);
  ck_assert_slice_eq(pe_exchange_method(ex), "");
  ck_assert_slice_eq(pe_exchange_path(ex), "");
  ck_assert_slice_eq(pe_exchange_authority(ex), "");
  ck_assert_int_eq(pe_exchange_status(ex), 0);
  ck_assert_int_eq(pe_exchange_verdict(ex), PE_VERDICT_CONTINUE);
  ck_assert_str_eq(pe_exchange_errmsg(ex), "");
  ck_assert_uint_eq(pe_exchange_header_count(ex, PE_REQUEST), 0);
  ck_assert_uint_eq(pe_exchange_header_count(ex, PE_RESPONSE), 0);
  ck_assert_uint_eq(pe_exchange_meta_count(ex), 0);
  ck_assert_slice_eq(pe_exchange_body(ex, PE_REQUEST), "");
  ck_assert_slice_eq(pe_exchange_body(ex, PE_RESPONSE), "");
  ck_assert(!ex->txn_active);
  ck_assert_uint_eq(ex->snap.saved, 0);
  ck_assert_ptr_null(ex->run.chain);
}
END_TEST

START_TEST(reused_exchange_does_not_allocate) {
  ck_assert_int_eq(fill_request(ex, 0), PE_OK); /* warm-up */
  for (int v = 1; v < 13; v++) {
    ck_assert_int_eq(pe_exchange_reset(ex), PE_OK);
    ck_assert_int_eq(fill_request(ex, v), PE_OK);
  }
  long before = atomic_load(&alloc.attempts);
  for (int v = 0; v < 500; v++) {
    ck_assert_int_eq(pe_exchange_reset(ex), PE_OK);
    ck_assert_int_eq(fill_request(ex, v), PE_OK);
  }
  ck_assert_int_eq(atomic_load(&alloc.attempts), before);
}
END_TEST

START_TEST(reset_while_pending) {
  pe_exchange_header_add(ex, PE_REQUEST, PE_LIT("a"), PE_LIT("b"));
  ex->run.pending = true; /* as if a Python batch were in flight */
  ck_assert_int_eq(pe_exchange_reset(ex), PE_ERR_STATE);
  assert_errmsg_has("pending");
  ck_assert_uint_eq(pe_exchange_header_count(ex, PE_REQUEST), 1);
  /* Freeing now is refused (and logged): the reply would write into ex. */
  pe_test_log_clear();
  long frees = atomic_load(&alloc.frees);
  pe_exchange_free(ex);
  ck_assert_int_eq(atomic_load(&alloc.frees), frees);
  ck_assert(pe_test_log_contains("pending"));
  ex->run.pending = false;
  ck_assert_int_eq(pe_exchange_reset(ex), PE_OK);
}
END_TEST

START_TEST(allocation_failure_loop) {
  int completed = 0;
  for (long n = 1; !completed; n++) {
    pe_test_alloc a = {0};
    pe_engine *e = pe_test_engine(&a);
    pe_exchange *x = NULL;
    atomic_store(&a.fail_at, atomic_load(&a.attempts) + n);
    int rc = pe_exchange_new(&x, e);
    if (rc == PE_OK) {
      rc = fill_request(x, 0);
      if (rc == PE_OK) {
        completed = 1;
      } else {
        ck_assert_int_eq(rc, PE_ERR_NOMEM);
        ck_assert_str_ne(pe_exchange_errmsg(x), "");
        /* The exchange is still sound: it completes once memory is back. */
        atomic_store(&a.fail_at, 0);
        ck_assert_int_eq(pe_exchange_reset(x), PE_OK);
        ck_assert_int_eq(fill_request(x, 0), PE_OK);
        ck_assert_uint_eq(pe_exchange_header_count(x, PE_REQUEST), 2);
      }
    } else {
      ck_assert_int_eq(rc, PE_ERR_NOMEM);
      ck_assert_ptr_null(x);
    }
    pe_exchange_free(x);
    pe_engine_free(e);
    ck_assert_int_eq(atomic_load(&a.allocs), atomic_load(&a.frees));
    ck_assert_int_lt(n, 1000);
  }
}
END_TEST

static Suite *exchange_suite(void) {
  Suite *s = suite_create("exchange");
  TCase *tc = tcase_create("core");
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, new_exchange_is_empty);
  tcase_add_test(tc, new_failure_leaves_out_untouched);
  tcase_add_test(tc, exchange_keeps_engine_alive);
  tcase_add_test(tc, request_line);
  tcase_add_test(tc, request_line_refusals);
  tcase_add_test(tc, status_range);
  tcase_add_test(tc, header_get_set_add_remove);
  tcase_add_test(tc, header_copied_from_itself);
  tcase_add_test(tc, header_value_refusals);
  tcase_add_test(tc, header_name_refusals);
  tcase_add_test(tc, header_count_limit);
  tcase_add_test(tc, header_bytes_limit);
  tcase_add_test(tc, body_set_append_prepend);
  tcase_add_test(tc, body_limit);
  tcase_add_test(tc, bodies_of_8_mib);
  tcase_add_test(tc, non_utf8_bytes_kept);
  tcase_add_test(tc, meta_map);
  tcase_add_test(tc, meta_count_limit);
  tcase_add_test(tc, meta_bytes_limit);
  tcase_add_test(tc, respond_answers_at_once);
  tcase_add_test(tc, respond_body_limit);
  tcase_add_test(tc, errmsg_set_and_kept);
  tcase_add_test(tc, invalid_arguments);
  tcase_add_test(tc, reset_clears_everything);
  tcase_add_test(tc, reused_exchange_does_not_allocate);
  tcase_add_test(tc, reset_while_pending);
  tcase_add_test(tc, allocation_failure_loop);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) {
  return pe_test_run_suite(exchange_suite());
}
