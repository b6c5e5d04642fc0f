/*
 * avx2/exp.h -- exp in float64 lanes, tail masks, loads/stores of 8
 * elements, horizontal max/sum, row maximum
 * (internal; included by the kernel files of this folder after common.h)
 */
#ifndef CSM_AVX2_EXP_H
#define CSM_AVX2_EXP_H

/* ---- exp ---------------------------------------------------------------- */

static inline __m256d exp_scale_(__m256d p, __m256d t)
{
    __m256i e = _mm256_slli_epi64(_mm256_castpd_si256(t), 52);
    return _mm256_castsi256_pd(_mm256_add_epi64(_mm256_castpd_si256(p), e));
}

static inline __m256d exp_f32acc_(__m256d d)
{
    const __m256d magic = _mm256_set1_pd(0x1.8p52);
    __m256d t = _mm256_fmadd_pd(d, _mm256_set1_pd(1.4426950408889634), magic);
    __m256d n = _mm256_sub_pd(t, magic);
    __m256d r = _mm256_fnmadd_pd(n, _mm256_set1_pd(0x1.62e42fefa39efp-1), d);
    __m256d p = _mm256_set1_pd(0x1.6d7531fa74153p-10);
    p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(0x1.126fa6fd93876p-7));
    p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(0x1.5554ace10c6afp-5));
    p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(0x1.5554043e283b8p-3));
    p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(0x1.00000028795a0p-1));
    p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(0x1.000000a1fd6adp+0));
    p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(1.0));
    return exp_scale_(p, t);
}

static inline __m256d exp_f64acc_(__m256d d)
{
    const __m256d magic = _mm256_set1_pd(0x1.8p52);
    __m256d t = _mm256_fmadd_pd(d, _mm256_set1_pd(1.4426950408889634), magic);
    __m256d n = _mm256_sub_pd(t, magic);
    __m256d r = _mm256_fnmadd_pd(n, _mm256_set1_pd(6.93147180369123816490e-01), d);
    r = _mm256_fnmadd_pd(n, _mm256_set1_pd(1.90821492927058770002e-10), r);
    /* exp(r) = 1 + r + r^2 q(r), q of degree 9 fitted (Chebyshev) to
     * (exp(r) - 1 - r) / r^2 on |r| <= ln2/2 + 1e-3: relative error of
     * the polynomial (double coefficients) < 1.8e-17, two FMAs fewer than
     * the degree-13 Taylor polynomial it replaces. */
    __m256d p = _mm256_set1_pd(0x1.af39d92ab3282p-26);
    p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(0x1.28927c0646723p-22));
    p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(0x1.71de0d2e6e42bp-19));
    p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(0x1.a019b83d2cea4p-16));
    p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(0x1.a01a01a7e5259p-13));
    p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(0x1.6c16c178c18a5p-10));
    p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(0x1.1111111110989p-7));
    p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(0x1.5555555553cd9p-5));
    p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(0x1.5555555555556p-3));
    p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(0x1.0000000000001p-1));
    p = _mm256_mul_pd(p, _mm256_mul_pd(r, r));
    p = _mm256_add_pd(_mm256_add_pd(p, r), _mm256_set1_pd(1.0)); /* 1 + r + r^2 q */
    return exp_scale_(p, t);
}

/* exp(d) for d <= 0 (or -inf); lanes where d < -708 are exact zeros. */
static inline __m256d exp_f32_(__m256d d)
{
    const __m256d lo = _mm256_set1_pd(EXP_LOW);
    __m256d tiny = _mm256_cmp_pd(d, lo, _CMP_LT_OQ);
    return _mm256_andnot_pd(tiny, exp_f32acc_(_mm256_max_pd(d, lo)));
}

/* exp(d) for d <= 0 (or -inf) with relative error < 2^-43 (float32 data of
 * the log_softmax backward, where dy_i - exp(y_i) sum(dy) may cancel and a
 * float32-accurate exp -- 2^-29, exp_f32_ -- left up to a few hundred
 * float32 ULP of the difference): one-constant reduction (|n| <= 1022,
 * error < 2^-45) and exp(r) = 1 + r + r^2 q(r), q of degree 7 (Chebyshev
 * interpolant of (exp(r) - 1 - r) / r^2 on |r| <= ln2/2 + 1e-3, 2^-43.6);
 * four multiply-adds more than exp_f32_, four fewer than exp_f64acc_.
 * Lanes where d < -708 are exact zeros. */
