/*
 * avx512/small_f64.c -- float64 short rows, 8 rows per group: reduction,
 * fused softmax / log_softmax, softmax write, cross-entropy gradient
 * (simd/small_f64_body.h; the 8x8 tile of avx512/small.h)
 */
#include "common.h"

#ifdef CSM_BUILD_AVX512

#include "small.h"
#include "../simd/small_f64_body.h"

#include "end.h"
#endif /* CSM_BUILD_AVX512 */
