/* sample-native-redact: the streamed sample policy (sample_redact.c). */
#ifndef SAMPLE_REDACT_H
#define SAMPLE_REDACT_H

#include <policyexec/plugin.h>

/* Registers sample-native-redact@1.0.0 on @p engine; returns as
 * pe_engine_register_policy(). */
int sample_redact_register(pe_engine *engine);

#endif
