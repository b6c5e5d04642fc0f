/*
 * kernels_neon.c -- AdvSIMD (NEON) kernels for aarch64.
 *
 * AdvSIMD with float64 lanes is part of the aarch64 baseline, so no target
 * attribute is needed and dispatch.c selects this table on every aarch64
 * build.  Tested off-target by tools/neon/run.sh (cross-compiled, run under
 * qemu-aarch64 against the scalar kernels).
 *
 * Numerics follow csoftmax.h and kernels_scalar.c step by step, in float64
 * lanes (two per vector, four elements per step):
 *   - float32 inputs are widened to float64, so x - max is exact;
 *   - the exp argument is rounded exactly as the scalar code rounds it:
 *     scale * (x - max) (one product) in the LSE pass, and
 *     fma(scale, x - max, -log_sum) in the write pass -- which is what gcc
 *     makes of the scalar `scale * (x - m) - ls` on aarch64 (fp-contract);
 *   - exp in float64: magic-bias rounding, Cody-Waite reduction, then
 *     a degree-6 polynomial (rel. error 2.6e-9, float32 data) or a
 *     degree-13 Taylor polynomial with a two-constant reduction
 *     (rel. error < 2^-52, float64 data); valid for d in [-708, 0],
 *     lanes below are zero (float32) or go through libm (float64,
 *     denormal results);
 *   - float64 sums; elements equal to the max are counted apart.
 * Rows or column groups whose max is not finite (NaN, +-inf, empty) are
 * handed to the scalar kernels, as are column groups narrower than 4.
 * finalize is the scalar one (dispatch.c).
 *
 * FMAX propagates NaN on aarch64, so the max pass detects NaN for free.
 */
#include "csoftmax.h"
#include "kernels.h"

#ifdef CSM_BUILD_NEON

#include <arm_neon.h>
#include <math.h>

#define EXP_LOW (-708.0)

/* ---- exp ---------------------------------------------------------------- */

static inline float64x2_t exp_scale_(float64x2_t p, float64x2_t t)
{
    int64x2_t e = vshlq_n_s64(vreinterpretq_s64_f64(t), 52);
    return vreinterpretq_f64_s64(vaddq_s64(vreinterpretq_s64_f64(p), e));
}

static inline float64x2_t exp_f32acc_(float64x2_t d)
{
    const float64x2_t magic = vdupq_n_f64(0x1.8p52);
    float64x2_t t = vfmaq_f64(magic, d, vdupq_n_f64(1.4426950408889634));
    float64x2_t n = vsubq_f64(t, magic);
    float64x2_t r = vfmsq_f64(d, n, vdupq_n_f64(0x1.62e42fefa39efp-1));
    float64x2_t p = vdupq_n_f64(0x1.6d7531fa74153p-10);
    p = vfmaq_f64(vdupq_n_f64(0x1.126fa6fd93876p-7), p, r);
    p = vfmaq_f64(vdupq_n_f64(0x1.5554ace10c6afp-5), p, r);
    p = vfmaq_f64(vdupq_n_f64(0x1.5554043e283b8p-3), p, r);
    p = vfmaq_f64(vdupq_n_f64(0x1.00000028795a0p-1), p, r);
    p = vfmaq_f64(vdupq_n_f64(0x1.000000a1fd6adp+0), p, r);
    p = vfmaq_f64(vdupq_n_f64(1.0), p, r);
    return exp_scale_(p, t);
}

