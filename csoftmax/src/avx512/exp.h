/*
 * avx512/exp.h -- exp in 8 float64 lanes, tail masks, row maximum
 * (internal; included by the kernel files of this folder after common.h)
 */
#ifndef CSM_AVX512_EXP_H
#define CSM_AVX512_EXP_H

/* first r lanes (0 <= r <= 16 / 8) */
static inline __mmask16 kmask16_(ptrdiff_t r)
{
    return (__mmask16)(r >= 16 ? 0xFFFFu : ((1u << r) - 1u));
}
static inline __mmask8 kmask8_(ptrdiff_t r)
{
    return (__mmask8)(r >= 8 ? 0xFFu : ((1u << r) - 1u));
}

/* ---- exp (float64), src/avx2/exp.h's polynomials on 8 lanes ------------ */

static inline __m512d exp_scale_512_(__m512d p, __m512d t)
{
    __m512i e = _mm512_slli_epi64(_mm512_castpd_si512(t), 52);
    return _mm512_castsi512_pd(_mm512_add_epi64(_mm512_castpd_si512(p), e));
}

static inline __m512d exp_f64acc_512_(__m512d d)
{
    const __m512d magic = _mm512_set1_pd(0x1.8p52);
    __m512d t = _mm512_fmadd_pd(d, _mm512_set1_pd(1.4426950408889634), magic);
    __m512d n = _mm512_sub_pd(t, magic);
    __m512d r = _mm512_fnmadd_pd(n, _mm512_set1_pd(6.93147180369123816490e-01), d);
    r = _mm512_fnmadd_pd(n, _mm512_set1_pd(1.90821492927058770002e-10), r);
    __m512d p = _mm512_set1_pd(0x1.af39d92ab3282p-26);
    p = _mm512_fmadd_pd(p, r, _mm512_set1_pd(0x1.28927c0646723p-22));
    p = _mm512_fmadd_pd(p, r, _mm512_set1_pd(0x1.71de0d2e6e42bp-19));
    p = _mm512_fmadd_pd(p, r, _mm512_set1_pd(0x1.a019b83d2cea4p-16));
    p = _mm512_fmadd_pd(p, r, _mm512_set1_pd(0x1.a01a01a7e5259p-13));
    p = _mm512_fmadd_pd(p, r, _mm512_set1_pd(0x1.6c16c178c18a5p-10));
    p = _mm512_fmadd_pd(p, r, _mm512_set1_pd(0x1.1111111110989p-7));
    p = _mm512_fmadd_pd(p, r, _mm512_set1_pd(0x1.5555555553cd9p-5));
    p = _mm512_fmadd_pd(p, r, _mm512_set1_pd(0x1.5555555555556p-3));
    p = _mm512_fmadd_pd(p, r, _mm512_set1_pd(0x1.0000000000001p-1));
    p = _mm512_mul_pd(p, _mm512_mul_pd(r, r));
    p = _mm512_add_pd(_mm512_add_pd(p, r), _mm512_set1_pd(1.0)); /* 1 + r + r^2 q */
    return exp_scale_512_(p, t);
}

/* exp(d) for d <= 0 (or -inf); lanes in [-746, -708) go through libm
 * (denormal results), lanes below that are exact zeros. */
static inline __m512d exp_f64_512_(__m512d d)
{
    const __m512d lo = _mm512_set1_pd(EXP_LOW);
    __mmask8 tiny = _mm512_cmp_pd_mask(d, lo, _CMP_LT_OQ);
    __m512d e = _mm512_maskz_mov_pd((__mmask8)~tiny, exp_f64acc_512_(_mm512_max_pd(d, lo)));
    __mmask8 mask = _mm512_mask_cmp_pd_mask(tiny, d, _mm512_set1_pd(-746.0), _CMP_GE_OQ);
    if (mask) {
        /* lane by lane through the vector extension, not a local array:
         * with ASan's detect_stack_use_after_return a local lives on a
         * fake stack that is not 64-byte aligned, and gcc stores a
         * double[8] it aligned itself with vmovapd (SIGSEGV) */
        for (int k = 0; k < 8; ++k)
            if (mask & (1 << k)) e[k] = exp(d[k]);
    }
    return e;
}

/* ---- row maximum (with NaN detection): returns NaN if any NaN ----------- */

