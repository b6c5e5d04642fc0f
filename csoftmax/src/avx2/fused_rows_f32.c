/*
 * avx2/fused_rows_f32.c -- float32 rows with one exp per element (the
 * fused softmax and the cross-entropy store / rescale kernels) on 8 lanes:
 * simd/fused_rows_f32_body.h
 */
#include "common.h"

#ifdef CSM_BUILD_AVX2

#include "../simd/fused_rows_f32_body.h"

#include "end.h"
#endif /* CSM_BUILD_AVX2 */
