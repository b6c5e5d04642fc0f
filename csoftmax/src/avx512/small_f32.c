/*
 * avx512/small_f32.c -- float32 short rows, 8 rows per group: reduction,
 * fused softmax / log_softmax, softmax write, cross-entropy gradient,
 * expm1 of the target entries (simd/small_f32_body.h; the float64 lanes
 * of a group in one __m512d, avx512/small.h)
 */
#include "common.h"

#ifdef CSM_BUILD_AVX512

#include "small.h"
#include "../simd/small_f32_body.h"

#include "end.h"
#endif /* CSM_BUILD_AVX512 */
