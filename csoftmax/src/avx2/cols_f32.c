/*
 * avx2/cols_f32.c -- float32 columns (the non-last-axis case): reduction
 * and softmax write, and the cross-entropy store / rescale, on 8 lanes
 * (simd/cols_f32_body.h)
 */
#include "common.h"

#ifdef CSM_BUILD_AVX2

#include "../simd/cols_f32_body.h"

#include "end.h"
#endif /* CSM_BUILD_AVX2 */
