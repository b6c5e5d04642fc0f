/*
 * scalar_masked.c -- the masked kernels (where=) of the scalar table, also
 * the reference for the SIMD ones and the fall-back of their rare rows
 * (NaN, +-inf max, no representable clamp, no element kept).
 *
 * Same arithmetic as kernels_scalar.c (float64, libm exp, compensated
 * sum, the elements equal to the max counted apart); the mask byte of an
 * element is read before the element, and a masked element is never read
 * at all, so whatever it holds (NaN, inf) cannot reach a result.
 */
#include <math.h>
#include "csoftmax.h"
#include "kernels.h"

#define DEFINE_SCALAR_MASKED(T, SUF)                                           \
static void lse_row_masked_##SUF##_(const T *x, ptrdiff_t n, ptrdiff_t step,   \
                                    const unsigned char *mk, ptrdiff_t mstep,  \
                                    double scale, csm_lse_state *st)           \
{                                                                              \
    double m = -INFINITY, cnt = 0.0, rest = 0.0, comp = 0.0;                   \
    int nan = 0;                                                               \
    for (ptrdiff_t i = 0; i < n; ++i) {                                        \
        if (!mk[i * mstep]) continue;                                          \
        double v = (double)x[i * step];                                        \
        if (v != v) nan = 1;                                                   \
        else if (v > m) m = v;                                                 \
    }                                                                          \
    if (nan) { st->max = NAN; st->count = 1.0; st->rest = 0.0; return; }       \
    for (ptrdiff_t i = 0; i < n; ++i) {                                        \
        if (!mk[i * mstep]) continue;                                          \
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
/* one row / column of the write pass; log: log_softmax */                     \
static void write_masked_##SUF##_(const T *x, ptrdiff_t n, ptrdiff_t step,     \
                                  const unsigned char *mk, ptrdiff_t mstep,    \
                                  double scale, double m, double ls,           \
                                  double alpha, T *y, ptrdiff_t ystep, int log)\
{                                                                              \
    for (ptrdiff_t i = 0; i < n; ++i) {                                        \
        if (!mk[i * mstep]) { y[i * ystep] = log ? (T)-INFINITY : (T)0; continue; } \
        double d = scale * ((double)x[i * step] - m) - ls;                     \
        y[i * ystep] = log ? (T)d : (T)(alpha * exp(d));                       \
    }                                                                          \
}                                                                              \
void csm_lse_rows_masked_##SUF##_scalar(const T *x, ptrdiff_t n_rows,          \
        ptrdiff_t n, ptrdiff_t row_stride, const unsigned char *mask,          \
        ptrdiff_t mask_row_stride, double scale, csm_lse_state *states,        \
        const T *w, ptrdiff_t w_row_stride)                                    \
{                                                                              \
    (void)w; (void)w_row_stride;                                               \
    for (ptrdiff_t r = 0; r < n_rows; ++r)                                     \
        lse_row_masked_##SUF##_(x + r * row_stride, n, 1,                      \
                                mask + r * mask_row_stride, 1, scale,          \
                                states + r);                                   \
}                                                                              \
void csm_softmax_rows_masked_##SUF##_scalar(const T *x, ptrdiff_t n_rows,      \
        ptrdiff_t n, ptrdiff_t x_row_stride, const unsigned char *mask,        \
        ptrdiff_t mask_row_stride, double scale, const double *max,            \
        const double *log_sum, double alpha, T *y, ptrdiff_t y_row_stride)     \
{                                                                              \
    for (ptrdiff_t r = 0; r < n_rows; ++r)                                     \
        write_masked_##SUF##_(x + r * x_row_stride, n, 1,                      \
                              mask + r * mask_row_stride, 1, scale, max[r],    \
                              log_sum[r], alpha, y + r * y_row_stride, 1, 0);  \
}                                                                              \
void csm_log_softmax_rows_masked_##SUF##_scalar(const T *x, ptrdiff_t n_rows,  \
        ptrdiff_t n, ptrdiff_t x_row_stride, const unsigned char *mask,        \
        ptrdiff_t mask_row_stride, double scale, const double *max,            \
        const double *log_sum, double alpha, T *y, ptrdiff_t y_row_stride)     \
{                                                                              \
    for (ptrdiff_t r = 0; r < n_rows; ++r)                                     \
        write_masked_##SUF##_(x + r * x_row_stride, n, 1,                      \
                              mask + r * mask_row_stride, 1, scale, max[r],    \
                              log_sum[r], alpha, y + r * y_row_stride, 1, 1);  \
}                                                                              \
void csm_lse_cols_masked_##SUF##_scalar(const T *x, ptrdiff_t n_cols,          \
        ptrdiff_t n, ptrdiff_t row_stride, const unsigned char *mask,          \
        ptrdiff_t mask_row_stride, ptrdiff_t mask_col_stride, double scale,    \
        csm_lse_state *states)                                                 \
{                                                                              \
    for (ptrdiff_t j = 0; j < n_cols; ++j)                                     \
        lse_row_masked_##SUF##_(x + j, n, row_stride,                          \
                                mask + j * mask_col_stride, mask_row_stride,   \
                                scale, states + j);                            \
}                                                                              \
void csm_softmax_cols_masked_##SUF##_scalar(const T *x, ptrdiff_t n_cols,      \
        ptrdiff_t n, ptrdiff_t x_row_stride, const unsigned char *mask,        \
        ptrdiff_t mask_row_stride, ptrdiff_t mask_col_stride, double scale,    \
        const double *max, const double *log_sum, double alpha, T *y,          \
        ptrdiff_t y_row_stride)                                                \
{                                                                              \
    for (ptrdiff_t j = 0; j < n_cols; ++j)                                     \
        write_masked_##SUF##_(x + j, n, x_row_stride,                          \
                              mask + j * mask_col_stride, mask_row_stride,     \
                              scale, max[j], log_sum[j], alpha, y + j,         \
                              y_row_stride, 0);                                \
}                                                                              \
void csm_log_softmax_cols_masked_##SUF##_scalar(const T *x, ptrdiff_t n_cols,  \
        ptrdiff_t n, ptrdiff_t x_row_stride, const unsigned char *mask,        \
        ptrdiff_t mask_row_stride, ptrdiff_t mask_col_stride, double scale,    \
        const double *max, const double *log_sum, double alpha, T *y,          \
        ptrdiff_t y_row_stride)                                                \
{                                                                              \
    for (ptrdiff_t j = 0; j < n_cols; ++j)                                     \
        write_masked_##SUF##_(x + j, n, x_row_stride,                          \
                              mask + j * mask_col_stride, mask_row_stride,     \
                              scale, max[j], log_sum[j], alpha, y + j,         \
                              y_row_stride, 1);                                \
}                                                                              \
/* backward: sums over the kept elements, 0 at the masked ones */              \
void csm_softmax_bwd_rows_masked_##SUF##_scalar(const T *y, const T *dy, T *o, \
        ptrdiff_t n_rows, ptrdiff_t n, ptrdiff_t row_stride,                   \
        const unsigned char *mask, ptrdiff_t mask_row_stride)                  \
{                                                                              \
    for (ptrdiff_t r = 0; r < n_rows; ++r) {                                   \
        const T *yr = y + r * row_stride, *gr = dy + r * row_stride;           \
        T *orow = o + r * row_stride;                                          \
        const unsigned char *mk = mask + r * mask_row_stride;                  \
        double s = 0.0;                                                        \
        for (ptrdiff_t i = 0; i < n; ++i)                                      \
            if (mk[i]) s += (double)yr[i] * (double)gr[i];                     \
        for (ptrdiff_t i = 0; i < n; ++i)                                      \
            orow[i] = mk[i] ? (T)((double)yr[i] * ((double)gr[i] - s)) : (T)0; \
    }                                                                          \
}                                                                              \
void csm_log_softmax_bwd_rows_masked_##SUF##_scalar(const T *y, const T *dy,   \
        T *o, ptrdiff_t n_rows, ptrdiff_t n, ptrdiff_t row_stride,             \
        const unsigned char *mask, ptrdiff_t mask_row_stride)                  \
{                                                                              \
    for (ptrdiff_t r = 0; r < n_rows; ++r) {                                   \
        const T *yr = y + r * row_stride, *gr = dy + r * row_stride;           \
        T *orow = o + r * row_stride;                                          \
        const unsigned char *mk = mask + r * mask_row_stride;                  \
        double s = 0.0;                                                        \
        for (ptrdiff_t i = 0; i < n; ++i)                                      \
            if (mk[i]) s += (double)gr[i];                                     \
        for (ptrdiff_t i = 0; i < n; ++i)                                      \
            orow[i] = mk[i] ? (T)((double)gr[i] - exp((double)yr[i]) * s)      \
                            : (T)0;                                            \
    }                                                                          \
}

