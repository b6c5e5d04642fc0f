/*
 * avx2/exp.h -- tail masks, loads/stores of 8 elements as two float64
 * halves, horizontal max/sum (the exp functions and the row maximum are
 * shared with AVX-512: simd/exp_f64.h)
 * (internal; included by the kernel files of this folder after common.h)
 */
#ifndef CSM_AVX2_EXP_H
#define CSM_AVX2_EXP_H

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

#endif /* CSM_AVX2_EXP_H */