static CSM_MAYBE_UNUSED double row_max_f32_512_(const float *x, ptrdiff_t n)
{
    const __m512 ninf = _mm512_set1_ps(-INFINITY);
    __m512 m0 = ninf, m1 = ninf, m2 = ninf, m3 = ninf;
    __mmask16 bad = 0;
    ptrdiff_t i = 0;
    for (; i + 64 <= n; i += 64) {
        __m512 a = _mm512_loadu_ps(x + i), b = _mm512_loadu_ps(x + i + 16);
        __m512 c = _mm512_loadu_ps(x + i + 32), d = _mm512_loadu_ps(x + i + 48);
        m0 = _mm512_max_ps(m0, a); m1 = _mm512_max_ps(m1, b);
        m2 = _mm512_max_ps(m2, c); m3 = _mm512_max_ps(m3, d);
        bad |= _mm512_cmp_ps_mask(a, b, _CMP_UNORD_Q) | _mm512_cmp_ps_mask(c, d, _CMP_UNORD_Q);
    }
    for (; i + 16 <= n; i += 16) {
        __m512 a = _mm512_loadu_ps(x + i);
        m0 = _mm512_max_ps(m0, a);
        bad |= _mm512_cmp_ps_mask(a, a, _CMP_UNORD_Q);
    }
    if (i < n) {
        __m512 a = _mm512_mask_loadu_ps(ninf, kmask16_(n - i), x + i);
        m1 = _mm512_max_ps(m1, a);
        bad |= _mm512_cmp_ps_mask(a, a, _CMP_UNORD_Q);
    }
    if (bad) return NAN;
    return (double)_mm512_reduce_max_ps(_mm512_max_ps(_mm512_max_ps(m0, m1),
                                                      _mm512_max_ps(m2, m3)));
}

static CSM_MAYBE_UNUSED double row_max_f64_512_(const double *x, ptrdiff_t n)
{
    const __m512d ninf = _mm512_set1_pd(-INFINITY);
    __m512d m0 = ninf, m1 = ninf, m2 = ninf, m3 = ninf;
    __mmask8 bad = 0;
    ptrdiff_t i = 0;
    for (; i + 32 <= n; i += 32) {
        __m512d a = _mm512_loadu_pd(x + i), b = _mm512_loadu_pd(x + i + 8);
        __m512d c = _mm512_loadu_pd(x + i + 16), d = _mm512_loadu_pd(x + i + 24);
        m0 = _mm512_max_pd(m0, a); m1 = _mm512_max_pd(m1, b);
        m2 = _mm512_max_pd(m2, c); m3 = _mm512_max_pd(m3, d);
        bad |= _mm512_cmp_pd_mask(a, b, _CMP_UNORD_Q) | _mm512_cmp_pd_mask(c, d, _CMP_UNORD_Q);
    }
    for (; i + 8 <= n; i += 8) {
        __m512d a = _mm512_loadu_pd(x + i);
        m0 = _mm512_max_pd(m0, a);
        bad |= _mm512_cmp_pd_mask(a, a, _CMP_UNORD_Q);
    }
    if (i < n) {
        __m512d a = _mm512_mask_loadu_pd(ninf, kmask8_(n - i), x + i);
        m1 = _mm512_max_pd(m1, a);
        bad |= _mm512_cmp_pd_mask(a, a, _CMP_UNORD_Q);
    }
    if (bad) return NAN;
    return _mm512_reduce_max_pd(_mm512_max_pd(_mm512_max_pd(m0, m1), _mm512_max_pd(m2, m3)));
}

/* 16 floats <-> two 8-lane float64 vectors */
static inline void widen16_(__m512 v, __m512d *lo, __m512d *hi)
{
    *lo = _mm512_cvtps_pd(_mm512_castps512_ps256(v));
    *hi = _mm512_cvtps_pd(_mm512_extractf32x8_ps(v, 1));
}
static inline __m512 narrow16_(__m512d lo, __m512d hi)
{
    return _mm512_insertf32x8(_mm512_castps256_ps512(_mm512_cvtpd_ps(lo)),
                              _mm512_cvtpd_ps(hi), 1);
}

/* exp(d), d <= 0, relative error < 2^-43: src/avx2/exp.h's exp_mid_ (the
 * float32 log_softmax backward) on 8 lanes; d < -708 gives 0 */