static inline float64x2_t exp_f64acc_(float64x2_t d)
{
    const float64x2_t magic = vdupq_n_f64(0x1.8p52);
    float64x2_t t = vfmaq_f64(magic, d, vdupq_n_f64(1.4426950408889634));
    float64x2_t n = vsubq_f64(t, magic);
    float64x2_t r = vfmsq_f64(d, n, vdupq_n_f64(6.93147180369123816490e-01));
    r = vfmsq_f64(r, n, vdupq_n_f64(1.90821492927058770002e-10));
    float64x2_t p = vdupq_n_f64(1.0 / 6227020800.0);
    p = vfmaq_f64(vdupq_n_f64(1.0 / 479001600.0), p, r);
    p = vfmaq_f64(vdupq_n_f64(1.0 / 39916800.0), p, r);
    p = vfmaq_f64(vdupq_n_f64(1.0 / 3628800.0), p, r);
    p = vfmaq_f64(vdupq_n_f64(1.0 / 362880.0), p, r);
    p = vfmaq_f64(vdupq_n_f64(1.0 / 40320.0), p, r);
    p = vfmaq_f64(vdupq_n_f64(1.0 / 5040.0), p, r);
    p = vfmaq_f64(vdupq_n_f64(1.0 / 720.0), p, r);
    p = vfmaq_f64(vdupq_n_f64(1.0 / 120.0), p, r);
    p = vfmaq_f64(vdupq_n_f64(1.0 / 24.0), p, r);
    p = vfmaq_f64(vdupq_n_f64(1.0 / 6.0), p, r);
    p = vfmaq_f64(vdupq_n_f64(0.5), p, r);
    p = vmulq_f64(p, vmulq_f64(r, r));
    p = vaddq_f64(vaddq_f64(p, r), vdupq_n_f64(1.0)); /* 1 + r + r^2 q */
    return exp_scale_(p, t);
}

/* exp(d) for d <= 0 (or -inf, or NaN -> NaN); lanes below -708 are zeros. */
static inline float64x2_t exp_f32_(float64x2_t d)
{
    const float64x2_t lo = vdupq_n_f64(EXP_LOW);
    uint64x2_t tiny = vcltq_f64(d, lo);
    float64x2_t e = exp_f32acc_(vmaxq_f64(d, lo)); /* vmaxq keeps NaN */
    return vreinterpretq_f64_u64(vbicq_u64(vreinterpretq_u64_f64(e), tiny));
}

/* exp(d) for d <= 0; lanes in [-746, -708) go through libm (denormal
 * results), lanes below that are exact zeros. */
static inline float64x2_t exp_f64_(float64x2_t d)
{
    const float64x2_t lo = vdupq_n_f64(EXP_LOW);
    uint64x2_t tiny = vcltq_f64(d, lo);
    float64x2_t e = exp_f64acc_(vmaxq_f64(d, lo));
    e = vreinterpretq_f64_u64(vbicq_u64(vreinterpretq_u64_f64(e), tiny));
    uint64x2_t sub = vandq_u64(tiny, vcgeq_f64(d, vdupq_n_f64(-746.0)));
    if (vmaxvq_u32(vreinterpretq_u32_u64(sub))) {
        double dv[2], ev[2];
        vst1q_f64(dv, d);
        vst1q_f64(ev, e);
        if (vgetq_lane_u64(sub, 0)) ev[0] = exp(dv[0]);
        if (vgetq_lane_u64(sub, 1)) ev[1] = exp(dv[1]);
        e = vld1q_f64(ev);
    }
    return e;
}

/* ---- 4 elements as two float64 vectors ----------------------------------- */

static inline void load4_f32_(const float *p, float64x2_t *lo, float64x2_t *hi)
{
    float32x4_t v = vld1q_f32(p);
    *lo = vcvt_f64_f32(vget_low_f32(v));
    *hi = vcvt_high_f64_f32(v);
}
static inline void store4_f32_(float *p, float64x2_t lo, float64x2_t hi)
{
    vst1q_f32(p, vcvt_high_f32_f64(vcvt_f32_f64(lo), hi));
}
static inline void load4_f64_(const double *p, float64x2_t *lo, float64x2_t *hi)
{
    *lo = vld1q_f64(p);
    *hi = vld1q_f64(p + 2);
}
static inline void store4_f64_(double *p, float64x2_t lo, float64x2_t hi)
{
    vst1q_f64(p, lo);
    vst1q_f64(p + 2, hi);
}

