/*
 * avx512/backward.c -- the backward kernels over rows and columns on 16
 * float32 / 8 float64 lanes (simd/backward_body.h)
 */
#include "common.h"

#ifdef CSM_BUILD_AVX512

/* float64 rows: the table keeps the AVX2 kernels (csoftmax_kernels.def:
 * measured 4-15% slower on 16-element blocks), so they are not built here */
#define CSM_BWD_ROWS_F64_FROM_AVX2
#include "../simd/backward_body.h"

#include "end.h"
#endif /* CSM_BUILD_AVX512 */
