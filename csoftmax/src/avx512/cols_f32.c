/*
 * avx512/cols_f32.c -- float32 columns (the non-last-axis case): reduction
 * and softmax write, and the cross-entropy store / rescale, on 16 lanes
 * (simd/cols_f32_body.h)
 */
#include "common.h"

#ifdef CSM_BUILD_AVX512

#include "../simd/cols_f32_body.h"

#include "end.h"
#endif /* CSM_BUILD_AVX512 */