/* row maximum; NaN if any element is NaN (FMAX propagates NaN) */
static double row_max_f32_(const float *x, ptrdiff_t n)
{
    float32x4_t m0 = vdupq_n_f32(-INFINITY), m1 = m0, m2 = m0, m3 = m0;
    ptrdiff_t i = 0;
    for (; i + 16 <= n; i += 16) {
        m0 = vmaxq_f32(m0, vld1q_f32(x + i));
        m1 = vmaxq_f32(m1, vld1q_f32(x + i + 4));
        m2 = vmaxq_f32(m2, vld1q_f32(x + i + 8));
        m3 = vmaxq_f32(m3, vld1q_f32(x + i + 12));
    }
    for (; i + 4 <= n; i += 4) m0 = vmaxq_f32(m0, vld1q_f32(x + i));
    float m = vmaxvq_f32(vmaxq_f32(vmaxq_f32(m0, m1), vmaxq_f32(m2, m3)));
    for (; i < n; ++i) m = (x[i] != x[i]) ? x[i] : (x[i] > m ? x[i] : m);
    return (double)m;
}
static double row_max_f64_(const double *x, ptrdiff_t n)
{
    float64x2_t m0 = vdupq_n_f64(-INFINITY), m1 = m0, m2 = m0, m3 = m0;
    ptrdiff_t i = 0;
    for (; i + 8 <= n; i += 8) {
        m0 = vmaxq_f64(m0, vld1q_f64(x + i));
        m1 = vmaxq_f64(m1, vld1q_f64(x + i + 2));
        m2 = vmaxq_f64(m2, vld1q_f64(x + i + 4));
        m3 = vmaxq_f64(m3, vld1q_f64(x + i + 6));
    }
    for (; i + 2 <= n; i += 2) m0 = vmaxq_f64(m0, vld1q_f64(x + i));
    double m = vmaxvq_f64(vmaxq_f64(vmaxq_f64(m0, m1), vmaxq_f64(m2, m3)));
    for (; i < n; ++i) m = (x[i] != x[i]) ? x[i] : (x[i] > m ? x[i] : m);
    return m;
}

static inline int finite_(double v) { return v > -INFINITY && v < INFINITY; }

/* one exp-sum step on 4 elements against per-lane maxima mvl/mvh */
/* The column reduction: one lane sums a whole column (n terms), so the sum
 * is compensated (Kahan: k0/k1 carry the rounding error), or a float64
 * column of a few thousand rows would be ~n * 2^-53 off -- 30 ULP of the LSE
 * at n = 4099, against the compensated scalar reference. */
#define SUM_STEP_K(EXP, lo, hi, mvl, mvh)                                      \
    do {                                                                       \
        uint64x2_t e0 = vceqq_f64(lo, mvl), e1 = vceqq_f64(hi, mvh);           \
        float64x2_t t0 = EXP(vmulq_f64(vsubq_f64(lo, mvl), sv));               \
        float64x2_t t1 = EXP(vmulq_f64(vsubq_f64(hi, mvh), sv));               \
        t0 = vreinterpretq_f64_u64(vbicq_u64(vreinterpretq_u64_f64(t0), e0));  \
        t1 = vreinterpretq_f64_u64(vbicq_u64(vreinterpretq_u64_f64(t1), e1));  \
        float64x2_t y0 = vsubq_f64(t0, k0), y1 = vsubq_f64(t1, k1);            \
        float64x2_t s0 = vaddq_f64(r0, y0), s1 = vaddq_f64(r1, y1);            \
        k0 = vsubq_f64(vsubq_f64(s0, r0), y0);                                 \
        k1 = vsubq_f64(vsubq_f64(s1, r1), y1);                                 \
        r0 = s0; r1 = s1;                                                      \
        c0 = vaddq_f64(c0, vreinterpretq_f64_u64(                              \
                 vandq_u64(vreinterpretq_u64_f64(one), e0)));                  \
        c1 = vaddq_f64(c1, vreinterpretq_f64_u64(                              \
                 vandq_u64(vreinterpretq_u64_f64(one), e1)));                  \
    } while (0)

#define SUM_STEP(EXP, lo, hi, mvl, mvh)                                        \
    do {                                                                       \
        uint64x2_t e0 = vceqq_f64(lo, mvl), e1 = vceqq_f64(hi, mvh);           \
        float64x2_t t0 = EXP(vmulq_f64(vsubq_f64(lo, mvl), sv));               \
        float64x2_t t1 = EXP(vmulq_f64(vsubq_f64(hi, mvh), sv));               \
        r0 = vaddq_f64(r0, vreinterpretq_f64_u64(                              \
                 vbicq_u64(vreinterpretq_u64_f64(t0), e0)));                   \
        r1 = vaddq_f64(r1, vreinterpretq_f64_u64(                              \
                 vbicq_u64(vreinterpretq_u64_f64(t1), e1)));                   \
        c0 = vaddq_f64(c0, vreinterpretq_f64_u64(                              \
                 vandq_u64(vreinterpretq_u64_f64(one), e0)));                  \
        c1 = vaddq_f64(c1, vreinterpretq_f64_u64(                              \
                 vandq_u64(vreinterpretq_u64_f64(one), e1)));                  \
    } while (0)

