/*
 * kernels_avx2.c -- AVX2 + FMA kernels (x86-64).
 *
 * Compiled with the baseline flags of the extension: every function in this
 * file is switched to AVX2+FMA by the target pragma below, and dispatch.c
 * calls them only after CPUID said the CPU (and OS) support them.
 *
 * Numerics (see csoftmax.h): the generic kernels widen float32 data to
 * float64 lanes, so x - max is exact and the exp argument carries no float32
 * rounding error; exp is evaluated in float64 (magic-bias rounding,
 * Cody-Waite reduction, polynomial), sums accumulate in float64.  The float32
 * row fast paths (below) stay in float32 lanes with an exact reduction of
 * scale * x itself (see "all-float32 reduction").
 *   exp_f32acc_: degree-6 polynomial, max rel. error 2.6e-9 (target: f32)
 *   exp_f64acc_: degree-11 polynomial (fitted), two-constant reduction,
 *                max rel. error of the polynomial 1.8e-17 (target: f64)
 * Both are valid on d in [-708, 0]; lanes below -708 are zeroed by the
 * callers (float32: e^-708 underflows anyway) or recomputed with libm
 * (float64, where the result may be a denormal).
 */
#include "csoftmax.h"
#include "kernels.h"

#ifdef CSM_BUILD_AVX2

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma"))), apply_to = function)
#elif defined(__GNUC__)
#pragma GCC target("avx2,fma")
#endif

#include <immintrin.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define CHUNK 2048 /* elements per max+sum block of a long row (fits L1) */
#define EXP_LOW (-708.0)

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

static double row_max_f32_(const float *x, ptrdiff_t n)
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

static double row_max_f64_(const double *x, ptrdiff_t n)
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

/* ---- shared per-dtype bodies, stamped out for float and double ----------- */

/* One exp-sum step on 8 elements: equal-to-max lanes are counted apart. */
#define SUM_STEP(EXP, lo, hi)                                                  \
    do {                                                                       \
        __m256d e0 = _mm256_cmp_pd(lo, mv, _CMP_EQ_OQ);                        \
        __m256d e1 = _mm256_cmp_pd(hi, mv, _CMP_EQ_OQ);                        \
        __m256d t0 = EXP(_mm256_mul_pd(_mm256_sub_pd(lo, mv), sv));            \
        __m256d t1 = EXP(_mm256_mul_pd(_mm256_sub_pd(hi, mv), sv));            \
        r0 = _mm256_add_pd(r0, _mm256_andnot_pd(e0, t0));                      \
        r1 = _mm256_add_pd(r1, _mm256_andnot_pd(e1, t1));                      \
        c0 = _mm256_add_pd(c0, _mm256_and_pd(e0, one));                        \
        c1 = _mm256_add_pd(c1, _mm256_and_pd(e1, one));                        \
    } while (0)

/* Prefetch hints of the reduction passes, per 8 elements: pf = the same
 * offset of the next chunk or row of the input (the exp pass runs from L1
 * and would leave the memory idle), pw (if not NULL) = the destination the
 * write pass will store to, fetched for writing so that its
 * read-for-ownership overlaps the exp pass instead of stalling the write
 * pass.  Hints only: they cannot fault, past the end of an array either. */
#define PF_STEP(T, pf, pw, i)                                                  \
    do {                                                                       \
        if ((i) % (64 / sizeof(T)) == 0) {                                     \
            _mm_prefetch((const char *)((pf) + (i)), _MM_HINT_T0);             \
            if (pw) __builtin_prefetch((pw) + (i), 1, 3);                      \
        }                                                                      \
    } while (0)

#define DEFINE_AVX2_KERNELS(T, SUF, EXP, G, ST)                                    \
static void lse_chunk_##SUF##G##_(const T *x, ptrdiff_t n, double scale,          \
                               csm_lse_state *st, const T *pf, const T *pw)    \
{                                                                              \
    double m = row_max_##SUF##_(x, n);                                         \
    if (!(m > -INFINITY && m < INFINITY)) { /* NaN, +-inf, empty: rare */      \
        csm_lse_rows_##SUF##_scalar(x, 1, n, n, scale, st);                    \
        return;                                                                \
    }                                                                          \
    const __m256d mv = _mm256_set1_pd(m), sv = _mm256_set1_pd(scale);         \
    const __m256d one = _mm256_set1_pd(1.0);                                   \
    __m256d r0 = _mm256_setzero_pd(), r1 = r0, c0 = r0, c1 = r0;               \
    __m256d lo, hi;                                                            \
    ptrdiff_t i = 0;                                                           \
    for (; i + 8 <= n; i += 8) {                                               \
        PF_STEP(T, pf, pw, i);                                                 \
        load8_##SUF##_(x + i, &lo, &hi);                                       \
        SUM_STEP(EXP, lo, hi);                                                 \
    }                                                                          \
    if (i < n) {                                                               \
        load8m_##SUF##_(x + i, n - i, -INFINITY, &lo, &hi);                    \
        SUM_STEP(EXP, lo, hi);                                                 \
    }                                                                          \
    st->max = m;                                                               \
    st->count = hsum_pd_(_mm256_add_pd(c0, c1));                               \
    st->rest = hsum_pd_(_mm256_add_pd(r0, r1));                                \
}                                                                              \
static void lse_rows_##SUF##G##_(const T *x, ptrdiff_t n_rows, ptrdiff_t n,        \
                               ptrdiff_t row_stride, double scale,             \
                               csm_lse_state *states, const T *w,              \
                               ptrdiff_t w_row_stride)                         \
{                                                                              \
    for (ptrdiff_t r = 0; r < n_rows; ++r) {                                   \
        const T *xr = x + r * row_stride;                                      \
        const T *wr = w ? w + r * w_row_stride : NULL;                         \
        csm_lse_state acc = { -INFINITY, 0.0, 0.0 }, part;                     \
        if (n <= CHUNK) {                                                      \
            lse_chunk_##SUF##G##_(xr, n, scale, &acc, xr + row_stride, wr);    \
        } else for (ptrdiff_t c = 0; c < n; c += CHUNK) {                      \
            lse_chunk_##SUF##G##_(xr + c, n - c < CHUNK ? n - c : CHUNK, scale,   \
                               &part,                                          \
                               n - c > CHUNK ? xr + c + CHUNK : xr + row_stride, \
                               wr ? wr + c : NULL);                            \
            csm_lse_merge(&acc, &part, scale);                                 \
        }                                                                      \
        states[r] = acc;                                                       \
    }                                                                          \
}                                                                              \
ST void csm_lse_rows_##SUF##G##_avx2(const T *x, ptrdiff_t n_rows, ptrdiff_t n,      \
                               ptrdiff_t row_stride, double scale,             \
                               csm_lse_state *states)                          \
{                                                                              \
    lse_rows_##SUF##G##_(x, n_rows, n, row_stride, scale, states, NULL, 0);    \
}                                                                              \
ST void csm_softmax_rows_##SUF##G##_avx2(const T *x, ptrdiff_t n_rows, ptrdiff_t n,  \
        ptrdiff_t x_row_stride, double scale, const double *max,               \
        const double *log_sum, double alpha, T *y, ptrdiff_t y_row_stride)     \
{                                                                              \
    const __m256d sv = _mm256_set1_pd(scale), av = _mm256_set1_pd(alpha);      \
    for (ptrdiff_t r = 0; r < n_rows; ++r) {                                   \
        const T *xr = x + r * x_row_stride; T *yr = y + r * y_row_stride;      \
        if (!(max[r] > -INFINITY && max[r] < INFINITY)) {                      \
            csm_softmax_rows_##SUF##_scalar(xr, 1, n, 0, scale, max + r,       \
                                            log_sum + r, alpha, yr, 0);        \
            continue;                                                          \
        }                                                                      \
        const __m256d mv = _mm256_set1_pd(max[r]);                             \
        const __m256d lv = _mm256_set1_pd(log_sum[r]);                         \
        __m256d lo, hi;                                                        \
        ptrdiff_t i = 0;                                                       \
        for (; i + 8 <= n; i += 8) {                                           \
            load8_##SUF##_(xr + i, &lo, &hi);                                  \
            lo = EXP(_mm256_fmsub_pd(_mm256_sub_pd(lo, mv), sv, lv));          \
            hi = EXP(_mm256_fmsub_pd(_mm256_sub_pd(hi, mv), sv, lv));          \
            store8_##SUF##_(yr + i, _mm256_mul_pd(lo, av), _mm256_mul_pd(hi, av)); \
        }                                                                      \
        if (i < n) {                                                           \
            load8m_##SUF##_(xr + i, n - i, -INFINITY, &lo, &hi);               \
            lo = EXP(_mm256_fmsub_pd(_mm256_sub_pd(lo, mv), sv, lv));          \
            hi = EXP(_mm256_fmsub_pd(_mm256_sub_pd(hi, mv), sv, lv));          \
            store8m_##SUF##_(yr + i, n - i, _mm256_mul_pd(lo, av),             \
                             _mm256_mul_pd(hi, av));                           \
        }                                                                      \
    }                                                                          \
}                                                                              \
ST void csm_log_softmax_rows_##SUF##G##_avx2(const T *x, ptrdiff_t n_rows,           \
        ptrdiff_t n, ptrdiff_t x_row_stride, double scale, const double *max,  \
        const double *log_sum, double alpha, T *y, ptrdiff_t y_row_stride)     \
{                                                                              \
    const __m256d sv = _mm256_set1_pd(scale);                                  \
    for (ptrdiff_t r = 0; r < n_rows; ++r) {                                   \
        const T *xr = x + r * x_row_stride; T *yr = y + r * y_row_stride;      \
        if (!(max[r] > -INFINITY && max[r] < INFINITY)) {                      \
            csm_log_softmax_rows_##SUF##_scalar(xr, 1, n, 0, scale, max + r,   \
                                                log_sum + r, alpha, yr, 0);    \
            continue;                                                          \
        }                                                                      \
        const __m256d mv = _mm256_set1_pd(max[r]);                             \
        const __m256d lv = _mm256_set1_pd(log_sum[r]);                         \
        __m256d lo, hi;                                                        \
        ptrdiff_t i = 0;                                                       \
        for (; i + 8 <= n; i += 8) {                                           \
            load8_##SUF##_(xr + i, &lo, &hi);                                  \
            store8_##SUF##_(yr + i,                                            \
                            _mm256_fmsub_pd(_mm256_sub_pd(lo, mv), sv, lv),    \
                            _mm256_fmsub_pd(_mm256_sub_pd(hi, mv), sv, lv));   \
        }                                                                      \
        if (i < n) {                                                           \
            load8m_##SUF##_(xr + i, n - i, 0, &lo, &hi);                       \
            store8m_##SUF##_(yr + i, n - i,                                    \
                             _mm256_fmsub_pd(_mm256_sub_pd(lo, mv), sv, lv),   \
                             _mm256_fmsub_pd(_mm256_sub_pd(hi, mv), sv, lv));  \
        }                                                                      \
    }                                                                          \
}                                                                              \
/* Columns: 8 columns per block, lanes = columns; the last block is masked. */ \
ST void csm_lse_cols_##SUF##G##_avx2(const T *x, ptrdiff_t n_cols, ptrdiff_t n,      \
                               ptrdiff_t row_stride, double scale,             \
                               csm_lse_state *states)                          \
{                                                                              \
    const __m256d sv = _mm256_set1_pd(scale), one = _mm256_set1_pd(1.0);       \
    const __m256d ninf = _mm256_set1_pd(-INFINITY);                            \
    for (ptrdiff_t j = 0; j < n_cols; j += 8) {                                \
        ptrdiff_t w = n_cols - j < 8 ? n_cols - j : 8;                         \
        __m256d m0 = ninf, m1 = ninf, bad = _mm256_setzero_pd(), lo, hi;       \
        for (ptrdiff_t i = 0; i < n; ++i) {                                    \
            if (w == 8) load8_##SUF##_(x + i * row_stride + j, &lo, &hi);      \
            else load8m_##SUF##_(x + i * row_stride + j, w, 0, &lo, &hi);      \
            m0 = _mm256_max_pd(m0, lo); m1 = _mm256_max_pd(m1, hi);            \
            bad = _mm256_or_pd(bad, _mm256_cmp_pd(lo, hi, _CMP_UNORD_Q));     \
        }                                                                      \
        double mx[8];                                                          \
        _mm256_storeu_pd(mx, m0); _mm256_storeu_pd(mx + 4, m1);                \
        int finite = !_mm256_movemask_pd(bad);                                 \
        for (ptrdiff_t k = 0; k < w; ++k)                                      \
            finite &= (mx[k] > -INFINITY && mx[k] < INFINITY);                 \
        if (!finite) { /* NaN or inf somewhere in the block: rare */           \
            csm_lse_cols_##SUF##_scalar(x + j, w, n, row_stride, scale,        \
                                        states + j);                           \
            continue;                                                          \
        }                                                                      \
        __m256d r0 = _mm256_setzero_pd(), r1 = r0, c0 = r0, c1 = r0;           \
        for (ptrdiff_t i = 0; i < n; ++i) {                                    \
            if (w == 8) load8_##SUF##_(x + i * row_stride + j, &lo, &hi);      \
            else load8m_##SUF##_(x + i * row_stride + j, w, 0, &lo, &hi);      \
            __m256d e0 = _mm256_cmp_pd(lo, m0, _CMP_EQ_OQ);                    \
            __m256d e1 = _mm256_cmp_pd(hi, m1, _CMP_EQ_OQ);                    \
            __m256d t0 = EXP(_mm256_mul_pd(_mm256_sub_pd(lo, m0), sv));        \
            __m256d t1 = EXP(_mm256_mul_pd(_mm256_sub_pd(hi, m1), sv));        \
            r0 = _mm256_add_pd(r0, _mm256_andnot_pd(e0, t0));                  \
            r1 = _mm256_add_pd(r1, _mm256_andnot_pd(e1, t1));                  \
            c0 = _mm256_add_pd(c0, _mm256_and_pd(e0, one));                    \
            c1 = _mm256_add_pd(c1, _mm256_and_pd(e1, one));                    \
        }                                                                      \
        double cn[8], rs[8];                                                   \
        _mm256_storeu_pd(cn, c0); _mm256_storeu_pd(cn + 4, c1);                \
        _mm256_storeu_pd(rs, r0); _mm256_storeu_pd(rs + 4, r1);                \
        for (ptrdiff_t k = 0; k < w; ++k) {                                    \
            states[j + k].max = mx[k];                                         \
            states[j + k].count = cn[k];                                       \
            states[j + k].rest = rs[k];                                        \
        }                                                                      \
    }                                                                          \
}                                                                              \
ST void csm_softmax_cols_##SUF##G##_avx2(const T *x, ptrdiff_t n_cols, ptrdiff_t n,  \
        ptrdiff_t x_row_stride, double scale, const double *max,               \
        const double *log_sum, double alpha, T *y, ptrdiff_t y_row_stride)     \
{                                                                              \
    const __m256d sv = _mm256_set1_pd(scale), av = _mm256_set1_pd(alpha);      \
    for (ptrdiff_t j = 0; j < n_cols; j += 8) {                                \
        ptrdiff_t w = n_cols - j < 8 ? n_cols - j : 8;                         \
        int finite = 1;                                                        \
        for (ptrdiff_t k = 0; k < w; ++k)                                      \
            finite &= (max[j + k] > -INFINITY && max[j + k] < INFINITY);       \
        if (!finite) {                                                         \
            csm_softmax_cols_##SUF##_scalar(x + j, w, n, x_row_stride, scale,  \
                max + j, log_sum + j, alpha, y + j, y_row_stride);             \
            continue;                                                          \
        }                                                                      \
        __m256d m0, m1, l0, l1, lo, hi;                                        \
        load8m_f64_(max + j, w, 0.0, &m0, &m1);                                \
        load8m_f64_(log_sum + j, w, 0.0, &l0, &l1);                            \
        for (ptrdiff_t i = 0; i < n; ++i) {                                    \
            const T *xi = x + i * x_row_stride + j;                            \
            T *yi = y + i * y_row_stride + j;                                  \
            if (w == 8) load8_##SUF##_(xi, &lo, &hi);                          \
            else load8m_##SUF##_(xi, w, 0, &lo, &hi);                          \
            lo = _mm256_mul_pd(av, EXP(_mm256_fmsub_pd(_mm256_sub_pd(lo, m0), sv, l0))); \
            hi = _mm256_mul_pd(av, EXP(_mm256_fmsub_pd(_mm256_sub_pd(hi, m1), sv, l1))); \
            if (w == 8) store8_##SUF##_(yi, lo, hi);                           \
            else store8m_##SUF##_(yi, w, lo, hi);                              \
        }                                                                      \
    }                                                                          \
}                                                                              \
ST void csm_log_softmax_cols_##SUF##G##_avx2(const T *x, ptrdiff_t n_cols,           \
        ptrdiff_t n, ptrdiff_t x_row_stride, double scale, const double *max,  \
        const double *log_sum, double alpha, T *y, ptrdiff_t y_row_stride)     \
{                                                                              \
    const __m256d sv = _mm256_set1_pd(scale);                                  \
    for (ptrdiff_t j = 0; j < n_cols; j += 8) {                                \
        ptrdiff_t w = n_cols - j < 8 ? n_cols - j : 8;                         \
        int finite = 1;                                                        \
        for (ptrdiff_t k = 0; k < w; ++k)                                      \
            finite &= (max[j + k] > -INFINITY && max[j + k] < INFINITY);       \
        if (!finite) {                                                         \
            csm_log_softmax_cols_##SUF##_scalar(x + j, w, n, x_row_stride,     \
                scale, max + j, log_sum + j, alpha, y + j, y_row_stride);      \
            continue;                                                          \
        }                                                                      \
        __m256d m0, m1, l0, l1, lo, hi;                                        \
        load8m_f64_(max + j, w, 0.0, &m0, &m1);                                \
        load8m_f64_(log_sum + j, w, 0.0, &l0, &l1);                            \
        for (ptrdiff_t i = 0; i < n; ++i) {                                    \
            const T *xi = x + i * x_row_stride + j;                            \
            T *yi = y + i * y_row_stride + j;                                  \
            if (w == 8) load8_##SUF##_(xi, &lo, &hi);                          \
            else load8m_##SUF##_(xi, w, 0, &lo, &hi);                          \
            lo = _mm256_fmsub_pd(_mm256_sub_pd(lo, m0), sv, l0);               \
            hi = _mm256_fmsub_pd(_mm256_sub_pd(hi, m1), sv, l1);               \
            if (w == 8) store8_##SUF##_(yi, lo, hi);                           \
            else store8m_##SUF##_(yi, w, lo, hi);                              \
        }                                                                      \
    }                                                                          \
}

DEFINE_AVX2_KERNELS(float, f32, exp_f32_, _generic, static)
DEFINE_AVX2_KERNELS(double, f64, exp_f64_, , )

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

/* span_s = span / scale, computed once per call by the caller */
static inline int clamp_bound_(double m, double scale, double span,
                               double span_s, float *L)
{
    if (!(m > -INFINITY && m < INFINITY)) return 0;
    if (!(fabs(scale * m) <= 0x1p20)) return 0;
    double Ld = m - span_s;
    if (!(Ld > -3.0e38)) return 0;
    float Lf = (float)Ld;
    double dd = scale * ((double)Lf - m);
    if (!(dd >= -1.25 * span && dd <= -0.75 * span)) return 0;
    *L = Lf;
    return 1;
}

/* exp(r) for |r| <= ~0.35, float32, 8 lanes: 1 + r (1 + r q(r)), q by
 * Estrin (shorter dependency chain than Horner). */
static inline __m256 exp_poly_ps_(__m256 r)
{
    __m256 r2 = _mm256_mul_ps(r, r);
    __m256 a = _mm256_fmadd_ps(_mm256_set1_ps(0x1.55548cp-3f), r, _mm256_set1_ps(0x1.fffffcp-2f));
    __m256 b = _mm256_fmadd_ps(_mm256_set1_ps(0x1.123d4cp-7f), r, _mm256_set1_ps(0x1.555906p-5f));
    b = _mm256_fmadd_ps(_mm256_set1_ps(0x1.6a1e8cp-10f), r2, b);
    __m256 q = _mm256_fmadd_ps(b, r2, a);
    q = _mm256_fmadd_ps(q, r, _mm256_set1_ps(1.0f));
    return _mm256_fmadd_ps(q, r, _mm256_set1_ps(1.0f));
}

/* One reduction step on 8 floats `a`.  Lanes equal to the max are counted
 * (int32 lanes) and, like everything below the clamp L (-inf included),
 * replaced by L, whose term (< e^-90) is invisible even at the 3e-9
 * absolute accuracy of the float64 state.  The float64 lanes then carry no
 * compare / mask / range work: d = scale * (x - max) (x - max exact) and
 * exp_f32acc_ (float64, rel. error 2.6e-9, as documented in csoftmax.h). */
#define LSE32_STEP(a, mvl, mvh, ra, rb)                                        \
    do {                                                                       \
        __m256 eq_ = _mm256_cmp_ps(a, mf, _CMP_EQ_OQ);                         \
        cnt = _mm256_sub_epi32(cnt, _mm256_castps_si256(eq_));                 \
        __m256 c_ = _mm256_blendv_ps(_mm256_max_ps(a, Lv), Lv, eq_);           \
        __m256d lo_ = _mm256_sub_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(c_)), mvl); \
        __m256d hi_ = _mm256_sub_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(c_, 1)), mvh); \
        if (!S1) { lo_ = _mm256_mul_pd(lo_, sv); hi_ = _mm256_mul_pd(hi_, sv); } \
        ra = _mm256_add_pd(ra, exp_f32acc_(lo_));                              \
        rb = _mm256_add_pd(rb, exp_f32acc_(hi_));                              \
    } while (0)

static inline __attribute__((always_inline)) void
lse_chunk_f32_fast_(const float *x, ptrdiff_t n, double scale, double m,
                    float L, csm_lse_state *st, const int S1)
{
    const __m256 mf = _mm256_set1_ps((float)m), Lv = _mm256_set1_ps(L);
    const __m256d sv = _mm256_set1_pd(scale), mv = _mm256_set1_pd(m);
    __m256d r0 = _mm256_setzero_pd(), r1 = r0;
    __m256i cnt = _mm256_setzero_si256();
    ptrdiff_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 a = _mm256_loadu_ps(x + i);
        LSE32_STEP(a, mv, mv, r0, r1);
    }
    if (i < n) {
        __m256i msk = tail_mask32_(n - i);
        __m256 a = _mm256_blendv_ps(Lv, _mm256_maskload_ps(x + i, msk),
                                    _mm256_castsi256_ps(msk));
        LSE32_STEP(a, mv, mv, r0, r1);
    }
    __m128i c4 = _mm_add_epi32(_mm256_castsi256_si128(cnt),
                               _mm256_extracti128_si256(cnt, 1));
    c4 = _mm_add_epi32(c4, _mm_shuffle_epi32(c4, 0x4E));
    c4 = _mm_add_epi32(c4, _mm_shuffle_epi32(c4, 0xB1));
    st->max = m;
    st->count = (double)_mm_cvtsi128_si32(c4);
    st->rest = hsum_pd_(_mm256_add_pd(r0, r1));
}

/* ---- all-float32 reduction ----------------------------------------------
 *
 * exp(s (x - m)) without forming x - m: every lane reduces s*x itself,
 *     s x = n ln2 + r,   n = round(s x / ln2),  |r| <= ln2/2,
 * and the row constant s*m = n_m ln2 + r_m is reduced once in float64, so
 *     exp(s (x - m)) = 2^(n - n_m) exp(r) exp(-r_m).
 * The lanes then compute 2^(n - n_m + XR_BIAS) * p(r), p the float32
 * degree-6 polynomial of exp_poly_ps_ (rel. error 3e-9), and the row
 * factor 2^-XR_BIAS exp(-r_m) is applied once to the float64 sum.
 * Why not x - m: it is not exact in float32 (x = -15.3, m = 5.1 rounds by
 * up to 2^-21, a relative error of 8 ULP in every term, the same sign for
 * a whole row of similar values), and making it exact (TwoSum) costs
 * five more operations per vector than the whole reduction of s x.
 * r is exact up to two roundings (|error| <= 2^-25: the FMA s x - n ln2_hi
 * is rounded once, then - n ln2_lo), so every term is within ~1 ULP of
 * float32, and the float64 sum of the terms within a small fraction of
 * that.  s != 1: s x is split exactly as ph + pl (s = s_hi + s_lo in
 * float32, FMA for the product error) and pl is added to r.
 * XR_BIAS keeps every term (down to the clamp e^-150) a normal float32 and
 * a 2048-element partial sum (< 2^107) finite; the clamp L and the
 * equal-to-max handling are those of LSE32_STEP.
 */
