/*
 * avx512/cols_tiled_f32.c -- float32 columns with one exp per element
 * (fused softmax), the padded tiles with streaming output, and the
 * log_softmax write, on 16 lanes (simd/cols_tiled_f32_body.h)
 */
#include "common.h"

#ifdef CSM_BUILD_AVX512

#include "../simd/cols_tiled_f32_body.h"

#include "end.h"
#endif /* CSM_BUILD_AVX512 */
