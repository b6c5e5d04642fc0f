/*
 * avx512/fused_rows_f32.c -- float32 rows with one exp per element (the
 * fused softmax and the cross-entropy store / rescale kernels) on 16
 * lanes: simd/fused_rows_f32_body.h
 */
#include "common.h"

#ifdef CSM_BUILD_AVX512

#include "../simd/fused_rows_f32_body.h"

#include "end.h"
#endif /* CSM_BUILD_AVX512 */