#define XR_BIAS 96
#define XR_SPAN 150.0     /* reduction clamp: terms down to e^-150 */
#define XR_SM_SPAN 120.0  /* softmax write clamp: e^-120 -> 0 in float32; keeps
                             n - n_c + XR_BIAS >= -112 (log_sum < 22) */

typedef struct {
    __m256 magic, sh, sl;   /* magic + XR_BIAS - n_m; scale hi/lo */
    double factor;          /* 2^-XR_BIAS exp(-r_m) */
} xr_row_;

/* sm: the row constant (scale * max; softmax write: + log_sum) */
static inline void xr_row_init_(xr_row_ *c, double scale, double sm)
{
    double nm = nearbyint(sm * 1.4426950408889634);
    double rm = (sm - nm * 6.93147180369123816490e-01) - nm * 1.90821492927058770002e-10;
    c->magic = _mm256_set1_ps(0x1.8p23f + (float)(XR_BIAS - nm));
    float sh = (float)scale;
    c->sh = _mm256_set1_ps(sh);
    c->sl = _mm256_set1_ps((float)(scale - (double)sh));
    c->factor = 0x1p-96 * exp(-rm);
}

/* p(r) and the magic-biased t, whose low bits hold n - n_m + XR_BIAS */
static inline __m256 xr_poly_(__m256 a, const xr_row_ *c, __m256 *tp, const int S1)
{
    __m256 ph = a, pl = _mm256_setzero_ps();
    if (!S1) {
        ph = _mm256_mul_ps(a, c->sh);
        pl = _mm256_fmadd_ps(a, c->sl, _mm256_fmsub_ps(a, c->sh, ph));
    }
    __m256 t = _mm256_fmadd_ps(ph, _mm256_set1_ps(0x1.715476p+0f), c->magic);
    __m256 n = _mm256_sub_ps(t, c->magic);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0x1.62e430p-1f), ph);
    if (!S1) r = _mm256_add_ps(r, pl);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-0x1.05c610p-29f), r);
    *tp = t;
    return exp_poly_ps_(r);
}

/* p * 2^(n - n_m + XR_BIAS) by an integer add to the exponent field (the
 * result is a normal float: no over/underflow for clamped inputs) */
static inline __m256 xr_scale_(__m256 p, __m256 t)
{
    return _mm256_castsi256_ps(_mm256_add_epi32(_mm256_castps_si256(p),
                               _mm256_slli_epi32(_mm256_castps_si256(t), 23)));
}

/* 2^(n - n_m + XR_BIAS) p(r) for 8 (clamped) floats */
static inline __m256 xr_exp_(__m256 a, const xr_row_ *c, const int S1)
{
    __m256 t, p = xr_poly_(a, c, &t, S1);
    return xr_scale_(p, t);
}

/* clamp to L, count and retire the lanes equal to the max, exp */
#define XR_STEP(a, e)                                                          \
    do {                                                                       \
        __m256 eq_ = _mm256_cmp_ps(a, mf, _CMP_EQ_OQ);                         \
        cnt = _mm256_sub_epi32(cnt, _mm256_castps_si256(eq_));                 \
        e = xr_exp_(_mm256_blendv_ps(_mm256_max_ps(a, Lv), Lv, eq_), &rc, S1); \
    } while (0)

static inline __attribute__((always_inline)) void
lse_chunk_f32_xr_(const float *x, ptrdiff_t n, double scale, double m,
                  float L, csm_lse_state *st, const float *pf, const float *pw,
                  const int S1)
{
    xr_row_ rc;
    xr_row_init_(&rc, scale, scale * m);
    const __m256 mf = _mm256_set1_ps((float)m), Lv = _mm256_set1_ps(L);
    __m256d s0 = _mm256_setzero_pd(), s1 = s0;
    __m256i cnt = _mm256_setzero_si256();
    ptrdiff_t i = 0;
    for (; i + 32 <= n; i += 32) {
        __m256 e0, e1, e2, e3;
        _mm_prefetch((const char *)(pf + i), _MM_HINT_T0);
        _mm_prefetch((const char *)(pf + i + 16), _MM_HINT_T0);
        if (pw) {
            __builtin_prefetch(pw + i, 1, 3);
            __builtin_prefetch(pw + i + 16, 1, 3);
        }
        XR_STEP(_mm256_loadu_ps(x + i), e0);
        XR_STEP(_mm256_loadu_ps(x + i + 8), e1);
        XR_STEP(_mm256_loadu_ps(x + i + 16), e2);
        XR_STEP(_mm256_loadu_ps(x + i + 24), e3);
        __m256 s = _mm256_add_ps(_mm256_add_ps(e0, e1), _mm256_add_ps(e2, e3));
        s0 = _mm256_add_pd(s0, _mm256_cvtps_pd(_mm256_castps256_ps128(s)));
        s1 = _mm256_add_pd(s1, _mm256_cvtps_pd(_mm256_extractf128_ps(s, 1)));
    }
    for (; i < n; i += 8) {
        __m256 a, e;
        if (i + 8 <= n) a = _mm256_loadu_ps(x + i);
        else {
            __m256i msk = tail_mask32_(n - i);
            a = _mm256_blendv_ps(Lv, _mm256_maskload_ps(x + i, msk),
                                 _mm256_castsi256_ps(msk));
        }
        XR_STEP(a, e);
        s0 = _mm256_add_pd(s0, _mm256_cvtps_pd(_mm256_castps256_ps128(e)));
        s1 = _mm256_add_pd(s1, _mm256_cvtps_pd(_mm256_extractf128_ps(e, 1)));
    }
    __m128i c4 = _mm_add_epi32(_mm256_castsi256_si128(cnt),
                               _mm256_extracti128_si256(cnt, 1));
    c4 = _mm_add_epi32(c4, _mm_shuffle_epi32(c4, 0x4E));
    c4 = _mm_add_epi32(c4, _mm_shuffle_epi32(c4, 0xB1));
    st->max = m;
    st->count = (double)_mm_cvtsi128_si32(c4);
    st->rest = hsum_pd_(_mm256_add_pd(s0, s1)) * rc.factor;
}

/* pf, pw: the prefetch hints of PF_STEP (pf: where the next block of the
 * input starts, the next chunk or row; pw: this chunk's destination or
 * NULL). */
static void lse_chunk_f32_(const float *x, ptrdiff_t n, double scale,
                           double span_s, csm_lse_state *st, const float *pf,
                           const float *pw)
{
    if (n < 32) {   /* short rows: fixed costs dominate, masks are cheaper */
        lse_chunk_f32_generic_(x, n, scale, st, pf, pw);
        return;
    }
    double m = row_max_f32_(x, n);
    float L;
    if (!clamp_bound_(m, scale, XR_SPAN, span_s, &L)) {
        csm_lse_rows_f32_generic_avx2(x, 1, n, n, scale, st);
        return;
    }
    if (scale == 1.0) lse_chunk_f32_xr_(x, n, scale, m, L, st, pf, pw, 1);
    else lse_chunk_f32_xr_(x, n, scale, m, L, st, pf, pw, 0);
}

/* LSE = scale*max + log(count + rest) close to 0 cancels: the ~1 ULP
 * relative error of the float32 terms would show as many ULPs of LSE.
 * Such rows (|LSE| < ~1.2, judged with a crude log) are redone by the
 * scalar kernel (libm exp in float64). */
static inline int lse_cancels_(const csm_lse_state *st, double scale,
                               double log_n)
{
    (void)log_n;
    /* branch-free (the outcome is almost always "no") */
    double sm = scale * st->max;
    double u = st->count + st->rest;
    union { double d; unsigned long long b; } v = { u };
    double lg = (double)((long long)(v.b >> 52) - 1023);
    v.b = (v.b & 0x000FFFFFFFFFFFFFULL) | 0x3FF0000000000000ULL;
    lg = (lg + (v.d - 1.0)) * 0.6931471805599453;   /* error < 0.07 */
    return (fabs(sm + lg) < 1.3) & (sm != 0.0) & (fabs(st->max) < INFINITY);
}

static void lse_rows_f32_(const float *x, ptrdiff_t n_rows, ptrdiff_t n,
                          ptrdiff_t row_stride, double scale,
                          csm_lse_state *states, const float *w,
                          ptrdiff_t w_row_stride)
{
    const double span_s = XR_SPAN / scale;
    for (ptrdiff_t r = 0; r < n_rows; ++r) {
        const float *xr = x + r * row_stride;
        const float *wr = w ? w + r * w_row_stride : NULL;
        csm_lse_state acc = { -INFINITY, 0.0, 0.0 }, part;
        if (n <= CHUNK) {
            lse_chunk_f32_(xr, n, scale, span_s, &acc, xr + row_stride, wr);
        } else for (ptrdiff_t c = 0; c < n; c += CHUNK) {
            lse_chunk_f32_(xr + c, n - c < CHUNK ? n - c : CHUNK, scale,
                           span_s, &part,
                           n - c > CHUNK ? xr + c + CHUNK : xr + row_stride,
                           wr ? wr + c : NULL);
            csm_lse_merge(&acc, &part, scale);
        }
        states[r] = acc;
    }
#ifndef CSM_NOCHECK
    /* second sweep: rows whose LSE cancels are redone with libm */
    for (ptrdiff_t r = 0; r < n_rows; ++r)
        if (lse_cancels_(states + r, scale, 0.0))
            csm_lse_rows_f32_scalar(x + r * row_stride, 1, n, n, scale,
                                    states + r);
#endif
}

void csm_lse_rows_f32_avx2(const float *x, ptrdiff_t n_rows, ptrdiff_t n,
                           ptrdiff_t row_stride, double scale,
                           csm_lse_state *states)
{
    lse_rows_f32_(x, n_rows, n, row_stride, scale, states, NULL, 0);
}

void csm_lse_rows_pw_f32_avx2(const float *x, ptrdiff_t n_rows, ptrdiff_t n,
                              ptrdiff_t row_stride, double scale,
                              csm_lse_state *states, const float *w,
                              ptrdiff_t w_row_stride)
{
    lse_rows_f32_(x, n_rows, n, row_stride, scale, states, w, w_row_stride);
}

void csm_lse_rows_pw_f64_avx2(const double *x, ptrdiff_t n_rows, ptrdiff_t n,
                              ptrdiff_t row_stride, double scale,
                              csm_lse_state *states, const double *w,
                              ptrdiff_t w_row_stride)
{
    lse_rows_f64_(x, n_rows, n, row_stride, scale, states, w, w_row_stride);
}

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

/* Softmax write, float32 lanes: y = exp(s x - c), c = s max + log_sum, by
 * the reduction of s x above with c = n_c ln2 + r_c reduced in float64:
 *     y = 2^(n - n_c) p(r) exp(-r_c),
 * exp(-r_c) applied as K_hi + K_lo (p K is rounded once, by an FMA), then
 * 2^(n - n_c + XR_BIAS) by the exponent add and the exact (or, for a
 * denormal y, correctly rounding) product with 2^-XR_BIAS.  A factor
 * alpha > 0 (cross-entropy gradients) is folded into c as - log(alpha), so
 * alpha * exp(d) is rounded once.  Lanes equal to the max get the
 * float64 alpha exp(-log_sum) (a dominant max gives exactly 1).  Error: r
 * (<= 2^-25 abs.) + p (~0.55 ULP) + the final rounding (0.5 ULP). */
static inline __attribute__((always_inline)) void
softmax_row_f32_xr_(const float *x, ptrdiff_t n, double scale, double c,
                    float L, float m, float ym, float *y, const int S1)
{
    const __m256 mf = _mm256_set1_ps(m), ymv = _mm256_set1_ps(ym);
    xr_row_ rc;
    xr_row_init_(&rc, scale, c);
    double k = 0x1p96 * rc.factor;   /* exp(-r_c) */
    const __m256 kh = _mm256_set1_ps((float)k);
    const __m256 kl = _mm256_set1_ps((float)(k - (double)(float)k));
    const __m256 Lv = _mm256_set1_ps(L), down = _mm256_set1_ps(0x1p-96f);
#define XR_SM8(a, out)                                                         \
    do {                                                                       \
        __m256 a_ = (a);                                                       \
        __m256 t_, p_ = xr_poly_(_mm256_max_ps(a_, Lv), &rc, &t_, S1);         \
        p_ = _mm256_fmadd_ps(p_, kh, _mm256_mul_ps(p_, kl));                   \
        out = _mm256_blendv_ps(_mm256_mul_ps(xr_scale_(p_, t_), down), ymv,    \
                               _mm256_cmp_ps(a_, mf, _CMP_EQ_OQ));             \
    } while (0)
    ptrdiff_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256 a, b;
        XR_SM8(_mm256_loadu_ps(x + i), a);
        XR_SM8(_mm256_loadu_ps(x + i + 8), b);
        _mm256_storeu_ps(y + i, a);
        _mm256_storeu_ps(y + i + 8, b);
    }
    for (; i < n; i += 8) {
        __m256 a;
        if (i + 8 <= n) {
            XR_SM8(_mm256_loadu_ps(x + i), a);
            _mm256_storeu_ps(y + i, a);
        } else {
            __m256i msk = tail_mask32_(n - i);
            XR_SM8(_mm256_maskload_ps(x + i, msk), a);
            _mm256_maskstore_ps(y + i, msk, a);
        }
    }
#undef XR_SM8
}

void csm_softmax_rows_f32_avx2(const float *x, ptrdiff_t n_rows, ptrdiff_t n,
        ptrdiff_t x_row_stride, double scale, const double *max,
        const double *log_sum, double alpha, float *y, ptrdiff_t y_row_stride)
{
    const double span_s = XR_SM_SPAN / scale;
    for (ptrdiff_t r = 0; r < n_rows; ++r) {
        const float *xr = x + r * x_row_stride; float *yr = y + r * y_row_stride;
        float L;
        /* alpha > 0 joins the exponent: c - log(alpha).  The exponent add
         * needs -221 <= n - n_c + ... <= 127 - 96 - 1: log_sum - log(alpha)
         * <= 32 (clamp e^-120) and log(alpha) <= 18. */
        double la = alpha == 1.0 ? 0.0 : log(alpha);
        if (!(alpha > 0.0 && la <= 18.0 && log_sum[r] - la <= 32.0) ||
            !clamp_bound_(max[r], scale, XR_SM_SPAN, span_s, &L)) {
            csm_softmax_rows_f32_generic_avx2(xr, 1, n, 0, scale, max + r,
                                              log_sum + r, alpha, yr, 0);
            continue;
        }
        double c = scale * max[r] + log_sum[r] - la;
        /* the max itself: alpha exp(-log_sum), rounded once (so a dominant
         * max gives exactly alpha, e.g. 1.0) */
        float m = (float)max[r], ym = (float)(alpha * exp(-log_sum[r]));
        if (scale == 1.0) softmax_row_f32_xr_(xr, n, scale, c, L, m, ym, yr, 1);
        else softmax_row_f32_xr_(xr, n, scale, c, L, m, ym, yr, 0);
    }
}

/* ---- fused float32 softmax rows (one exp per element) --------------------
 *
 * Three passes over a row, the last two on data still in L1/L2:
 *   1. M = row max (NaN / inf detection, clamp L = M - XR_SPAN/scale);
 *   2. the all-float32 reduction above with the row's global max, storing
 *      every term e'_i = 2^XR_BIAS exp(r_M) exp(s (x_i - M)) into y (a
 *      normal float32 in [2^-121, 2^96.6]; lanes equal to M store the
 *      sentinel -1, clamped lanes the clamp's term) while summing them in
 *      float64 as csm_lse_rows_f32_avx2 does: S = count + rest;
 *   3. y_i = (e'_i f) 2^-XR_BIAS with f = alpha exp(-r_M) / S, applied as
 *      fma(e', f_hi, e' f_lo) (rounded once) then the exact -- or, for a
 *      denormal y, correctly rounding -- product with 2^-XR_BIAS; sentinel
 *      lanes get fl32(alpha / S), so a dominant max gives exactly alpha.
 * Error: e'_i (r <= 2^-25 abs., polynomial ~0.55 ULP, p rounding) + S (a
 * float64 sum of such terms: relative error <~ 2^-24) + 0.5 ULP.  The
 * lse_cancels_ sweep is not needed here: it guards LSE = s M + log S
 * against cancellation, and softmax uses S only through 1/S.
 * Rows that are not clean (NaN, +-inf max, |s M| > 2^20, no representable
 * clamp, extreme alpha) are decided before anything is written and take
 * the reduction + finalize + write path (so x == y is fine). */
#define FUSED_ALPHA_MIN 0x1p-60
#define FUSED_ALPHA_MAX 0x1p12

/* Pass 2 of a clean row (see above): stores e'_i (sentinel -1 for lanes
 * equal to m) into y; returns the row's count and S' = sum of the other
 * e'_i (the rest is S' * rc->factor). */
static inline __attribute__((always_inline)) double
xr_store_row_f32_(const float *x, ptrdiff_t n, double scale, double m,
                  float L, float *y, const float *pf, xr_row_ *rcp,
                  double *count_out, const int S1)
{
    xr_row_ rc;
    xr_row_init_(&rc, scale, scale * m);
    *rcp = rc;
    const __m256 mf = _mm256_set1_ps((float)m), Lv = _mm256_set1_ps(L);
    const __m256 neg1 = _mm256_set1_ps(-1.0f);
    __m256d s0 = _mm256_setzero_pd(), s1 = s0;
    __m256i cnt = _mm256_setzero_si256();
#define FU_STEP(a, e)                                                          \
    do {                                                                       \
        __m256 eq_ = _mm256_cmp_ps(a, mf, _CMP_EQ_OQ);                         \
        cnt = _mm256_sub_epi32(cnt, _mm256_castps_si256(eq_));                 \
        e = xr_exp_(_mm256_blendv_ps(_mm256_max_ps(a, Lv), Lv, eq_), &rc, S1); \
        st_ = _mm256_blendv_ps(e, neg1, eq_);                                  \
    } while (0)
    ptrdiff_t i = 0;
    for (; i + 32 <= n; i += 32) {
        __m256 e0, e1, e2, e3, st_;
        _mm_prefetch((const char *)(pf + i), _MM_HINT_T0);
        _mm_prefetch((const char *)(pf + i + 16), _MM_HINT_T0);
        FU_STEP(_mm256_loadu_ps(x + i), e0);
        _mm256_storeu_ps(y + i, st_);
        FU_STEP(_mm256_loadu_ps(x + i + 8), e1);
        _mm256_storeu_ps(y + i + 8, st_);
        FU_STEP(_mm256_loadu_ps(x + i + 16), e2);
        _mm256_storeu_ps(y + i + 16, st_);
        FU_STEP(_mm256_loadu_ps(x + i + 24), e3);
        _mm256_storeu_ps(y + i + 24, st_);
        __m256 s = _mm256_add_ps(_mm256_add_ps(e0, e1), _mm256_add_ps(e2, e3));
        s0 = _mm256_add_pd(s0, _mm256_cvtps_pd(_mm256_castps256_ps128(s)));
        s1 = _mm256_add_pd(s1, _mm256_cvtps_pd(_mm256_extractf128_ps(s, 1)));
    }
    for (; i < n; i += 8) {
        __m256 a, e, st_;
        if (i + 8 <= n) {
            FU_STEP(_mm256_loadu_ps(x + i), e);
            _mm256_storeu_ps(y + i, st_);
        } else {
            __m256i msk = tail_mask32_(n - i);
            a = _mm256_blendv_ps(Lv, _mm256_maskload_ps(x + i, msk),
                                 _mm256_castsi256_ps(msk));
            FU_STEP(a, e);
            _mm256_maskstore_ps(y + i, msk, st_);
        }
        s0 = _mm256_add_pd(s0, _mm256_cvtps_pd(_mm256_castps256_ps128(e)));
        s1 = _mm256_add_pd(s1, _mm256_cvtps_pd(_mm256_extractf128_ps(e, 1)));
    }
#undef FU_STEP
    __m128i c4 = _mm_add_epi32(_mm256_castsi256_si128(cnt),
                               _mm256_extracti128_si256(cnt, 1));
    c4 = _mm_add_epi32(c4, _mm_shuffle_epi32(c4, 0x4E));
    c4 = _mm_add_epi32(c4, _mm_shuffle_epi32(c4, 0xB1));
    *count_out = (double)_mm_cvtsi128_si32(c4);
    return hsum_pd_(_mm256_add_pd(s0, s1));
}

/* Pass 3: y_i = (e'_i f) 2^-XR_BIAS, sentinel lanes ym.  f in [2^-92,
 * 2^13]: f_lo is a normal float32, e' f_hi is finite. */
static inline __attribute__((always_inline)) void
xr_scale_row_f32_(float *y, ptrdiff_t n, double f, float ym)
{
    float fhf = (float)f;
    const __m256 fh = _mm256_set1_ps(fhf);
    const __m256 fl = _mm256_set1_ps((float)(f - (double)fhf));
    const __m256 ymv = _mm256_set1_ps(ym);
    const __m256 down = _mm256_set1_ps(0x1p-96f);
#define FU_SCALE(p)                                                            \
    do {                                                                       \
        __m256 e_ = _mm256_loadu_ps(p);                                        \
        __m256 v_ = _mm256_fmadd_ps(e_, fh, _mm256_mul_ps(e_, fl));            \
        _mm256_storeu_ps(p, _mm256_blendv_ps(_mm256_mul_ps(v_, down), ymv, e_)); \
    } while (0)
    ptrdiff_t i = 0;
    for (; i + 16 <= n; i += 16) { FU_SCALE(y + i); FU_SCALE(y + i + 8); }
    for (; i + 8 <= n; i += 8) FU_SCALE(y + i);
    if (i < n) {
        __m256i msk = tail_mask32_(n - i);
        __m256 e_ = _mm256_maskload_ps(y + i, msk);
        __m256 v_ = _mm256_fmadd_ps(e_, fh, _mm256_mul_ps(e_, fl));
        _mm256_maskstore_ps(y + i, msk,
                            _mm256_blendv_ps(_mm256_mul_ps(v_, down), ymv, e_));
    }
#undef FU_SCALE
}

/* A row whose terms pass 2 may store: long enough for the vector loop,
 * finite max with a representable clamp (span_s = XR_SPAN / scale).  The
 * fused softmax and the cross-entropy store / rescale kernels decide with
 * this one test, so the store and rescale kernels always agree. */
static inline int store_clean_(double m, double scale, double span_s,
                               ptrdiff_t n, float *L)
{
    return n >= 32 && n <= ((ptrdiff_t)1 << 30) &&
           clamp_bound_(m, scale, XR_SPAN, span_s, L);
}

void csm_softmax_fused_rows_f32_avx2(const float *x, ptrdiff_t n_rows,
        ptrdiff_t n, ptrdiff_t x_row_stride, double scale, double alpha,
        float *y, ptrdiff_t y_row_stride)
{
    const double span_s = XR_SPAN / scale;
    const int ok_a = alpha >= FUSED_ALPHA_MIN && alpha <= FUSED_ALPHA_MAX;
    for (ptrdiff_t r = 0; r < n_rows; ++r) {
        const float *xr = x + r * x_row_stride; float *yr = y + r * y_row_stride;
        float L;
        double m = ok_a ? row_max_f32_(xr, n) : NAN;
        if (ok_a && store_clean_(m, scale, span_s, n, &L)) {
            /* keep the memory busy during the in-cache passes: the
             * reduction prefetches the same offsets of the next row (a
             * hint: past the end of x it cannot fault) */
            const float *pf = xr + x_row_stride;
            xr_row_ rc;
            double count, sum = scale == 1.0
                ? xr_store_row_f32_(xr, n, scale, m, L, yr, pf, &rc, &count, 1)
                : xr_store_row_f32_(xr, n, scale, m, L, yr, pf, &rc, &count, 0);
            double S = count + sum * rc.factor;
            xr_scale_row_f32_(yr, n, alpha * (0x1p96 * rc.factor) / S,
                              (float)(alpha / S));
            continue;
        }
        csm_lse_state st;
        double mx, ls;
        csm_lse_rows_f32_avx2(xr, 1, n, n, scale, &st);
        csm_finalize_avx2(&st, 1, scale, &mx, &ls);
        csm_softmax_rows_f32_avx2(xr, 1, n, n, scale, &mx, &ls, alpha, yr, n);
    }
}