DEFINE_SCALAR_MASKED(float, f32)
DEFINE_SCALAR_MASKED(double, f64)

/* float32 backward along a non-last axis: per column j the sums over the
 * kept i in float64, 0 at masked elements (the loop the Cython layer ran) */
static void bwd_cols_masked_f32_(const float *y, const float *dy, float *o,
        ptrdiff_t n_cols, ptrdiff_t n, ptrdiff_t rs, const unsigned char *m,
        ptrdiff_t mrs, ptrdiff_t mcs, int log)
{
    for (ptrdiff_t j = 0; j < n_cols; ++j) {
        double s = 0.0;
        for (ptrdiff_t i = 0; i < n; ++i)
            if (m[i * mrs + j * mcs])
                s += log ? (double)dy[i * rs + j]
                         : (double)y[i * rs + j] * (double)dy[i * rs + j];
        for (ptrdiff_t i = 0; i < n; ++i) {
            const ptrdiff_t k = i * rs + j;
            if (!m[i * mrs + j * mcs]) o[k] = 0.0f;
            else if (log) o[k] = (float)((double)dy[k] - exp((double)y[k]) * s);
            else o[k] = (float)((double)y[k] * ((double)dy[k] - s));
        }
    }
}

void csm_softmax_bwd_cols_masked_f32_scalar(const float *y, const float *dy,
        float *o, ptrdiff_t n_cols, ptrdiff_t n, ptrdiff_t row_stride,
        const unsigned char *mask, ptrdiff_t mask_row_stride,
        ptrdiff_t mask_col_stride)
{
    bwd_cols_masked_f32_(y, dy, o, n_cols, n, row_stride, mask, mask_row_stride,
                         mask_col_stride, 0);
}

void csm_log_softmax_bwd_cols_masked_f32_scalar(const float *y, const float *dy,
        float *o, ptrdiff_t n_cols, ptrdiff_t n, ptrdiff_t row_stride,
        const unsigned char *mask, ptrdiff_t mask_row_stride,
        ptrdiff_t mask_col_stride)
{
    bwd_cols_masked_f32_(y, dy, o, n_cols, n, row_stride, mask, mask_row_stride,
                         mask_col_stride, 1);
}
