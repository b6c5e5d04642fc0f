/*
 * avx512/backward.c -- finalize (states -> max, log_sum) and the backward
 * kernels over rows and columns on 16 float32 / 8 float64 lanes
 * (simd/backward_body.h)
 */
#include "common.h"

#ifdef CSM_BUILD_AVX512

/* 8 states a step: three loads of 8 doubles, their fields separated by two
 * two-source permutes each (gathers measured slower than the AVX2 kernel);
 * per lane the AVX2 kernel's formula (log_sum_vd_: log(count + rest) with
 * the TwoSum error of the sum), so the bits are the AVX2 ones.  A step with
 * a non-finite max goes to the AVX2 kernel, which takes 4 states at a time
 * as before. */
void csm_finalize_avx512(const csm_lse_state *states, ptrdiff_t n, double scale,
                         double *max, double *log_sum)
{
    const __m512i im0 = _mm512_setr_epi64(0, 3, 6, 9, 12, 15, 0, 0);
    const __m512i im1 = _mm512_setr_epi64(0, 1, 2, 3, 4, 5, 10, 13);
    const __m512i ic0 = _mm512_setr_epi64(1, 4, 7, 10, 13, 0, 0, 0);
    const __m512i ic1 = _mm512_setr_epi64(0, 1, 2, 3, 4, 8, 11, 14);
    const __m512i ir0 = _mm512_setr_epi64(2, 5, 8, 11, 14, 0, 0, 0);
    const __m512i ir1 = _mm512_setr_epi64(0, 1, 2, 3, 4, 9, 12, 15);
    const __m512d ninf = _mm512_set1_pd(-INFINITY), pinf = _mm512_set1_pd(INFINITY);
    ptrdiff_t r = 0;
    for (; r + 8 <= n; r += 8) {
        const double *f = (const double *)(states + r);
        __m512d a = _mm512_loadu_pd(f), b = _mm512_loadu_pd(f + 8),
                c = _mm512_loadu_pd(f + 16);
        __m512d mx = _mm512_permutex2var_pd(_mm512_permutex2var_pd(a, im0, b), im1, c);
        __mmask8 fin = _mm512_cmp_pd_mask(mx, ninf, _CMP_GT_OQ) &
                       _mm512_cmp_pd_mask(mx, pinf, _CMP_LT_OQ);
        if (fin != 0xff) {
            csm_finalize_avx2(states + r, 8, scale, max + r, log_sum + r);
            continue;
        }
        __m512d cn = _mm512_permutex2var_pd(_mm512_permutex2var_pd(a, ic0, b), ic1, c);
        __m512d rs = _mm512_permutex2var_pd(_mm512_permutex2var_pd(a, ir0, b), ir1, c);
        _mm512_storeu_pd(max + r, mx);
        _mm512_storeu_pd(log_sum + r, log_sum_vd_(cn, rs));
    }
    if (r < n) csm_finalize_avx2(states + r, n - r, scale, max + r, log_sum + r);
}

/* float64 rows: the table keeps the AVX2 kernels (csoftmax_kernels.def:
 * measured 4-15% slower on 16-element blocks), so they are not built here */
#define CSM_BWD_ROWS_F64_FROM_AVX2
#include "../simd/backward_body.h"

#include "end.h"
#endif /* CSM_BUILD_AVX512 */