/* ---- reduction that keeps its terms (cross-entropy gradient) -----------
 *
 * csm_lse_store_rows_f32: the states of csm_lse_rows_f32_avx2 (same
 * numbers for rows of up to CHUNK elements; longer rows are one chunk
 * here) and, for every clean row (the fused-softmax conditions that do
 * not involve alpha), the terms e'_i of pass 2 stored into e.  Rows that
 * are not clean leave their e row untouched.
 * csm_softmax_scale_rows_f32: the write pass of csm_softmax_rows_f32 for
 * such an e: y = alpha exp(scale (x - max) - log_sum) from the stored terms
 * when the row was stored and f = alpha 2^96 factor exp(-log_sum) is in
 * range, else from x (so x must not be e).  The per-row decision repeats
 * the store kernel's from max[r] alone, so the two always agree.
 * One exp per element instead of two; y may be the same memory as e. */
void csm_lse_store_rows_f32_avx2(const float *x, ptrdiff_t n_rows, ptrdiff_t n,
        ptrdiff_t x_row_stride, double scale, csm_lse_state *states,
        float *e, ptrdiff_t e_row_stride)
{
    const double span_s = XR_SPAN / scale;
    for (ptrdiff_t r = 0; r < n_rows; ++r) {
        const float *xr = x + r * x_row_stride;
        float L;
        double m = row_max_f32_(xr, n);
        if (!store_clean_(m, scale, span_s, n, &L)) {
            csm_lse_rows_f32_avx2(xr, 1, n, n, scale, states + r);
            continue;
        }
        xr_row_ rc;
        double count, sum = scale == 1.0
            ? xr_store_row_f32_(xr, n, scale, m, L, e + r * e_row_stride,
                                xr + x_row_stride, &rc, &count, 1)
            : xr_store_row_f32_(xr, n, scale, m, L, e + r * e_row_stride,
                                xr + x_row_stride, &rc, &count, 0);
        states[r].max = m;
        states[r].count = count;
        states[r].rest = sum * rc.factor;
#ifndef CSM_NOCHECK
        if (lse_cancels_(states + r, scale, 0.0))
            csm_lse_rows_f32_scalar(xr, 1, n, n, scale, states + r);
#endif
    }
}

void csm_softmax_scale_rows_f32_avx2(const float *x, ptrdiff_t n_rows,
        ptrdiff_t n, ptrdiff_t x_row_stride, double scale, const double *max,
        const double *log_sum, double alpha, float *y, ptrdiff_t y_row_stride)
{
    const double span_s = XR_SPAN / scale;
    for (ptrdiff_t r = 0; r < n_rows; ++r) {
        float *yr = y + r * y_row_stride;
        float L;
        if (store_clean_(max[r], scale, span_s, n, &L)) {
            xr_row_ rc;
            xr_row_init_(&rc, scale, scale * max[r]);
            double g = alpha * exp(-log_sum[r]);
            double f = g * (0x1p96 * rc.factor);
            if (fabs(f) >= 0x1p-92 && fabs(f) <= 0x1p13) {
                xr_scale_row_f32_(yr, n, f, (float)g);
                continue;
            }
        }
        csm_softmax_rows_f32_avx2(x + r * x_row_stride, 1, n, 0, scale,
                                  max + r, log_sum + r, alpha, yr, 0);
    }
}

/* ---- fused float64 softmax rows (one exp per element) --------------------
 *
 * Max pass, then e_i = exp(scale * (x_i - M)) (exp_f64_: libm for denormal
 * terms) stored into y and summed, S = sum e_i (elements equal to M give
 * exactly 1), then y *= alpha / S in place.  Compared with exp(d - log S)
 * of the write pass, the exp argument has one rounding less; alpha <= 1
 * keeps alpha / S <= 1, so a denormal e_i is never magnified.  Rows with a
 * non-finite max (NaN, +-inf, all -inf) or alpha outside (0, 1] take the
 * reduction + finalize + write path (decided before anything is written). */
/* y[0:n] *= f in place (the rescale pass of the float64 one-exp kernels) */
static inline void scale_row_f64_(double *y, ptrdiff_t n, double f)
{
    const __m256d fv = _mm256_set1_pd(f);
    ptrdiff_t i = 0;
    for (; i + 8 <= n; i += 8) {
        _mm256_storeu_pd(y + i, _mm256_mul_pd(_mm256_loadu_pd(y + i), fv));
        _mm256_storeu_pd(y + i + 4, _mm256_mul_pd(_mm256_loadu_pd(y + i + 4), fv));
    }
    for (; i < n; i += 4) {
        __m256i msk = tail_mask64_(n - i);
        _mm256_maskstore_pd(y + i, msk,
                            _mm256_mul_pd(_mm256_maskload_pd(y + i, msk), fv));
    }
}

static void softmax_fused_row_f64_(const double *x, ptrdiff_t n, double scale,
                                   double alpha, double m, double *y,
                                   const double *pf)
{
    const __m256d mv = _mm256_set1_pd(m), sv = _mm256_set1_pd(scale);
    __m256d r0 = _mm256_setzero_pd(), r1 = r0;
    ptrdiff_t i = 0;
    for (; i + 8 <= n; i += 8) {
        _mm_prefetch((const char *)(pf + i), _MM_HINT_T0);
        __m256d a = _mm256_loadu_pd(x + i), b = _mm256_loadu_pd(x + i + 4);
        __m256d ea = exp_f64_(_mm256_mul_pd(_mm256_sub_pd(a, mv), sv));
        __m256d eb = exp_f64_(_mm256_mul_pd(_mm256_sub_pd(b, mv), sv));
        _mm256_storeu_pd(y + i, ea);
        _mm256_storeu_pd(y + i + 4, eb);
        r0 = _mm256_add_pd(r0, ea);
        r1 = _mm256_add_pd(r1, eb);
    }
    for (; i < n; i += 4) {
        __m256i msk = tail_mask64_(n - i);
        __m256d a = _mm256_blendv_pd(_mm256_set1_pd(-INFINITY),
                                     _mm256_maskload_pd(x + i, msk),
                                     _mm256_castsi256_pd(msk));
        __m256d ea = exp_f64_(_mm256_mul_pd(_mm256_sub_pd(a, mv), sv));
        _mm256_maskstore_pd(y + i, msk, ea);
        r0 = _mm256_add_pd(r0, ea);
    }
    scale_row_f64_(y, n, alpha / hsum_pd_(_mm256_add_pd(r0, r1)));
}

/* ---- float64 cross-entropy gradient with one exp per element -------------
 *
 * csm_lse_store_rows_f64: for rows of >= 8 elements with a finite max M,
 * the terms e_i = exp(scale (x_i - M)) (exactly 1 where x_i == M) stored
 * into e, and the states (max, count, rest) of csm_lse_rows_f64 from them;
 * other rows: csm_lse_rows_f64, e untouched.
 * csm_softmax_scale_rows_f64: y = e f with f = alpha exp(-log_sum) for the
 * rows the store kernel took (the same test on max[r]) whose f is in
 * [2^-60, 1] (so a denormal term is never magnified); other rows are
 * written from x.  y may be e, not x. */
void csm_lse_store_rows_f64_avx2(const double *x, ptrdiff_t n_rows, ptrdiff_t n,
        ptrdiff_t x_row_stride, double scale, csm_lse_state *states,
        double *e, ptrdiff_t e_row_stride)
{
    const __m256d sv = _mm256_set1_pd(scale), one = _mm256_set1_pd(1.0);
    for (ptrdiff_t r = 0; r < n_rows; ++r) {
        const double *xr = x + r * x_row_stride;
        double *er = e + r * e_row_stride;
        double m = row_max_f64_(xr, n);
        if (!(m > -INFINITY && m < INFINITY) || n < 8) {
            csm_lse_rows_f64_avx2(xr, 1, n, n, scale, states + r);
            continue;
        }
        const __m256d mv = _mm256_set1_pd(m);
        const double *pf = xr + x_row_stride;
        __m256d r0 = _mm256_setzero_pd(), r1 = r0, c0 = r0, c1 = r0;
        ptrdiff_t i = 0;
        for (; i + 8 <= n; i += 8) {
            _mm_prefetch((const char *)(pf + i), _MM_HINT_T0);
            __m256d a = _mm256_loadu_pd(xr + i), b = _mm256_loadu_pd(xr + i + 4);
            __m256d qa = _mm256_cmp_pd(a, mv, _CMP_EQ_OQ);
            __m256d qb = _mm256_cmp_pd(b, mv, _CMP_EQ_OQ);
            __m256d ea = exp_f64_(_mm256_mul_pd(_mm256_sub_pd(a, mv), sv));
            __m256d eb = exp_f64_(_mm256_mul_pd(_mm256_sub_pd(b, mv), sv));
            _mm256_storeu_pd(er + i, ea);
            _mm256_storeu_pd(er + i + 4, eb);
            r0 = _mm256_add_pd(r0, _mm256_andnot_pd(qa, ea));
            r1 = _mm256_add_pd(r1, _mm256_andnot_pd(qb, eb));
            c0 = _mm256_add_pd(c0, _mm256_and_pd(qa, one));
            c1 = _mm256_add_pd(c1, _mm256_and_pd(qb, one));
        }
        for (; i < n; i += 4) {
            __m256i msk = tail_mask64_(n - i);
            __m256d a = _mm256_blendv_pd(_mm256_set1_pd(-INFINITY),
                                         _mm256_maskload_pd(xr + i, msk),
                                         _mm256_castsi256_pd(msk));
            __m256d qa = _mm256_cmp_pd(a, mv, _CMP_EQ_OQ);
            __m256d ea = exp_f64_(_mm256_mul_pd(_mm256_sub_pd(a, mv), sv));
            _mm256_maskstore_pd(er + i, msk, ea);
            r0 = _mm256_add_pd(r0, _mm256_andnot_pd(qa, ea));
            c0 = _mm256_add_pd(c0, _mm256_and_pd(qa, one));
        }
        states[r].max = m;
        states[r].count = hsum_pd_(_mm256_add_pd(c0, c1));
        states[r].rest = hsum_pd_(_mm256_add_pd(r0, r1));
    }
}

void csm_softmax_scale_rows_f64_avx2(const double *x, ptrdiff_t n_rows,
        ptrdiff_t n, ptrdiff_t x_row_stride, double scale, const double *max,
        const double *log_sum, double alpha, double *y, ptrdiff_t y_row_stride)
{
    for (ptrdiff_t r = 0; r < n_rows; ++r) {
        double *yr = y + r * y_row_stride;
        double f = alpha * exp(-log_sum[r]);
        if (!(max[r] > -INFINITY && max[r] < INFINITY) || n < 8 ||
            !(fabs(f) >= 0x1p-60 && fabs(f) <= 1.0)) {
            csm_softmax_rows_f64_avx2(x + r * x_row_stride, 1, n, 0, scale,
                                      max + r, log_sum + r, alpha, yr, 0);
            continue;
        }
        scale_row_f64_(yr, n, f);
    }
}

void csm_softmax_fused_rows_f64_avx2(const double *x, ptrdiff_t n_rows,
        ptrdiff_t n, ptrdiff_t x_row_stride, double scale, double alpha,
        double *y, ptrdiff_t y_row_stride)
{
    const int ok_a = alpha > 0.0 && alpha <= 1.0;
    for (ptrdiff_t r = 0; r < n_rows; ++r) {
        const double *xr = x + r * x_row_stride; double *yr = y + r * y_row_stride;
        double m = ok_a ? row_max_f64_(xr, n) : NAN;
        if (m > -INFINITY && m < INFINITY) {
            softmax_fused_row_f64_(xr, n, scale, alpha, m, yr, xr + x_row_stride);
            continue;
        }
        csm_lse_state st;
        double mx, ls;
        csm_lse_rows_f64_avx2(xr, 1, n, n, scale, &st);
        csm_finalize_avx2(&st, 1, scale, &mx, &ls);
        csm_softmax_rows_f64_avx2(xr, 1, n, n, scale, &mx, &ls, alpha, yr, n);
    }
}

/* y = scale * (x - max) - log_sum: x - max is exact in float64, so the
 * element(s) equal to the max give exactly -log_sum. */
static inline __m256 logsm8_f32_(__m256 a, __m256d sv, __m256d mv, __m256d lv)
{
    __m256d lo = _mm256_cvtps_pd(_mm256_castps256_ps128(a));
    __m256d hi = _mm256_cvtps_pd(_mm256_extractf128_ps(a, 1));
    lo = _mm256_fmsub_pd(_mm256_sub_pd(lo, mv), sv, lv);
    hi = _mm256_fmsub_pd(_mm256_sub_pd(hi, mv), sv, lv);
    return _mm256_set_m128(_mm256_cvtpd_ps(hi), _mm256_cvtpd_ps(lo));
}

/* scale == 1: y = x - c, c = max + log_sum, in float32 lanes as
 * ((x - c1) - c2) - c3 with c = c1 + c2 + c3 (three float32 parts, so c is
 * kept to ~2^-72 relative).  Where x is within a factor 2 of c1, x - c1 is
 * exact (Sterbenz) and the two later subtractions round once each on a
 * result that cancellation cannot blow up (the max gives -log_sum rounded
 * once or twice); elsewhere |y| >= |c1| / 2 or |x| / 2, so c2 and c3 are
 * below an ULP of y and the three roundings stay within ~1.5 ULP.  A
 * quarter of the float64 lane version's operations. */
static inline __m256 logsm8_c3_f32_(__m256 a, __m256 c1, __m256 c2, __m256 c3)
{
    return _mm256_sub_ps(_mm256_sub_ps(_mm256_sub_ps(a, c1), c2), c3);
}

static void log_softmax_row_f32_c3_(const float *xr, ptrdiff_t n, double m,
                                    double ls, float *yr)
{
    /* m + ls in double would lose a log_sum below ulp(m) / 2 (a dominant
     * max, where y = -log_sum): split as c1 + (m - c1 + ls), m - c1 being
     * exact in double for float32 m and c1 unless |m| << ls */
    const float f1 = (float)(m + ls);
    const double r = (m - (double)f1) + ls;
    const float f2 = (float)r, f3 = (float)(r - (double)f2);
    const __m256 c1 = _mm256_set1_ps(f1), c2 = _mm256_set1_ps(f2);
    const __m256 c3 = _mm256_set1_ps(f3);
    ptrdiff_t i = 0;
    for (; i + 32 <= n; i += 32) {
        __m256 a = logsm8_c3_f32_(_mm256_loadu_ps(xr + i), c1, c2, c3);
        __m256 b = logsm8_c3_f32_(_mm256_loadu_ps(xr + i + 8), c1, c2, c3);
        __m256 d = logsm8_c3_f32_(_mm256_loadu_ps(xr + i + 16), c1, c2, c3);
        __m256 e = logsm8_c3_f32_(_mm256_loadu_ps(xr + i + 24), c1, c2, c3);
        _mm256_storeu_ps(yr + i, a);
        _mm256_storeu_ps(yr + i + 8, b);
        _mm256_storeu_ps(yr + i + 16, d);
        _mm256_storeu_ps(yr + i + 24, e);
    }
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(yr + i, logsm8_c3_f32_(_mm256_loadu_ps(xr + i), c1, c2, c3));
    if (i < n) {
        __m256i msk = tail_mask32_(n - i);
        _mm256_maskstore_ps(yr + i, msk,
            logsm8_c3_f32_(_mm256_maskload_ps(xr + i, msk), c1, c2, c3));
    }
}

void csm_log_softmax_rows_f32_avx2(const float *x, ptrdiff_t n_rows,
        ptrdiff_t n, ptrdiff_t x_row_stride, double scale, const double *max,
        const double *log_sum, double alpha, float *y, ptrdiff_t y_row_stride)
{
    const __m256d sv = _mm256_set1_pd(scale);
    for (ptrdiff_t r = 0; r < n_rows; ++r) {
        const float *xr = x + r * x_row_stride; float *yr = y + r * y_row_stride;
        if (!(max[r] > -INFINITY && max[r] < INFINITY)) {
            csm_log_softmax_rows_f32_generic_avx2(xr, 1, n, 0, scale, max + r,
                                                  log_sum + r, alpha, yr, 0);
            continue;
        }
        if (scale == 1.0 && log_sum[r] < INFINITY) {
            log_softmax_row_f32_c3_(xr, n, max[r], log_sum[r], yr);
            continue;
        }
        const __m256d mv = _mm256_set1_pd(max[r]), lv = _mm256_set1_pd(log_sum[r]);
        ptrdiff_t i = 0;
        for (; i + 16 <= n; i += 16) {
            __m256 a = logsm8_f32_(_mm256_loadu_ps(xr + i), sv, mv, lv);
            __m256 b = logsm8_f32_(_mm256_loadu_ps(xr + i + 8), sv, mv, lv);
            _mm256_storeu_ps(yr + i, a);
            _mm256_storeu_ps(yr + i + 8, b);
        }
        for (; i + 8 <= n; i += 8)
            _mm256_storeu_ps(yr + i, logsm8_f32_(_mm256_loadu_ps(xr + i), sv, mv, lv));
        if (i < n) {
            __m256i msk = tail_mask32_(n - i);
            _mm256_maskstore_ps(yr + i, msk,
                logsm8_f32_(_mm256_maskload_ps(xr + i, msk), sv, mv, lv));
        }
    }
}

/* ==== float32 columns (the non-last-axis case) ===========================
 *
 * Lanes = columns: 16 contiguous columns (one cache line of float32) per
 * row step, as two 8-lane groups, so every pass consumes whole lines and
 * has four independent float64 exp chains in flight.  Same numerics as the
 * float32 row fast paths (LSE32_STEP, softmax8_f32_, logsm8_f32_) with a
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

/* 8 * G columns (G = 1 or 2) starting at x: max pass, then (if every lane
 * is in range) the clamped sum pass.  Returns 0 if the generic kernel must
 * redo the group. */
static inline __attribute__((always_inline)) int
lse_cols_group_f32_(const float *x, ptrdiff_t n, ptrdiff_t rs, double scale,
                    double span_s, csm_lse_state *states, float *e,
                    ptrdiff_t es, const int G, const int S1)
{
    const __m256 neg1 = _mm256_set1_ps(-1.0f);
    const __m256 ninf = _mm256_set1_ps(-INFINITY);
    const __m256d sv = _mm256_set1_pd(scale);
    __m256 m0 = ninf, m1 = ninf, bad = _mm256_setzero_ps();
    for (ptrdiff_t i = 0; i < n; ++i) {
        const float *xi = x + i * rs;
        COLS_PF(xi + 16 * G);
        __m256 a = _mm256_loadu_ps(xi);
        m0 = _mm256_max_ps(m0, a);
        if (G == 2) {
            __m256 b = _mm256_loadu_ps(xi + 8);
            m1 = _mm256_max_ps(m1, b);
            bad = _mm256_or_ps(bad, _mm256_cmp_ps(a, b, _CMP_UNORD_Q));
        } else {
            bad = _mm256_or_ps(bad, _mm256_cmp_ps(a, a, _CMP_UNORD_Q));
        }
    }
    if (_mm256_movemask_ps(bad)) return 0;
    __m256d mx0 = _mm256_cvtps_pd(_mm256_castps256_ps128(m0));
    __m256d mx1 = _mm256_cvtps_pd(_mm256_extractf128_ps(m0, 1));
    __m256d mx2 = mx0, mx3 = mx1;
    __m256 L0, L1 = ninf;
    if (!clamp_bound8_(mx0, mx1, sv, XR_SPAN, span_s, &L0)) return 0;
    if (G == 2) {
        mx2 = _mm256_cvtps_pd(_mm256_castps256_ps128(m1));
        mx3 = _mm256_cvtps_pd(_mm256_extractf128_ps(m1, 1));
        if (!clamp_bound8_(mx2, mx3, sv, XR_SPAN, span_s, &L1)) return 0;
    }
    /* the all-float32 reduction of the rows, with per-lane constants */
    xr_row_ xa, xb = { 0 };
    __m256d f0, f1, f2 = sv, f3 = sv;
    xr_lanes_init_(&xa, scale, mx0, mx1, &f0, &f1);
    if (G == 2) xr_lanes_init_(&xb, scale, mx2, mx3, &f2, &f3);
    __m256d r0 = _mm256_setzero_pd(), r1 = r0, r2 = r0, r3 = r0;
    __m256i cnt = _mm256_setzero_si256(), cnt1 = cnt;
/* e (not NULL): the terms are kept there, as csm_lse_store_rows_f32 does
 * (sentinel -1 where x == max), at row i + k, column offset o */
#define XRC_STEP(a, mf, Lv, c, t, cn, k, o)                                    \
    do {                                                                       \
        __m256 eq_ = _mm256_cmp_ps(a, mf, _CMP_EQ_OQ);                         \
        cn = _mm256_sub_epi32(cn, _mm256_castps_si256(eq_));                   \
        t = xr_exp_(_mm256_blendv_ps(_mm256_max_ps(a, Lv), Lv, eq_), &c, S1);  \
        if (e) _mm256_storeu_ps(e + (i + (k)) * es + (o),                      \
                                _mm256_blendv_ps(t, neg1, eq_));               \
    } while (0)
#define XRC_ADD(s, ra, rb)                                                     \
    do {                                                                       \
        ra = _mm256_add_pd(ra, _mm256_cvtps_pd(_mm256_castps256_ps128(s)));    \
        rb = _mm256_add_pd(rb, _mm256_cvtps_pd(_mm256_extractf128_ps(s, 1)));  \
    } while (0)
    ptrdiff_t i = 0;
    for (; i + 4 <= n; i += 4) {   /* 4 rows summed in float32, as the rows */
        const float *xi = x + i * rs;
        __m256 e0, e1, e2, e3;
        XRC_STEP(_mm256_loadu_ps(xi), m0, L0, xa, e0, cnt, 0, 0);
        XRC_STEP(_mm256_loadu_ps(xi + rs), m0, L0, xa, e1, cnt, 1, 0);
        XRC_STEP(_mm256_loadu_ps(xi + 2 * rs), m0, L0, xa, e2, cnt, 2, 0);
        XRC_STEP(_mm256_loadu_ps(xi + 3 * rs), m0, L0, xa, e3, cnt, 3, 0);
        __m256 sa = _mm256_add_ps(_mm256_add_ps(e0, e1), _mm256_add_ps(e2, e3));
        XRC_ADD(sa, r0, r1);
        if (G == 2) {
            XRC_STEP(_mm256_loadu_ps(xi + 8), m1, L1, xb, e0, cnt1, 0, 8);
            XRC_STEP(_mm256_loadu_ps(xi + rs + 8), m1, L1, xb, e1, cnt1, 1, 8);
            XRC_STEP(_mm256_loadu_ps(xi + 2 * rs + 8), m1, L1, xb, e2, cnt1, 2, 8);
            XRC_STEP(_mm256_loadu_ps(xi + 3 * rs + 8), m1, L1, xb, e3, cnt1, 3, 8);
            __m256 sb = _mm256_add_ps(_mm256_add_ps(e0, e1), _mm256_add_ps(e2, e3));
            XRC_ADD(sb, r2, r3);
        }
    }
    for (; i < n; ++i) {
        const float *xi = x + i * rs;
        __m256 t;
        XRC_STEP(_mm256_loadu_ps(xi), m0, L0, xa, t, cnt, 0, 0);
        XRC_ADD(t, r0, r1);
        if (G == 2) {
            XRC_STEP(_mm256_loadu_ps(xi + 8), m1, L1, xb, t, cnt1, 0, 8);
            XRC_ADD(t, r2, r3);
        }
    }
#undef XRC_STEP
#undef XRC_ADD
    r0 = _mm256_mul_pd(r0, f0); r1 = _mm256_mul_pd(r1, f1);
    r2 = _mm256_mul_pd(r2, f2); r3 = _mm256_mul_pd(r3, f3);
    __m256d c0 = _mm256_cvtepi32_pd(_mm256_castsi256_si128(cnt));
    __m256d c1 = _mm256_cvtepi32_pd(_mm256_extracti128_si256(cnt, 1));
    store_states4_(states, mx0, c0, r0);
    store_states4_(states + 4, mx1, c1, r1);
    int redo = lse_cancels4_(mx0, c0, r0, sv) | (lse_cancels4_(mx1, c1, r1, sv) << 4);
    if (G == 2) {
        __m256d c2 = _mm256_cvtepi32_pd(_mm256_castsi256_si128(cnt1));
        __m256d c3 = _mm256_cvtepi32_pd(_mm256_extracti128_si256(cnt1, 1));
        store_states4_(states + 8, mx2, c2, r2);
        store_states4_(states + 12, mx3, c3, r3);
        redo |= (lse_cancels4_(mx2, c2, r2, sv) << 8) | (lse_cancels4_(mx3, c3, r3, sv) << 12);
    }
#ifndef CSM_NOCHECK
    while (redo) {   /* LSE close to 0: redo the lane with libm (rare) */
        int k = __builtin_ctz(redo);
        redo &= redo - 1;
        csm_lse_cols_f32_scalar(x + k, 1, n, rs, scale, states + k);
    }
#endif
    return 1;
}

