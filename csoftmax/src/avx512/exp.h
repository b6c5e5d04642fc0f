/*
 * avx512/exp.h -- tail masks (opmasks), 16 floats as two 8-lane float64
 * vectors and their loads / stores (the exp functions and the row maximum
 * are shared with AVX2: simd/exp_f64.h)
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
