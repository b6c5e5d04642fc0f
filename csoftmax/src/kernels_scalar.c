/*
 * kernels_scalar.c -- portable reference kernels (any CPU, any compiler).
 *
 * Everything is computed in float64 with the C library's exp/log1p, so these
 * are also the correctness oracle for the SIMD kernels.  The row kernels
 * work in two passes: max (with NaN detection), then the exp-sum with the
 * elements equal to the max counted apart (see csoftmax.h).
 */
#include <math.h>
#include "csoftmax.h"
#include "kernels.h"

#define DEFINE_SCALAR_KERNELS(T, SUF)                                          \
static void lse_row_##SUF##_(const T *x, ptrdiff_t n, ptrdiff_t step,          \
                             double scale, csm_lse_state *st)                  \
{                                                                              \
    double m = -INFINITY, cnt = 0.0, rest = 0.0;                               \
    int nan = 0;                                                               \
    for (ptrdiff_t i = 0; i < n; ++i) {                                        \
        double v = (double)x[i * step];                                        \
        if (v != v) nan = 1;                                                   \
        else if (v > m) m = v;                                                 \
    }                                                                          \
    if (nan) { st->max = NAN; st->count = 1.0; st->rest = 0.0; return; }       \
    /* compensated (Kahan) sum: one float64 accumulator over a long row   \
     * would lose up to n * 2^-53 relative -- thousands of float64 ULP at   \
     * n = 65536 when the terms repeat (ties) -- and these kernels are the  \
     * reference the SIMD kernels are tested against; the terms are > 0 */ \
    double comp = 0.0;                                                         \
    for (ptrdiff_t i = 0; i < n; ++i) {                                        \
        double v = (double)x[i * step];                                        \
        if (v == m) cnt += 1.0;                                                \
        else {                                                                 \
            double t = exp(scale * (v - m)) - comp;                            \
            double s = rest + t;                                               \
            comp = (s - rest) - t;                                             \
            rest = s;                                                          \
        }                                                                      \
    }                                                                          \
    st->max = m; st->count = cnt; st->rest = rest;                             \
}                                                                              \
void csm_lse_rows_##SUF##_scalar(const T *x, ptrdiff_t n_rows, ptrdiff_t n,    \
                                 ptrdiff_t row_stride, double scale,           \
                                 csm_lse_state *states)                        \
{                                                                              \
    for (ptrdiff_t r = 0; r < n_rows; ++r)                                     \
        lse_row_##SUF##_(x + r * row_stride, n, 1, scale, states + r);         \
}                                                                              \
void csm_lse_cols_##SUF##_scalar(const T *x, ptrdiff_t n_cols, ptrdiff_t n,    \
                                 ptrdiff_t row_stride, double scale,           \
                                 csm_lse_state *states)                        \
{                                                                              \
    for (ptrdiff_t j = 0; j < n_cols; ++j)                                     \
        lse_row_##SUF##_(x + j, n, row_stride, scale, states + j);             \
}                                                                              \
void csm_softmax_rows_##SUF##_scalar(const T *x, ptrdiff_t n_rows,             \
        ptrdiff_t n, ptrdiff_t x_row_stride, double scale, const double *max,  \
        const double *log_sum, double alpha, T *y, ptrdiff_t y_row_stride)     \
{                                                                              \
    for (ptrdiff_t r = 0; r < n_rows; ++r) {                                   \
        const T *xr = x + r * x_row_stride; T *yr = y + r * y_row_stride;      \
        double m = max[r], ls = log_sum[r];                                    \
        for (ptrdiff_t i = 0; i < n; ++i)                                      \
            yr[i] = (T)(alpha * exp(scale * ((double)xr[i] - m) - ls));        \
    }                                                                          \
}                                                                              \
void csm_log_softmax_rows_##SUF##_scalar(const T *x, ptrdiff_t n_rows,         \
        ptrdiff_t n, ptrdiff_t x_row_stride, double scale, const double *max,  \
        const double *log_sum, double alpha, T *y, ptrdiff_t y_row_stride)     \
{                                                                              \
    (void)alpha;                                                               \
    for (ptrdiff_t r = 0; r < n_rows; ++r) {                                   \
        const T *xr = x + r * x_row_stride; T *yr = y + r * y_row_stride;      \
        double m = max[r], ls = log_sum[r];                                    \
        for (ptrdiff_t i = 0; i < n; ++i)                                      \
            yr[i] = (T)(scale * ((double)xr[i] - m) - ls);                     \
    }                                                                          \
}                                                                              \
void csm_softmax_cols_##SUF##_scalar(const T *x, ptrdiff_t n_cols,             \
        ptrdiff_t n, ptrdiff_t x_row_stride, double scale, const double *max,  \
        const double *log_sum, double alpha, T *y, ptrdiff_t y_row_stride)     \
{                                                                              \
    for (ptrdiff_t i = 0; i < n; ++i) {                                        \
        const T *xr = x + i * x_row_stride; T *yr = y + i * y_row_stride;      \
        for (ptrdiff_t j = 0; j < n_cols; ++j)                                 \
            yr[j] = (T)(alpha * exp(scale * ((double)xr[j] - max[j])           \
                                    - log_sum[j]));                            \
    }                                                                          \
}                                                                              \
void csm_log_softmax_cols_##SUF##_scalar(const T *x, ptrdiff_t n_cols,         \
        ptrdiff_t n, ptrdiff_t x_row_stride, double scale, const double *max,  \
        const double *log_sum, double alpha, T *y, ptrdiff_t y_row_stride)     \
{                                                                              \
    (void)alpha;                                                               \
    for (ptrdiff_t i = 0; i < n; ++i) {                                        \
        const T *xr = x + i * x_row_stride; T *yr = y + i * y_row_stride;      \
        for (ptrdiff_t j = 0; j < n_cols; ++j)                                 \
            yr[j] = (T)(scale * ((double)xr[j] - max[j]) - log_sum[j]);        \
    }                                                                          \
}