/* e != NULL: keep the terms of every group that takes the fast path in e
 * (groups as below: 16 columns, then 8, the rest generic; a group is fast
 * iff it has no NaN and every lane a representable clamp, which the
 * rescale kernel repeats from the max values alone) */
static void lse_cols_f32_(const float *x, ptrdiff_t n_cols, ptrdiff_t n,
                          ptrdiff_t row_stride, double scale,
                          csm_lse_state *states, float *e, ptrdiff_t es)
{
    const double span_s = XR_SPAN / scale;
    ptrdiff_t j = 0;
    for (; j + 16 <= n_cols; j += 16) {
        float *ej = e ? e + j : NULL;
        int ok = scale == 1.0
            ? lse_cols_group_f32_(x + j, n, row_stride, scale, span_s, states + j, ej, es, 2, 1)
            : lse_cols_group_f32_(x + j, n, row_stride, scale, span_s, states + j, ej, es, 2, 0);
        if (!ok)
            csm_lse_cols_f32_generic_avx2(x + j, 16, n, row_stride, scale, states + j);
    }
    for (; j + 8 <= n_cols; j += 8) {
        float *ej = e ? e + j : NULL;
        int ok = scale == 1.0
            ? lse_cols_group_f32_(x + j, n, row_stride, scale, span_s, states + j, ej, es, 1, 1)
            : lse_cols_group_f32_(x + j, n, row_stride, scale, span_s, states + j, ej, es, 1, 0);
        if (!ok)
            csm_lse_cols_f32_generic_avx2(x + j, 8, n, row_stride, scale, states + j);
    }
    if (j < n_cols)
        csm_lse_cols_f32_generic_avx2(x + j, n_cols - j, n, row_stride, scale,
                                      states + j);
}

void csm_lse_cols_f32_avx2(const float *x, ptrdiff_t n_cols, ptrdiff_t n,
                           ptrdiff_t row_stride, double scale,
                           csm_lse_state *states)
{
    lse_cols_f32_(x, n_cols, n, row_stride, scale, states, NULL, 0);
}

/* Column counterparts of csm_lse_store_rows_f32 / csm_softmax_scale_rows_f32
 * (the cross-entropy gradient along a non-last axis, from its tiles): the
 * store kernel keeps the terms of the fast groups in e; the rescale kernel
 * repeats the per-group decision from the max values (a NaN max fails the
 * clamp test) and writes from x the groups not stored or with a lane whose
 * factor f = alpha exp(-log_sum) 2^96 factor is outside [2^-92, 2^13] or
 * NaN.  y may be e, not x. */
void csm_lse_store_cols_f32_avx2(const float *x, ptrdiff_t n_cols, ptrdiff_t n,
        ptrdiff_t row_stride, double scale, csm_lse_state *states, float *e,
        ptrdiff_t e_row_stride)
{
    lse_cols_f32_(x, n_cols, n, row_stride, scale, states, e, e_row_stride);
}

void csm_softmax_scale_cols_f32_avx2(const float *x, ptrdiff_t n_cols,
        ptrdiff_t n, ptrdiff_t x_row_stride, double scale, const double *max,
        const double *log_sum, double alpha, float *y, ptrdiff_t y_row_stride)
{
    const double span_s = XR_SPAN / scale;
    const __m256d sv = _mm256_set1_pd(scale), av = _mm256_set1_pd(alpha);
    const __m256d up = _mm256_set1_pd(0x1p96), absmask =
        _mm256_castsi256_pd(_mm256_set1_epi64x(0x7FFFFFFFFFFFFFFFLL));
    const __m256d fmin = _mm256_set1_pd(0x1p-92), fmax = _mm256_set1_pd(0x1p13);
    const __m256 down = _mm256_set1_ps(0x1p-96f);
    ptrdiff_t j = 0;
    while (j + 8 <= n_cols) {
        const int G = j + 16 <= n_cols ? 2 : 1;
        __m256 fh[2], fl[2], ym[2];
        int ok = 1;
        for (int g = 0; g < G && ok; ++g) {
            const double *mp = max + j + 8 * g, *lp = log_sum + j + 8 * g;
            __m256d ml = _mm256_loadu_pd(mp), mh = _mm256_loadu_pd(mp + 4);
            __m256 L;
            if (!clamp_bound8_(ml, mh, sv, XR_SPAN, span_s, &L)) { ok = 0; break; }
            xr_row_ xc;
            __m256d fac[2];
            xr_lanes_init_(&xc, scale, ml, mh, &fac[0], &fac[1]);
            __m128 h[2], l[2], m[2];
            for (int k = 0; k < 2; ++k) {
                __m256d ls = _mm256_loadu_pd(lp + 4 * k);
                __m256d gv = _mm256_mul_pd(av, exp_f64_(_mm256_sub_pd(_mm256_setzero_pd(), ls)));
                __m256d f = _mm256_mul_pd(gv, _mm256_mul_pd(up, fac[k]));
                __m256d af = _mm256_and_pd(f, absmask);
                __m256d in = _mm256_and_pd(_mm256_cmp_pd(af, fmin, _CMP_GE_OQ),
                                           _mm256_cmp_pd(af, fmax, _CMP_LE_OQ));
                if (_mm256_movemask_pd(in) != 15) { ok = 0; break; }
                h[k] = _mm256_cvtpd_ps(f);
                l[k] = _mm256_cvtpd_ps(_mm256_sub_pd(f, _mm256_cvtps_pd(h[k])));
                m[k] = _mm256_cvtpd_ps(gv);
            }
            if (!ok) break;
            fh[g] = _mm256_set_m128(h[1], h[0]);
            fl[g] = _mm256_set_m128(l[1], l[0]);
            ym[g] = _mm256_set_m128(m[1], m[0]);
        }
        if (!ok) {
            csm_softmax_cols_f32_avx2(x + j, 8 * G, n, x_row_stride, scale,
                                      max + j, log_sum + j, alpha, y + j,
                                      y_row_stride);
        } else {
            for (ptrdiff_t i = 0; i < n; ++i) {
                float *yi = y + i * y_row_stride + j;
                for (int g = 0; g < G; ++g) {
                    __m256 e = _mm256_loadu_ps(yi + 8 * g);
                    __m256 v = _mm256_fmadd_ps(e, fh[g], _mm256_mul_ps(e, fl[g]));
                    _mm256_storeu_ps(yi + 8 * g,
                                     _mm256_blendv_ps(_mm256_mul_ps(v, down), ym[g], e));
                }
            }
        }
        j += 8 * G;
    }
    if (j < n_cols)
        csm_softmax_cols_f32_avx2(x + j, n_cols - j, n, x_row_stride, scale,
                                  max + j, log_sum + j, alpha, y + j, y_row_stride);
}

/* Softmax write: alpha is folded into the per-column constant,
 * y = exp(scale*x - (scale*max + log_sum - log alpha)) (one rounding), with
 * the sign of a negative alpha applied after; |log alpha| <= 39 (alpha in [2^-56, 2^56]) keeps the
 * results inside the exponent range softmax8_f32_ handles and the clamped
 * elements invisible. */
static inline int softmax_cols_prep8_(const double *max, const double *log_sum,
                                      __m256d sv, double la, double span_s,
                                      __m256d *cvl, __m256d *cvh, __m256 *L)
{
    __m256d ml = _mm256_loadu_pd(max), mh = _mm256_loadu_pd(max + 4);
    if (!clamp_bound8_(ml, mh, sv, F32_SM_SPAN, span_s, L)) return 0;
    const __m256d lav = _mm256_set1_pd(la);
    *cvl = _mm256_sub_pd(_mm256_fmadd_pd(sv, ml, _mm256_loadu_pd(log_sum)), lav);
    *cvh = _mm256_sub_pd(_mm256_fmadd_pd(sv, mh, _mm256_loadu_pd(log_sum + 4)), lav);
    /* log_sum must be finite and >= 0 (it is log(count + rest) >= 0) */
    __m256d okl = _mm256_cmp_pd(_mm256_loadu_pd(log_sum), _mm256_set1_pd(INFINITY), _CMP_LT_OQ);
    __m256d okh = _mm256_cmp_pd(_mm256_loadu_pd(log_sum + 4), _mm256_set1_pd(INFINITY), _CMP_LT_OQ);
    okl = _mm256_and_pd(okl, _mm256_cmp_pd(_mm256_loadu_pd(log_sum), _mm256_set1_pd(-INFINITY), _CMP_GT_OQ));
    okh = _mm256_and_pd(okh, _mm256_cmp_pd(_mm256_loadu_pd(log_sum + 4), _mm256_set1_pd(-INFINITY), _CMP_GT_OQ));
    return _mm256_movemask_pd(_mm256_and_pd(okl, okh)) == 15;
}

void csm_softmax_cols_f32_avx2(const float *x, ptrdiff_t n_cols, ptrdiff_t n,
        ptrdiff_t x_row_stride, double scale, const double *max,
        const double *log_sum, double alpha, float *y, ptrdiff_t y_row_stride)
{
    const double span_s = F32_SM_SPAN / scale;
    const __m256d sv = _mm256_set1_pd(scale);
    const double aa = fabs(alpha);
    const int fast_alpha = aa >= 0x1p-56 && aa <= 0x1p56;
    const double la = alpha == 1.0 ? 0.0 : (fast_alpha ? log(aa) : 0.0);
    const __m256 sgn = _mm256_set1_ps(alpha < 0 ? -0.0f : 0.0f);
    ptrdiff_t j = 0;
    for (; j + 8 <= n_cols; ) {
        __m256d cv0, cv1, cv2, cv3;
        __m256 L0, L1;
        int two = j + 16 <= n_cols;
        if (!fast_alpha ||
            !softmax_cols_prep8_(max + j, log_sum + j, sv, la, span_s, &cv0, &cv1, &L0)) {
            csm_softmax_cols_f32_generic_avx2(x + j, 8, n, x_row_stride, scale,
                max + j, log_sum + j, alpha, y + j, y_row_stride);
            j += 8;
            continue;
        }
        if (two && softmax_cols_prep8_(max + j + 8, log_sum + j + 8, sv, la,
                                       span_s, &cv2, &cv3, &L1)) {
            for (ptrdiff_t i = 0; i < n; ++i) {
                const float *xi = x + i * x_row_stride + j;
                float *yi = y + i * y_row_stride + j;
                COLS_PF(xi + 16);
                __m256 a = _mm256_max_ps(_mm256_loadu_ps(xi), L0);
                __m256 b = _mm256_max_ps(_mm256_loadu_ps(xi + 8), L1);
                a = _mm256_xor_ps(softmax8_f32_(a, sv, cv0, cv1), sgn);
                b = _mm256_xor_ps(softmax8_f32_(b, sv, cv2, cv3), sgn);
                _mm256_storeu_ps(yi, a);
                _mm256_storeu_ps(yi + 8, b);
            }
            j += 16;
        } else {
            for (ptrdiff_t i = 0; i < n; ++i) {
                const float *xi = x + i * x_row_stride + j;
                __m256 a = _mm256_max_ps(_mm256_loadu_ps(xi), L0);
                _mm256_storeu_ps(y + i * y_row_stride + j,
                                 _mm256_xor_ps(softmax8_f32_(a, sv, cv0, cv1), sgn));
            }
            j += 8;
        }
    }
    if (j < n_cols)
        csm_softmax_cols_f32_generic_avx2(x + j, n_cols - j, n, x_row_stride,
            scale, max + j, log_sum + j, alpha, y + j, y_row_stride);
}

/* ---- fused float32 softmax columns (one exp per element) ---------------
 *
 * The fused row scheme (csm_softmax_fused_rows_f32_avx2) on a group of 16
 * (or 8) columns, each lane with its own max: max pass; the lane-wise
 * all-float32 reduction storing e'_i = 2^XR_BIAS exp(r_M) exp(s (x_i - M))
 * into y (sentinel -1 where x_i == M) and summing it; per lane
 * f = alpha 2^96 factor / S, ym = fl32(alpha / S); then the rescale pass
 * y = (e' f) 2^-XR_BIAS, sentinels ym.  A group with a NaN, an infinite
 * max or no representable clamp is decided before anything is written
 * and takes the reduction + finalize + write kernels (so x == y is fine);
 * so does everything when alpha is outside [FUSED_ALPHA_MIN,
 * FUSED_ALPHA_MAX] (then f is in the range of xr_scale_row_f32_ for every
 * clean lane: S in [1, 2^30]). */
static inline __attribute__((always_inline)) int
softmax_fused_cols_group_f32_(const float *x, ptrdiff_t n, ptrdiff_t rs,
                              double scale, double span_s, double alpha,
                              float *y, ptrdiff_t ys, const int G, const int S1)
{
    const __m256 ninf = _mm256_set1_ps(-INFINITY), neg1 = _mm256_set1_ps(-1.0f);
    const __m256d sv = _mm256_set1_pd(scale);
    __m256 mm[2] = { ninf, ninf }, bad = _mm256_setzero_ps();
    for (ptrdiff_t i = 0; i < n; ++i) {
        const float *xi = x + i * rs;
        COLS_PF(xi + 16 * G);
        __m256 a = _mm256_loadu_ps(xi);
        mm[0] = _mm256_max_ps(mm[0], a);
        if (G == 2) {
            __m256 b = _mm256_loadu_ps(xi + 8);
            mm[1] = _mm256_max_ps(mm[1], b);
            bad = _mm256_or_ps(bad, _mm256_cmp_ps(a, b, _CMP_UNORD_Q));
        } else {
            bad = _mm256_or_ps(bad, _mm256_cmp_ps(a, a, _CMP_UNORD_Q));
        }
    }
    if (_mm256_movemask_ps(bad)) return 0;
    __m256d mx[4];
    __m256 L[2] = { ninf, ninf };
    for (int g = 0; g < G; ++g) {
        mx[2 * g] = _mm256_cvtps_pd(_mm256_castps256_ps128(mm[g]));
        mx[2 * g + 1] = _mm256_cvtps_pd(_mm256_extractf128_ps(mm[g], 1));
        if (!clamp_bound8_(mx[2 * g], mx[2 * g + 1], sv, XR_SPAN, span_s, &L[g]))
            return 0;
    }
    xr_row_ xc[2];
    __m256d fac[4];
    for (int g = 0; g < G; ++g)
        xr_lanes_init_(&xc[g], scale, mx[2 * g], mx[2 * g + 1], &fac[2 * g],
                       &fac[2 * g + 1]);
    __m256d r[4] = { _mm256_setzero_pd(), _mm256_setzero_pd(),
                     _mm256_setzero_pd(), _mm256_setzero_pd() };
    __m256i cnt[2] = { _mm256_setzero_si256(), _mm256_setzero_si256() };
    for (ptrdiff_t i = 0; i < n; ++i) {
        const float *xi = x + i * rs;
        float *yi = y + i * ys;
        for (int g = 0; g < G; ++g) {
            __m256 a = _mm256_loadu_ps(xi + 8 * g);
            __m256 eq = _mm256_cmp_ps(a, mm[g], _CMP_EQ_OQ);
            cnt[g] = _mm256_sub_epi32(cnt[g], _mm256_castps_si256(eq));
            __m256 e = xr_exp_(_mm256_blendv_ps(_mm256_max_ps(a, L[g]), L[g], eq),
                               &xc[g], S1);
            _mm256_storeu_ps(yi + 8 * g, _mm256_blendv_ps(e, neg1, eq));
            r[2 * g] = _mm256_add_pd(r[2 * g], _mm256_cvtps_pd(_mm256_castps256_ps128(e)));
            r[2 * g + 1] = _mm256_add_pd(r[2 * g + 1],
                                         _mm256_cvtps_pd(_mm256_extractf128_ps(e, 1)));
        }
    }
    const __m256d av = _mm256_set1_pd(alpha), up = _mm256_set1_pd(0x1p96);
    __m256 fh[2], fl[2], ym[2];
    for (int g = 0; g < G; ++g) {
        __m128 h[2], l[2], m[2];
        for (int k = 0; k < 2; ++k) {
            __m128i c4 = k ? _mm256_extracti128_si256(cnt[g], 1)
                           : _mm256_castsi256_si128(cnt[g]);
            __m256d S = _mm256_fmadd_pd(r[2 * g + k], fac[2 * g + k],
                                        _mm256_cvtepi32_pd(c4));
            __m256d f = _mm256_div_pd(_mm256_mul_pd(av, _mm256_mul_pd(up, fac[2 * g + k])), S);
            h[k] = _mm256_cvtpd_ps(f);
            l[k] = _mm256_cvtpd_ps(_mm256_sub_pd(f, _mm256_cvtps_pd(h[k])));
            m[k] = _mm256_cvtpd_ps(_mm256_div_pd(av, S));
        }
        fh[g] = _mm256_set_m128(h[1], h[0]);
        fl[g] = _mm256_set_m128(l[1], l[0]);
        ym[g] = _mm256_set_m128(m[1], m[0]);
    }
    const __m256 down = _mm256_set1_ps(0x1p-96f);
    for (ptrdiff_t i = 0; i < n; ++i) {
        float *yi = y + i * ys;
        for (int g = 0; g < G; ++g) {
            __m256 e = _mm256_loadu_ps(yi + 8 * g);
            __m256 v = _mm256_fmadd_ps(e, fh[g], _mm256_mul_ps(e, fl[g]));
            _mm256_storeu_ps(yi + 8 * g,
                             _mm256_blendv_ps(_mm256_mul_ps(v, down), ym[g], e));
        }
    }
    return 1;
}

static void softmax_fused_cols_direct_f32_(const float *x, ptrdiff_t n_cols,
        ptrdiff_t n, ptrdiff_t x_row_stride, double scale, double alpha,
        float *y, ptrdiff_t y_row_stride)
{
    const double span_s = XR_SPAN / scale;
    ptrdiff_t j = 0;
    for (; j + 8 <= n_cols; ) {
        const int G = j + 16 <= n_cols ? 2 : 1;
        int ok = G == 2
            ? (scale == 1.0
               ? softmax_fused_cols_group_f32_(x + j, n, x_row_stride, scale, span_s,
                                               alpha, y + j, y_row_stride, 2, 1)
               : softmax_fused_cols_group_f32_(x + j, n, x_row_stride, scale, span_s,
                                               alpha, y + j, y_row_stride, 2, 0))
            : (scale == 1.0
               ? softmax_fused_cols_group_f32_(x + j, n, x_row_stride, scale, span_s,
                                               alpha, y + j, y_row_stride, 1, 1)
               : softmax_fused_cols_group_f32_(x + j, n, x_row_stride, scale, span_s,
                                               alpha, y + j, y_row_stride, 1, 0));
        if (!ok) {
            csm_lse_state st[16];
            double mx[16], ls[16];
            csm_lse_cols_f32_avx2(x + j, 8 * G, n, x_row_stride, scale, st);
            csm_finalize_avx2(st, 8 * G, scale, mx, ls);
            csm_softmax_cols_f32_avx2(x + j, 8 * G, n, x_row_stride, scale, mx,
                                      ls, alpha, y + j, y_row_stride);
        }
        j += 8 * G;
    }
    if (j < n_cols) {
        csm_lse_state st[8];
        double mx[8], ls[8];
        ptrdiff_t w = n_cols - j;
        csm_lse_cols_f32_avx2(x + j, w, n, x_row_stride, scale, st);
        csm_finalize_avx2(st, w, scale, mx, ls);
        csm_softmax_cols_f32_avx2(x + j, w, n, x_row_stride, scale, mx, ls,
                                  alpha, y + j, y_row_stride);
    }
}

/* y[0:w] = s[0:w] for an output that is not read back soon: whole cache
 * lines with streaming stores (no read-for-ownership), the partial lines
 * at either end with plain stores.  The caller fences (_mm_sfence). */
static void copy_out_nt_f32_(float *d, const float *s, ptrdiff_t w)
{
    uintptr_t a = (uintptr_t)d;
    ptrdiff_t k = 0;
    if (a % sizeof(float)) {
        memcpy(d, s, (size_t)w * sizeof(float));
        return;
    }
    ptrdiff_t head = (ptrdiff_t)(((64 - a % 64) % 64) / sizeof(float));
    if (head > w) head = w;
    for (; k < head; ++k) d[k] = s[k];
    for (; k + 16 <= w; k += 16) {
        _mm256_stream_ps(d + k, _mm256_loadu_ps(s + k));
        _mm256_stream_ps(d + k + 8, _mm256_loadu_ps(s + k + 8));
    }
    for (; k < w; ++k) d[k] = s[k];
}

/* Column tiles: the n rows of a non-last-axis block are usually a multiple
 * of 4 KiB apart (64 KiB for 128 x 128 images), so in every cache level
 * they fall into the same sets and the three passes of the fused kernel
 * evict each other's lines; the store pass also reads-for-ownership every
 * output line from DRAM.  Rows of n <= COLS_TILE / 64 columns are copied,
 * COLS_TILE floats at a time (at least 64 columns), into a tile with a
 * padded pitch, processed there into a second tile (fused softmax, or the
 * log_softmax kernels), and the result streamed out (copy_out_nt_f32_).  Measured on (32, 21, 128, 128),
 * axis 1, 1 thread: 1.8-2.2 -> 1.5-1.6 ns/el. */
#define COLS_TILE 8192

/* log_softmax of a block of columns: reduction, finalize, write */
static void log_softmax_cols_block_f32_(const float *x, ptrdiff_t n_cols,
        ptrdiff_t n, ptrdiff_t x_row_stride, double scale, double alpha,
        float *y, ptrdiff_t y_row_stride, csm_lse_state *st, double *mx,
        double *ls)
{
    csm_lse_cols_f32_avx2(x, n_cols, n, x_row_stride, scale, st);
    csm_finalize_avx2(st, n_cols, scale, mx, ls);
    csm_log_softmax_cols_f32_avx2(x, n_cols, n, x_row_stride, scale, mx, ls,
                                  alpha, y, y_row_stride);
}

static void softmax_cols_unfused_f32_(const float *x, ptrdiff_t n_cols,
        ptrdiff_t n, ptrdiff_t x_row_stride, double scale, double alpha,
        float *y, ptrdiff_t y_row_stride)
{
    for (ptrdiff_t j = 0; j < n_cols; j += 16) {
        csm_lse_state st[16];
        double mx[16], ls[16];
        ptrdiff_t w = n_cols - j < 16 ? n_cols - j : 16;
        csm_lse_cols_f32_avx2(x + j, w, n, x_row_stride, scale, st);
        csm_finalize_avx2(st, w, scale, mx, ls);
        csm_softmax_cols_f32_avx2(x + j, w, n, x_row_stride, scale, mx, ls,
                                  alpha, y + j, y_row_stride);
    }
}

