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

/* ---- exp(y) s to 2^-42 in float32 lanes --------------------------------
 * For the log_softmax backward's dy - exp(y) s, whose two terms may cancel
 * (the float64-lane exp_mid_ costs two widenings, two narrowings and two
 * float64 polynomials a vector).  The AVX-512 form (avx512/exp.h) with a
 * 16-entry table, AVX2 having one-register permutes of 8 entries only:
 *   exp(y) s = 2^k T_j (1 + v_hi + v_lo),   T_j = 2^(j/16) s,  y in [-87, 0]
 * - n = round(16 y / ln2) / 16 by a magic bias M = 1.5 2^19 + 127: z's
 *   integer bits are 0x400000 + 16 (127 + k) + j, so j is their low 4 bits
 *   and (z >> 4) << 23 the float32 2^k (k >= -126: y >= -87);
 * - r1 = y - n C1 exactly (C1 = ln2 rounded to float32: n C1 and y are
 *   multiples of 2^-29 where n != 0, and |r1| <= ln2/32 < 2^-5, so r1 fits
 *   24 bits), rl = -n C2 (C2 = ln2 - C1, |rl| <= 2^-22);
 * - e^(r1 + rl) = 1 + v_hi + v_lo: v_hi + e = r1 + r1^2/2 exactly, v_lo =
 *   e + r1^3 (1/6 + r1/24 + r1^2/120 + r1^3/720) + rl (1 + v_hi)
 *   (truncation r^7/5040 < 2^-50; the roundings of the r1^3 term, 8x
 *   AVX-512's, dominate: exp(y) s to 2^-40.4, measured over every float32
 *   y in [-87, 0]);
 * - T_j as float32 pairs hi + lo, a 16-entry table per row (s is the
 *   row's), two registers a part: two permutes and a blend on j's bit 3. */
#define CSM_EXP_PAIR_F32 1
static const double csm_exp2_16_[16] __attribute__((aligned(32))) = {
    0x1.0000000000000p+0, 0x1.0b5586cf9890fp+0, 0x1.172b83c7d517bp+0, 0x1.2387a6e756238p+0,
    0x1.306fe0a31b715p+0, 0x1.3dea64c123422p+0, 0x1.4bfdad5362a27p+0, 0x1.5ab07dd485429p+0,
    0x1.6a09e667f3bcdp+0, 0x1.7a11473eb0187p+0, 0x1.8ace5422aa0dbp+0, 0x1.9c49182a3f090p+0,
    0x1.ae89f995ad3adp+0, 0x1.c199bdd85529cp+0, 0x1.d5818dcfba487p+0, 0x1.ea4afa2a490dap+0,
};
typedef struct { __m256 h0, h1, l0, l1; } csm_exp2_tab;
/* 2^(j/16) s, j = 0..15, as float32 pairs (s finite, |s| <= 2^100; a lo
 * part below the normal range keeps 2^-149 absolute) */
static inline csm_exp2_tab exp2_tab_scaled_(double s)
{
    const __m256d sv = _mm256_set1_pd(s);
    __m128 h[4], l[4];
    for (int q = 0; q < 4; ++q) {
        const __m256d t = _mm256_mul_pd(_mm256_load_pd(csm_exp2_16_ + 4 * q), sv);
        h[q] = _mm256_cvtpd_ps(t);
        l[q] = _mm256_cvtpd_ps(_mm256_sub_pd(t, _mm256_cvtps_pd(h[q])));
    }
    csm_exp2_tab r = {_mm256_set_m128(h[1], h[0]), _mm256_set_m128(h[3], h[2]),
                      _mm256_set_m128(l[1], l[0]), _mm256_set_m128(l[3], l[2])};
    return r;
}
/* the scale of exp_s_parts_f32_ applied: x 2^k (k2 is the float32 2^k) */
#define v_scale2k(x, k2) _mm256_mul_ps(x, k2)
/* k2 = 2^k, T_hi, T_lo, v_hi, v_lo of exp(y) s = 2^k (T_hi + T_lo)
 * (1 + v_hi + v_lo), y in [-87, 0], t = exp2_tab_scaled_(s) */
static inline __attribute__((always_inline)) void
exp_s_parts_f32_(__m256 y, const csm_exp2_tab *t, __m256 *k2, __m256 *th,
                 __m256 *tl, __m256 *vh, __m256 *vl)
{
    const __m256 magic = _mm256_set1_ps(0x1.8p19f + 127.0f),
                 half = _mm256_set1_ps(0.5f);
    const __m256 z = _mm256_fmadd_ps(y, _mm256_set1_ps(0x1.715476p+0f), magic);
    const __m256 n = _mm256_sub_ps(z, magic);
    const __m256 r1 = _mm256_fnmadd_ps(n, _mm256_set1_ps(0x1.62e43p-1f), y);
    const __m256 rl = _mm256_mul_ps(n, _mm256_set1_ps(0x1.05c61p-29f));
    const __m256i j = _mm256_castps_si256(z);
    const __m256 w = _mm256_mul_ps(r1, r1), we = _mm256_fmsub_ps(r1, r1, w);
    const __m256 h = _mm256_mul_ps(w, half);
    const __m256 v = _mm256_add_ps(r1, h);
    const __m256 e = _mm256_sub_ps(h, _mm256_sub_ps(v, r1));
    const __m256 p = _mm256_fmadd_ps(_mm256_fmadd_ps(_mm256_fmadd_ps(r1,
        _mm256_set1_ps(1.0f / 720), _mm256_set1_ps(1.0f / 120)), r1,
        _mm256_set1_ps(1.0f / 24)), r1, _mm256_set1_ps(1.0f / 6));
    *vl = _mm256_fmadd_ps(_mm256_mul_ps(w, r1), p,
        _mm256_add_ps(_mm256_fmadd_ps(we, half, e), _mm256_fmadd_ps(rl, v, rl)));
    *vh = v;
    *k2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_srli_epi32(j, 4), 23));
    const __m256 hi8 = _mm256_castsi256_ps(_mm256_slli_epi32(j, 28));
    *th = _mm256_blendv_ps(_mm256_permutevar8x32_ps(t->h0, j),
                           _mm256_permutevar8x32_ps(t->h1, j), hi8);
    *tl = _mm256_blendv_ps(_mm256_permutevar8x32_ps(t->l0, j),
                           _mm256_permutevar8x32_ps(t->l1, j), hi8);
}

#endif /* CSM_AVX2_EXP_H */
