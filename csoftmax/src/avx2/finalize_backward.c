/*
 * avx2/finalize_backward.c -- finalize (states -> max, log_sum) and the
 * backward kernels over rows and columns (simd/backward_body.h)
 */
#include "common.h"

#ifdef CSM_BUILD_AVX2

/* A step of m <= 4 states holding a non-finite max or fewer than 4 states:
 * the lanes with a finite max still take the vector formula (the missing
 * lanes padded with the state of a one-element row), the others the scalar
 * kernel's -- so a row's log_sum does not depend on its position in the
 * call or on the rows beside it (the scalar kernel's log1p formula differs
 * in the last bit: a float64 row's cross-entropy moved by 1 ULP with its
 * place in the batch, and linear_cross_entropy with its chunk size). */
static void finalize_part_(const csm_lse_state *s, ptrdiff_t m, double scale,
                           double *max, double *log_sum)
{
    double mx[4], cn[4], rs[4], ls[4];
    for (int k = 0; k < 4; ++k) {
        mx[k] = k < m ? s[k].max : 0.0;
        cn[k] = k < m ? s[k].count : 1.0;
        rs[k] = k < m ? s[k].rest : 0.0;
    }
    _mm256_storeu_pd(ls, log_sum_vd_(_mm256_loadu_pd(cn), _mm256_loadu_pd(rs)));
    for (ptrdiff_t k = 0; k < m; ++k) {
        if (mx[k] > -INFINITY && mx[k] < INFINITY) {
            max[k] = mx[k];
            log_sum[k] = ls[k];
        } else {
            csm_finalize_scalar(s + k, 1, scale, max + k, log_sum + k);
        }
    }
}

void csm_finalize_avx2(const csm_lse_state *states, ptrdiff_t n, double scale,
                       double *max, double *log_sum)
{
    ptrdiff_t r = 0;
    for (; r + 4 <= n; r += 4) {
        const csm_lse_state *s = states + r;
        __m256d mx = _mm256_setr_pd(s[0].max, s[1].max, s[2].max, s[3].max);
        __m256d cn = _mm256_setr_pd(s[0].count, s[1].count, s[2].count, s[3].count);
        __m256d rs = _mm256_setr_pd(s[0].rest, s[1].rest, s[2].rest, s[3].rest);
        __m256d fin = _mm256_and_pd(
            _mm256_cmp_pd(mx, _mm256_set1_pd(-INFINITY), _CMP_GT_OQ),
            _mm256_cmp_pd(mx, _mm256_set1_pd(INFINITY), _CMP_LT_OQ));
        if (_mm256_movemask_pd(fin) != 15) {
            finalize_part_(s, 4, scale, max + r, log_sum + r);
            continue;
        }
        /* log(count + rest) with the TwoSum error of the sum (log_sum_vd_) */
        _mm256_storeu_pd(max + r, mx);
        _mm256_storeu_pd(log_sum + r, log_sum_vd_(cn, rs));
    }
    if (r < n) finalize_part_(states + r, n - r, scale, max + r, log_sum + r);
}

#include "../simd/backward_body.h"

#include "end.h"
#endif /* CSM_BUILD_AVX2 */
