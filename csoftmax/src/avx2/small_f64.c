/*
 * avx2/small_f64.c -- float64 short rows, 4 rows per vector: reduction,
 * fused softmax / log_softmax, softmax write, cross-entropy gradient
 */
#include "common.h"
#include "small.h"

#ifdef CSM_BUILD_AVX2

DEFINE_CE_SMALL_ROW(double, f64)

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
                _mm256_storeu_pd(gv, _mm256_mul_pd(av4, expm1_le0_(tv)));
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

#include "end.h"
#endif /* CSM_BUILD_AVX2 */