static inline __m256d exp_mid_(__m256d d)
{
    const __m256d lo = _mm256_set1_pd(EXP_LOW);
    const __m256d magic = _mm256_set1_pd(0x1.8p52);
    __m256d tiny = _mm256_cmp_pd(d, lo, _CMP_LT_OQ);
    d = _mm256_max_pd(d, lo);
    __m256d t = _mm256_fmadd_pd(d, _mm256_set1_pd(1.4426950408889634), magic);
    __m256d n = _mm256_sub_pd(t, magic);
    __m256d r = _mm256_fnmadd_pd(n, _mm256_set1_pd(0x1.62e42fefa39efp-1), d);
    __m256d p = _mm256_set1_pd(0x1.72ae6d7753994p-19);
    p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(0x1.a13856200182dp-16));
    p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(0x1.a019c2b97ad8fp-13));
    p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(0x1.6c166ae95f35dp-10));
    p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(0x1.111111172585dp-7));
    p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(0x1.555555660ec62p-5));
    p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(0x1.5555555554f75p-3));
    p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(0x1.fffffffffdfacp-2));
    p = _mm256_fmadd_pd(p, _mm256_mul_pd(r, r), r);
    p = _mm256_add_pd(p, _mm256_set1_pd(1.0));
    return _mm256_andnot_pd(tiny, exp_scale_(p, t));
}

/* dy - exp(y) * s (log_softmax backward) in 4 float64 lanes, one rounding. */
static inline __m256d lsb_f32_(__m256d y, __m256d s, __m256d dy)
{
    return _mm256_fnmadd_pd(exp_mid_(y), s, dy);
}

/* exp(d) for d <= 0 (or -inf); lanes in [-746, -708) go through libm
 * (denormal results), lanes below that are exact zeros. */
static inline __m256d exp_f64_(__m256d d)
{
    const __m256d lo = _mm256_set1_pd(EXP_LOW);
    __m256d tiny = _mm256_cmp_pd(d, lo, _CMP_LT_OQ);
    __m256d e = _mm256_andnot_pd(tiny, exp_f64acc_(_mm256_max_pd(d, lo)));
    int mask = _mm256_movemask_pd(
        _mm256_and_pd(tiny, _mm256_cmp_pd(d, _mm256_set1_pd(-746.0), _CMP_GE_OQ)));
    if (mask) {
        double dv[4], ev[4];
        _mm256_storeu_pd(dv, d);
        _mm256_storeu_pd(ev, e);
        for (int k = 0; k < 4; ++k)
            if (mask & (1 << k)) ev[k] = exp(dv[k]);
        e = _mm256_loadu_pd(ev);
    }
    return e;
}

static inline __m256d lsb_f64_(__m256d y, __m256d s, __m256d dy)
{
    return _mm256_fnmadd_pd(exp_f64_(y), s, dy);
}

/* ---- loads and stores of 8 elements as two float64 vectors -------------- */

static inline __m256i tail_mask32_(ptrdiff_t r) /* first r of 8 int32 lanes */
{
    const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)r), idx);
}
static inline __m256i tail_mask64_(ptrdiff_t r) /* first r of 4 int64 lanes */
{
    const __m256i idx = _mm256_setr_epi64x(0, 1, 2, 3);
    return _mm256_cmpgt_epi64(_mm256_set1_epi64x((long long)r), idx);
}

static inline void load8_f32_(const float *p, __m256d *lo, __m256d *hi)
{
    __m256 v = _mm256_loadu_ps(p);
    *lo = _mm256_cvtps_pd(_mm256_castps256_ps128(v));
    *hi = _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1));
}
/* r (< 8) valid elements; the others read as `fill`. */
static inline void load8m_f32_(const float *p, ptrdiff_t r, float fill,
                               __m256d *lo, __m256d *hi)
{
    __m256i m = tail_mask32_(r);
    __m256 v = _mm256_maskload_ps(p, m);
    v = _mm256_blendv_ps(_mm256_set1_ps(fill), v, _mm256_castsi256_ps(m));
    *lo = _mm256_cvtps_pd(_mm256_castps256_ps128(v));
    *hi = _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1));
}
static inline void store8_f32_(float *p, __m256d lo, __m256d hi)
{
    __m256 v = _mm256_set_m128(_mm256_cvtpd_ps(hi), _mm256_cvtpd_ps(lo));
    _mm256_storeu_ps(p, v);
}
static inline void store8m_f32_(float *p, ptrdiff_t r, __m256d lo, __m256d hi)
{
    __m256 v = _mm256_set_m128(_mm256_cvtpd_ps(hi), _mm256_cvtpd_ps(lo));
    _mm256_maskstore_ps(p, tail_mask32_(r), v);
}

static inline void load8_f64_(const double *p, __m256d *lo, __m256d *hi)
{
    *lo = _mm256_loadu_pd(p);
    *hi = _mm256_loadu_pd(p + 4);
}
static inline void load8m_f64_(const double *p, ptrdiff_t r, double fill,
                               __m256d *lo, __m256d *hi)
{
    __m256i m0 = tail_mask64_(r), m1 = tail_mask64_(r - 4);
    __m256d f = _mm256_set1_pd(fill);
    *lo = _mm256_blendv_pd(f, _mm256_maskload_pd(p, m0), _mm256_castsi256_pd(m0));
    *hi = _mm256_blendv_pd(f, _mm256_maskload_pd(p + 4, m1), _mm256_castsi256_pd(m1));
}
static inline void store8_f64_(double *p, __m256d lo, __m256d hi)
{
    _mm256_storeu_pd(p, lo);
    _mm256_storeu_pd(p + 4, hi);
}
static inline void store8m_f64_(double *p, ptrdiff_t r, __m256d lo, __m256d hi)
{
    _mm256_maskstore_pd(p, tail_mask64_(r), lo);
    _mm256_maskstore_pd(p + 4, tail_mask64_(r - 4), hi);
}

