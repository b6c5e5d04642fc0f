/*
 * avx2/small_f32.c -- float32 short rows, 8 rows per vector: reduction,
 * fused softmax / log_softmax, softmax write, cross-entropy gradient
 */
#include "common.h"
#include "small.h"

#ifdef CSM_BUILD_AVX2

/* float32 fast reduction sweep with per-lane max and clamp: lanes equal to
 * the max are counted (int32 lanes) and, like everything below the clamp L
 * (-inf included), replaced by L (term < e^-90: invisible); then
 * d = scale * (x - max) (exact) and exp_f32acc_ in float64 lanes. */
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
 * softmax_v_f32_ (the row kernel's fast path) on log_sum - log(alpha) >=
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
                        T[i] = _mm256_blendv_ps(T[i], softmax_v_f32_(
                            _mm256_max_ps(T[i], Lv), sv, cvl, cvh), fm);
                } else {
                    for (ptrdiff_t i = 0; i < n; ++i)
                        T[i] = softmax_v_f32_(_mm256_max_ps(T[i], Lv), sv, cvl, cvh);
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

DEFINE_CE_SMALL_ROW(float, f32)

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

#include "end.h"
#endif /* CSM_BUILD_AVX2 */
