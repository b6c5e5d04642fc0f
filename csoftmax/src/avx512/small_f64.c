/*
 * avx512/small_f64.c -- float64 short rows, 8 rows per group: reduction,
 * fused softmax / log_softmax, softmax write, cross-entropy gradient
 * (simd/small_f64_body.h; the 8x8 tile of avx512/small.h)
 */
#include "common.h"

#ifdef CSM_BUILD_AVX512

#include "small.h"
/* the backward's short rows: the table keeps the AVX2 kernels (4 rows a
 * group, 4x4 transposes), faster on Zen4 than 8 rows with the 8x8 ones
 * (csoftmax_kernels.def) */
#define CSM_BWD_SMALL_F64_FROM_AVX2
#include "../simd/small_f64_body.h"

#include "end.h"
#endif /* CSM_BUILD_AVX512 */