static inline double hmax_pd_(__m256d v)
{
    __m128d m = _mm_max_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));
    m = _mm_max_sd(m, _mm_unpackhi_pd(m, m));
    return _mm_cvtsd_f64(m);
}
static inline double hsum_pd_(__m256d v)
{
    __m128d s = _mm_add_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));
    s = _mm_add_sd(s, _mm_unpackhi_pd(s, s));
    return _mm_cvtsd_f64(s);
}

/* ---- row maximum (with NaN detection): returns NaN if any NaN ----------- */

static CSM_MAYBE_UNUSED double row_max_f32_(const float *x, ptrdiff_t n)
{
    const __m256 ninf = _mm256_set1_ps(-INFINITY);
    __m256 m0 = ninf, m1 = ninf, m2 = ninf, m3 = ninf, bad = _mm256_setzero_ps();
    ptrdiff_t i = 0;
    for (; i + 32 <= n; i += 32) {
        __m256 a = _mm256_loadu_ps(x + i), b = _mm256_loadu_ps(x + i + 8);
        __m256 c = _mm256_loadu_ps(x + i + 16), d = _mm256_loadu_ps(x + i + 24);
        m0 = _mm256_max_ps(m0, a); m1 = _mm256_max_ps(m1, b);
        m2 = _mm256_max_ps(m2, c); m3 = _mm256_max_ps(m3, d);
        bad = _mm256_or_ps(bad, _mm256_or_ps(_mm256_cmp_ps(a, b, _CMP_UNORD_Q),
                                             _mm256_cmp_ps(c, d, _CMP_UNORD_Q)));
    }
    for (; i + 8 <= n; i += 8) {
        __m256 a = _mm256_loadu_ps(x + i);
        m0 = _mm256_max_ps(m0, a);
        bad = _mm256_or_ps(bad, _mm256_cmp_ps(a, a, _CMP_UNORD_Q));
    }
    if (i < n) {
        __m256i msk = tail_mask32_(n - i);
        __m256 a = _mm256_blendv_ps(ninf, _mm256_maskload_ps(x + i, msk),
                                    _mm256_castsi256_ps(msk));
        m1 = _mm256_max_ps(m1, a);
        bad = _mm256_or_ps(bad, _mm256_cmp_ps(a, a, _CMP_UNORD_Q));
    }
    if (_mm256_movemask_ps(bad)) return NAN;
    __m256 m = _mm256_max_ps(_mm256_max_ps(m0, m1), _mm256_max_ps(m2, m3));
    __m128 h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    h = _mm_max_ps(h, _mm_movehl_ps(h, h));
    h = _mm_max_ss(h, _mm_shuffle_ps(h, h, 1));
    return (double)_mm_cvtss_f32(h);
}

static CSM_MAYBE_UNUSED double row_max_f64_(const double *x, ptrdiff_t n)
{
    const __m256d ninf = _mm256_set1_pd(-INFINITY);
    __m256d m0 = ninf, m1 = ninf, m2 = ninf, m3 = ninf, bad = _mm256_setzero_pd();
    ptrdiff_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256d a = _mm256_loadu_pd(x + i), b = _mm256_loadu_pd(x + i + 4);
        __m256d c = _mm256_loadu_pd(x + i + 8), d = _mm256_loadu_pd(x + i + 12);
        m0 = _mm256_max_pd(m0, a); m1 = _mm256_max_pd(m1, b);
        m2 = _mm256_max_pd(m2, c); m3 = _mm256_max_pd(m3, d);
        bad = _mm256_or_pd(bad, _mm256_or_pd(_mm256_cmp_pd(a, b, _CMP_UNORD_Q),
                                             _mm256_cmp_pd(c, d, _CMP_UNORD_Q)));
    }
    for (; i + 4 <= n; i += 4) {
        __m256d a = _mm256_loadu_pd(x + i);
        m0 = _mm256_max_pd(m0, a);
        bad = _mm256_or_pd(bad, _mm256_cmp_pd(a, a, _CMP_UNORD_Q));
    }
    if (i < n) {
        __m256i msk = tail_mask64_(n - i);
        __m256d a = _mm256_blendv_pd(ninf, _mm256_maskload_pd(x + i, msk),
                                     _mm256_castsi256_pd(msk));
        m1 = _mm256_max_pd(m1, a);
        bad = _mm256_or_pd(bad, _mm256_cmp_pd(a, a, _CMP_UNORD_Q));
    }
    if (_mm256_movemask_pd(bad)) return NAN;
    return hmax_pd_(_mm256_max_pd(_mm256_max_pd(m0, m1), _mm256_max_pd(m2, m3)));
}

#endif /* CSM_AVX2_EXP_H */
