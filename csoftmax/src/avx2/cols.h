/*
 * avx2/cols.h -- per-lane helpers of the float32 column kernels (the non-
 * last-axis case)
 * (internal; included by the kernel files of this folder after common.h)
 */
#ifndef CSM_AVX2_COLS_H
#define CSM_AVX2_COLS_H

/* ==== float32 columns (the non-last-axis case) ===========================
 *
 * Lanes = columns: 16 contiguous columns (one cache line of float32) per
 * row step, as two 8-lane groups, so every pass consumes whole lines and
 * has four independent float64 exp chains in flight.  Same numerics as the
 * float32 row fast paths (the xr_ exact reduction, softmax_v_f32_,
 * logsm8_f32_) with a
 * per-lane max / clamp; the per-lane checks (clamp bounds, cancellation)
 * are vectorised: with n = 21 rows a scalar check per lane cost as much as
 * the reduction itself.  Rows of a non-last-axis block are usually a
 * multiple of 4 KiB apart, so the n rows of a column group fall into the
 * same L1 set: each pass prefetches the next line of every row.  Groups
 * with a NaN, an infinite or out-of-range max, partial groups (< 8 columns)
 * and softmax with alpha <= 0 or extreme go through the generic kernels. */

/* xr_row_init_ for 8 lanes (max as float64 halves ml, mh; |scale * max| <=
 * 2^20): the per-lane magic goes to c->magic, the per-lane factors
 * 2^-XR_BIAS exp(-r_m) to *fl, *fh. */
