/*
 * avx2/lanes_f32.h -- float32-lane helpers shared by the row, column and
 * short-row kernels: clamp bounds, the exact-reduction exp (xr_*),
 * softmax / log_softmax of 8 lanes, the cancellation test, log of sums >=
 * 1
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
 * a 2048-element partial sum (< 2^107) finite.  Lanes equal to the max are
 * counted (int32 lanes) and, like everything below the clamp L (-inf
 * included), replaced by L, whose term is invisible in the float64 state.
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

/* LSE = scale*max + log(count + rest) close to 0 cancels: the ~1 ULP
 * relative error of the float32 terms would show as many ULPs of LSE.
 * Such rows (|LSE| < ~1.2, judged with a crude log) are redone by the
 * scalar kernel (libm exp in float64). */
static inline int lse_cancels_(const csm_lse_state *st, double scale)
{
    /* branch-free (the outcome is almost always "no") */
    double sm = scale * st->max;
    double u = st->count + st->rest;
    union { double d; unsigned long long b; } v = { u };
    double lg = (double)((long long)(v.b >> 52) - 1023);
    v.b = (v.b & 0x000FFFFFFFFFFFFFULL) | 0x3FF0000000000000ULL;
    lg = (lg + (v.d - 1.0)) * 0.6931471805599453;   /* error < 0.07 */
    return (fabs(sm + lg) < 1.3) & (sm != 0.0) & (fabs(st->max) < INFINITY);
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