static inline __m512d exp_mid_512_(__m512d d)
{
    const __m512d lo = _mm512_set1_pd(EXP_LOW);
    const __m512d magic = _mm512_set1_pd(0x1.8p52);
    __mmask8 tiny = _mm512_cmp_pd_mask(d, lo, _CMP_LT_OQ);
    d = _mm512_max_pd(d, lo);
    __m512d t = _mm512_fmadd_pd(d, _mm512_set1_pd(1.4426950408889634), magic);
    __m512d n = _mm512_sub_pd(t, magic);
    __m512d r = _mm512_fnmadd_pd(n, _mm512_set1_pd(0x1.62e42fefa39efp-1), d);
    __m512d p = _mm512_set1_pd(0x1.72ae6d7753994p-19);
    p = _mm512_fmadd_pd(p, r, _mm512_set1_pd(0x1.a13856200182dp-16));
    p = _mm512_fmadd_pd(p, r, _mm512_set1_pd(0x1.a019c2b97ad8fp-13));
    p = _mm512_fmadd_pd(p, r, _mm512_set1_pd(0x1.6c166ae95f35dp-10));
    p = _mm512_fmadd_pd(p, r, _mm512_set1_pd(0x1.111111172585dp-7));
    p = _mm512_fmadd_pd(p, r, _mm512_set1_pd(0x1.555555660ec62p-5));
    p = _mm512_fmadd_pd(p, r, _mm512_set1_pd(0x1.5555555554f75p-3));
    p = _mm512_fmadd_pd(p, r, _mm512_set1_pd(0x1.fffffffffdfacp-2));
    p = _mm512_fmadd_pd(p, _mm512_mul_pd(r, r), r);
    p = _mm512_add_pd(p, _mm512_set1_pd(1.0));
    return _mm512_maskz_mov_pd((__mmask8)~tiny, exp_scale_512_(p, t));
}

/* dy - exp(y) * s (log_softmax backward), one rounding */
static inline __m512d lsb_f32_512_(__m512d y, __m512d s, __m512d dy)
{
    return _mm512_fnmadd_pd(exp_mid_512_(y), s, dy);
}
static inline __m512d lsb_f64_512_(__m512d y, __m512d s, __m512d dy)
{
    return _mm512_fnmadd_pd(exp_f64_512_(y), s, dy);
}

/* ---- 16 elements as two 8-lane float64 vectors (r: valid elements of a
 * tail, the others read as fill / not stored) ----------------------------- */

static inline __mmask8 kmask8c_(ptrdiff_t r)   /* r may be <= 0 */
{
    return r <= 0 ? (__mmask8)0 : kmask8_(r);
}
static inline void load16_f32_(const float *p, __m512d *lo, __m512d *hi)
{
    widen16_(_mm512_loadu_ps(p), lo, hi);
}
static inline void load16m_f32_(const float *p, ptrdiff_t r, float fill,
                                __m512d *lo, __m512d *hi)
{
    widen16_(_mm512_mask_loadu_ps(_mm512_set1_ps(fill), kmask16_(r), p), lo, hi);
}
static inline void store16_f32_(float *p, __m512d lo, __m512d hi)
{
    _mm512_storeu_ps(p, narrow16_(lo, hi));
}
static inline void store16m_f32_(float *p, ptrdiff_t r, __m512d lo, __m512d hi)
{
    _mm512_mask_storeu_ps(p, kmask16_(r), narrow16_(lo, hi));
}
static inline void load16_f64_(const double *p, __m512d *lo, __m512d *hi)
{
    *lo = _mm512_loadu_pd(p);
    *hi = _mm512_loadu_pd(p + 8);
}
static inline void load16m_f64_(const double *p, ptrdiff_t r, double fill,
                                __m512d *lo, __m512d *hi)
{
    const __m512d f = _mm512_set1_pd(fill);
    *lo = _mm512_mask_loadu_pd(f, kmask8c_(r), p);
    *hi = _mm512_mask_loadu_pd(f, kmask8c_(r - 8), p + 8);
}
static inline void store16_f64_(double *p, __m512d lo, __m512d hi)
{
    _mm512_storeu_pd(p, lo);
    _mm512_storeu_pd(p + 8, hi);
}
static inline void store16m_f64_(double *p, ptrdiff_t r, __m512d lo, __m512d hi)
{
    _mm512_mask_storeu_pd(p, kmask8c_(r), lo);
    _mm512_mask_storeu_pd(p + 8, kmask8c_(r - 8), hi);
}


#endif /* CSM_AVX512_EXP_H */
