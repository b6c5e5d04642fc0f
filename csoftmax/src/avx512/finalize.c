/*
 * avx512/finalize.c -- finalize (states -> max, log_sum), 8 rows at a time
 * (the arithmetic of src/avx2/finalize_backward.c)
 */
#include "common.h"

#ifdef CSM_BUILD_AVX512

void csm_finalize_avx512(const csm_lse_state *states, ptrdiff_t n, double scale,
                         double *max, double *log_sum)
{
    /* the states are {max, count, rest} triples: gather each field */
    const __m512i idx = _mm512_setr_epi64(0, 3, 6, 9, 12, 15, 18, 21);
    ptrdiff_t r = 0;
    for (; r + 8 <= n; r += 8) {
        const double *s = (const double *)(states + r);
        __m512d mx = _mm512_i64gather_pd(idx, s, 8);
        __m512d cn = _mm512_i64gather_pd(idx, s + 1, 8);
        __m512d rs = _mm512_i64gather_pd(idx, s + 2, 8);
        __mmask8 fin = _mm512_cmp_pd_mask(mx, _mm512_set1_pd(-INFINITY), _CMP_GT_OQ) &
                       _mm512_cmp_pd_mask(mx, _mm512_set1_pd(INFINITY), _CMP_LT_OQ);
        if (fin != 0xFF) {
            csm_finalize_scalar(states + r, 8, scale, max + r, log_sum + r);
            continue;
        }
        /* u = count + rest with its rounding error c (TwoSum); log(u) + c/u */
        __m512d u = _mm512_add_pd(cn, rs);
        __m512d bb = _mm512_sub_pd(u, cn);
        __m512d c = _mm512_add_pd(_mm512_sub_pd(cn, _mm512_sub_pd(u, bb)),
                                  _mm512_sub_pd(rs, bb));
        __m512d ls = _mm512_add_pd(log_ge1_512_(u), _mm512_div_pd(c, u));
        _mm512_storeu_pd(max + r, mx);
        _mm512_storeu_pd(log_sum + r, ls);
    }
    if (r < n) csm_finalize_avx2(states + r, n - r, scale, max + r, log_sum + r);
}

#include "end.h"
#endif /* CSM_BUILD_AVX512 */