/* write-pass arguments: fma(scale, x - max, -log_sum), as gcc contracts the
 * scalar expression */
#define ARG(v, mv, lv) vfmaq_f64(vnegq_f64(lv), vsubq_f64(v, mv), sv)

#define DEFINE_NEON_KERNELS(T, SUF, EXP)                                       \
static void lse_row_##SUF##_(const T *x, ptrdiff_t n, double scale,            \
                             csm_lse_state *st)                                \
{                                                                              \
    double m = row_max_##SUF##_(x, n);                                         \
    if (!finite_(m)) { /* NaN, +-inf, empty: rare */                           \
        csm_lse_rows_##SUF##_scalar(x, 1, n, n, scale, st);                    \
        return;                                                                \
    }                                                                          \
    const float64x2_t mv = vdupq_n_f64(m), sv = vdupq_n_f64(scale);            \
    const float64x2_t one = vdupq_n_f64(1.0);                                  \
    float64x2_t r0 = vdupq_n_f64(0.0), r1 = r0, c0 = r0, c1 = r0, lo, hi;      \
    ptrdiff_t i = 0;                                                           \
    for (; i + 4 <= n; i += 4) {                                               \
        load4_##SUF##_(x + i, &lo, &hi);                                       \
        SUM_STEP(EXP, lo, hi, mv, mv);                                         \
    }                                                                          \
    if (i < n) { /* tail padded with -inf: exp -> 0, never equal to m */       \
        T buf[4] = { -INFINITY, -INFINITY, -INFINITY, -INFINITY };             \
        for (ptrdiff_t k = 0; k < n - i; ++k) buf[k] = x[i + k];               \
        load4_##SUF##_(buf, &lo, &hi);                                         \
        SUM_STEP(EXP, lo, hi, mv, mv);                                         \
    }                                                                          \
    st->max = m;                                                               \
    st->count = vaddvq_f64(vaddq_f64(c0, c1));                                 \
    st->rest = vaddvq_f64(vaddq_f64(r0, r1));                                  \
}                                                                              \
void csm_lse_rows_##SUF##_neon(const T *x, ptrdiff_t n_rows, ptrdiff_t n,      \
                               ptrdiff_t row_stride, double scale,             \
                               csm_lse_state *states)                          \
{                                                                              \
    for (ptrdiff_t r = 0; r < n_rows; ++r)                                     \
        lse_row_##SUF##_(x + r * row_stride, n, scale, states + r);            \
}                                                                              \
void csm_softmax_rows_##SUF##_neon(const T *x, ptrdiff_t n_rows, ptrdiff_t n,  \
        ptrdiff_t x_row_stride, double scale, const double *max,               \
        const double *log_sum, double alpha, T *y, ptrdiff_t y_row_stride)     \
{                                                                              \
    const float64x2_t sv = vdupq_n_f64(scale), av = vdupq_n_f64(alpha);        \
    for (ptrdiff_t r = 0; r < n_rows; ++r) {                                   \
        const T *xr = x + r * x_row_stride; T *yr = y + r * y_row_stride;      \
        if (!finite_(max[r])) {                                                \
            csm_softmax_rows_##SUF##_scalar(xr, 1, n, 0, scale, max + r,       \
                                            log_sum + r, alpha, yr, 0);        \
            continue;                                                          \
        }                                                                      \
        const float64x2_t mv = vdupq_n_f64(max[r]);                            \
        const float64x2_t lv = vdupq_n_f64(log_sum[r]);                        \
        float64x2_t lo, hi;                                                    \
        ptrdiff_t i = 0;                                                       \
        for (; i + 4 <= n; i += 4) {                                           \
            load4_##SUF##_(xr + i, &lo, &hi);                                  \
            lo = vmulq_f64(av, EXP(ARG(lo, mv, lv)));                          \
            hi = vmulq_f64(av, EXP(ARG(hi, mv, lv)));                          \
            store4_##SUF##_(yr + i, lo, hi);                                   \
        }                                                                      \
        if (i < n) {                                                           \
            T buf[4] = { 0, 0, 0, 0 };                                         \
            for (ptrdiff_t k = 0; k < n - i; ++k) buf[k] = xr[i + k];          \
            load4_##SUF##_(buf, &lo, &hi);                                     \
            lo = vmulq_f64(av, EXP(ARG(lo, mv, lv)));                          \
            hi = vmulq_f64(av, EXP(ARG(hi, mv, lv)));                          \
            store4_##SUF##_(buf, lo, hi);                                      \
            for (ptrdiff_t k = 0; k < n - i; ++k) yr[i + k] = buf[k];          \
        }                                                                      \
    }                                                                          \
}                                                                              \
void csm_log_softmax_rows_##SUF##_neon(const T *x, ptrdiff_t n_rows,           \
        ptrdiff_t n, ptrdiff_t x_row_stride, double scale, const double *max,  \
        const double *log_sum, double alpha, T *y, ptrdiff_t y_row_stride)     \
{                                                                              \
    const float64x2_t sv = vdupq_n_f64(scale);                                 \
    for (ptrdiff_t r = 0; r < n_rows; ++r) {                                   \
        const T *xr = x + r * x_row_stride; T *yr = y + r * y_row_stride;      \
        if (!finite_(max[r])) {                                                \
            csm_log_softmax_rows_##SUF##_scalar(xr, 1, n, 0, scale, max + r,   \
                                                log_sum + r, alpha, yr, 0);    \
            continue;                                                          \
        }                                                                      \
        const float64x2_t mv = vdupq_n_f64(max[r]);                            \
        const float64x2_t lv = vdupq_n_f64(log_sum[r]);                        \
        float64x2_t lo, hi;                                                    \
        ptrdiff_t i = 0;                                                       \
        for (; i + 4 <= n; i += 4) {                                           \
            load4_##SUF##_(xr + i, &lo, &hi);                                  \
            store4_##SUF##_(yr + i, ARG(lo, mv, lv), ARG(hi, mv, lv));         \
        }                                                                      \
        for (; i < n; ++i) {                                                   \
            double v = (double)xr[i];                                          \
            yr[i] = (T)fma(v - max[r], scale, -log_sum[r]);                    \
        }                                                                      \
    }                                                                          \
}                                                                              \
/* Columns: 4 contiguous columns per group, lanes = columns; groups with a  */ \
/* non-finite max and the last < 4 columns use the scalar kernels.          */ \
void csm_lse_cols_##SUF##_neon(const T *x, ptrdiff_t n_cols, ptrdiff_t n,      \
                               ptrdiff_t row_stride, double scale,             \
                               csm_lse_state *states)                          \
{                                                                              \
    const float64x2_t sv = vdupq_n_f64(scale), one = vdupq_n_f64(1.0);         \
    ptrdiff_t j = 0;                                                           \
    for (; j + 4 <= n_cols; j += 4) {                                          \
        float64x2_t ml = vdupq_n_f64(-INFINITY), mh = ml, lo, hi;              \
        for (ptrdiff_t i = 0; i < n; ++i) {                                    \
            load4_##SUF##_(x + i * row_stride + j, &lo, &hi);                  \
            ml = vmaxq_f64(ml, lo); mh = vmaxq_f64(mh, hi);                    \
        }                                                                      \
        double mx[4];                                                          \
        vst1q_f64(mx, ml); vst1q_f64(mx + 2, mh);                              \
        if (!(finite_(mx[0]) && finite_(mx[1]) && finite_(mx[2]) &&            \
              finite_(mx[3]))) {                                               \
            csm_lse_cols_##SUF##_scalar(x + j, 4, n, row_stride, scale,        \
                                        states + j);                           \
            continue;                                                          \
        }                                                                      \
        float64x2_t r0 = vdupq_n_f64(0.0), r1 = r0, c0 = r0, c1 = r0;          \
        float64x2_t k0 = r0, k1 = r0;                                          \
        for (ptrdiff_t i = 0; i < n; ++i) {                                    \
            load4_##SUF##_(x + i * row_stride + j, &lo, &hi);                  \
            SUM_STEP_K(EXP, lo, hi, ml, mh);                                   \
        }                                                                      \
        double cn[4], rs[4];                                                   \
        vst1q_f64(cn, c0); vst1q_f64(cn + 2, c1);                              \
        vst1q_f64(rs, r0); vst1q_f64(rs + 2, r1);                              \
        for (int k = 0; k < 4; ++k) {                                          \
            states[j + k].max = mx[k];                                         \
            states[j + k].count = cn[k];                                       \
            states[j + k].rest = rs[k];                                        \
        }                                                                      \
    }                                                                          \
    if (j < n_cols)                                                            \
        csm_lse_cols_##SUF##_scalar(x + j, n_cols - j, n, row_stride, scale,   \
                                    states + j);                               \
}                                                                              \
void csm_softmax_cols_##SUF##_neon(const T *x, ptrdiff_t n_cols, ptrdiff_t n,  \
        ptrdiff_t x_row_stride, double scale, const double *max,               \
        const double *log_sum, double alpha, T *y, ptrdiff_t y_row_stride)     \
{                                                                              \
    const float64x2_t sv = vdupq_n_f64(scale), av = vdupq_n_f64(alpha);        \
    ptrdiff_t j = 0;                                                           \
    for (; j + 4 <= n_cols; j += 4) {                                          \
        if (!(finite_(max[j]) && finite_(max[j + 1]) && finite_(max[j + 2])    \
              && finite_(max[j + 3]))) {                                       \
            csm_softmax_cols_##SUF##_scalar(x + j, 4, n, x_row_stride, scale,  \
                max + j, log_sum + j, alpha, y + j, y_row_stride);             \
            continue;                                                          \
        }                                                                      \
        const float64x2_t ml = vld1q_f64(max + j), mh = vld1q_f64(max + j + 2);\
        const float64x2_t ll = vld1q_f64(log_sum + j);                         \
        const float64x2_t lh = vld1q_f64(log_sum + j + 2);                     \
        float64x2_t lo, hi;                                                    \
        for (ptrdiff_t i = 0; i < n; ++i) {                                    \
            load4_##SUF##_(x + i * x_row_stride + j, &lo, &hi);                \
            lo = vmulq_f64(av, EXP(ARG(lo, ml, ll)));                          \
            hi = vmulq_f64(av, EXP(ARG(hi, mh, lh)));                          \
            store4_##SUF##_(y + i * y_row_stride + j, lo, hi);                 \
        }                                                                      \
    }                                                                          \
    if (j < n_cols)                                                            \
        csm_softmax_cols_##SUF##_scalar(x + j, n_cols - j, n, x_row_stride,    \
            scale, max + j, log_sum + j, alpha, y + j, y_row_stride);          \
}                                                                              \
void csm_log_softmax_cols_##SUF##_neon(const T *x, ptrdiff_t n_cols,           \
        ptrdiff_t n, ptrdiff_t x_row_stride, double scale, const double *max,  \
        const double *log_sum, double alpha, T *y, ptrdiff_t y_row_stride)     \
{                                                                              \
    const float64x2_t sv = vdupq_n_f64(scale);                                 \
    ptrdiff_t j = 0;                                                           \
    for (; j + 4 <= n_cols; j += 4) {                                          \
        if (!(finite_(max[j]) && finite_(max[j + 1]) && finite_(max[j + 2])    \
              && finite_(max[j + 3]))) {                                       \
            csm_log_softmax_cols_##SUF##_scalar(x + j, 4, n, x_row_stride,     \
                scale, max + j, log_sum + j, alpha, y + j, y_row_stride);      \
            continue;                                                          \
        }                                                                      \
        const float64x2_t ml = vld1q_f64(max + j), mh = vld1q_f64(max + j + 2);\
        const float64x2_t ll = vld1q_f64(log_sum + j);                         \
        const float64x2_t lh = vld1q_f64(log_sum + j + 2);                     \
        float64x2_t lo, hi;                                                    \
        for (ptrdiff_t i = 0; i < n; ++i) {                                    \
            load4_##SUF##_(x + i * x_row_stride + j, &lo, &hi);                \
            store4_##SUF##_(y + i * y_row_stride + j, ARG(lo, ml, ll),         \
                            ARG(hi, mh, lh));                                  \
        }                                                                      \
    }                                                                          \
    if (j < n_cols)                                                            \
        csm_log_softmax_cols_##SUF##_scalar(x + j, n_cols - j, n,              \
            x_row_stride, scale, max + j, log_sum + j, alpha, y + j,           \
            y_row_stride);                                                     \
}

DEFINE_NEON_KERNELS(float, f32, exp_f32_)
DEFINE_NEON_KERNELS(double, f64, exp_f64_)

#endif /* CSM_BUILD_NEON */