/* The tile loop shared by the column softmax (log = 0: fused kernel) and
 * log_softmax (log = 1: reduction + finalize + write on the tile). */
static void cols_tiled_f32_(const float *x, ptrdiff_t n_cols, ptrdiff_t n,
        ptrdiff_t x_row_stride, double scale, double alpha, float *y,
        ptrdiff_t y_row_stride, const int log)
{
    ptrdiff_t tw = n > 0 ? (COLS_TILE / n) & ~(ptrdiff_t)15 : 0;
    if (tw > n_cols) tw = (n_cols + 15) & ~(ptrdiff_t)15;
    const ptrdiff_t P = tw + 16;          /* pitch: rows 64 bytes off a multiple */
    size_t tile_bytes = 2 * sizeof(float) * (size_t)(n * P);
    size_t st_bytes = log ? (sizeof(csm_lse_state) + 2 * sizeof(double)) * (size_t)tw : 0;
    void *raw = tw >= 64 && n_cols >= 64 ? malloc(tile_bytes + st_bytes + 64) : NULL;
    if (raw == NULL) {
        if (log) {
            csm_lse_state st[64];
            double mx[64], ls[64];
            for (ptrdiff_t j = 0; j < n_cols; j += 64)
                log_softmax_cols_block_f32_(x + j, n_cols - j < 64 ? n_cols - j : 64,
                    n, x_row_stride, scale, alpha, y + j, y_row_stride, st, mx, ls);
        } else {
            softmax_fused_cols_direct_f32_(x, n_cols, n, x_row_stride, scale,
                                           alpha, y, y_row_stride);
        }
        return;
    }
    float *tx = (float *)(((uintptr_t)raw + 63) & ~(uintptr_t)63), *ty = tx + n * P;
    csm_lse_state *st = (csm_lse_state *)(ty + n * P);
    double *mx = (double *)(st + tw), *ls = mx + tw;
    for (ptrdiff_t j = 0; j < n_cols; j += tw) {
        ptrdiff_t w = n_cols - j < tw ? n_cols - j : tw;
        for (ptrdiff_t i = 0; i < n; ++i) {
            const float *src = x + i * x_row_stride + j;
            /* the next tile's row, while this one is copied */
            for (ptrdiff_t k = 0; k < w; k += 16)
                _mm_prefetch((const char *)(src + w + k), _MM_HINT_T0);
            memcpy(tx + i * P, src, (size_t)w * sizeof(float));
        }
        if (log)
            log_softmax_cols_block_f32_(tx, w, n, P, scale, alpha, ty, P, st, mx, ls);
        else
            softmax_fused_cols_direct_f32_(tx, w, n, P, scale, alpha, ty, P);
        for (ptrdiff_t i = 0; i < n; ++i)
            copy_out_nt_f32_(y + i * y_row_stride + j, ty + i * P, w);
    }
    _mm_sfence();
    free(raw);
}

void csm_softmax_fused_cols_f32_avx2(const float *x, ptrdiff_t n_cols,
        ptrdiff_t n, ptrdiff_t x_row_stride, double scale, double alpha,
        float *y, ptrdiff_t y_row_stride)
{
    const int ok_a = alpha >= FUSED_ALPHA_MIN && alpha <= FUSED_ALPHA_MAX &&
                     n <= ((ptrdiff_t)1 << 30);
    if (!ok_a)
        softmax_cols_unfused_f32_(x, n_cols, n, x_row_stride, scale, alpha, y,
                                  y_row_stride);
    else
        cols_tiled_f32_(x, n_cols, n, x_row_stride, scale, alpha, y,
                        y_row_stride, 0);
}

void csm_copy_rows_nt_f32_avx2(float *d, ptrdiff_t d_row_stride,
        const float *s, ptrdiff_t s_row_stride, ptrdiff_t n_rows, ptrdiff_t n)
{
    for (ptrdiff_t i = 0; i < n_rows; ++i)
        copy_out_nt_f32_(d + i * d_row_stride, s + i * s_row_stride, n);
    _mm_sfence();
}

void csm_log_softmax_tiled_cols_f32_avx2(const float *x, ptrdiff_t n_cols,
        ptrdiff_t n, ptrdiff_t x_row_stride, double scale, double alpha,
        float *y, ptrdiff_t y_row_stride)
{
    cols_tiled_f32_(x, n_cols, n, x_row_stride, scale, alpha, y, y_row_stride, 1);
}

/* c = max + log_sum of 8 lanes (float32 max, finite log_sum) as three
 * float32 parts c1 + c2 + c3, as in log_softmax_row_f32_c3_ */
static inline void c3_split8_(__m256d ml, __m256d mh, __m256d ll, __m256d lh,
                              __m256 *c1, __m256 *c2, __m256 *c3)
{
    __m256 f1 = _mm256_set_m128(_mm256_cvtpd_ps(_mm256_add_pd(mh, lh)),
                                _mm256_cvtpd_ps(_mm256_add_pd(ml, ll)));
    __m256d rl = _mm256_add_pd(_mm256_sub_pd(ml, _mm256_cvtps_pd(_mm256_castps256_ps128(f1))), ll);
    __m256d rh = _mm256_add_pd(_mm256_sub_pd(mh, _mm256_cvtps_pd(_mm256_extractf128_ps(f1, 1))), lh);
    __m128 f2l = _mm256_cvtpd_ps(rl), f2h = _mm256_cvtpd_ps(rh);
    __m128 f3l = _mm256_cvtpd_ps(_mm256_sub_pd(rl, _mm256_cvtps_pd(f2l)));
    __m128 f3h = _mm256_cvtpd_ps(_mm256_sub_pd(rh, _mm256_cvtps_pd(f2h)));
    *c1 = f1;
    *c2 = _mm256_set_m128(f2h, f2l);
    *c3 = _mm256_set_m128(f3h, f3l);
}

/* log-softmax write: y = scale * (x - max) - log_sum per lane (finite max);
 * at scale 1 (and finite log_sum) in float32 lanes (logsm8_c3_f32_). */
void csm_log_softmax_cols_f32_avx2(const float *x, ptrdiff_t n_cols,
        ptrdiff_t n, ptrdiff_t x_row_stride, double scale, const double *max,
        const double *log_sum, double alpha, float *y, ptrdiff_t y_row_stride)
{
    const __m256d sv = _mm256_set1_pd(scale);
    const __m256d absmask = _mm256_castsi256_pd(_mm256_set1_epi64x(0x7FFFFFFFFFFFFFFFLL));
    const __m256d inf = _mm256_set1_pd(INFINITY);
    ptrdiff_t j = 0;
    for (; j + 16 <= n_cols; j += 16) {
        __m256d m0 = _mm256_loadu_pd(max + j), m1 = _mm256_loadu_pd(max + j + 4);
        __m256d m2 = _mm256_loadu_pd(max + j + 8), m3 = _mm256_loadu_pd(max + j + 12);
        __m256d fin = _mm256_and_pd(
            _mm256_and_pd(_mm256_cmp_pd(_mm256_and_pd(m0, absmask), inf, _CMP_LT_OQ),
                          _mm256_cmp_pd(_mm256_and_pd(m1, absmask), inf, _CMP_LT_OQ)),
            _mm256_and_pd(_mm256_cmp_pd(_mm256_and_pd(m2, absmask), inf, _CMP_LT_OQ),
                          _mm256_cmp_pd(_mm256_and_pd(m3, absmask), inf, _CMP_LT_OQ)));
        if (_mm256_movemask_pd(fin) != 15) {
            csm_log_softmax_cols_f32_generic_avx2(x + j, 16, n, x_row_stride,
                scale, max + j, log_sum + j, alpha, y + j, y_row_stride);
            continue;
        }
        __m256d l0 = _mm256_loadu_pd(log_sum + j), l1 = _mm256_loadu_pd(log_sum + j + 4);
        __m256d l2 = _mm256_loadu_pd(log_sum + j + 8), l3 = _mm256_loadu_pd(log_sum + j + 12);
        __m256d lfin = _mm256_and_pd(
            _mm256_and_pd(_mm256_cmp_pd(l0, inf, _CMP_LT_OQ), _mm256_cmp_pd(l1, inf, _CMP_LT_OQ)),
            _mm256_and_pd(_mm256_cmp_pd(l2, inf, _CMP_LT_OQ), _mm256_cmp_pd(l3, inf, _CMP_LT_OQ)));
        if (scale == 1.0 && _mm256_movemask_pd(lfin) == 15) {
            /* float32 lanes, as log_softmax_row_f32_c3_ */
            __m256 a1, a2, a3, b1, b2, b3;
            c3_split8_(m0, m1, l0, l1, &a1, &a2, &a3);
            c3_split8_(m2, m3, l2, l3, &b1, &b2, &b3);
            for (ptrdiff_t i = 0; i < n; ++i) {
                const float *xi = x + i * x_row_stride + j;
                float *yi = y + i * y_row_stride + j;
                COLS_PF(xi + 16);
                _mm256_storeu_ps(yi, logsm8_c3_f32_(_mm256_loadu_ps(xi), a1, a2, a3));
                _mm256_storeu_ps(yi + 8, logsm8_c3_f32_(_mm256_loadu_ps(xi + 8), b1, b2, b3));
            }
            continue;
        }
        for (ptrdiff_t i = 0; i < n; ++i) {
            const float *xi = x + i * x_row_stride + j;
            float *yi = y + i * y_row_stride + j;
            COLS_PF(xi + 16);
            __m256 a = logsmc8_f32_(_mm256_loadu_ps(xi), sv, m0, m1, l0, l1);
            __m256 b = logsmc8_f32_(_mm256_loadu_ps(xi + 8), sv, m2, m3, l2, l3);
            _mm256_storeu_ps(yi, a);
            _mm256_storeu_ps(yi + 8, b);
        }
    }
    if (j < n_cols)
        csm_log_softmax_cols_f32_generic_avx2(x + j, n_cols - j, n, x_row_stride,
            scale, max + j, log_sum + j, alpha, y + j, y_row_stride);
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

void csm_finalize_avx2(const csm_lse_state *states, ptrdiff_t n, double scale,
                       double *max, double *log_sum)
{
    ptrdiff_t r = 0;
    for (; r + 4 <= n; r += 4) {
        const csm_lse_state *s = states + r;
        __m256d mx = _mm256_setr_pd(s[0].max, s[1].max, s[2].max, s[3].max);
        __m256d cn = _mm256_setr_pd(s[0].count, s[1].count, s[2].count, s[3].count);
        __m256d rs = _mm256_setr_pd(s[0].rest, s[1].rest, s[2].rest, s[3].rest);
        __m256d fin = _mm256_and_pd(
            _mm256_cmp_pd(mx, _mm256_set1_pd(-INFINITY), _CMP_GT_OQ),
            _mm256_cmp_pd(mx, _mm256_set1_pd(INFINITY), _CMP_LT_OQ));
        if (_mm256_movemask_pd(fin) != 15) {
            csm_finalize_scalar(s, 4, scale, max + r, log_sum + r);
            continue;
        }
        /* u = count + rest with its rounding error c (TwoSum); log(u) + c/u */
        __m256d u = _mm256_add_pd(cn, rs);
        __m256d bb = _mm256_sub_pd(u, cn);
        __m256d c = _mm256_add_pd(_mm256_sub_pd(cn, _mm256_sub_pd(u, bb)),
                                  _mm256_sub_pd(rs, bb));
        __m256d ls = _mm256_add_pd(log_ge1_pd_(u), _mm256_div_pd(c, u));
        _mm256_storeu_pd(max + r, mx);
        _mm256_storeu_pd(log_sum + r, ls);
    }
    if (r < n) csm_finalize_scalar(states + r, n - r, scale, max + r, log_sum + r);
}

/* ---- backward (VJP) over contiguous rows --------------------------------
 * Both passes widen to float64 (4 lanes) and sum with 4 accumulators.
 * log_softmax needs exp(y): the vector exp is valid for y <= 0 (what a
 * log-probability is); a row holding y > 0 or NaN is done by the scalar
 * kernel (libm exp, IEEE propagation).  dy - exp(y) * sum is one fused
 * multiply-add rounded to float64, then once to the result type, with an
 * exp accurate enough for the difference: float32 data, exp_mid_ (2^-43);
 * float64 data, the float64 exp. */
#define DEFINE_AVX2_BWD(T, SUF, EXP)                                           \
void csm_softmax_bwd_rows_##SUF##_avx2(const T *y, const T *dy, T *o,          \
                                       ptrdiff_t n_rows, ptrdiff_t n)          \
{                                                                              \
    for (ptrdiff_t r = 0; r < n_rows; ++r) {                                   \
        const T *yr = y + r * n, *gr = dy + r * n; T *orow = o + r * n;        \
        __m256d s0 = _mm256_setzero_pd(), s1 = s0, s2 = s0, s3 = s0;           \
        __m256d a, b, c, d;                                                    \
        ptrdiff_t i = 0;                                                       \
        for (; i + 16 <= n; i += 16) {                                         \
            load8_##SUF##_(yr + i, &a, &b); load8_##SUF##_(gr + i, &c, &d);    \
            s0 = _mm256_fmadd_pd(a, c, s0); s1 = _mm256_fmadd_pd(b, d, s1);    \
            load8_##SUF##_(yr + i + 8, &a, &b);                                \
            load8_##SUF##_(gr + i + 8, &c, &d);                                \
            s2 = _mm256_fmadd_pd(a, c, s2); s3 = _mm256_fmadd_pd(b, d, s3);    \
        }                                                                      \
        for (; i + 8 <= n; i += 8) {                                           \
            load8_##SUF##_(yr + i, &a, &b); load8_##SUF##_(gr + i, &c, &d);    \
            s0 = _mm256_fmadd_pd(a, c, s0); s1 = _mm256_fmadd_pd(b, d, s1);    \
        }                                                                      \
        if (i < n) {                                                           \
            load8m_##SUF##_(yr + i, n - i, 0, &a, &b);                         \
            load8m_##SUF##_(gr + i, n - i, 0, &c, &d);                         \
            s0 = _mm256_fmadd_pd(a, c, s0); s1 = _mm256_fmadd_pd(b, d, s1);    \
        }                                                                      \
        const __m256d sv = _mm256_set1_pd(                                     \
            hsum_pd_(_mm256_add_pd(_mm256_add_pd(s0, s1), _mm256_add_pd(s2, s3)))); \
        for (i = 0; i + 8 <= n; i += 8) {                                      \
            load8_##SUF##_(yr + i, &a, &b); load8_##SUF##_(gr + i, &c, &d);    \
            store8_##SUF##_(orow + i, _mm256_mul_pd(a, _mm256_sub_pd(c, sv)),  \
                            _mm256_mul_pd(b, _mm256_sub_pd(d, sv)));           \
        }                                                                      \
        if (i < n) {                                                           \
            load8m_##SUF##_(yr + i, n - i, 0, &a, &b);                         \
            load8m_##SUF##_(gr + i, n - i, 0, &c, &d);                         \
            store8m_##SUF##_(orow + i, n - i,                                  \
                             _mm256_mul_pd(a, _mm256_sub_pd(c, sv)),           \
                             _mm256_mul_pd(b, _mm256_sub_pd(d, sv)));          \
        }                                                                      \
    }                                                                          \
}                                                                              \
void csm_log_softmax_bwd_rows_##SUF##_avx2(const T *y, const T *dy, T *o,      \
                                           ptrdiff_t n_rows, ptrdiff_t n)      \
{                                                                              \
    const __m256d zero = _mm256_setzero_pd();                                  \
    for (ptrdiff_t r = 0; r < n_rows; ++r) {                                   \
        const T *yr = y + r * n, *gr = dy + r * n; T *orow = o + r * n;        \
        __m256d s0 = zero, s1 = zero, s2 = zero, s3 = zero, bad = zero;        \
        __m256d a, b, c, d;                                                    \
        ptrdiff_t i = 0;                                                       \
        for (; i + 16 <= n; i += 16) {                                         \
            load8_##SUF##_(yr + i, &a, &b); load8_##SUF##_(gr + i, &c, &d);    \
            s0 = _mm256_add_pd(s0, c); s1 = _mm256_add_pd(s1, d);              \
            bad = _mm256_or_pd(bad, _mm256_or_pd(                              \
                _mm256_cmp_pd(a, zero, _CMP_NLE_UQ),                           \
                _mm256_cmp_pd(b, zero, _CMP_NLE_UQ)));                         \
            load8_##SUF##_(yr + i + 8, &a, &b);                                \
            load8_##SUF##_(gr + i + 8, &c, &d);                                \
            s2 = _mm256_add_pd(s2, c); s3 = _mm256_add_pd(s3, d);              \
            bad = _mm256_or_pd(bad, _mm256_or_pd(                              \
                _mm256_cmp_pd(a, zero, _CMP_NLE_UQ),                           \
                _mm256_cmp_pd(b, zero, _CMP_NLE_UQ)));                         \
        }                                                                      \
        for (; i + 8 <= n; i += 8) {                                           \
            load8_##SUF##_(yr + i, &a, &b); load8_##SUF##_(gr + i, &c, &d);    \
            s0 = _mm256_add_pd(s0, c); s1 = _mm256_add_pd(s1, d);              \
            bad = _mm256_or_pd(bad, _mm256_or_pd(                              \
                _mm256_cmp_pd(a, zero, _CMP_NLE_UQ),                           \
                _mm256_cmp_pd(b, zero, _CMP_NLE_UQ)));                         \
        }                                                                      \
        if (i < n) {                                                           \
            load8m_##SUF##_(yr + i, n - i, 0, &a, &b);                         \
            load8m_##SUF##_(gr + i, n - i, 0, &c, &d);                         \
            s0 = _mm256_add_pd(s0, c); s1 = _mm256_add_pd(s1, d);              \
            bad = _mm256_or_pd(bad, _mm256_or_pd(                              \
                _mm256_cmp_pd(a, zero, _CMP_NLE_UQ),                           \
                _mm256_cmp_pd(b, zero, _CMP_NLE_UQ)));                         \
        }                                                                      \
        if (_mm256_movemask_pd(bad)) {                                         \
            csm_log_softmax_bwd_rows_##SUF##_scalar(yr, gr, orow, 1, n);       \
            continue;                                                          \
        }                                                                      \
        const __m256d sv = _mm256_set1_pd(                                     \
            hsum_pd_(_mm256_add_pd(_mm256_add_pd(s0, s1), _mm256_add_pd(s2, s3)))); \
        for (i = 0; i + 8 <= n; i += 8) {                                      \
            load8_##SUF##_(yr + i, &a, &b); load8_##SUF##_(gr + i, &c, &d);    \
            store8_##SUF##_(orow + i, EXP(a, sv, c),         \
                            EXP(b, sv, d));                  \
        }                                                                      \
        if (i < n) {                                                           \
            load8m_##SUF##_(yr + i, n - i, 0, &a, &b);                         \
            load8m_##SUF##_(gr + i, n - i, 0, &c, &d);                         \
            store8m_##SUF##_(orow + i, n - i, EXP(a, sv, c), \
                             EXP(b, sv, d));                 \
        }                                                                      \
    }                                                                          \
}
DEFINE_AVX2_BWD(float, f32, lsb_f32_)
DEFINE_AVX2_BWD(double, f64, lsb_f64_)

/* ---- backward (VJP) over columns ----------------------------------------
 * n_cols columns of n rows (row_stride apart; the same for y, dy and o,
 * which may be dy itself): the row kernels' arithmetic (float64 lanes and
 * sums) 8 columns at a time.  log_softmax: a group of 8 columns holding
 * y > 0 or NaN is done column by column with libm exp (IEEE propagation),
 * as the row kernel does such a row. */
#define DEFINE_AVX2_BWD_COLS(T, SUF, EXP)                                      \
static void log_bwd_col_##SUF##_(const T *y, const T *dy, T *o, ptrdiff_t n,   \
                                 ptrdiff_t rs)                                 \
{                                                                              \
    double s = 0.0;                                                            \
    for (ptrdiff_t i = 0; i < n; ++i) s += (double)dy[i * rs];                 \
    for (ptrdiff_t i = 0; i < n; ++i)                                          \
        o[i * rs] = (T)((double)dy[i * rs] - exp((double)y[i * rs]) * s);      \
}                                                                              \
void csm_softmax_bwd_cols_##SUF##_avx2(const T *y, const T *dy, T *o,          \
        ptrdiff_t n_cols, ptrdiff_t n, ptrdiff_t rs)                           \
{                                                                              \
    for (ptrdiff_t j = 0; j < n_cols; j += 8) {                                \
        const ptrdiff_t w = n_cols - j < 8 ? n_cols - j : 8;                   \
        __m256d s0 = _mm256_setzero_pd(), s1 = s0, a, b, c, d;                 \
        for (ptrdiff_t i = 0; i < n; ++i) {                                    \
            if (w == 8) {                                                      \
                load8_##SUF##_(y + i * rs + j, &a, &b);                        \
                load8_##SUF##_(dy + i * rs + j, &c, &d);                       \
            } else {                                                           \
                load8m_##SUF##_(y + i * rs + j, w, 0, &a, &b);                 \
                load8m_##SUF##_(dy + i * rs + j, w, 0, &c, &d);                \
            }                                                                  \
            s0 = _mm256_fmadd_pd(a, c, s0); s1 = _mm256_fmadd_pd(b, d, s1);    \
        }                                                                      \
        for (ptrdiff_t i = 0; i < n; ++i) {                                    \
            if (w == 8) {                                                      \
                load8_##SUF##_(y + i * rs + j, &a, &b);                        \
                load8_##SUF##_(dy + i * rs + j, &c, &d);                       \
                store8_##SUF##_(o + i * rs + j, _mm256_mul_pd(a, _mm256_sub_pd(c, s0)), \
                                _mm256_mul_pd(b, _mm256_sub_pd(d, s1)));       \
            } else {                                                           \
                load8m_##SUF##_(y + i * rs + j, w, 0, &a, &b);                 \
                load8m_##SUF##_(dy + i * rs + j, w, 0, &c, &d);                \
                store8m_##SUF##_(o + i * rs + j, w,                            \
                                 _mm256_mul_pd(a, _mm256_sub_pd(c, s0)),       \
                                 _mm256_mul_pd(b, _mm256_sub_pd(d, s1)));      \
            }                                                                  \
        }                                                                      \
    }                                                                          \
}                                                                              \
void csm_log_softmax_bwd_cols_##SUF##_avx2(const T *y, const T *dy, T *o,      \
        ptrdiff_t n_cols, ptrdiff_t n, ptrdiff_t rs)                           \
{                                                                              \
    const __m256d zero = _mm256_setzero_pd();                                  \
    for (ptrdiff_t j = 0; j < n_cols; j += 8) {                                \
        const ptrdiff_t w = n_cols - j < 8 ? n_cols - j : 8;                   \
        __m256d s0 = zero, s1 = zero, bad = zero, a, b, c, d;                  \
        for (ptrdiff_t i = 0; i < n; ++i) {                                    \
            if (w == 8) {                                                      \
                load8_##SUF##_(y + i * rs + j, &a, &b);                        \
                load8_##SUF##_(dy + i * rs + j, &c, &d);                       \
            } else {                                                           \
                load8m_##SUF##_(y + i * rs + j, w, 0, &a, &b);                 \
                load8m_##SUF##_(dy + i * rs + j, w, 0, &c, &d);                \
            }                                                                  \
            s0 = _mm256_add_pd(s0, c); s1 = _mm256_add_pd(s1, d);              \
            bad = _mm256_or_pd(bad, _mm256_or_pd(                              \
                _mm256_cmp_pd(a, zero, _CMP_NLE_UQ),                           \
                _mm256_cmp_pd(b, zero, _CMP_NLE_UQ)));                         \
        }                                                                      \
        if (_mm256_movemask_pd(bad)) {                                         \
            for (ptrdiff_t k = 0; k < w; ++k)                                  \
                log_bwd_col_##SUF##_(y + j + k, dy + j + k, o + j + k, n, rs); \
            continue;                                                          \
        }                                                                      \
        for (ptrdiff_t i = 0; i < n; ++i) {                                    \
            if (w == 8) {                                                      \
                load8_##SUF##_(y + i * rs + j, &a, &b);                        \
                load8_##SUF##_(dy + i * rs + j, &c, &d);                       \
                store8_##SUF##_(o + i * rs + j, EXP(a, s0, c), \
                                EXP(b, s1, d));              \
            } else {                                                           \
                load8m_##SUF##_(y + i * rs + j, w, 0, &a, &b);                 \
                load8m_##SUF##_(dy + i * rs + j, w, 0, &c, &d);                \
                store8m_##SUF##_(o + i * rs + j, w,                            \
                                 EXP(a, s0, c),              \
                                 EXP(b, s1, d));             \
            }                                                                  \
        }                                                                      \
    }                                                                          \
}
DEFINE_AVX2_BWD_COLS(float, f32, lsb_f32_)
DEFINE_AVX2_BWD_COLS(double, f64, lsb_f64_)
#undef DEFINE_AVX2_BWD_COLS