DEFINE_SCALAR_KERNELS(float, f32)
DEFINE_SCALAR_KERNELS(double, f64)

void csm_finalize_scalar(const csm_lse_state *states, ptrdiff_t n,
                         double scale, double *max, double *log_sum)
{
    (void)scale;
    for (ptrdiff_t r = 0; r < n; ++r) {
        const csm_lse_state *s = states + r;
        max[r] = s->max;
        if (s->max != s->max) log_sum[r] = NAN;
        else if (s->count == 0.0) { max[r] = -INFINITY; log_sum[r] = 0.0; }
        else if (s->count == 1.0) log_sum[r] = log1p(s->rest);
        else log_sum[r] = log(s->count) + log1p(s->rest / s->count);
    }
}

/* ---- backward (VJP) over contiguous rows, float64 arithmetic ------------ */
#define DEFINE_SCALAR_BWD(T, SUF)                                              \
void csm_softmax_bwd_rows_##SUF##_scalar(const T *y, const T *dy, T *o,        \
                                         ptrdiff_t n_rows, ptrdiff_t n)        \
{                                                                              \
    for (ptrdiff_t r = 0; r < n_rows; ++r) {                                   \
        const T *yr = y + r * n, *gr = dy + r * n; T *orow = o + r * n;        \
        double s = 0.0;                                                        \
        for (ptrdiff_t i = 0; i < n; ++i) s += (double)yr[i] * (double)gr[i];  \
        for (ptrdiff_t i = 0; i < n; ++i)                                      \
            orow[i] = (T)((double)yr[i] * ((double)gr[i] - s));                \
    }                                                                          \
}                                                                              \
void csm_log_softmax_bwd_rows_##SUF##_scalar(const T *y, const T *dy, T *o,    \
                                             ptrdiff_t n_rows, ptrdiff_t n)    \
{                                                                              \
    for (ptrdiff_t r = 0; r < n_rows; ++r) {                                   \
        const T *yr = y + r * n, *gr = dy + r * n; T *orow = o + r * n;        \
        double s = 0.0;                                                        \
        for (ptrdiff_t i = 0; i < n; ++i) s += (double)gr[i];                  \
        for (ptrdiff_t i = 0; i < n; ++i)                                      \
            orow[i] = (T)((double)gr[i] - exp((double)yr[i]) * s);             \
    }                                                                          \
}
DEFINE_SCALAR_BWD(float, f32)
DEFINE_SCALAR_BWD(double, f64)

/* ---- cross-entropy gradient of soft targets, float32 data --------------- */
/* a exp(d) - w (cq q + c0) in float64, one rounding, and the fix-up of
 * log_sum (see csm_ce_soft_f32, csm_ce_soft_fix_f32) */
void csm_ce_soft_rows_f32_scalar(const float *x, ptrdiff_t n_rows, ptrdiff_t n,
                                 ptrdiff_t x_row_stride, double scale,
                                 const double *max, const double *log_sum,
                                 const double *a, const float *q,
                                 ptrdiff_t q_row_stride, const double *w,
                                 double cq, double c0, float *g,
                                 ptrdiff_t g_row_stride, double *sum)
{
    for (ptrdiff_t r = 0; r < n_rows; ++r) {
        const float *xr = x + r * x_row_stride;
        const float *qr = q ? q + r * q_row_stride : NULL;
        float *gr = g + r * g_row_stride;
        double m = max[r], ls = log_sum[r], ar = a[r], acc = 0.0;
        for (ptrdiff_t i = 0; i < n; ++i) {
            double sub = (qr ? cq * (double)qr[i] + c0 : c0) * (w ? w[i] : 1.0);
            double e = exp(scale * ((double)xr[i] - m) - ls);
            acc += e;
            gr[i] = (float)(ar * e - sub);
        }
        if (sum) sum[r] = acc;
    }
}

/* A = sum u, B = sum u (x - max), u = w (cq q + c0): four partial sums
 * (see csm_ce_soft_sums_f32) */
