/*
 * avx2/rows_f32.c -- float32 rows: the generic float64-lane kernels
 * (simd/generic.h, the fallback of every float32 fast path, AVX-512's too) and
 * the fast paths of simd/rows_f32_body.h on 8 lanes
 */
#include "common.h"
#include "../simd/generic.h"

#ifdef CSM_BUILD_AVX2

DEFINE_KERNELS(float, f32, exp_f32_, _generic, )

#include "../simd/rows_f32_body.h"

#include "end.h"
#endif /* CSM_BUILD_AVX2 */