/* ==== short rows: several rows per vector (n <= CSM_SMALL_MAX) ==========
 *
 * For short rows the per-row kernels above are dominated by fixed costs
 * (horizontal max and sums, masked tails, the per-row clamp, finalize and
 * call overhead).  These kernels put rows in the lanes instead: a group of
 * 8 rows (float32) or 4 rows (float64) is transposed, 8x8 / 4x4 tiles at a
 * time, into an aligned column-major scratch on the stack,
 *     T[i] = (x[r][i], x[r+1][i], ...),   i < n,
 * reduced or written with the per-element steps of the row kernels (the
 * float32 fast paths: clamp, int32 counts, float64 exp_f32acc_ for the sum,
 * softmax8_f32_ for the write; float64: exp_f64_ and exact compares) with a
 * per-lane max / clamp / log_sum, finalized 4 lanes at a time as in
 * csm_finalize_avx2, and (write pass) transposed back.
 *
 * Every lane is computed on its own: a row that cannot take the float32
 * fast path (clamp not representable, |scale*max| > 2^20, alpha != 1) takes
 * the generic float64-exp step in a second masked sweep, and a row with a
 * NaN, an infinite max or no finite element is redone alone by the scalar
 * kernel (the per-row kernels do the same).  Unused lanes of a partial
 * group repeat the group's first row and are never stored.  So a row's
 * result does not depend on the rows around it, on its position in a
 * group, or on how rows are split into blocks and threads.
 */
#define SMALL_COLS ((CSM_SMALL_MAX + 7) & ~7)

static inline void tr8x8_ps_(__m256 *r)
{
    __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
    __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
    __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
    __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
    __m256 s0 = _mm256_shuffle_ps(t0, t2, 0x44), s1 = _mm256_shuffle_ps(t0, t2, 0xEE);
    __m256 s2 = _mm256_shuffle_ps(t1, t3, 0x44), s3 = _mm256_shuffle_ps(t1, t3, 0xEE);
    __m256 s4 = _mm256_shuffle_ps(t4, t6, 0x44), s5 = _mm256_shuffle_ps(t4, t6, 0xEE);
    __m256 s6 = _mm256_shuffle_ps(t5, t7, 0x44), s7 = _mm256_shuffle_ps(t5, t7, 0xEE);
    r[0] = _mm256_permute2f128_ps(s0, s4, 0x20);
    r[1] = _mm256_permute2f128_ps(s1, s5, 0x20);
    r[2] = _mm256_permute2f128_ps(s2, s6, 0x20);
    r[3] = _mm256_permute2f128_ps(s3, s7, 0x20);
    r[4] = _mm256_permute2f128_ps(s0, s4, 0x31);
    r[5] = _mm256_permute2f128_ps(s1, s5, 0x31);
    r[6] = _mm256_permute2f128_ps(s2, s6, 0x31);
    r[7] = _mm256_permute2f128_ps(s3, s7, 0x31);
}

static inline void tr4x4_pd_(__m256d *r)
{
    __m256d t0 = _mm256_unpacklo_pd(r[0], r[1]), t1 = _mm256_unpackhi_pd(r[0], r[1]);
    __m256d t2 = _mm256_unpacklo_pd(r[2], r[3]), t3 = _mm256_unpackhi_pd(r[2], r[3]);
    r[0] = _mm256_permute2f128_pd(t0, t2, 0x20);
    r[1] = _mm256_permute2f128_pd(t1, t3, 0x20);
    r[2] = _mm256_permute2f128_pd(t0, t2, 0x31);
    r[3] = _mm256_permute2f128_pd(t1, t3, 0x31);
}

/* Partial tiles: the first cw (< 8 resp. < 4) elements, by 4/2/1-element
 * pieces (cheaper than vmaskmov, whose stores are slow on some CPUs);
 * the other lanes load as 0.  cw is the same for every row of a call, so
 * the branches are predictable. */
static inline __m128 small_load3_ps_(const float *p, ptrdiff_t r) /* r < 4 */
{
    if (r == 0) return _mm_setzero_ps();
    if (r == 1) return _mm_load_ss(p);
    __m128 a = _mm_castsi128_ps(_mm_loadl_epi64((const __m128i *)p));
    return r == 2 ? a : _mm_movelh_ps(a, _mm_load_ss(p + 2));
}
static inline __m256 small_load_part_ps_(const float *p, ptrdiff_t cw)
{
    if (cw >= 4)
        return _mm256_set_m128(small_load3_ps_(p + 4, cw - 4), _mm_loadu_ps(p));
    return _mm256_set_m128(_mm_setzero_ps(), small_load3_ps_(p, cw));
}
static inline void small_store_part_ps_(float *p, __m256 v, ptrdiff_t cw)
{
    __m128 h = _mm256_castps256_ps128(v);
    if (cw >= 4) { _mm_storeu_ps(p, h); p += 4; cw -= 4; h = _mm256_extractf128_ps(v, 1); }
    if (cw >= 2) {
        _mm_storel_epi64((__m128i *)p, _mm_castps_si128(h));
        p += 2; cw -= 2; h = _mm_movehl_ps(h, h);
    }
    if (cw) _mm_store_ss(p, h);
}
static inline __m256d small_load_part_pd_(const double *p, ptrdiff_t cw)
{
    if (cw == 1) return _mm256_set_m128d(_mm_setzero_pd(), _mm_load_sd(p));
    if (cw == 2) return _mm256_set_m128d(_mm_setzero_pd(), _mm_loadu_pd(p));
    return _mm256_set_m128d(_mm_load_sd(p + 2), _mm_loadu_pd(p));
}
static inline void small_store_part_pd_(double *p, __m256d v, ptrdiff_t cw)
{
    __m128d h = _mm256_castpd256_pd128(v);
    if (cw >= 2) { _mm_storeu_pd(p, h); p += 2; cw -= 2; h = _mm256_extractf128_pd(v, 1); }
    if (cw) _mm_store_sd(p, h);
}

/* Rows p[0..7] (n floats each) -> T[0..n); whole 8-column tiles are stored
 * (columns past n hold zeros and are never read as data).  With want_max,
 * *mx gets the per-lane max (-inf for n = 0) and *bad the NaN lanes. */
static inline __attribute__((always_inline)) void
small_in_f32_(const float *const *p, ptrdiff_t n, __m256 *T, __m256 *mx,
              __m256 *bad, const int want_max)
{
    __m256 m = _mm256_set1_ps(-INFINITY), b = _mm256_setzero_ps();
    for (ptrdiff_t j = 0; j < n; j += 8) {
        __m256 r[8];
        ptrdiff_t cw = n - j < 8 ? n - j : 8;
        if (cw == 8) {
            for (int k = 0; k < 8; ++k) r[k] = _mm256_loadu_ps(p[k] + j);
        } else {
            for (int k = 0; k < 8; ++k) r[k] = small_load_part_ps_(p[k] + j, cw);
        }
        tr8x8_ps_(r);
        for (int i = 0; i < 8; ++i) T[j + i] = r[i];
        if (want_max)
            for (ptrdiff_t i = 0; i < cw; ++i) {
                m = _mm256_max_ps(m, r[i]);
                b = _mm256_or_ps(b, _mm256_cmp_ps(r[i], r[i], _CMP_UNORD_Q));
            }
    }
    if (want_max) { *mx = m; *bad = b; }
}

/* T[0..n) back to rows q[k] for the lanes k set in `store` (other rows are
 * not touched: they may still be the input of an in-place call). */
static inline void small_out_f32_(const __m256 *T, ptrdiff_t n,
                                  float *const *q, int store)
{
    for (ptrdiff_t j = 0; j < n; j += 8) {
        __m256 r[8];
        for (int i = 0; i < 8; ++i) r[i] = T[j + i];
        tr8x8_ps_(r);
        const ptrdiff_t cw = n - j < 8 ? n - j : 8;
        if (store == 255) {
            if (cw == 8) for (int k = 0; k < 8; ++k) _mm256_storeu_ps(q[k] + j, r[k]);
            else for (int k = 0; k < 8; ++k) small_store_part_ps_(q[k] + j, r[k], cw);
        } else {
            for (int k = 0; k < 8; ++k)
                if (store >> k & 1) {
                    if (cw == 8) _mm256_storeu_ps(q[k] + j, r[k]);
                    else small_store_part_ps_(q[k] + j, r[k], cw);
                }
        }
    }
}

static inline __attribute__((always_inline)) void
small_in_f64_(const double *const *p, ptrdiff_t n, __m256d *T, __m256d *mx,
              __m256d *bad, const int want_max)
{
    __m256d m = _mm256_set1_pd(-INFINITY), b = _mm256_setzero_pd();
    for (ptrdiff_t j = 0; j < n; j += 4) {
        __m256d r[4];
        ptrdiff_t cw = n - j < 4 ? n - j : 4;
        if (cw == 4) {
            for (int k = 0; k < 4; ++k) r[k] = _mm256_loadu_pd(p[k] + j);
        } else {
            for (int k = 0; k < 4; ++k) r[k] = small_load_part_pd_(p[k] + j, cw);
        }
        tr4x4_pd_(r);
        for (int i = 0; i < 4; ++i) T[j + i] = r[i];
        if (want_max)
            for (ptrdiff_t i = 0; i < cw; ++i) {
                m = _mm256_max_pd(m, r[i]);
                b = _mm256_or_pd(b, _mm256_cmp_pd(r[i], r[i], _CMP_UNORD_Q));
            }
    }
    if (want_max) { *mx = m; *bad = b; }
}

static inline void small_out_f64_(const __m256d *T, ptrdiff_t n,
                                  double *const *q, int store)
{
    for (ptrdiff_t j = 0; j < n; j += 4) {
        __m256d r[4];
        for (int i = 0; i < 4; ++i) r[i] = T[j + i];
        tr4x4_pd_(r);
        const ptrdiff_t cw = n - j < 4 ? n - j : 4;
        if (store == 15) {
            if (cw == 4) for (int k = 0; k < 4; ++k) _mm256_storeu_pd(q[k] + j, r[k]);
            else for (int k = 0; k < 4; ++k) small_store_part_pd_(q[k] + j, r[k], cw);
        } else {
            for (int k = 0; k < 4; ++k)
                if (store >> k & 1) {
                    if (cw == 4) _mm256_storeu_pd(q[k] + j, r[k]);
                    else small_store_part_pd_(q[k] + j, r[k], cw);
                }
        }
    }
}

/* clamp_bound_ on 4 lanes: the lanes that pass, and L (float-rounded). */
static inline __m256d small_clamp4_(__m256d m, __m256d sv, __m256d span_sv,
                                    double span, __m256d *L)
{
    const __m256d absm = _mm256_castsi256_pd(_mm256_set1_epi64x(0x7FFFFFFFFFFFFFFFLL));
    __m256d sm = _mm256_and_pd(_mm256_mul_pd(sv, m), absm);
    __m256d ok = _mm256_cmp_pd(sm, _mm256_set1_pd(0x1p20), _CMP_LE_OQ); /* finite too */
    __m256d Ld = _mm256_sub_pd(m, span_sv);
    ok = _mm256_and_pd(ok, _mm256_cmp_pd(Ld, _mm256_set1_pd(-3.0e38), _CMP_GT_OQ));
    __m256d Lf = _mm256_cvtps_pd(_mm256_cvtpd_ps(Ld));
    __m256d dd = _mm256_mul_pd(sv, _mm256_sub_pd(Lf, m));
    ok = _mm256_and_pd(ok, _mm256_cmp_pd(dd, _mm256_set1_pd(-1.25 * span), _CMP_GE_OQ));
    ok = _mm256_and_pd(ok, _mm256_cmp_pd(dd, _mm256_set1_pd(-0.75 * span), _CMP_LE_OQ));
    *L = Lf;
    return ok;
}

static inline int small_finite_mask_(__m256d m)
{
    return _mm256_movemask_pd(_mm256_and_pd(
        _mm256_cmp_pd(m, _mm256_set1_pd(-INFINITY), _CMP_GT_OQ),
        _mm256_cmp_pd(m, _mm256_set1_pd(INFINITY), _CMP_LT_OQ)));
}

/* lanes k < 4 with bit k of `bits` set, as a float64 vector mask */
static inline __m256d small_lanes_pd_(int bits)
{
    const __m256i b = _mm256_setr_epi64x(1, 2, 4, 8);
    __m256i v = _mm256_and_si256(_mm256_set1_epi64x(bits & 15), b);
    return _mm256_castsi256_pd(_mm256_cmpeq_epi64(v, b));
}
static inline __m256 small_lanes_ps_(int bits)
{
    const __m256i b = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
    __m256i v = _mm256_and_si256(_mm256_set1_epi32(bits & 255), b);
    return _mm256_castsi256_ps(_mm256_cmpeq_epi32(v, b));
}

/* log(count + rest) for count >= 1 (csm_finalize_avx2's formula). */
static inline __m256d small_log_sum_(__m256d cn, __m256d rs)
{
    __m256d u = _mm256_add_pd(cn, rs);
    __m256d bb = _mm256_sub_pd(u, cn);
    __m256d c = _mm256_add_pd(_mm256_sub_pd(cn, _mm256_sub_pd(u, bb)),
                              _mm256_sub_pd(rs, bb));
    return _mm256_add_pd(log_ge1_pd_(u), _mm256_div_pd(c, u));
}

/* LSE = scale*max + log_sum close to 0 (lse_cancels_, with the exact log):
 * lanes to redo in float64 with libm when the caller wants the LSE. */
static inline int small_cancels_(__m256d m, __m256d ls, __m256d sv)
{
    const __m256d absm = _mm256_castsi256_pd(_mm256_set1_epi64x(0x7FFFFFFFFFFFFFFFLL));
    __m256d sm = _mm256_mul_pd(sv, m);
    __m256d lse = _mm256_and_pd(_mm256_add_pd(sm, ls), absm);
    return _mm256_movemask_pd(_mm256_and_pd(
        _mm256_cmp_pd(lse, _mm256_set1_pd(1.3), _CMP_LT_OQ),
        _mm256_cmp_pd(sm, _mm256_setzero_pd(), _CMP_NEQ_OQ)));
}

static void small_lse_row_f32_(const float *xr, ptrdiff_t n, double scale,
                               double *mx, double *ls)
{
    csm_lse_state st;
    csm_lse_rows_f32_scalar(xr, 1, n, n, scale, &st);
    csm_finalize_scalar(&st, 1, scale, mx, ls);
}

static void small_lse_row_f64_(const double *xr, ptrdiff_t n, double scale,
                               double *mx, double *ls)
{
    csm_lse_state st;
    csm_lse_rows_f64_scalar(xr, 1, n, n, scale, &st);
    csm_finalize_scalar(&st, 1, scale, mx, ls);
}

/* float32 fast reduction sweep (LSE32_STEP with per-lane max and clamp). */
static inline __attribute__((always_inline)) void
small_sum_fast_f32_(const __m256 *T, ptrdiff_t n, __m256 mf, __m256 Lv,
                    __m256d m0, __m256d m1, __m256d sv, __m256d *c0,
                    __m256d *c1, __m256d *r0, __m256d *r1, const int S1)
{
    __m256d ra = _mm256_setzero_pd(), rb = ra;
    __m256i cnt = _mm256_setzero_si256();
    for (ptrdiff_t i = 0; i < n; ++i) {
        __m256 a = T[i];
        __m256 eq = _mm256_cmp_ps(a, mf, _CMP_EQ_OQ);
        cnt = _mm256_sub_epi32(cnt, _mm256_castps_si256(eq));
        __m256 c = _mm256_blendv_ps(_mm256_max_ps(a, Lv), Lv, eq);
        __m256d lo = _mm256_sub_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(c)), m0);
        __m256d hi = _mm256_sub_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(c, 1)), m1);
        if (!S1) { lo = _mm256_mul_pd(lo, sv); hi = _mm256_mul_pd(hi, sv); }
        ra = _mm256_add_pd(ra, exp_f32acc_(lo));
        rb = _mm256_add_pd(rb, exp_f32acc_(hi));
    }
    *c0 = _mm256_cvtepi32_pd(_mm256_castsi256_si128(cnt));
    *c1 = _mm256_cvtepi32_pd(_mm256_extracti128_si256(cnt, 1));
    *r0 = ra; *r1 = rb;
}

/* Reduction of one float32 group (T, per-lane max mf, NaN lanes bad):
 * per-lane max m0|m1 and log_sum l0|l1 (float64); returns the lanes that
 * were reduced (finite max, no NaN); the others are left to the caller. */
static inline __attribute__((always_inline)) int
small_reduce_f32_(const __m256 *T, ptrdiff_t n, __m256 mf, __m256 bad,
                  double scale, __m256d sv, __m256d span_sv, __m256d *m0p,
                  __m256d *m1p, __m256d *l0p, __m256d *l1p)
{
    const __m256d one = _mm256_set1_pd(1.0);
    __m256d m0 = _mm256_cvtps_pd(_mm256_castps256_ps128(mf));
    __m256d m1 = _mm256_cvtps_pd(_mm256_extractf128_ps(mf, 1));
    __m256d L0, L1;
    int fin = (small_finite_mask_(m0) | small_finite_mask_(m1) << 4)
              & ~_mm256_movemask_ps(bad);
    int fast = (_mm256_movemask_pd(small_clamp4_(m0, sv, span_sv, F32_LSE_SPAN, &L0))
                | _mm256_movemask_pd(small_clamp4_(m1, sv, span_sv, F32_LSE_SPAN, &L1)) << 4)
               & fin;
    int gen = fin & ~fast;
    __m256d c0 = one, c1 = one, r0 = _mm256_setzero_pd(), r1 = r0;
    if (fast) {
        __m256 Lv = _mm256_set_m128(_mm256_cvtpd_ps(L1), _mm256_cvtpd_ps(L0));
        if (scale == 1.0)
            small_sum_fast_f32_(T, n, mf, Lv, m0, m1, sv, &c0, &c1, &r0, &r1, 1);
        else
            small_sum_fast_f32_(T, n, mf, Lv, m0, m1, sv, &c0, &c1, &r0, &r1, 0);
    }
    if (gen) {  /* finite max, no float32 clamp: float64 lanes, exact compares */
        __m256d gc0 = _mm256_setzero_pd(), gc1 = gc0, gr0 = gc0, gr1 = gc0;
        for (ptrdiff_t i = 0; i < n; ++i) {
            __m256d lo = _mm256_cvtps_pd(_mm256_castps256_ps128(T[i]));
            __m256d hi = _mm256_cvtps_pd(_mm256_extractf128_ps(T[i], 1));
            __m256d e0 = _mm256_cmp_pd(lo, m0, _CMP_EQ_OQ);
            __m256d e1 = _mm256_cmp_pd(hi, m1, _CMP_EQ_OQ);
            __m256d t0 = exp_f32_(_mm256_mul_pd(_mm256_sub_pd(lo, m0), sv));
            __m256d t1 = exp_f32_(_mm256_mul_pd(_mm256_sub_pd(hi, m1), sv));
            gr0 = _mm256_add_pd(gr0, _mm256_andnot_pd(e0, t0));
            gr1 = _mm256_add_pd(gr1, _mm256_andnot_pd(e1, t1));
            gc0 = _mm256_add_pd(gc0, _mm256_and_pd(e0, one));
            gc1 = _mm256_add_pd(gc1, _mm256_and_pd(e1, one));
        }
        __m256d g0 = small_lanes_pd_(gen), g1 = small_lanes_pd_(gen >> 4);
        c0 = _mm256_blendv_pd(c0, gc0, g0); c1 = _mm256_blendv_pd(c1, gc1, g1);
        r0 = _mm256_blendv_pd(r0, gr0, g0); r1 = _mm256_blendv_pd(r1, gr1, g1);
    }
    *m0p = m0; *m1p = m1;
    *l0p = small_log_sum_(c0, r0);
    *l1p = small_log_sum_(c1, r1);
    return fin;
}

/* Lanes of a reduced float32 group whose LSE = scale*max + log_sum cancels
 * (|LSE| < 1.3, scale*max != 0): the 2.6e-9 error of exp_f32acc_ would show
 * as many ULPs of a small LSE.  Their log_sum is recomputed with the float64
 * kernels' exp (exp_f64_, rel. error < 2^-52) and exact compares -- the
 * vector counterpart of the scalar redo in csm_lse_rows_f32_avx2. */
static inline void small_lse_exact_f32_(const __m256 *T, ptrdiff_t n, int fin,
                                        __m256d sv, __m256d m0, __m256d m1,
                                        __m256d *l0, __m256d *l1)
{
    const int redo = fin & (small_cancels_(m0, *l0, sv) | small_cancels_(m1, *l1, sv) << 4);
    if (!redo) return;
    const __m256d one = _mm256_set1_pd(1.0);
    __m256d c0 = _mm256_setzero_pd(), c1 = c0, r0 = c0, r1 = c0;
    for (ptrdiff_t i = 0; i < n; ++i) {
        __m256d lo = _mm256_cvtps_pd(_mm256_castps256_ps128(T[i]));
        __m256d hi = _mm256_cvtps_pd(_mm256_extractf128_ps(T[i], 1));
        __m256d e0 = _mm256_cmp_pd(lo, m0, _CMP_EQ_OQ);
        __m256d e1 = _mm256_cmp_pd(hi, m1, _CMP_EQ_OQ);
        __m256d t0 = exp_f64_(_mm256_mul_pd(_mm256_sub_pd(lo, m0), sv));
        __m256d t1 = exp_f64_(_mm256_mul_pd(_mm256_sub_pd(hi, m1), sv));
        r0 = _mm256_add_pd(r0, _mm256_andnot_pd(e0, t0));
        r1 = _mm256_add_pd(r1, _mm256_andnot_pd(e1, t1));
        c0 = _mm256_add_pd(c0, _mm256_and_pd(e0, one));
        c1 = _mm256_add_pd(c1, _mm256_and_pd(e1, one));
    }
    const __m256d g0 = small_lanes_pd_(redo), g1 = small_lanes_pd_(redo >> 4);
    c0 = _mm256_blendv_pd(one, c0, g0);     /* keep the other lanes' log finite */
    c1 = _mm256_blendv_pd(one, c1, g1);
    *l0 = _mm256_blendv_pd(*l0, small_log_sum_(c0, r0), g0);
    *l1 = _mm256_blendv_pd(*l1, small_log_sum_(c1, r1), g1);
}

void csm_lse_small_f32_avx2(const float *x, ptrdiff_t n_rows, ptrdiff_t n,
                            ptrdiff_t row_stride, double scale, int for_lse,
                            double *max, double *log_sum)
{
    __m256 T[SMALL_COLS];
    const __m256d sv = _mm256_set1_pd(scale);
    const __m256d span_sv = _mm256_set1_pd(F32_LSE_SPAN / scale);
    for (ptrdiff_t g = 0; g < n_rows; g += 8) {
        const ptrdiff_t w = n_rows - g < 8 ? n_rows - g : 8;
        const float *p[8];
        for (int k = 0; k < 8; ++k) p[k] = x + (g + (k < w ? k : 0)) * row_stride;
        __m256 mf, bad;
        __m256d m0, m1, l0, l1;
        small_in_f32_(p, n, T, &mf, &bad, 1);
        const int ok = small_reduce_f32_(T, n, mf, bad, scale, sv, span_sv, &m0, &m1, &l0, &l1);
        if (for_lse) small_lse_exact_f32_(T, n, ok, sv, m0, m1, &l0, &l1);
        if (w == 8 && ok == 255) {
            _mm256_storeu_pd(max + g, m0); _mm256_storeu_pd(max + g + 4, m1);
            _mm256_storeu_pd(log_sum + g, l0); _mm256_storeu_pd(log_sum + g + 4, l1);
            continue;
        }
        double mx[8], ls[8];
        _mm256_storeu_pd(mx, m0); _mm256_storeu_pd(mx + 4, m1);
        _mm256_storeu_pd(ls, l0); _mm256_storeu_pd(ls + 4, l1);
        for (ptrdiff_t k = 0; k < w; ++k) {
            if (ok >> k & 1) { max[g + k] = mx[k]; log_sum[g + k] = ls[k]; }
            else small_lse_row_f32_(p[k], n, scale, max + g + k, log_sum + g + k);
        }
    }
}