void csm_ce_soft_sums_f32_scalar(const float *x, ptrdiff_t n_rows, ptrdiff_t n,
                                 ptrdiff_t x_row_stride, const double *max,
                                 const float *q, ptrdiff_t q_row_stride,
                                 const double *w, double cq, double c0,
                                 double *A, double *B)
{
    for (ptrdiff_t r = 0; r < n_rows; ++r) {
        const float *xr = x + r * x_row_stride;
        const float *qr = q ? q + r * q_row_stride : NULL;
        const double m = max[r];
        double a[4] = {0.0, 0.0, 0.0, 0.0}, b[4] = {0.0, 0.0, 0.0, 0.0};
        for (ptrdiff_t i = 0; i < n; ++i) {
            double u = (qr ? cq * (double)qr[i] + c0 : c0) * (w ? w[i] : 1.0);
            a[i & 3] += u;
            b[i & 3] += u * ((double)xr[i] - m);
        }
        A[r] = (a[0] + a[1]) + (a[2] + a[3]);
        B[r] = (b[0] + b[1]) + (b[2] + b[3]);
    }
}

void csm_ce_soft_cols_f32_scalar(const float *x, ptrdiff_t n_cols, ptrdiff_t n,
                                 ptrdiff_t x_row_stride, double scale,
                                 const double *max, const double *log_sum,
                                 const double *a, const float *q,
                                 ptrdiff_t q_row_stride, const double *w,
                                 double cq, double c0, float *g,
                                 ptrdiff_t g_row_stride, double *sum)
{
    if (sum) for (ptrdiff_t j = 0; j < n_cols; ++j) sum[j] = 0.0;
    for (ptrdiff_t c = 0; c < n; ++c) {
        const float *xr = x + c * x_row_stride;
        const float *qr = q ? q + c * q_row_stride : NULL;
        float *gr = g + c * g_row_stride;
        double wc = w ? w[c] : 1.0;
        for (ptrdiff_t j = 0; j < n_cols; ++j) {
            double sub = (qr ? cq * (double)qr[j] + c0 : c0) * wc;
            double e = exp(scale * ((double)xr[j] - max[j]) - log_sum[j]);
            if (sum) sum[j] += e;
            gr[j] = (float)(a[j] * e - sub);
        }
    }
}

void csm_ce_soft_fix_rows_f32_scalar(float *g, ptrdiff_t n_rows, ptrdiff_t n,
                                     ptrdiff_t g_row_stride, const float *q,
                                     ptrdiff_t q_row_stride, const double *w,
                                     double cq, double c0, const double *sum)
{
    for (ptrdiff_t r = 0; r < n_rows; ++r) {
        const float *qr = q ? q + r * q_row_stride : NULL;
        float *gr = g + r * g_row_stride;
        double f = 1.0 - 1.0 / sum[r];
        if (fabs(f) < 0x1p-45) continue;   /* log_sum already accurate */ 
        for (ptrdiff_t i = 0; i < n; ++i) {
            double sub = (qr ? cq * (double)qr[i] + c0 : c0) * (w ? w[i] : 1.0);
            gr[i] = (float)((double)gr[i] - ((double)gr[i] + sub) * f);
        }
    }
}

void csm_ce_soft_fix_cols_f32_scalar(float *g, ptrdiff_t n_cols, ptrdiff_t n,
                                     ptrdiff_t g_row_stride, const float *q,
                                     ptrdiff_t q_row_stride, const double *w,
                                     double cq, double c0, const double *sum)
{
    for (ptrdiff_t c = 0; c < n; ++c) {
        const float *qr = q ? q + c * q_row_stride : NULL;
        float *gr = g + c * g_row_stride;
        double wc = w ? w[c] : 1.0;
        for (ptrdiff_t j = 0; j < n_cols; ++j) {
            double f = 1.0 - 1.0 / sum[j];
            double sub = (qr ? cq * (double)qr[j] + c0 : c0) * wc;
            gr[j] = (float)((double)gr[j] - ((double)gr[j] + sub) * f);
        }
    }
}

/* ---- half precision <-> float32 (csoftmax.h: csm_cvt_*) ----------------- */

#define DEFINE_SCALAR_CVT(NAME, IN, OUT, FN)                                   \
void csm_##NAME##_scalar(const IN *x, ptrdiff_t n_rows, ptrdiff_t n,           \
                         ptrdiff_t xrs, OUT *y, ptrdiff_t yrs)                 \
{                                                                              \
    for (ptrdiff_t r = 0; r < n_rows; ++r)                                     \
        for (ptrdiff_t i = 0; i < n; ++i)                                      \
            y[r * yrs + i] = FN(x[r * xrs + i]);                               \
}
DEFINE_SCALAR_CVT(cvt_f16_to_f32, uint16_t, float, csm_f16_to_f32)
DEFINE_SCALAR_CVT(cvt_f32_to_f16, float, uint16_t, csm_f32_to_f16)
DEFINE_SCALAR_CVT(cvt_bf16_to_f32, uint16_t, float, csm_bf16_to_f32)
DEFINE_SCALAR_CVT(cvt_f32_to_bf16, float, uint16_t, csm_f32_to_bf16)
