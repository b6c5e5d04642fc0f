/*
 * avx2/lanes_f32.h -- the AVX2-only float32-lane helpers: softmax of 8
 * lanes with a float64 argument reduction (short rows, columns), log of
 * sums >= 1 (finalize).  The exact-reduction exp (xr_*), the clamp bounds
 * and the cancellation test are shared with AVX-512: src/simd/xr_f32.h.
 * (internal; included by the kernel files of this folder after common.h)
 */
#ifndef CSM_AVX2_LANES_F32_H
#define CSM_AVX2_LANES_F32_H

/* ==== float32 fast paths ================================================
 *
 * Reduction: exp stays in float64 (exp_f32acc_, 2^-28.5), but the per-lane
 * bookkeeping is done once per 8 float32 lanes: elements equal to the max
 * are counted in int32 lanes and, like -inf and anything far below the max,
 * replaced by a clamp value L with scale*(L - max) ~ -600, whose exp
 * (~1e-261) cannot affect any float32 result.  So the float64 lanes carry
 * no compare/mask work, d = scale*x - scale*max is one FMA, and exp needs
 * no range check.
 *
 * Softmax write: the argument reduction d = scale*x - (scale*max + log_sum),
 * n = round(d/ln2), r = d - n ln2 is done in float64 (so r carries no
 * float32 cancellation error), then r is rounded to float32 (|error| <=
 * 2^-26) and exp(r) is a float32 degree-6 polynomial on 8 lanes (fitted
 * with c0 = c1 = 1, rel. error 3e-9; evaluation error < 0.7 ULP).  2^n is
 * applied as (p * 2^(n+32)) * 2^-32: the first product is exact, so
 * denormal results are rounded once, correctly.  Total < 1 ULP.
 * The fast paths need finite max, alpha == 1 (softmax), |scale*max| <=
 * 2^20 and a representable clamp value; otherwise the generic kernels run.
 */
#define F32_LSE_SPAN 120.0   /* reduction clamp: exp(-90..-150) is invisible */
#define F32_SM_SPAN 200.0    /* softmax write clamp: exp(-200) -> 0 in f32 */
#define F32_SM_BIAS 32

/* softmax of 8 floats (already clamped) -> 8 floats */
static inline __m256 softmax8_f32_(__m256 a, __m256d sv, __m256d cvl, __m256d cvh)
{
    const __m256d magic = _mm256_set1_pd(0x1.8p52 + (127 + F32_SM_BIAS));
    const __m256d log2e = _mm256_set1_pd(1.4426950408889634);
    const __m256d ln2 = _mm256_set1_pd(0x1.62e42fefa39efp-1);
    __m256d lo = _mm256_cvtps_pd(_mm256_castps256_ps128(a));
    __m256d hi = _mm256_cvtps_pd(_mm256_extractf128_ps(a, 1));
    lo = _mm256_fmsub_pd(lo, sv, cvl);
    hi = _mm256_fmsub_pd(hi, sv, cvh);
    __m256d tl = _mm256_fmadd_pd(lo, log2e, magic);
    __m256d th = _mm256_fmadd_pd(hi, log2e, magic);
    __m256d rl = _mm256_fnmadd_pd(_mm256_sub_pd(tl, magic), ln2, lo);
    __m256d rh = _mm256_fnmadd_pd(_mm256_sub_pd(th, magic), ln2, hi);
    __m256 r = _mm256_set_m128(_mm256_cvtpd_ps(rh), _mm256_cvtpd_ps(rl));
    __m256i ni = _mm256_castps_si256(_mm256_shuffle_ps(
        _mm256_castpd_ps(tl), _mm256_castpd_ps(th), 0x88));
    ni = _mm256_permute4x64_epi64(ni, 0xD8);
    ni = _mm256_max_epi32(ni, _mm256_set1_epi32(1));
    __m256 sc = _mm256_castsi256_ps(_mm256_slli_epi32(ni, 23));
    __m256 p = _mm256_mul_ps(exp_poly_ps_(r), sc);
    return _mm256_mul_ps(p, _mm256_set1_ps(0x1p-32f));
}

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