/* Fused softmax / log_softmax of float32 groups (reduction and write on the
 * same transposed tile).
 *   softmax: e = exp(scale * (max(x, L) - max)) once per element, kept in
 *            float64 (exp_f32acc_, rel. error 2.6e-9; L = the write clamp,
 *            scale*(L - max) ~ -200, below which float32 results are 0),
 *            y = e * (1 / sum e): about 0.5 ULP + 0.05 ULP.  Lanes without
 *            a representable clamp use exp_f32_ on the unclamped d.
 *   log_softmax: the reduction above (count of max elements kept apart),
 *            then y = scale * (x - max) - log_sum (x - max exact).
 * Rows with a NaN or a non-finite max go through the scalar kernels. */
static inline __attribute__((always_inline)) void
small_fused_f32_(const float *x, ptrdiff_t n_rows, ptrdiff_t n,
                 ptrdiff_t x_row_stride, double scale, float *y,
                 ptrdiff_t y_row_stride, const int LOG)
{
    __m256 T[SMALL_COLS];
    __m256d E[LOG ? 1 : 2 * SMALL_COLS];
    const __m256d sv = _mm256_set1_pd(scale), one = _mm256_set1_pd(1.0);
    const __m256d span_sv = _mm256_set1_pd((LOG ? F32_LSE_SPAN : F32_SM_SPAN) / scale);
    for (ptrdiff_t g = 0; g < n_rows; g += 8) {
        const ptrdiff_t w = n_rows - g < 8 ? n_rows - g : 8;
        const float *p[8];
        float *q[8];
        for (int k = 0; k < 8; ++k) {
            ptrdiff_t r = g + (k < w ? k : 0);
            p[k] = x + r * x_row_stride;
            q[k] = y + r * y_row_stride;
        }
        __m256 mf, bad;
        __m256d m0, m1, l0, l1;
        int fin;
        small_in_f32_(p, n, T, &mf, &bad, 1);
        if (LOG) {
            fin = small_reduce_f32_(T, n, mf, bad, scale, sv, span_sv, &m0, &m1, &l0, &l1);
            if (fin)
                for (ptrdiff_t i = 0; i < n; ++i) {
                    __m256d lo = _mm256_cvtps_pd(_mm256_castps256_ps128(T[i]));
                    __m256d hi = _mm256_cvtps_pd(_mm256_extractf128_ps(T[i], 1));
                    lo = _mm256_fmsub_pd(_mm256_sub_pd(lo, m0), sv, l0);
                    hi = _mm256_fmsub_pd(_mm256_sub_pd(hi, m1), sv, l1);
                    T[i] = _mm256_set_m128(_mm256_cvtpd_ps(hi), _mm256_cvtpd_ps(lo));
                }
        } else {
            __m256d L0, L1;
            m0 = _mm256_cvtps_pd(_mm256_castps256_ps128(mf));
            m1 = _mm256_cvtps_pd(_mm256_extractf128_ps(mf, 1));
            fin = (small_finite_mask_(m0) | small_finite_mask_(m1) << 4)
                  & ~_mm256_movemask_ps(bad);
            int fast = (_mm256_movemask_pd(small_clamp4_(m0, sv, span_sv, F32_SM_SPAN, &L0))
                        | _mm256_movemask_pd(small_clamp4_(m1, sv, span_sv, F32_SM_SPAN, &L1)) << 4)
                       & fin;
            int gen = fin & ~fast;
            __m256d u0 = one, u1 = one;
            if (fast) {
                const __m256 Lv = _mm256_set_m128(_mm256_cvtpd_ps(L1), _mm256_cvtpd_ps(L0));
                __m256d s0 = _mm256_setzero_pd(), s1 = s0;
                for (ptrdiff_t i = 0; i < n; ++i) {
                    __m256 c = _mm256_max_ps(T[i], Lv);
                    __m256d lo = _mm256_sub_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(c)), m0);
                    __m256d hi = _mm256_sub_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(c, 1)), m1);
                    if (scale != 1.0) { lo = _mm256_mul_pd(lo, sv); hi = _mm256_mul_pd(hi, sv); }
                    lo = exp_f32acc_(lo);
                    hi = exp_f32acc_(hi);
                    E[2 * i] = lo; E[2 * i + 1] = hi;
                    s0 = _mm256_add_pd(s0, lo); s1 = _mm256_add_pd(s1, hi);
                }
                u0 = s0; u1 = s1;
            }
            if (gen) {
                const __m256d g0 = small_lanes_pd_(gen), g1 = small_lanes_pd_(gen >> 4);
                __m256d s0 = _mm256_setzero_pd(), s1 = s0;
                for (ptrdiff_t i = 0; i < n; ++i) {
                    __m256d lo = _mm256_cvtps_pd(_mm256_castps256_ps128(T[i]));
                    __m256d hi = _mm256_cvtps_pd(_mm256_extractf128_ps(T[i], 1));
                    lo = exp_f32_(_mm256_mul_pd(_mm256_sub_pd(lo, m0), sv));
                    hi = exp_f32_(_mm256_mul_pd(_mm256_sub_pd(hi, m1), sv));
                    if (fast) {
                        lo = _mm256_blendv_pd(E[2 * i], lo, g0);
                        hi = _mm256_blendv_pd(E[2 * i + 1], hi, g1);
                    }
                    E[2 * i] = lo; E[2 * i + 1] = hi;
                    s0 = _mm256_add_pd(s0, lo); s1 = _mm256_add_pd(s1, hi);
                }
                u0 = _mm256_blendv_pd(u0, s0, g0);
                u1 = _mm256_blendv_pd(u1, s1, g1);
            }
            if (fin) {
                const __m256d i0 = _mm256_div_pd(one, u0), i1 = _mm256_div_pd(one, u1);
                for (ptrdiff_t i = 0; i < n; ++i)
                    T[i] = _mm256_set_m128(_mm256_cvtpd_ps(_mm256_mul_pd(E[2 * i + 1], i1)),
                                           _mm256_cvtpd_ps(_mm256_mul_pd(E[2 * i], i0)));
            }
        }
        const int store = fin & ((1 << w) - 1);
        if (store) small_out_f32_(T, n, q, store);
        for (ptrdiff_t k = 0; k < w; ++k)
            if (!(fin >> k & 1)) {
                double mx, ls;
                small_lse_row_f32_(p[k], n, scale, &mx, &ls);
                if (LOG)
                    csm_log_softmax_rows_f32_scalar(p[k], 1, n, 0, scale, &mx, &ls,
                                                    1.0, q[k], 0);
                else
                    csm_softmax_rows_f32_scalar(p[k], 1, n, 0, scale, &mx, &ls,
                                                1.0, q[k], 0);
            }
    }
}

void csm_softmax_small_f32_avx2(const float *x, ptrdiff_t n_rows, ptrdiff_t n,
                                ptrdiff_t x_row_stride, double scale, float *y,
                                ptrdiff_t y_row_stride)
{
    small_fused_f32_(x, n_rows, n, x_row_stride, scale, y, y_row_stride, 0);
}

void csm_log_softmax_small_f32_avx2(const float *x, ptrdiff_t n_rows,
                                    ptrdiff_t n, ptrdiff_t x_row_stride,
                                    double scale, float *y,
                                    ptrdiff_t y_row_stride)
{
    small_fused_f32_(x, n_rows, n, x_row_stride, scale, y, y_row_stride, 1);
}

/* Softmax write of float32 rows with a given (max, log_sum) and a factor
 * alpha (y = alpha * exp(scale * (x - max) - log_sum); cross-entropy's
 * gradient).  With 0 < alpha <= 1, lanes with a representable clamp take
 * softmax8_f32_ (the row kernel's fast path) on log_sum - log(alpha) >=
 * log_sum (so the clamped elements still give 0; the float64 log(alpha)
 * adds < 1e-13 to the argument); the other finite-max lanes take exp_f32_
 * in float64 (a second, masked sweep); the rest are redone by the scalar
 * kernel. */
void csm_softmax_write_small_f32_avx2(const float *x, ptrdiff_t n_rows,
        ptrdiff_t n, ptrdiff_t x_row_stride, double scale, const double *max,
        const double *log_sum, double alpha, float *y, ptrdiff_t y_row_stride)
{
    __m256 T[SMALL_COLS];
    const __m256d sv = _mm256_set1_pd(scale), av = _mm256_set1_pd(alpha);
    const __m256d span_sv = _mm256_set1_pd(F32_SM_SPAN / scale);
    const int alpha_ok = alpha > 0.0 && alpha <= 1.0;
    const __m256d lav = _mm256_set1_pd(alpha_ok ? log(alpha) : 0.0);
    for (ptrdiff_t g = 0; g < n_rows; g += 8) {
        const ptrdiff_t w = n_rows - g < 8 ? n_rows - g : 8;
        const float *p[8];
        float *q[8];
        double mx[8], ls[8];
        for (int k = 0; k < 8; ++k) {
            ptrdiff_t r = g + (k < w ? k : 0);
            p[k] = x + r * x_row_stride;
            q[k] = y + r * y_row_stride;
            mx[k] = max[r];
            ls[k] = log_sum[r];
        }
        const __m256d m0 = _mm256_loadu_pd(mx), m1 = _mm256_loadu_pd(mx + 4);
        const __m256d l0 = _mm256_loadu_pd(ls), l1 = _mm256_loadu_pd(ls + 4);
        const int fin = small_finite_mask_(m0) | small_finite_mask_(m1) << 4;
        int fast = 0;
        __m256d L0, L1;
        if (alpha_ok)
            fast = (_mm256_movemask_pd(small_clamp4_(m0, sv, span_sv, F32_SM_SPAN, &L0))
                    | _mm256_movemask_pd(small_clamp4_(m1, sv, span_sv, F32_SM_SPAN, &L1)) << 4)
                   & fin;
        const int gen = fin & ~fast;
        const int store = fin & ((1 << w) - 1);
        if (store) {
            small_in_f32_(p, n, T, NULL, NULL, 0);
            if (fast) {
                const __m256 Lv = _mm256_set_m128(_mm256_cvtpd_ps(L1), _mm256_cvtpd_ps(L0));
                const __m256d cvl = _mm256_fmadd_pd(sv, m0, _mm256_sub_pd(l0, lav));
                const __m256d cvh = _mm256_fmadd_pd(sv, m1, _mm256_sub_pd(l1, lav));
                if (gen) {
                    const __m256 fm = small_lanes_ps_(fast);
                    for (ptrdiff_t i = 0; i < n; ++i)
                        T[i] = _mm256_blendv_ps(T[i], softmax8_f32_(
                            _mm256_max_ps(T[i], Lv), sv, cvl, cvh), fm);
                } else {
                    for (ptrdiff_t i = 0; i < n; ++i)
                        T[i] = softmax8_f32_(_mm256_max_ps(T[i], Lv), sv, cvl, cvh);
                }
            }
            if (gen) {
                const __m256 gm = small_lanes_ps_(gen);
                for (ptrdiff_t i = 0; i < n; ++i) {
                    __m256d lo = _mm256_cvtps_pd(_mm256_castps256_ps128(T[i]));
                    __m256d hi = _mm256_cvtps_pd(_mm256_extractf128_ps(T[i], 1));
                    lo = _mm256_fmsub_pd(_mm256_sub_pd(lo, m0), sv, l0);
                    hi = _mm256_fmsub_pd(_mm256_sub_pd(hi, m1), sv, l1);
                    lo = _mm256_mul_pd(exp_f32_(lo), av);
                    hi = _mm256_mul_pd(exp_f32_(hi), av);
                    __m256 v = _mm256_set_m128(_mm256_cvtpd_ps(hi), _mm256_cvtpd_ps(lo));
                    T[i] = gen == 255 ? v : _mm256_blendv_ps(T[i], v, gm);
                }
            }
            small_out_f32_(T, n, q, store);
        }
        for (ptrdiff_t k = 0; k < w; ++k)
            if (!(fin >> k & 1))
                csm_softmax_rows_f32_scalar(p[k], 1, n, 0, scale, mx + k, ls + k,
                                            alpha, q[k], 0);
    }
}

/* expm1(t) for t <= 0 (NaN -> NaN, -inf -> -1), float64, 4 lanes: exp(t) - 1
 * below -0.3 (|result| > 0.25: no cancellation), else the Taylor series to
 * t^13/13! (truncation < 2.6e-16 relative) -- the vector form of the
 * per-sample _expm1_le0 of _losses.pxi. */
static inline __m256d expm1_le0_pd_(__m256d t)
{
    const __m256d one = _mm256_set1_pd(1.0);
    __m256d big = _mm256_cmp_pd(t, _mm256_set1_pd(-0.3), _CMP_LT_OQ);
    __m256d q = one;
    for (int k = 13; k >= 2; --k)
        q = _mm256_fmadd_pd(_mm256_mul_pd(t, _mm256_set1_pd(1.0 / k)), q, one);
    q = _mm256_mul_pd(t, q);
    /* exp(t) - 1 = -1 exactly below -700 (and for -inf); NaN lanes are not
     * in `big` and keep the series' NaN */
    __m256d e = exp_f64acc_(_mm256_max_pd(t, _mm256_set1_pd(-700.0)));
    return _mm256_blendv_pd(q, _mm256_sub_pd(e, one), big);
}

/* out[i] = expm1(t[i]) for t[i] <= 0 (NaN -> NaN), 4 lanes at a time:
 * the cross-entropy fix-ups' target entries, a block at a time. */
void csm_expm1_le0_f64_avx2(const double *t, double *out, ptrdiff_t n)
{
    ptrdiff_t i = 0;
    for (; i + 4 <= n; i += 4)
        _mm256_storeu_pd(out + i, expm1_le0_pd_(_mm256_loadu_pd(t + i)));
    if (i < n) {
        double b[4] = {0.0, 0.0, 0.0, 0.0};
        for (ptrdiff_t k = i; k < n; ++k) b[k - i] = t[k];
        _mm256_storeu_pd(b, expm1_le0_pd_(_mm256_loadu_pd(b)));
        for (ptrdiff_t k = i; k < n; ++k) out[k] = b[k - i];
    }
}

/* One row of the ce_small kernels outside the vector lanes (a NaN or a
 * non-finite max): the scalar kernels, zeros for a == 0, then the target
 * entry a * expm1(lp) with libm and lp stored. */
#define DEFINE_CE_SMALL_ROW(T, SUF)                                            \
static void ce_small_row_##SUF##_(const T *x, T *y, ptrdiff_t n, double scale, \
                                  double a, int t, double *lp)                 \
{                                                                              \
    double mx, ls, l = 0.0;                                                    \
    small_lse_row_##SUF##_(x, n, scale, &mx, &ls);                             \
    if (t >= 0) l = scale * ((double)x[t] - mx) - ls;                          \
    if (a == 0.0)                                                              \
        for (ptrdiff_t i = 0; i < n; ++i) y[i] = 0;                            \
    else                                                                       \
        csm_softmax_rows_##SUF##_scalar(x, 1, n, 0, scale, &mx, &ls, a, y, 0); \
    if (t >= 0) {                                                              \
        y[t] = (T)(a * (l < -0.3 ? exp(l) - 1.0 : expm1(l)));                  \
        *lp = l;                                                               \
    }                                                                          \
}
DEFINE_CE_SMALL_ROW(float, f32)
DEFINE_CE_SMALL_ROW(double, f64)
#undef DEFINE_CE_SMALL_ROW

/* Cross-entropy gradient of float32 short rows in one call (see
 * csoftmax.h): the fused short-row softmax (one exp_f32acc_ per element,
 * kept in float64; elements equal to the max counted apart so log_sum =
 * log(count + rest) keeps a tiny rest), each row scaled by a[r] / sum, and
 * the target entry recomputed as a[r] * expm1(lp) from lp = scale * (x_t -
 * max) - log_sum in float64 (no cancellation near p_t = 1).  Lanes with a
 * representable clamp and |a| <= 2^60 clamp at F32_SM_SPAN (a clamped
 * element's a * p < 2^60 e^-150 rounds to 0 in float32, as its true value
 * does); the other finite-max lanes take exp_f32_ unclamped; rows with a
 * NaN or a non-finite max go through the scalar kernels. */
void csm_ce_small_f32_avx2(const float *x, ptrdiff_t n_rows, ptrdiff_t n,
                           ptrdiff_t x_row_stride, double scale,
                           const double *a, const int *t, double *lp,
                           float *y, ptrdiff_t y_row_stride)
{
    __m256 T[SMALL_COLS];
    __m256d E[2 * SMALL_COLS];
    const __m256d sv = _mm256_set1_pd(scale), one = _mm256_set1_pd(1.0);
    const __m256d span_sv = _mm256_set1_pd(F32_SM_SPAN / scale);
    const __m256d absm = _mm256_castsi256_pd(_mm256_set1_epi64x(0x7FFFFFFFFFFFFFFFLL));
    const __m256d amax = _mm256_set1_pd(0x1p60);
    float *Tf = (float *)T;
    for (ptrdiff_t g = 0; g < n_rows; g += 8) {
        const ptrdiff_t w = n_rows - g < 8 ? n_rows - g : 8;
        const float *p[8];
        float *q[8];
        double av[8];
        int tk[8];
        for (int k = 0; k < 8; ++k) {
            ptrdiff_t r = g + (k < w ? k : 0);
            p[k] = x + r * x_row_stride;
            q[k] = y + r * y_row_stride;
            av[k] = a[r];
            tk[k] = t != NULL ? t[r] : -1;
        }
        const __m256d a0 = _mm256_loadu_pd(av), a1 = _mm256_loadu_pd(av + 4);
        __m256 mf, bad;
        small_in_f32_(p, n, T, &mf, &bad, 1);
        const __m256d m0 = _mm256_cvtps_pd(_mm256_castps256_ps128(mf));
        const __m256d m1 = _mm256_cvtps_pd(_mm256_extractf128_ps(mf, 1));
        const int fin = (small_finite_mask_(m0) | small_finite_mask_(m1) << 4)
                        & ~_mm256_movemask_ps(bad);
        const int small_a = _mm256_movemask_pd(_mm256_cmp_pd(_mm256_and_pd(a0, absm), amax, _CMP_LE_OQ))
                            | _mm256_movemask_pd(_mm256_cmp_pd(_mm256_and_pd(a1, absm), amax, _CMP_LE_OQ)) << 4;
        __m256d L0, L1;
        const int fast = (_mm256_movemask_pd(small_clamp4_(m0, sv, span_sv, F32_SM_SPAN, &L0))
                          | _mm256_movemask_pd(small_clamp4_(m1, sv, span_sv, F32_SM_SPAN, &L1)) << 4)
                         & fin & small_a;
        const int gen = fin & ~fast;
        __m256d c0 = one, c1 = one, r0 = _mm256_setzero_pd(), r1 = r0;
        if (fast) {
            const __m256 Lv = _mm256_set_m128(_mm256_cvtpd_ps(L1), _mm256_cvtpd_ps(L0));
            __m256i cnt = _mm256_setzero_si256();
            for (ptrdiff_t i = 0; i < n; ++i) {
                __m256 v = T[i];
                __m256 eq = _mm256_cmp_ps(v, mf, _CMP_EQ_OQ);
                cnt = _mm256_sub_epi32(cnt, _mm256_castps_si256(eq));
                __m256 c = _mm256_max_ps(v, Lv);
                __m256d lo = _mm256_sub_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(c)), m0);
                __m256d hi = _mm256_sub_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(c, 1)), m1);
                if (scale != 1.0) { lo = _mm256_mul_pd(lo, sv); hi = _mm256_mul_pd(hi, sv); }
                lo = exp_f32acc_(lo);           /* exactly 1 at the max */
                hi = exp_f32acc_(hi);
                E[2 * i] = lo; E[2 * i + 1] = hi;
                __m256 eqd = eq;
                r0 = _mm256_add_pd(r0, _mm256_andnot_pd(_mm256_castsi256_pd(_mm256_cvtepi32_epi64(
                                       _mm_castps_si128(_mm256_castps256_ps128(eqd)))), lo));
                r1 = _mm256_add_pd(r1, _mm256_andnot_pd(_mm256_castsi256_pd(_mm256_cvtepi32_epi64(
                                       _mm_castps_si128(_mm256_extractf128_ps(eqd, 1)))), hi));
            }
            c0 = _mm256_cvtepi32_pd(_mm256_castsi256_si128(cnt));
            c1 = _mm256_cvtepi32_pd(_mm256_extracti128_si256(cnt, 1));
        }
        if (gen) {  /* finite max without a float32 clamp: exact compares */
            const __m256d g0 = small_lanes_pd_(gen), g1 = small_lanes_pd_(gen >> 4);
            __m256d gc0 = _mm256_setzero_pd(), gc1 = gc0, gr0 = gc0, gr1 = gc0;
            for (ptrdiff_t i = 0; i < n; ++i) {
                __m256d lo = _mm256_cvtps_pd(_mm256_castps256_ps128(T[i]));
                __m256d hi = _mm256_cvtps_pd(_mm256_extractf128_ps(T[i], 1));
                __m256d e0 = _mm256_cmp_pd(lo, m0, _CMP_EQ_OQ);
                __m256d e1 = _mm256_cmp_pd(hi, m1, _CMP_EQ_OQ);
                lo = exp_f32_(_mm256_mul_pd(_mm256_sub_pd(lo, m0), sv));
                hi = exp_f32_(_mm256_mul_pd(_mm256_sub_pd(hi, m1), sv));
                if (fast) {
                    lo = _mm256_blendv_pd(E[2 * i], lo, g0);
                    hi = _mm256_blendv_pd(E[2 * i + 1], hi, g1);
                }
                E[2 * i] = lo; E[2 * i + 1] = hi;
                gr0 = _mm256_add_pd(gr0, _mm256_andnot_pd(e0, lo));
                gr1 = _mm256_add_pd(gr1, _mm256_andnot_pd(e1, hi));
                gc0 = _mm256_add_pd(gc0, _mm256_and_pd(e0, one));
                gc1 = _mm256_add_pd(gc1, _mm256_and_pd(e1, one));
            }
            c0 = _mm256_blendv_pd(c0, gc0, g0); c1 = _mm256_blendv_pd(c1, gc1, g1);
            r0 = _mm256_blendv_pd(r0, gr0, g0); r1 = _mm256_blendv_pd(r1, gr1, g1);
        }
        const int store = fin & ((1 << w) - 1);
        if (store) {
            const __m256d f0 = _mm256_div_pd(a0, _mm256_add_pd(c0, r0));
            const __m256d f1 = _mm256_div_pd(a1, _mm256_add_pd(c1, r1));
            /* target lanes (t >= 0, stored): x_t gathered from the tile, the
             * entry a * expm1(lp) blended in where the column is t */
            const __m256i tv = _mm256_loadu_si256((const __m256i *)tk);
            const __m256i tm = _mm256_and_si256(
                _mm256_cmpgt_epi32(tv, _mm256_set1_epi32(-1)),
                _mm256_castps_si256(small_lanes_ps_(store)));
            const int tmask = _mm256_movemask_ps(_mm256_castsi256_ps(tm));
            __m256 gt = _mm256_setzero_ps();
            if (tmask) {
                const __m256i idx = _mm256_add_epi32(_mm256_slli_epi32(tv, 3),
                    _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
                const __m256 xt = _mm256_mask_i32gather_ps(_mm256_setzero_ps(), Tf, idx,
                                                           _mm256_castsi256_ps(tm), 4);
                const __m256d l0 = small_log_sum_(c0, r0), l1 = small_log_sum_(c1, r1);
                const __m256d t0 = _mm256_fmsub_pd(_mm256_sub_pd(_mm256_cvtps_pd(
                    _mm256_castps256_ps128(xt)), m0), sv, l0);
                const __m256d t1 = _mm256_fmsub_pd(_mm256_sub_pd(_mm256_cvtps_pd(
                    _mm256_extractf128_ps(xt, 1)), m1), sv, l1);
                gt = _mm256_set_m128(_mm256_cvtpd_ps(_mm256_mul_pd(a1, expm1_le0_pd_(t1))),
                                     _mm256_cvtpd_ps(_mm256_mul_pd(a0, expm1_le0_pd_(t0))));
                if (tmask == 255) {
                    _mm256_storeu_pd(lp + g, t0);
                    _mm256_storeu_pd(lp + g + 4, t1);
                } else {
                    double lv[8];
                    _mm256_storeu_pd(lv, t0); _mm256_storeu_pd(lv + 4, t1);
                    for (int k = 0; k < 8; ++k)
                        if (tmask >> k & 1) lp[g + k] = lv[k];
                }
            }
            const __m256i tsel = _mm256_or_si256(tv, _mm256_xor_si256(tm, _mm256_set1_epi32(-1)));
            for (ptrdiff_t i = 0; i < n; ++i) {
                __m256 v = _mm256_set_m128(_mm256_cvtpd_ps(_mm256_mul_pd(E[2 * i + 1], f1)),
                                           _mm256_cvtpd_ps(_mm256_mul_pd(E[2 * i], f0)));
                /* tsel: t in target lanes, -1 elsewhere (never a column) */
                T[i] = _mm256_blendv_ps(v, gt, _mm256_castsi256_ps(
                    _mm256_cmpeq_epi32(tsel, _mm256_set1_epi32((int)i))));
            }
            small_out_f32_(T, n, q, store);
        }
        for (ptrdiff_t k = 0; k < w; ++k)
            if (!(fin >> k & 1))
                ce_small_row_f32_(p[k], q[k], n, scale, av[k], tk[k], lp + g + k);
    }
}

