/*
 * Request-target normalisation: the one form of a path that routing,
 * policies and the upstream all see, so that no spelling of a protected
 * path can reach it through another API's context (see README.md,
 * "Routing and path normalisation").
 */
#ifndef GW_PATH_H
#define GW_PATH_H

#include <stddef.h>

/* Normalises the origin-form target @p in (@p len bytes, starting with
 * '/') into @p out, which needs room for @p len bytes (the result is never
 * longer). In the path part: percent-encoded unreserved characters are
 * decoded, other percent-encodings get upper-case hex, "." and ".."
 * segments are resolved and repeated slashes merged. The query (from the
 * first '?') is kept as it came. Returns the normalised length, or 0 for a
 * target that cannot be normalised safely: an encoded '/', '\' or NUL, a
 * raw '\' or '#', a malformed percent-encoding, or ".." above the root. */
size_t gw_path_normalize(const char *in, size_t len, char *out);

/* Whether @p context (NUL-terminated) is a valid API context: a path in
 * normal form made of RFC 3986 path characters, without a query. */
int gw_path_context_ok(const char *context);

#endif /* GW_PATH_H */
