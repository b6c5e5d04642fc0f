/*
 * avx2/finalize_backward.c -- finalize (states -> max, log_sum) and the
 * backward kernels over rows and columns (simd/backward_body.h)
 */
#include "common.h"

#ifdef CSM_BUILD_AVX2

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
            csm_finalize_scalar(s, 4, scale, max + r, log_sum + r);
            continue;
        }
        /* u = count + rest with its rounding error c (TwoSum); log(u) + c/u */
        __m256d u = _mm256_add_pd(cn, rs);
        __m256d bb = _mm256_sub_pd(u, cn);
        __m256d c = _mm256_add_pd(_mm256_sub_pd(cn, _mm256_sub_pd(u, bb)),
                                  _mm256_sub_pd(rs, bb));
        __m256d ls = _mm256_add_pd(log_ge1_(u), _mm256_div_pd(c, u));
        _mm256_storeu_pd(max + r, mx);
        _mm256_storeu_pd(log_sum + r, ls);
    }
    if (r < n) csm_finalize_scalar(states + r, n - r, scale, max + r, log_sum + r);
}

#include "../simd/backward_body.h"

#include "end.h"
#endif /* CSM_BUILD_AVX2 */
