/*
 * avx512/rows_f64.c -- float64 rows and columns on 8 lanes: the shared
 * kernels of simd/rows_f64_body.h (generic reduction / write passes, rows
 * and columns, the CE store / rescale) and the fused softmax rows
 */
#include "common.h"

#ifdef CSM_BUILD_AVX512

#include "../simd/rows_f64_body.h"

#include "end.h"
#endif /* CSM_BUILD_AVX512 */