static inline void xr_lanes_init_(xr_row_ *c, double scale, __m256d ml,
                                  __m256d mh, __m256d *fl, __m256d *fh)
{
    const __m256d sv = _mm256_set1_pd(scale), l2e = _mm256_set1_pd(1.4426950408889634);
    const __m256d mag = _mm256_set1_pd(0x1.8p23 + XR_BIAS), down = _mm256_set1_pd(0x1p-96);
    __m256d sm[2] = { _mm256_mul_pd(sv, ml), _mm256_mul_pd(sv, mh) }, f[2];
    __m128 mg[2];
    for (int h = 0; h < 2; ++h) {
        __m256d nm = _mm256_round_pd(_mm256_mul_pd(sm[h], l2e),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        __m256d rm = _mm256_fnmadd_pd(nm, _mm256_set1_pd(6.93147180369123816490e-01), sm[h]);
        rm = _mm256_fnmadd_pd(nm, _mm256_set1_pd(1.90821492927058770002e-10), rm);
        f[h] = _mm256_mul_pd(down, exp_f64acc_(_mm256_sub_pd(_mm256_setzero_pd(), rm)));
        mg[h] = _mm256_cvtpd_ps(_mm256_sub_pd(mag, nm));   /* exact integers */
    }
    c->magic = _mm256_set_m128(mg[1], mg[0]);
    float sh = (float)scale;
    c->sh = _mm256_set1_ps(sh);
    c->sl = _mm256_set1_ps((float)(scale - (double)sh));
    c->factor = 0.0;
    *fl = f[0]; *fh = f[1];
}

/* clamp_bound_ for 8 lanes (max as float64 lo/hi halves); nonzero if every
 * lane has a valid clamp value, stored in *L. */
static inline int clamp_bound8_(__m256d ml, __m256d mh, __m256d sv,
                                double span, double span_s, __m256 *L)
{
    const __m256d ss = _mm256_set1_pd(span_s);
    const __m256d absmask = _mm256_castsi256_pd(_mm256_set1_epi64x(0x7FFFFFFFFFFFFFFFLL));
    __m256d Ll = _mm256_sub_pd(ml, ss), Lh = _mm256_sub_pd(mh, ss);
    __m128 fl = _mm256_cvtpd_ps(Ll), fh = _mm256_cvtpd_ps(Lh);
    __m256d dl = _mm256_mul_pd(sv, _mm256_sub_pd(_mm256_cvtps_pd(fl), ml));
    __m256d dh = _mm256_mul_pd(sv, _mm256_sub_pd(_mm256_cvtps_pd(fh), mh));
    const __m256d big = _mm256_set1_pd(0x1p20), lo = _mm256_set1_pd(-3.0e38);
    const __m256d d0 = _mm256_set1_pd(-1.25 * span), d1 = _mm256_set1_pd(-0.75 * span);
    __m256d okl = _mm256_and_pd(
        _mm256_and_pd(_mm256_cmp_pd(_mm256_and_pd(_mm256_mul_pd(sv, ml), absmask), big, _CMP_LE_OQ),
                      _mm256_cmp_pd(Ll, lo, _CMP_GT_OQ)),
        _mm256_and_pd(_mm256_cmp_pd(dl, d0, _CMP_GE_OQ), _mm256_cmp_pd(dl, d1, _CMP_LE_OQ)));
    __m256d okh = _mm256_and_pd(
        _mm256_and_pd(_mm256_cmp_pd(_mm256_and_pd(_mm256_mul_pd(sv, mh), absmask), big, _CMP_LE_OQ),
                      _mm256_cmp_pd(Lh, lo, _CMP_GT_OQ)),
        _mm256_and_pd(_mm256_cmp_pd(dh, d0, _CMP_GE_OQ), _mm256_cmp_pd(dh, d1, _CMP_LE_OQ)));
    *L = _mm256_set_m128(fh, fl);
    return (_mm256_movemask_pd(_mm256_and_pd(okl, okh)) == 15);
}

/* lse_cancels_ for 4 lanes: bit k set if lane k's LSE may cancel. */
static inline int lse_cancels4_(__m256d mx, __m256d cn, __m256d rs, __m256d sv)
{
    const __m256d absmask = _mm256_castsi256_pd(_mm256_set1_epi64x(0x7FFFFFFFFFFFFFFFLL));
    __m256d sm = _mm256_mul_pd(sv, mx);
    __m256i b = _mm256_castpd_si256(_mm256_add_pd(cn, rs));   /* u >= 1 */
    __m256d e = _mm256_sub_pd(
        _mm256_castsi256_pd(_mm256_or_si256(_mm256_srli_epi64(b, 52),
                                            _mm256_set1_epi64x(0x4330000000000000LL))),
        _mm256_set1_pd(0x1p52 + 1023.0));
    __m256d f = _mm256_castsi256_pd(_mm256_or_si256(
        _mm256_and_si256(b, _mm256_set1_epi64x(0x000FFFFFFFFFFFFFLL)),
        _mm256_set1_epi64x(0x3FF0000000000000LL)));
    __m256d lg = _mm256_mul_pd(_mm256_add_pd(e, _mm256_sub_pd(f, _mm256_set1_pd(1.0))),
                               _mm256_set1_pd(0.6931471805599453));
    __m256d c = _mm256_and_pd(
        _mm256_cmp_pd(_mm256_and_pd(_mm256_add_pd(sm, lg), absmask), _mm256_set1_pd(1.3), _CMP_LT_OQ),
        _mm256_and_pd(_mm256_cmp_pd(sm, _mm256_setzero_pd(), _CMP_NEQ_OQ),
                      _mm256_cmp_pd(_mm256_and_pd(mx, absmask), _mm256_set1_pd(INFINITY), _CMP_LT_OQ)));
    return _mm256_movemask_pd(c);
}

static inline void store_states4_(csm_lse_state *s, __m256d mx, __m256d cn, __m256d rs)
{
    double m[4], c[4], r[4];
    _mm256_storeu_pd(m, mx); _mm256_storeu_pd(c, cn); _mm256_storeu_pd(r, rs);
    for (int k = 0; k < 4; ++k) { s[k].max = m[k]; s[k].count = c[k]; s[k].rest = r[k]; }
}

/* y = scale * (x - max) - log_sum with per-lane max / log_sum */
static inline __m256 logsmc8_f32_(__m256 a, __m256d sv, __m256d ml, __m256d mh,
                                  __m256d ll, __m256d lh)
{
    __m256d lo = _mm256_cvtps_pd(_mm256_castps256_ps128(a));
    __m256d hi = _mm256_cvtps_pd(_mm256_extractf128_ps(a, 1));
    lo = _mm256_fmsub_pd(_mm256_sub_pd(lo, ml), sv, ll);
    hi = _mm256_fmsub_pd(_mm256_sub_pd(hi, mh), sv, lh);
    return _mm256_set_m128(_mm256_cvtpd_ps(hi), _mm256_cvtpd_ps(lo));
}

#define COLS_PF(p) _mm_prefetch((const char *)(p), _MM_HINT_T0)

#endif /* CSM_AVX2_COLS_H */