/* ---- float64: 4 rows per group, the float64 row kernels' steps (exact
 * compares, exp_f64_, csm_finalize_avx2's log). ---- */

/* Reduction of one float64 group: log_sum per lane, returns the lanes with
 * a finite max and no NaN. */
static inline __attribute__((always_inline)) int
small_reduce_f64_(const __m256d *T, ptrdiff_t n, __m256d m, __m256d bad,
                  __m256d sv, __m256d *lp)
{
    const __m256d one = _mm256_set1_pd(1.0);
    const int fin = small_finite_mask_(m) & ~_mm256_movemask_pd(bad);
    __m256d r = _mm256_setzero_pd(), c = r;
    if (fin)
        for (ptrdiff_t i = 0; i < n; ++i) {
            __m256d e = _mm256_cmp_pd(T[i], m, _CMP_EQ_OQ);
            __m256d t = exp_f64_(_mm256_mul_pd(_mm256_sub_pd(T[i], m), sv));
            r = _mm256_add_pd(r, _mm256_andnot_pd(e, t));
            c = _mm256_add_pd(c, _mm256_and_pd(e, one));
        }
    c = _mm256_blendv_pd(one, c, small_lanes_pd_(fin));  /* keep the log finite */
    *lp = small_log_sum_(c, r);
    return fin;
}

void csm_lse_small_f64_avx2(const double *x, ptrdiff_t n_rows, ptrdiff_t n,
                            ptrdiff_t row_stride, double scale, int for_lse,
                            double *max, double *log_sum)
{
    __m256d T[SMALL_COLS];
    const __m256d sv = _mm256_set1_pd(scale);
    (void)for_lse;
    for (ptrdiff_t g = 0; g < n_rows; g += 4) {
        const ptrdiff_t w = n_rows - g < 4 ? n_rows - g : 4;
        const double *p[4];
        for (int k = 0; k < 4; ++k) p[k] = x + (g + (k < w ? k : 0)) * row_stride;
        __m256d m, bad, l;
        small_in_f64_(p, n, T, &m, &bad, 1);
        const int fin = small_reduce_f64_(T, n, m, bad, sv, &l);
        if (w == 4 && fin == 15) {
            _mm256_storeu_pd(max + g, m);
            _mm256_storeu_pd(log_sum + g, l);
            continue;
        }
        double mx[4], ls[4];
        _mm256_storeu_pd(mx, m);
        _mm256_storeu_pd(ls, l);
        for (ptrdiff_t k = 0; k < w; ++k) {
            if (fin >> k & 1) { max[g + k] = mx[k]; log_sum[g + k] = ls[k]; }
            else small_lse_row_f64_(p[k], n, scale, max + g + k, log_sum + g + k);
        }
    }
}

/* Fused float64 softmax / log_softmax:
 *   softmax: e = exp(scale * (x - max)) once per element (exp_f64_),
 *            y = e * (1 / sum e);
 *   log_softmax: y = scale * (x - max) - log_sum. */
static inline __attribute__((always_inline)) void
small_fused_f64_(const double *x, ptrdiff_t n_rows, ptrdiff_t n,
                 ptrdiff_t x_row_stride, double scale, double *y,
                 ptrdiff_t y_row_stride, const int LOG)
{
    __m256d T[SMALL_COLS];
    const __m256d sv = _mm256_set1_pd(scale), one = _mm256_set1_pd(1.0);
    for (ptrdiff_t g = 0; g < n_rows; g += 4) {
        const ptrdiff_t w = n_rows - g < 4 ? n_rows - g : 4;
        const double *p[4];
        double *q[4];
        for (int k = 0; k < 4; ++k) {
            ptrdiff_t r = g + (k < w ? k : 0);
            p[k] = x + r * x_row_stride;
            q[k] = y + r * y_row_stride;
        }
        __m256d m, bad, l;
        int fin;
        small_in_f64_(p, n, T, &m, &bad, 1);
        if (LOG) {
            fin = small_reduce_f64_(T, n, m, bad, sv, &l);
            if (fin)
                for (ptrdiff_t i = 0; i < n; ++i)
                    T[i] = _mm256_fmsub_pd(_mm256_sub_pd(T[i], m), sv, l);
        } else {
            fin = small_finite_mask_(m) & ~_mm256_movemask_pd(bad);
            if (fin) {
                __m256d s = _mm256_setzero_pd();
                for (ptrdiff_t i = 0; i < n; ++i) {
                    T[i] = exp_f64_(_mm256_mul_pd(_mm256_sub_pd(T[i], m), sv));
                    s = _mm256_add_pd(s, T[i]);
                }
                const __m256d inv = _mm256_div_pd(one, s);
                for (ptrdiff_t i = 0; i < n; ++i) T[i] = _mm256_mul_pd(T[i], inv);
            }
        }
        const int store = fin & ((1 << w) - 1);
        if (store) small_out_f64_(T, n, q, store);
        for (ptrdiff_t k = 0; k < w; ++k)
            if (!(fin >> k & 1)) {
                double mx, ls;
                small_lse_row_f64_(p[k], n, scale, &mx, &ls);
                if (LOG)
                    csm_log_softmax_rows_f64_scalar(p[k], 1, n, 0, scale, &mx, &ls,
                                                    1.0, q[k], 0);
                else
                    csm_softmax_rows_f64_scalar(p[k], 1, n, 0, scale, &mx, &ls,
                                                1.0, q[k], 0);
            }
    }
}

void csm_softmax_small_f64_avx2(const double *x, ptrdiff_t n_rows, ptrdiff_t n,
                                ptrdiff_t x_row_stride, double scale, double *y,
                                ptrdiff_t y_row_stride)
{
    small_fused_f64_(x, n_rows, n, x_row_stride, scale, y, y_row_stride, 0);
}

void csm_log_softmax_small_f64_avx2(const double *x, ptrdiff_t n_rows,
                                    ptrdiff_t n, ptrdiff_t x_row_stride,
                                    double scale, double *y,
                                    ptrdiff_t y_row_stride)
{
    small_fused_f64_(x, n_rows, n, x_row_stride, scale, y, y_row_stride, 1);
}

/* Softmax write of float64 rows with a given (max, log_sum) and alpha (the
 * float64 row kernel's step). */
void csm_softmax_write_small_f64_avx2(const double *x, ptrdiff_t n_rows,
        ptrdiff_t n, ptrdiff_t x_row_stride, double scale, const double *max,
        const double *log_sum, double alpha, double *y, ptrdiff_t y_row_stride)
{
    __m256d T[SMALL_COLS];
    const __m256d sv = _mm256_set1_pd(scale), av = _mm256_set1_pd(alpha);
    for (ptrdiff_t g = 0; g < n_rows; g += 4) {
        const ptrdiff_t w = n_rows - g < 4 ? n_rows - g : 4;
        const double *p[4];
        double *q[4];
        double mx[4], ls[4];
        for (int k = 0; k < 4; ++k) {
            ptrdiff_t r = g + (k < w ? k : 0);
            p[k] = x + r * x_row_stride;
            q[k] = y + r * y_row_stride;
            mx[k] = max[r];
            ls[k] = log_sum[r];
        }
        const __m256d m = _mm256_loadu_pd(mx), l = _mm256_loadu_pd(ls);
        const int fin = small_finite_mask_(m);
        const int store = fin & ((1 << w) - 1);
        if (store) {
            small_in_f64_(p, n, T, NULL, NULL, 0);
            for (ptrdiff_t i = 0; i < n; ++i)
                T[i] = _mm256_mul_pd(av, exp_f64_(
                    _mm256_fmsub_pd(_mm256_sub_pd(T[i], m), sv, l)));
            small_out_f64_(T, n, q, store);
        }
        for (ptrdiff_t k = 0; k < w; ++k)
            if (!(fin >> k & 1))
                csm_softmax_rows_f64_scalar(p[k], 1, n, 0, scale, mx + k, ls + k,
                                            alpha, q[k], 0);
    }
}

/* csm_ce_small_f32_avx2 for float64: 4 rows per group, the float64 short-row
 * steps (exact compares, exp_f64_ once per element, kept in the tile; log_sum
 * from count + rest), each row scaled by a[r] / sum and the target entry
 * a[r] * expm1(lp).  No clamp, so any finite a. */
void csm_ce_small_f64_avx2(const double *x, ptrdiff_t n_rows, ptrdiff_t n,
                           ptrdiff_t x_row_stride, double scale,
                           const double *a, const int *t, double *lp,
                           double *y, ptrdiff_t y_row_stride)
{
    __m256d T[SMALL_COLS];
    const __m256d sv = _mm256_set1_pd(scale), one = _mm256_set1_pd(1.0);
    double *Td = (double *)T;
    for (ptrdiff_t g = 0; g < n_rows; g += 4) {
        const ptrdiff_t w = n_rows - g < 4 ? n_rows - g : 4;
        const double *p[4];
        double *q[4];
        double av[4];
        int tk[4];
        for (int k = 0; k < 4; ++k) {
            ptrdiff_t r = g + (k < w ? k : 0);
            p[k] = x + r * x_row_stride;
            q[k] = y + r * y_row_stride;
            av[k] = a[r];
            tk[k] = t != NULL ? t[r] : -1;
        }
        __m256d m, bad;
        small_in_f64_(p, n, T, &m, &bad, 1);
        const int fin = small_finite_mask_(m) & ~_mm256_movemask_pd(bad);
        const int store = fin & ((1 << w) - 1);
        if (store) {
            __m256d r = _mm256_setzero_pd(), c = r;
            double xt[4];
            int tmask = 0;
            for (int k = 0; k < 4; ++k) {
                xt[k] = 0.0;
                if (tk[k] >= 0 && (store >> k & 1)) {
                    xt[k] = Td[tk[k] * 4 + k];
                    tmask |= 1 << k;
                }
            }
            for (ptrdiff_t i = 0; i < n; ++i) {
                __m256d e = _mm256_cmp_pd(T[i], m, _CMP_EQ_OQ);
                __m256d v = exp_f64_(_mm256_mul_pd(_mm256_sub_pd(T[i], m), sv));
                T[i] = v;
                r = _mm256_add_pd(r, _mm256_andnot_pd(e, v));
                c = _mm256_add_pd(c, _mm256_and_pd(e, one));
            }
            c = _mm256_blendv_pd(one, c, small_lanes_pd_(fin));  /* keep the log finite */
            const __m256d av4 = _mm256_loadu_pd(av);
            const __m256d f = _mm256_div_pd(av4, _mm256_add_pd(c, r));
            for (ptrdiff_t i = 0; i < n; ++i) T[i] = _mm256_mul_pd(T[i], f);
            if (tmask) {
                const __m256d l = small_log_sum_(c, r);
                __m256d tv = _mm256_fmsub_pd(_mm256_sub_pd(_mm256_loadu_pd(xt), m), sv, l);
                double lv[4], gv[4];
                _mm256_storeu_pd(lv, tv);
                _mm256_storeu_pd(gv, _mm256_mul_pd(av4, expm1_le0_pd_(tv)));
                for (int k = 0; k < 4; ++k)
                    if (tmask >> k & 1) {
                        Td[tk[k] * 4 + k] = gv[k];
                        lp[g + k] = lv[k];
                    }
            }
            small_out_f64_(T, n, q, store);
        }
        for (ptrdiff_t k = 0; k < w; ++k)
            if (!(fin >> k & 1))
                ce_small_row_f64_(p[k], q[k], n, scale, av[k], tk[k], lp + g + k);
    }
}


/* ---- cross-entropy gradient of soft targets (float32) ------------------- */

/* e = exp_mid_(s (x - m) - l) and a e - sub in 4 lanes: exp to 2^-43 and one
 * rounding to float64 of the difference (fused multiply-subtract), so where
 * the two terms cancel the result keeps ~2^-43 x their magnitude. */
static inline __m256d ce_soft4_(__m256d x, __m256d sv, __m256d m, __m256d l,
                                __m256d a, __m256d sub, __m256d *acc)
{
    __m256d e = exp_mid_(_mm256_fmsub_pd(sv, _mm256_sub_pd(x, m), l));
    *acc = _mm256_add_pd(*acc, e);
    return _mm256_fmsub_pd(a, e, sub);
}

/* w (cq q + c0) of 8 classes (w, q optional; r < 8: the first r) */
static inline void ce_soft_sub8_(const float *q, const double *w, ptrdiff_t r,
                                 __m256d cq, __m256d c0, __m256d *lo, __m256d *hi)
{
    __m256d a = c0, b = c0, u, v;
    if (q) {
        if (r >= 8) load8_f32_(q, &u, &v); else load8m_f32_(q, r, 0.0f, &u, &v);
        a = _mm256_fmadd_pd(cq, u, c0);
        b = _mm256_fmadd_pd(cq, v, c0);
    }
    if (w) {
        if (r >= 8) load8_f64_(w, &u, &v); else load8m_f64_(w, r, 0.0, &u, &v);
        a = _mm256_mul_pd(a, u);
        b = _mm256_mul_pd(b, v);
    }
    *lo = a; *hi = b;
}

void csm_ce_soft_rows_f32_avx2(const float *x, ptrdiff_t n_rows, ptrdiff_t n,
                               ptrdiff_t x_row_stride, double scale,
                               const double *max, const double *log_sum,
                               const double *a, const float *q,
                               ptrdiff_t q_row_stride, const double *w,
                               double cq, double c0, float *g,
                               ptrdiff_t g_row_stride, double *sum)
{
    const __m256d sv = _mm256_set1_pd(scale), cqv = _mm256_set1_pd(cq);
    const __m256d c0v = _mm256_set1_pd(c0);
    for (ptrdiff_t r = 0; r < n_rows; ++r) {
        const float *xr = x + r * x_row_stride;
        const float *qr = q ? q + r * q_row_stride : NULL;
        float *gr = g + r * g_row_stride;
        const __m256d mv = _mm256_set1_pd(max[r]), lv = _mm256_set1_pd(log_sum[r]);
        const __m256d av = _mm256_set1_pd(a[r]);
        __m256d x0, x1, s0 = c0v, s1 = c0v, e0 = _mm256_setzero_pd(), e1 = e0;
        ptrdiff_t i = 0;
        for (; i + 8 <= n; i += 8) {
            load8_f32_(xr + i, &x0, &x1);
            if (qr || w)
                ce_soft_sub8_(qr ? qr + i : NULL, w ? w + i : NULL, 8, cqv, c0v, &s0, &s1);
            store8_f32_(gr + i, ce_soft4_(x0, sv, mv, lv, av, s0, &e0),
                        ce_soft4_(x1, sv, mv, lv, av, s1, &e1));
        }
        if (i < n) {
            load8m_f32_(xr + i, n - i, -INFINITY, &x0, &x1);
            if (qr || w)
                ce_soft_sub8_(qr ? qr + i : NULL, w ? w + i : NULL, n - i, cqv, c0v, &s0, &s1);
            store8m_f32_(gr + i, n - i, ce_soft4_(x0, sv, mv, lv, av, s0, &e0),
                         ce_soft4_(x1, sv, mv, lv, av, s1, &e1));
        }
        if (sum) sum[r] = hsum_pd_(_mm256_add_pd(e0, e1));
    }
}

void csm_ce_soft_cols_f32_avx2(const float *x, ptrdiff_t n_cols, ptrdiff_t n,
                               ptrdiff_t x_row_stride, double scale,
                               const double *max, const double *log_sum,
                               const double *a, const float *q,
                               ptrdiff_t q_row_stride, const double *w,
                               double cq, double c0, float *g,
                               ptrdiff_t g_row_stride, double *sum)
{
    const __m256d sv = _mm256_set1_pd(scale);
    for (ptrdiff_t j = 0; j < n_cols; j += 8) {
        ptrdiff_t r = n_cols - j;
        __m256d x0, x1, m0, m1, l0, l1, a0, a1, u, v;
        __m256d e0 = _mm256_setzero_pd(), e1 = e0;
        if (r >= 8) {
            load8_f64_(max + j, &m0, &m1); load8_f64_(log_sum + j, &l0, &l1);
            load8_f64_(a + j, &a0, &a1);
        } else {
            load8m_f64_(max + j, r, 0.0, &m0, &m1);
            load8m_f64_(log_sum + j, r, 0.0, &l0, &l1);
            load8m_f64_(a + j, r, 0.0, &a0, &a1);
        }
        for (ptrdiff_t c = 0; c < n; ++c) {
            const double wc = w ? w[c] : 1.0;
            const __m256d c0v = _mm256_set1_pd(wc * c0), cw = _mm256_set1_pd(wc * cq);
            __m256d s0 = c0v, s1 = c0v;
            const float *xr = x + c * x_row_stride + j;
            const float *qr = q ? q + c * q_row_stride + j : NULL;
            float *gr = g + c * g_row_stride + j;
            if (r >= 8) {
                load8_f32_(xr, &x0, &x1);
                if (qr) {
                    load8_f32_(qr, &u, &v);
                    s0 = _mm256_fmadd_pd(cw, u, c0v); s1 = _mm256_fmadd_pd(cw, v, c0v);
                }
                store8_f32_(gr, ce_soft4_(x0, sv, m0, l0, a0, s0, &e0),
                            ce_soft4_(x1, sv, m1, l1, a1, s1, &e1));
            } else {
                load8m_f32_(xr, r, -INFINITY, &x0, &x1);
                if (qr) {
                    load8m_f32_(qr, r, 0.0f, &u, &v);
                    s0 = _mm256_fmadd_pd(cw, u, c0v); s1 = _mm256_fmadd_pd(cw, v, c0v);
                }
                store8m_f32_(gr, r, ce_soft4_(x0, sv, m0, l0, a0, s0, &e0),
                             ce_soft4_(x1, sv, m1, l1, a1, s1, &e1));
            }
        }
        if (sum) {
            if (r >= 8) store8_f64_(sum + j, e0, e1);
            else store8m_f64_(sum + j, r, e0, e1);
        }
    }
}

/* g - (g + sub) (1 - 1/sum) in 4 lanes (see csm_ce_soft_fix_f32) */
static inline __m256d ce_fix4_(__m256d g, __m256d sub, __m256d f)
{
    return _mm256_fnmadd_pd(_mm256_add_pd(g, sub), f, g);
}

void csm_ce_soft_fix_rows_f32_avx2(float *g, ptrdiff_t n_rows, ptrdiff_t n,
                                   ptrdiff_t g_row_stride, const float *q,
                                   ptrdiff_t q_row_stride, const double *w,
                                   double cq, double c0, const double *sum)
{
    const __m256d cqv = _mm256_set1_pd(cq), c0v = _mm256_set1_pd(c0);
    for (ptrdiff_t r = 0; r < n_rows; ++r) {
        const double f = 1.0 - 1.0 / sum[r];
        if (fabs(f) < 0x1p-45) continue;   /* log_sum already accurate */ 
        const __m256d fv = _mm256_set1_pd(f);
        const float *qr = q ? q + r * q_row_stride : NULL;
        float *gr = g + r * g_row_stride;
        __m256d g0, g1, s0 = c0v, s1 = c0v;
        ptrdiff_t i = 0;
        for (; i + 8 <= n; i += 8) {
            load8_f32_(gr + i, &g0, &g1);
            if (qr || w)
                ce_soft_sub8_(qr ? qr + i : NULL, w ? w + i : NULL, 8, cqv, c0v, &s0, &s1);
            store8_f32_(gr + i, ce_fix4_(g0, s0, fv), ce_fix4_(g1, s1, fv));
        }
        if (i < n) {
            load8m_f32_(gr + i, n - i, 0.0f, &g0, &g1);
            if (qr || w)
                ce_soft_sub8_(qr ? qr + i : NULL, w ? w + i : NULL, n - i, cqv, c0v, &s0, &s1);
            store8m_f32_(gr + i, n - i, ce_fix4_(g0, s0, fv), ce_fix4_(g1, s1, fv));
        }
    }
}

void csm_ce_soft_fix_cols_f32_avx2(float *g, ptrdiff_t n_cols, ptrdiff_t n,
                                   ptrdiff_t g_row_stride, const float *q,
                                   ptrdiff_t q_row_stride, const double *w,
                                   double cq, double c0, const double *sum)
{
    const __m256d one = _mm256_set1_pd(1.0);
    for (ptrdiff_t j = 0; j < n_cols; j += 8) {
        ptrdiff_t r = n_cols - j;
        __m256d f0, f1, g0, g1, u, v;
        if (r >= 8) load8_f64_(sum + j, &f0, &f1);
        else load8m_f64_(sum + j, r, 1.0, &f0, &f1);
        f0 = _mm256_sub_pd(one, _mm256_div_pd(one, f0));
        f1 = _mm256_sub_pd(one, _mm256_div_pd(one, f1));
        for (ptrdiff_t c = 0; c < n; ++c) {
            const double wc = w ? w[c] : 1.0;
            const __m256d c0v = _mm256_set1_pd(wc * c0), cw = _mm256_set1_pd(wc * cq);
            __m256d s0 = c0v, s1 = c0v;
            const float *qr = q ? q + c * q_row_stride + j : NULL;
            float *gr = g + c * g_row_stride + j;
            if (r >= 8) {
                load8_f32_(gr, &g0, &g1);
                if (qr) {
                    load8_f32_(qr, &u, &v);
                    s0 = _mm256_fmadd_pd(cw, u, c0v); s1 = _mm256_fmadd_pd(cw, v, c0v);
                }
                store8_f32_(gr, ce_fix4_(g0, s0, f0), ce_fix4_(g1, s1, f1));
            } else {
                load8m_f32_(gr, r, 0.0f, &g0, &g1);
                if (qr) {
                    load8m_f32_(qr, r, 0.0f, &u, &v);
                    s0 = _mm256_fmadd_pd(cw, u, c0v); s1 = _mm256_fmadd_pd(cw, v, c0v);
                }
                store8m_f32_(gr, r, ce_fix4_(g0, s0, f0), ce_fix4_(g1, s1, f1));
            }
        }
    }
}

#if defined(__clang__)
#pragma clang attribute pop
#endif

#endif /* CSM_BUILD_AVX2 */
