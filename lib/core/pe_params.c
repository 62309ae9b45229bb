/* Step params: validation of a step's JSON object against the policy's
 * param specs, and the pe_params view a create callback reads them through.
 * Runs at chain build time only, so it may use jansson (and its allocator). */
#include "pe_internal.h"

#include <jansson.h>
#include <stdio.h>

struct pe_params {
  json_t *root;  /* the validated object */
  pe_slice json; /* its compact text (the step's own copy) */
  char errmsg[PE__ERRMSG_SIZE];
};

static const char *json_type_name(const json_t *v) {
  switch (json_typeof(v)) {
  case JSON_OBJECT:
    return "object";
  case JSON_ARRAY:
    return "array";
  case JSON_STRING:
    return "string";
  case JSON_INTEGER:
    return "integer";
  case JSON_REAL:
    return "number";
  case JSON_TRUE:
  case JSON_FALSE:
    return "boolean";
  case JSON_NULL:
    return "null";
  }
  return "value";
}

static const char *spec_type_name(pe_param_type t) {
  switch (t) {
  case PE_PARAM_STRING:
    return "string";
  case PE_PARAM_INT:
    return "integer";
  case PE_PARAM_NUMBER:
    return "number";
  case PE_PARAM_BOOL:
    return "boolean";
  case PE_PARAM_ANY:
    return "any";
  }
  return "?";
}

static bool type_matches(pe_param_type t, const json_t *v) {
  switch (t) {
  case PE_PARAM_STRING:
    return json_is_string(v);
  case PE_PARAM_INT:
    return json_is_integer(v);
  case PE_PARAM_NUMBER:
    return json_is_number(v);
  case PE_PARAM_BOOL:
    return json_is_boolean(v);
  case PE_PARAM_ANY:
    return true;
  }
  return false;
}

static const pe_param_spec *find_spec(const pe__policy *p, const char *key) {
  for (size_t i = 0; i < p->spec_count; i++)
    if (strcmp(p->specs[i].name, key) == 0)
      return &p->specs[i];
  return NULL;
}

/* The empty slice stands for "{}" (pe_chain_builder_add_step). */
static pe_slice params_text(pe_slice params_json) {
  return params_json.len ? params_json : PE_LIT("{}");
}

/* Parses params_json into *root (an object); PE_ERR_JSON otherwise. */
static int parse_object(pe_slice params_json, json_t **root, char *err) {
  pe_slice text = params_text(params_json);
  json_error_t jerr;
  json_t *v = json_loadb(text.ptr, text.len, JSON_REJECT_DUPLICATES, &jerr);
  if (!v) {
    pe__errmsg_set(err, "params: invalid JSON at line %d column %d: %s", jerr.line, jerr.column,
                   jerr.text);
    return PE_ERR_JSON;
  }
  if (!json_is_object(v)) {
    pe__errmsg_set(err, "params: expected an object, got %s", json_type_name(v));
    json_decref(v);
    return PE_ERR_JSON;
  }
  *root = v;
  return PE_OK;
}

static int check_against_specs(const pe__policy *p, const json_t *root, char *err) {
  const char *key;
  json_t *value;
  json_object_foreach((json_t *)root, key, value) {
    const pe_param_spec *spec = find_spec(p, key);
    if (!spec) {
      pe__errmsg_set(err, "unknown param '%s'", key);
      return PE_ERR_PARAM;
    }
    if (!type_matches(spec->type, value)) {
      pe__errmsg_set(err, "param '%s': expected %s, got %s", key, spec_type_name(spec->type),
                     json_type_name(value));
      return PE_ERR_PARAM;
    }
  }
  for (size_t i = 0; i < p->spec_count; i++)
    if (p->specs[i].required && !json_object_get(root, p->specs[i].name)) {
      pe__errmsg_set(err, "missing required param '%s'", p->specs[i].name);
      return PE_ERR_PARAM;
    }
  return PE_OK;
}

int pe__params_validate(const pe__policy *p, pe_slice params_json, char *err) {
  json_t *root;
  int rc = parse_object(params_json, &root, err);
  if (rc != PE_OK)
    return rc;
  rc = check_against_specs(p, root, err);
  json_decref(root);
  return rc;
}

int pe__params_create_instance(const pe__policy *p, pe_slice params_json, void **instance,
                               char *err) {
  pe_params params = {.json = params_text(params_json)};
  int rc = parse_object(params_json, &params.root, err);
  if (rc != PE_OK)
    return rc;
  rc = check_against_specs(p, params.root, err);
  void *made = NULL;
  if (rc == PE_OK && p->create) {
    rc = p->create(&made, &params, p->user_data);
    if (rc < 0) {
      if (params.errmsg[0])
        pe__errmsg_set(err, "%s", params.errmsg);
      else
        pe__errmsg_set(err, "create failed: %s", pe_strerror(rc));
      /* Out of memory stays itself; any other refusal is about the params. */
      rc = rc == PE_ERR_NOMEM ? PE_ERR_NOMEM : PE_ERR_PARAM;
    } else {
      rc = PE_OK;
    }
  }
  json_decref(params.root);
  if (rc == PE_OK)
    *instance = made;
  return rc;
}

/* ---- the getters a create callback uses ---- */

/* Finds key; `out` is the caller's result pointer, checked here once. */
static int get_value(const pe_params *params, const char *key, const void *out, json_t **v) {
  if (!params || !key || !out)
    return PE_ERR_INVALID_ARGUMENT;
  *v = json_object_get(params->root, key);
  return *v ? PE_OK : PE_ERR_NOT_FOUND;
}

int pe_params_get_string(const pe_params *params, const char *key, pe_slice *out) {
  json_t *v;
  int rc = get_value(params, key, out, &v);
  if (rc != PE_OK)
    return rc;
  if (!json_is_string(v))
    return PE_ERR_PARAM;
  *out = pe_bytes(json_string_value(v), json_string_length(v));
  return PE_OK;
}

int pe_params_get_int(const pe_params *params, const char *key, int64_t *out) {
  json_t *v;
  int rc = get_value(params, key, out, &v);
  if (rc != PE_OK)
    return rc;
  if (!json_is_integer(v))
    return PE_ERR_PARAM;
  *out = (int64_t)json_integer_value(v);
  return PE_OK;
}

int pe_params_get_number(const pe_params *params, const char *key, double *out) {
  json_t *v;
  int rc = get_value(params, key, out, &v);
  if (rc != PE_OK)
    return rc;
  if (!json_is_number(v))
    return PE_ERR_PARAM;
  *out = json_number_value(v);
  return PE_OK;
}

int pe_params_get_bool(const pe_params *params, const char *key, int *out) {
  json_t *v;
  int rc = get_value(params, key, out, &v);
  if (rc != PE_OK)
    return rc;
  if (!json_is_boolean(v))
    return PE_ERR_PARAM;
  *out = json_is_true(v) ? 1 : 0;
  return PE_OK;
}

pe_slice pe_params_json(const pe_params *params) {
  return params ? params->json : PE_LIT("{}");
}

int pe_params_set_errmsg(pe_params *params, const char *fmt, ...) {
  if (!params || !fmt)
    return PE_ERR_INVALID_ARGUMENT;
  va_list ap;
  va_start(ap, fmt);
  pe__errmsg_vset(params->errmsg, fmt, ap);
  va_end(ap);
  return PE_OK;
}
