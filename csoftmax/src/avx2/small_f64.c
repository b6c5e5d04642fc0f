/*
 * avx2/small_f64.c -- float64 short rows, 4 rows per vector: reduction,
 * fused softmax / log_softmax, softmax write, cross-entropy gradient
 * (simd/small_f64_body.h; the 4x4 tile of avx2/small.h)
 */
#include "common.h"
#include "small.h"

#ifdef CSM_BUILD_AVX2

#include "../simd/small_f64_body.h"

#include "end.h"
#endif /* CSM_BUILD_AVX2 */
