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


/* ---- exp(y) s to 2^-42 in float32 lanes --------------------------------
 * For the log_softmax backward's dy - exp(y) s, whose two terms may cancel
 * (the float64-lane exp_mid_ costs two widenings, two narrowings and two
 * float64 polynomials a vector).  For y in [-87, 0]:
 *   exp(y) s = 2^k T_j (1 + v_hi + v_lo),   T_j = 2^(j/32) s,
 * - n = round(32 y / ln2) by a magic bias: z's low 5 bits are j = n mod 32,
 *   nf = n / 32 and scalef's floor(nf) is k;
 * - r1 = y - nf C1 exactly (C1 = ln2 rounded to float32: nf C1 and y are
 *   multiples of 2^-30 and |r1| < 2^-6, so r1 fits 24 bits), rl = -nf C2
 *   (C2 = ln2 - C1, |rl| <= 2^-22);
 * - e^(r1 + rl) = 1 + v_hi + v_lo: v_hi + e = r1 + r1^2/2 exactly (r1^2 as
 *   an exact product pair, then Fast2Sum), v_lo = e + r1^3 (1/6 + r1/24 +
 *   r1^2/120) + rl (1 + v_hi);
 * - T_j as float32 pairs hi + lo, a 32-entry table per row (s is the
 *   row's), two registers a part: one two-source permute each.
 * Relative error of T_hi + T_lo against 2^(j/32) s: 2^-48; of 1 + v_hi +
 * v_lo against e^r: < 2^-42 (measured 2^-42.5 on 3.2e7 random y;
 * truncation r^6/720 < 2^-48, the rest roundings of terms below 2^-21). */
#define CSM_EXP_PAIR_F32 1
static const double csm_exp2_32_[32] __attribute__((aligned(64))) = {
    0x1.0000000000000p+0, 0x1.059b0d3158574p+0, 0x1.0b5586cf9890fp+0, 0x1.11301d0125b51p+0,
    0x1.172b83c7d517bp+0, 0x1.1d4873168b9aap+0, 0x1.2387a6e756238p+0, 0x1.29e9df51fdee1p+0,
    0x1.306fe0a31b715p+0, 0x1.371a7373aa9cbp+0, 0x1.3dea64c123422p+0, 0x1.44e086061892dp+0,
    0x1.4bfdad5362a27p+0, 0x1.5342b569d4f82p+0, 0x1.5ab07dd485429p+0, 0x1.6247eb03a5585p+0,
    0x1.6a09e667f3bcdp+0, 0x1.71f75e8ec5f74p+0, 0x1.7a11473eb0187p+0, 0x1.82589994cce13p+0,
    0x1.8ace5422aa0dbp+0, 0x1.93737b0cdc5e5p+0, 0x1.9c49182a3f090p+0, 0x1.a5503b23e255dp+0,
    0x1.ae89f995ad3adp+0, 0x1.b7f76f2fb5e47p+0, 0x1.c199bdd85529cp+0, 0x1.cb720dcef9069p+0,
    0x1.d5818dcfba487p+0, 0x1.dfc97337b9b5fp+0, 0x1.ea4afa2a490dap+0, 0x1.f50765b6e4540p+0,
};
typedef struct { __m512 h0, h1, l0, l1; } csm_exp2_tab;
/* 2^(j/32) s, j = 0..31, as float32 pairs (s finite, |s| <= 2^100; a lo
 * part below the normal range keeps 2^-149 absolute) */
static inline csm_exp2_tab exp2_tab_scaled_(double s)
{
    const __m512d sv = _mm512_set1_pd(s);
    __m512d t[4];
    __m256 h[4], l[4];
    for (int q = 0; q < 4; ++q) {
        t[q] = _mm512_mul_pd(_mm512_load_pd(csm_exp2_32_ + 8 * q), sv);
        h[q] = _mm512_cvtpd_ps(t[q]);
        l[q] = _mm512_cvtpd_ps(_mm512_sub_pd(t[q], _mm512_cvtps_pd(h[q])));
    }
    csm_exp2_tab r = {
        _mm512_insertf32x8(_mm512_castps256_ps512(h[0]), h[1], 1),
        _mm512_insertf32x8(_mm512_castps256_ps512(h[2]), h[3], 1),
        _mm512_insertf32x8(_mm512_castps256_ps512(l[0]), l[1], 1),
        _mm512_insertf32x8(_mm512_castps256_ps512(l[2]), l[3], 1)};
    return r;
}
/* the scale of exp_s_parts_f32_ applied: x 2^floor(nf) */
#define v_scale2k(x, nf) _mm512_scalef_ps(x, nf)
/* nf, T_hi, T_lo, v_hi, v_lo of exp(y) s = 2^floor(nf) (T_hi + T_lo)
 * (1 + v_hi + v_lo), y in [-87, 0], t = exp2_tab_scaled_(s) */
static inline __attribute__((always_inline)) void
exp_s_parts_f32_(__m512 y, const csm_exp2_tab *t, __m512 *nf, __m512 *th,
                 __m512 *tl, __m512 *vh, __m512 *vl)
{
    const __m512 magic = _mm512_set1_ps(0x1.8p18f), half = _mm512_set1_ps(0.5f);
    const __m512 z = _mm512_fmadd_ps(y, _mm512_set1_ps(0x1.715476p+0f), magic);
    const __m512 n = _mm512_sub_ps(z, magic);
    const __m512 r1 = _mm512_fnmadd_ps(n, _mm512_set1_ps(0x1.62e43p-1f), y);
    const __m512 rl = _mm512_mul_ps(n, _mm512_set1_ps(0x1.05c61p-29f));
    const __m512i j = _mm512_castps_si512(z);
    const __m512 w = _mm512_mul_ps(r1, r1), we = _mm512_fmsub_ps(r1, r1, w);
    const __m512 h = _mm512_mul_ps(w, half);
    const __m512 v = _mm512_add_ps(r1, h);
    const __m512 e = _mm512_sub_ps(h, _mm512_sub_ps(v, r1));
    const __m512 p = _mm512_fmadd_ps(_mm512_fmadd_ps(r1,
        _mm512_set1_ps(1.0f / 120), _mm512_set1_ps(1.0f / 24)), r1,
        _mm512_set1_ps(1.0f / 6));
    *vl = _mm512_fmadd_ps(_mm512_mul_ps(w, r1), p,
        _mm512_add_ps(_mm512_fmadd_ps(we, half, e), _mm512_fmadd_ps(rl, v, rl)));
    *vh = v;
    *nf = n;
    *th = _mm512_permutex2var_ps(t->h0, j, t->h1);
    *tl = _mm512_permutex2var_ps(t->l0, j, t->l1);
}

#endif /* CSM_AVX512_EXP_H */
