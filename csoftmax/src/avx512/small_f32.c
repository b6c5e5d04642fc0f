/*
 * avx512/small_f32.c -- float32 short rows: the reduction, softmax write and
 * target-entry expm1 of simd/small_f32_body.h (8 rows a group, the float64
 * lanes in one __m512d, avx512/small.h), and 16 rows a group in float32
 * lanes for the fused softmax / log_softmax and the cross-entropy gradient
 * (simd/small_lanes_f32_body.h) and for the backward of softmax /
 * log_softmax (simd/small_bwd_f32_body.h)
 */
#include "common.h"

#ifdef CSM_BUILD_AVX512

#define CSM_SMALL_F32_LANES 1
#include "small.h"
#include "../simd/small_f32_body.h"
#include "../simd/small_lanes_f32_body.h"
/* softmax_backward's short rows: the table keeps the AVX2 kernel (8 rows
 * a group, 8x8 256-bit transposes), faster on Zen4 than 16 rows with the
 * 16x8 512-bit ones (csoftmax_kernels.def) */
#define CSM_BWD_SMALL_SOFTMAX_FROM_AVX2
#include "../simd/small_bwd_f32_body.h"

#include "end.h"
#endif /* CSM_BUILD_AVX512 */
