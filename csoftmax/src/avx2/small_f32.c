/*
 * avx2/small_f32.c -- float32 short rows, 8 rows per vector: reduction,
 * fused softmax / log_softmax, softmax write, cross-entropy gradient
 * (simd/small_f32_body.h; the float64 lanes of a group as two __m256d,
 * avx2/small.h), and the backward of softmax / log_softmax
 * (simd/small_bwd_f32_body.h)
 */
#include "common.h"
#include "small.h"

#ifdef CSM_BUILD_AVX2

#include "../simd/small_f32_body.h"
#include "../simd/small_bwd_f32_body.h"

#include "end.h"
#endif /* CSM_BUILD_AVX2 */
