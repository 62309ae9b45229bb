/* Pointer + length twins of the calls that pass pe_slice by value, for FFIs
 * that cannot pass structs by value (see include/policyexec/ffi.h). Each one
 * only rebuilds the slice and calls its twin, so the rules live in one place.
 * Public API only: this folder needs nothing from the core's internals. */
#include <policyexec/policyexec.h>
#include <stdio.h>

/* A NULL pointer is only the empty string: {NULL, 5} would be read. */
#define PE__CHECK_BYTES(p, n)                                                                      \
  do {                                                                                             \
    if (!(p) && (n))                                                                               \
      return PE_ERR_INVALID_ARGUMENT;                                                              \
  } while (0)

static const char *out_slice(pe_slice s, size_t *len) {
  if (len)
    *len = s.ptr ? s.len : 0;
  return s.ptr ? s.ptr : "";
}

int pe_engine_has_policy_n(pe_engine *engine, const char *name, size_t name_len,
                           const char *version, size_t version_len) {
  if ((!name && name_len) || (!version && version_len))
    return 0;
  return pe_engine_has_policy(engine, pe_bytes(name, name_len), pe_bytes(version, version_len));
}

int pe_chain_builder_add_step_n(pe_chain_builder *b, const char *name, size_t name_len,
                                const char *version, size_t version_len, const char *params_json,
                                size_t params_json_len) {
  PE__CHECK_BYTES(name, name_len);
  PE__CHECK_BYTES(version, version_len);
  PE__CHECK_BYTES(params_json, params_json_len);
  return pe_chain_builder_add_step(b, pe_bytes(name, name_len), pe_bytes(version, version_len),
                                   pe_bytes(params_json, params_json_len));
}

int pe_chain_builder_add_json_n(pe_chain_builder *b, const char *json, size_t json_len) {
  PE__CHECK_BYTES(json, json_len);
  return pe_chain_builder_add_json(b, pe_bytes(json, json_len));
}

int pe_chain_builder_set_executor_n(pe_chain_builder *b, int step, const char *name,
                                    size_t name_len) {
  PE__CHECK_BYTES(name, name_len);
  return pe_chain_builder_set_executor(b, step, pe_bytes(name, name_len));
}

int pe_chain_new_from_json_n(pe_chain **out, pe_engine *engine, const char *json, size_t json_len,
                             char *errmsg, size_t errmsg_size) {
  if (!json && json_len) {
    if (errmsg && errmsg_size)
      snprintf(errmsg, errmsg_size, "JSON pointer is NULL with a non-zero length");
    return PE_ERR_INVALID_ARGUMENT;
  }
  return pe_chain_new_from_json(out, engine, pe_bytes(json, json_len), errmsg, errmsg_size);
}

const char *pe_params_json_n(const pe_params *params, size_t *len) {
  return out_slice(pe_params_json(params), len);
}

int pe_exchange_set_method_n(pe_exchange *ex, const char *method, size_t len) {
  PE__CHECK_BYTES(method, len);
  return pe_exchange_set_method(ex, pe_bytes(method, len));
}

int pe_exchange_set_path_n(pe_exchange *ex, const char *path, size_t len) {
  PE__CHECK_BYTES(path, len);
  return pe_exchange_set_path(ex, pe_bytes(path, len));
}

int pe_exchange_set_authority_n(pe_exchange *ex, const char *authority, size_t len) {
  PE__CHECK_BYTES(authority, len);
  return pe_exchange_set_authority(ex, pe_bytes(authority, len));
}

const char *pe_exchange_method_n(const pe_exchange *ex, size_t *len) {
  return out_slice(pe_exchange_method(ex), len);
}

const char *pe_exchange_path_n(const pe_exchange *ex, size_t *len) {
  return out_slice(pe_exchange_path(ex), len);
}

const char *pe_exchange_authority_n(const pe_exchange *ex, size_t *len) {
  return out_slice(pe_exchange_authority(ex), len);
}

int pe_exchange_header_get_n(const pe_exchange *ex, pe_dir dir, const char *name, size_t name_len,
                             pe_slice *value) {
  PE__CHECK_BYTES(name, name_len);
  return pe_exchange_header_get(ex, dir, pe_bytes(name, name_len), value);
}

int pe_exchange_header_get_nth_n(const pe_exchange *ex, pe_dir dir, const char *name,
                                 size_t name_len, size_t nth, pe_slice *value) {
  PE__CHECK_BYTES(name, name_len);
  return pe_exchange_header_get_nth(ex, dir, pe_bytes(name, name_len), nth, value);
}

int pe_exchange_header_set_n(pe_exchange *ex, pe_dir dir, const char *name, size_t name_len,
                             const char *value, size_t value_len) {
  PE__CHECK_BYTES(name, name_len);
  PE__CHECK_BYTES(value, value_len);
  return pe_exchange_header_set(ex, dir, pe_bytes(name, name_len), pe_bytes(value, value_len));
}

int pe_exchange_header_add_n(pe_exchange *ex, pe_dir dir, const char *name, size_t name_len,
                             const char *value, size_t value_len) {
  PE__CHECK_BYTES(name, name_len);
  PE__CHECK_BYTES(value, value_len);
  return pe_exchange_header_add(ex, dir, pe_bytes(name, name_len), pe_bytes(value, value_len));
}

int pe_exchange_header_remove_n(pe_exchange *ex, pe_dir dir, const char *name, size_t name_len) {
  PE__CHECK_BYTES(name, name_len);
  return pe_exchange_header_remove(ex, dir, pe_bytes(name, name_len));
}

const char *pe_exchange_body_n(const pe_exchange *ex, pe_dir dir, size_t *len) {
  return out_slice(pe_exchange_body(ex, dir), len);
}

int pe_exchange_body_set_n(pe_exchange *ex, pe_dir dir, const char *data, size_t len) {
  PE__CHECK_BYTES(data, len);
  return pe_exchange_body_set(ex, dir, pe_bytes(data, len));
}

int pe_exchange_body_prepend_n(pe_exchange *ex, pe_dir dir, const char *data, size_t len) {
  PE__CHECK_BYTES(data, len);
  return pe_exchange_body_prepend(ex, dir, pe_bytes(data, len));
}

int pe_exchange_body_append_n(pe_exchange *ex, pe_dir dir, const char *data, size_t len) {
  PE__CHECK_BYTES(data, len);
  return pe_exchange_body_append(ex, dir, pe_bytes(data, len));
}

int pe_exchange_meta_get_n(const pe_exchange *ex, const char *key, size_t key_len,
                           pe_slice *value) {
  PE__CHECK_BYTES(key, key_len);
  return pe_exchange_meta_get(ex, pe_bytes(key, key_len), value);
}

int pe_exchange_meta_set_n(pe_exchange *ex, const char *key, size_t key_len, const char *value,
                           size_t value_len) {
  PE__CHECK_BYTES(key, key_len);
  PE__CHECK_BYTES(value, value_len);
  return pe_exchange_meta_set(ex, pe_bytes(key, key_len), pe_bytes(value, value_len));
}

int pe_exchange_meta_remove_n(pe_exchange *ex, const char *key, size_t key_len) {
  PE__CHECK_BYTES(key, key_len);
  return pe_exchange_meta_remove(ex, pe_bytes(key, key_len));
}

int pe_exchange_respond_n(pe_exchange *ex, int status, const char *body, size_t body_len) {
  PE__CHECK_BYTES(body, body_len);
  return pe_exchange_respond(ex, status, pe_bytes(body, body_len));
}
