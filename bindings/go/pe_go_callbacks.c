/*
 * Trampolines from the library's callbacks into exported Go functions
 * (declared in _cgo_export.h). Kept in a .c file of its own because cgo
 * allows only declarations in the preamble of a file that has //export.
 */
#include "_cgo_export.h"
#include "pe_go.h"

void pe_go_log_tramp(pe_log_level level, const char *message, void *user_data) {
  goLog((int)level, (char *)message, (uintptr_t)user_data);
}

void pe_go_metrics_tramp(const pe_step_event *event, void *user_data) {
  goMetrics((pe_step_event *)event, (uintptr_t)user_data);
}

static int create_tramp(void **instance, pe_params *params, void *user_data) {
  uintptr_t h = 0;
  int rc = goPolicyCreate(params, (uintptr_t)user_data, &h);
  if (rc == PE_OK)
    *instance = (void *)h;
  return rc;
}

static void destroy_tramp(void *instance, void *user_data) {
  goPolicyDestroy((uintptr_t)instance, (uintptr_t)user_data);
}

static int phase_rh(pe_exchange *ex, void *instance, void *user_data) {
  return goPolicyPhase((uintptr_t)ex, (uintptr_t)instance, (uintptr_t)user_data,
                       PE_PHASE_REQUEST_HEADERS);
}

static int phase_rb(pe_exchange *ex, void *instance, void *user_data) {
  return goPolicyPhase((uintptr_t)ex, (uintptr_t)instance, (uintptr_t)user_data,
                       PE_PHASE_REQUEST_BODY);
}

static int phase_sh(pe_exchange *ex, void *instance, void *user_data) {
  return goPolicyPhase((uintptr_t)ex, (uintptr_t)instance, (uintptr_t)user_data,
                       PE_PHASE_RESPONSE_HEADERS);
}

static int phase_sb(pe_exchange *ex, void *instance, void *user_data) {
  return goPolicyPhase((uintptr_t)ex, (uintptr_t)instance, (uintptr_t)user_data,
                       PE_PHASE_RESPONSE_BODY);
}

static void free_tramp(void *user_data) {
  goPolicyFree((uintptr_t)user_data);
}

int pe_go_register_policy(pe_engine *engine, const char *name, const char *version, unsigned flags,
                          const pe_param_spec *params, size_t param_count, unsigned phases,
                          int has_create, uintptr_t handle) {
  pe_policy_def def = {
      .abi = PE_POLICY_ABI,
      .name = name,
      .version = version,
      .flags = flags,
      .params = params,
      .param_count = param_count,
      .create = has_create ? create_tramp : NULL,
      /* The instance's handle is deleted by destroy, Go Destroy or not. */
      .destroy = has_create ? destroy_tramp : NULL,
      .on_request_headers = phases & PE_PHASE_BIT(PE_PHASE_REQUEST_HEADERS) ? phase_rh : NULL,
      .on_request_body = phases & PE_PHASE_BIT(PE_PHASE_REQUEST_BODY) ? phase_rb : NULL,
      .on_response_headers = phases & PE_PHASE_BIT(PE_PHASE_RESPONSE_HEADERS) ? phase_sh : NULL,
      .on_response_body = phases & PE_PHASE_BIT(PE_PHASE_RESPONSE_BODY) ? phase_sb : NULL,
      .user_data = (void *)handle,
      .free_user_data = free_tramp,
  };
  return pe_engine_register_policy(engine, &def);
}
