/*
 * avx512/rows_f32.c -- float32 rows on 16 lanes: the reduction (lse_rows,
 * lse_rows_pw) and the softmax / log_softmax write passes of
 * simd/rows_f32_body.h; rows those fast paths do not take go to the AVX2
 * generic (float64-lane) kernels, as on AVX2
 */
#include "common.h"

#ifdef CSM_BUILD_AVX512

#include "../simd/rows_f32_body.h"

#include "end.h"
#endif /* CSM_BUILD_AVX512 */
