/*
 * avx512/ce_soft_f32.c -- the float32 cross-entropy gradient of soft targets
 * on 16 lanes (simd/ce_soft_f32_body.h)
 */
#include "common.h"

#ifdef CSM_BUILD_AVX512

#include "../simd/ce_soft_f32_body.h"

#include "end.h"
#endif /* CSM_BUILD_AVX512 */
