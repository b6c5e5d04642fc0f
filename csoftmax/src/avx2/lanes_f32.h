/*
 * avx2/lanes_f32.h -- the AVX2-only float64-lane helper log of sums >= 1
 * (finalize, short rows).  The float32-lane helpers (the exact-reduction
 * exp xr_*, softmax_v_f32_, the clamp bounds, the cancellation test) are
 * shared with AVX-512: src/simd/xr_f32.h.
 * (internal; included by the kernel files of this folder after common.h)
 */
#ifndef CSM_AVX2_LANES_F32_H
#define CSM_AVX2_LANES_F32_H

/* ---- finalize: log_sum = log(count + rest) for 4 rows at a time --------- */

/* log(u) for finite u >= 1 (float64, about 1 ULP). */
static inline __m256d log_ge1_pd_(__m256d u)
{
    const __m256i mant_mask = _mm256_set1_epi64x(0x000FFFFFFFFFFFFFLL);
    const __m256i one_bits = _mm256_set1_epi64x(0x3FF0000000000000LL);
    __m256i bits = _mm256_castpd_si256(u);
    /* exponent E as a double: or it into the mantissa of 2^52 and subtract */
    __m256i e = _mm256_srli_epi64(bits, 52);
    __m256d k = _mm256_sub_pd(
        _mm256_castsi256_pd(_mm256_or_si256(e, _mm256_set1_epi64x(0x4330000000000000LL))),
        _mm256_set1_pd(0x1p52 + 1023.0));
    __m256d f = _mm256_castsi256_pd(_mm256_or_si256(_mm256_and_si256(bits, mant_mask), one_bits));
    __m256d big = _mm256_cmp_pd(f, _mm256_set1_pd(1.4142135623730951), _CMP_GT_OQ);
    f = _mm256_blendv_pd(f, _mm256_mul_pd(f, _mm256_set1_pd(0.5)), big);
    k = _mm256_add_pd(k, _mm256_and_pd(big, _mm256_set1_pd(1.0)));
    __m256d g = _mm256_sub_pd(f, _mm256_set1_pd(1.0));
    __m256d s = _mm256_div_pd(g, _mm256_add_pd(g, _mm256_set1_pd(2.0)));
    __m256d z = _mm256_mul_pd(s, s);
    __m256d p = _mm256_set1_pd(1.0 / 21.0);
    p = _mm256_fmadd_pd(p, z, _mm256_set1_pd(1.0 / 19.0));
    p = _mm256_fmadd_pd(p, z, _mm256_set1_pd(1.0 / 17.0));
    p = _mm256_fmadd_pd(p, z, _mm256_set1_pd(1.0 / 15.0));
    p = _mm256_fmadd_pd(p, z, _mm256_set1_pd(1.0 / 13.0));
    p = _mm256_fmadd_pd(p, z, _mm256_set1_pd(1.0 / 11.0));
    p = _mm256_fmadd_pd(p, z, _mm256_set1_pd(1.0 / 9.0));
    p = _mm256_fmadd_pd(p, z, _mm256_set1_pd(1.0 / 7.0));
    p = _mm256_fmadd_pd(p, z, _mm256_set1_pd(1.0 / 5.0));
    p = _mm256_fmadd_pd(p, z, _mm256_set1_pd(1.0 / 3.0));
    /* log f = 2s + 2s*z*p ; + k ln2 (hi/lo) */
    __m256d s2 = _mm256_add_pd(s, s);
    __m256d lf = _mm256_fmadd_pd(_mm256_mul_pd(s2, z), p,
                                 _mm256_mul_pd(k, _mm256_set1_pd(1.90821492927058770002e-10)));
    lf = _mm256_add_pd(lf, s2);
    return _mm256_fmadd_pd(k, _mm256_set1_pd(6.93147180369123816490e-01), lf);
}

#endif /* CSM_AVX2_LANES_F32_H */
