/*
 * simd/common.h -- what the kernel files of every x86 vector width include,
 * after their ISA's target pragma (src/avx2/common.h, src/avx512/common.h)
 * and before its exp.h and v_*.h
 */
#ifndef CSM_SIMD_COMMON_H
#define CSM_SIMD_COMMON_H

#include <immintrin.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define CHUNK 2048 /* elements per max+sum block of a long row (fits L1) */
#define EXP_LOW (-708.0)
/* static helpers of the headers that some kernel files do not call */
#define CSM_MAYBE_UNUSED __attribute__((unused))

/* the AVX2 float32 generic kernels (float64 lanes, defined in
 * src/avx2/rows_f32.c by DEFINE_KERNELS): the fallback of the float32
 * fast paths of both widths for rows / columns they do not take */
csm_lse_rows_f32_fn csm_lse_rows_f32_generic_avx2, csm_lse_cols_f32_generic_avx2;
csm_write_rows_f32_fn csm_softmax_rows_f32_generic_avx2, csm_log_softmax_rows_f32_generic_avx2,
    csm_softmax_cols_f32_generic_avx2, csm_log_softmax_cols_f32_generic_avx2;

#endif /* CSM_SIMD_COMMON_H */
