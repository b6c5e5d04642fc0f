/*
 * avx2/ce_soft_f32.c -- the float32 cross-entropy gradient of soft
 * targets (label smoothing, probability targets), rows and columns: p W -
 * w q' formed in float64 with the 2^-43 exp (exp_mid_) and rounded once,
 * then the 1/sum fix-up
 */
#include "common.h"

#ifdef CSM_BUILD_AVX2

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

/* A = sum u, B = sum u (x - max), u = w (cq q + c0), 8 classes a step in
 * two float64 vectors each; the tail in scalar code, so that a non-finite
 * max meets no padding lanes (see csm_ce_soft_sums_f32) */
void csm_ce_soft_sums_f32_avx2(const float *x, ptrdiff_t n_rows, ptrdiff_t n,
                               ptrdiff_t x_row_stride, const double *max,
                               const float *q, ptrdiff_t q_row_stride,
                               const double *w, double cq, double c0,
                               double *A, double *B)
{
    const __m256d cqv = _mm256_set1_pd(cq), c0v = _mm256_set1_pd(c0);
    for (ptrdiff_t r = 0; r < n_rows; ++r) {
        const float *xr = x + r * x_row_stride;
        const float *qr = q ? q + r * q_row_stride : NULL;
        const double m = max[r];
        const __m256d mv = _mm256_set1_pd(m);
        __m256d a0 = _mm256_setzero_pd(), a1 = a0, b0 = a0, b1 = a0;
        __m256d x0, x1, u0 = c0v, u1 = c0v;
        ptrdiff_t i = 0;
        for (; i + 8 <= n; i += 8) {
            load8_f32_(xr + i, &x0, &x1);
            if (qr || w)
                ce_soft_sub8_(qr ? qr + i : NULL, w ? w + i : NULL, 8, cqv, c0v, &u0, &u1);
            a0 = _mm256_add_pd(a0, u0);
            a1 = _mm256_add_pd(a1, u1);
            b0 = _mm256_fmadd_pd(u0, _mm256_sub_pd(x0, mv), b0);
            b1 = _mm256_fmadd_pd(u1, _mm256_sub_pd(x1, mv), b1);
        }
        double sa = hsum_pd_(_mm256_add_pd(a0, a1));
        double sb = hsum_pd_(_mm256_add_pd(b0, b1));
        for (; i < n; ++i) {
            double u = (qr ? cq * (double)qr[i] + c0 : c0) * (w ? w[i] : 1.0);
            sa += u;
            sb += u * ((double)xr[i] - m);
        }
        A[r] = sa;
        B[r] = sb;
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

#include "end.h"
#endif /* CSM_BUILD_AVX2 */
